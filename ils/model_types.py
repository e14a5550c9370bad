"""What the core's tables are built on: the declarative base, column types, enums.

Layer: `ils`, the bottom. Imports only SQLAlchemy and the standard library; never
another `ils` module. `ils.models` declares the tables on this `Base` and
re-exports the base, the column type, `utcnow` and the enums, so importers keep
using `ils.models`.

The enums are the coded values the tables store (an item's status, a hold's
status, a fee's kind, a payment's method, the kinds of circulation log entry);
each is stored as its value in a plain string column (see `enum_column`).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect, MetaData
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so that Alembic migrations can refer to them on both
# SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned timezone-aware.

    SQLite has no time zones; storing naive UTC everywhere keeps both databases
    alike. A naive value handed in is refused, because its zone is a guess.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime cannot be stored; give it a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """The declarative base of every core table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ItemStatus(enum.Enum):
    """What the library has recorded about an item, apart from any loan.

    Whether an item is on loan is not a status: it is the presence of an open loan.
    """

    AVAILABLE = "available"
    NOT_FOR_LOAN = "not_for_loan"
    LOST = "lost"
    MISSING = "missing"
    WITHDRAWN = "withdrawn"
    DAMAGED = "damaged"
    IN_PROCESSING = "in_processing"


class FineUnit(enum.Enum):
    """What a loan rule's fine is charged per: a day late or an hour late."""

    DAY = "day"
    HOUR = "hour"


class LoanEvent(enum.Enum):
    """The kinds of entry in the circulation transaction log."""

    CHECKOUT = "checkout"
    RENEWAL = "renewal"
    CHECKIN = "checkin"
    REFUSAL = "refusal"
    PATRON_BLOCKED = "patron_blocked"
    HOLD_PLACED = "hold_placed"
    HOLD_TRAPPED = "hold_trapped"
    HOLD_CANCELLED = "hold_cancelled"
    HOLD_CHANGED = "hold_changed"
    HOLD_EXPIRED = "hold_expired"
    FEE_CHARGED = "fee_charged"
    PAYMENT = "payment"
    WRITE_OFF = "write_off"
    PIN_LOCKED = "pin_locked"
    ITEM_FOUND = "item_found"
    PATRON_ERASED = "patron_erased"
    PATRON_ENABLED = "patron_enabled"
    ITEM_UPDATED = "item_updated"


class HoldStatus(enum.Enum):
    """Where a hold stands.

    PENDING holds wait in the queue; IN_TRANSIT and WAITING holds have an item
    trapped for them (on its way to the pickup branch, or on the hold shelf
    there); the other three are finished.
    """

    PENDING = "pending"
    IN_TRANSIT = "in_transit"
    WAITING = "waiting"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class FeeKind(enum.Enum):
    """Why a fee was charged."""

    OVERDUE = "overdue"
    LOST = "lost"
    DAMAGE = "damage"
    PROCESSING = "processing"
    RENTAL = "rental"
    HOLD = "hold"
    MANUAL = "manual"


class PaymentMethod(enum.Enum):
    """How money reached the library, or why a balance was cleared without it.

    WRITE_OFF and CREDIT move no new money: a write-off forgives, a CREDIT
    payment spends the patron's credit balance.
    """

    CASH = "cash"
    CARD = "card"
    CREDIT_CARD = "credit_card"
    OTHER = "other"
    CREDIT = "credit"
    WRITE_OFF = "write_off"


def enum_column(kind: type[enum.Enum]) -> SqlEnum:
    # Stored as the enum's value in a plain string column: portable, readable in
    # SQL, and a new member needs no ALTER TYPE on PostgreSQL.
    return SqlEnum(
        kind,
        native_enum=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )
