"""The core's tables, as SQLAlchemy 2 declarative models.

Layer: `ils`, the bottom. Imports only SQLAlchemy, the standard library and
`ils.model_types` (the base, column types and enums, re-exported here).

Conventions kept across every table:
- times are stored in UTC (`UtcDateTime`) and come back timezone-aware; a branch
  carries the time zone in which its dates are reckoned;
- money is an integer count of minor units (pence, cents) beside the
  institution's ISO 4217 currency code;
- codes (branch, category, item type) are the library's own short strings and are
  what import files and SIP2 speak; ids are internal.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

# The base, column types and enums live in ils.model_types; they are re-exported
# here, so that `from ils.models import Base, FeeKind, utcnow` keeps working.
from ils.model_types import (
    NAMING_CONVENTION,
    Base,
    FeeKind,
    FineUnit,
    HoldStatus,
    ItemStatus,
    LoanEvent,
    PaymentMethod,
    UtcDateTime,
    enum_column,
    utcnow,
)

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "BibRecord",
    "Branch",
    "BranchClosedDay",
    "BranchHours",
    "CirculationLog",
    "Fee",
    "FeeKind",
    "FineUnit",
    "Hold",
    "HoldStatus",
    "Institution",
    "Item",
    "ItemStatus",
    "ItemType",
    "Loan",
    "LoanEvent",
    "LoanRule",
    "Patron",
    "PatronBlock",
    "PatronCategory",
    "Payment",
    "PaymentAllocation",
    "PaymentMethod",
    "UtcDateTime",
    "utcnow",
]


class Institution(Base):
    """A library authority: the owner of branches, patrons and items (SIP2's AO)."""

    __tablename__ = "institution"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="USD")

    # Added by issue #4: circulation, fee and privacy settings of the institution,
    # loaded with the loan rules (`ils rules load`, table [settings]).
    # Outstanding fees at or above this block borrowing; None: never.
    fee_limit_minor: Mapped[int | None] = mapped_column(Integer, default=None)
    # This many overdue loans block borrowing; None: never.
    overdue_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    # True: a payment larger than what is owed is kept as credit; False: refused.
    overpayment_as_credit: Mapped[bool] = mapped_column(Boolean, default=False)
    # A lost item found again: its unpaid lost fee is cancelled (and a paid one
    # becomes credit) when True.
    refund_lost_when_found: Mapped[bool] = mapped_column(Boolean, default=True)
    # Charged with a lost fee; 0: none.
    lost_processing_fee_minor: Mapped[int] = mapped_column(Integer, default=0)
    # Wrong PINs in a row before the PIN is locked, and for how long.
    pin_max_failures: Mapped[int] = mapped_column(Integer, default=5)
    pin_lock_minutes: Mapped[int] = mapped_column(Integer, default=30)
    # Returned loans older than this many days lose their link to the patron;
    # None keeps loan history (only when a library has consent to).
    loan_history_days: Mapped[int | None] = mapped_column(Integer, default=30)
    # Days a trapped hold waits on the shelf before it expires.
    hold_pickup_days: Mapped[int] = mapped_column(Integer, default=7)
    # Open holds a patron may have at once; None: no limit.
    max_holds: Mapped[int | None] = mapped_column(Integer, default=None)

    branches: Mapped[list[Branch]] = relationship(back_populates="institution")


class Branch(Base):
    """A service point of an institution, with the time zone its dates are kept in."""

    __tablename__ = "branch"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")

    institution: Mapped[Institution] = relationship(back_populates="branches")


class PatronCategory(Base):
    """A kind of patron (adult, child, staff), which loan rules are written for."""

    __tablename__ = "patron_category"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class Patron(Base):
    """A registered borrower, identified at a terminal by the barcode on the card."""

    __tablename__ = "patron"

    id: Mapped[int] = mapped_column(primary_key=True)
    barcode: Mapped[str] = mapped_column(String(64), unique=True)
    surname: Mapped[str] = mapped_column(String(200))
    firstname: Mapped[str] = mapped_column(String(200), default="")
    category_id: Mapped[int] = mapped_column(ForeignKey("patron_category.id"))
    home_branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    # A salted hash (see ils.secrets); None means the patron has no PIN set.
    pin_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    expires_on: Mapped[date | None] = mapped_column(Date, default=None)
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    phone: Mapped[str | None] = mapped_column(String(64), default=None)
    card_lost: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Added by issue #4: wrong PINs in a row, and until when the PIN is locked.
    pin_failures: Mapped[int] = mapped_column(Integer, default=0)
    pin_locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Money the patron has paid beyond what was owed, kept to pay later fees.
    credit_minor: Mapped[int] = mapped_column(Integer, default=0)

    category: Mapped[PatronCategory] = relationship()
    home_branch: Mapped[Branch] = relationship()
    blocks: Mapped[list[PatronBlock]] = relationship(
        back_populates="patron", order_by="PatronBlock.id"
    )


class PatronBlock(Base):
    """A manual block on a patron's borrowing, with the note staff wrote for it.

    A block is lifted by setting `lifted_at`; the row stays as the record.
    """

    __tablename__ = "patron_block"

    id: Mapped[int] = mapped_column(primary_key=True)
    patron_id: Mapped[int] = mapped_column(ForeignKey("patron.id"), index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    # Who placed it: a staff user name, or "sip:<login>" for a terminal's 01.
    placed_by: Mapped[str] = mapped_column(String(100), default="")
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    patron: Mapped[Patron] = relationship(back_populates="blocks")


class BibRecord(Base):
    """A bibliographic record: the title-level description of what items are copies of.

    The full MARC record is kept (as ISO 2709 bytes in UTF-8) so that export loses
    nothing; the columns are what circulation and terminals need to show.
    """

    __tablename__ = "bib_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    control_number: Mapped[str | None] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text, default=None)
    isbn: Mapped[str | None] = mapped_column(String(32), default=None)
    publisher: Mapped[str | None] = mapped_column(Text, default=None)
    publication_year: Mapped[str | None] = mapped_column(String(16), default=None)
    # Deferred: circulation reads titles on every request and never the record
    # itself; only the MARC export asks for it (with `undefer`).
    marc: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ItemType(Base):
    """A kind of item (book, DVD, reference), which loan rules are written for."""

    __tablename__ = "item_type"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # The SIP2 media type code (3 digits, "001" is a book); kept here as plain data
    # so the core need not know SIP2.
    media_type: Mapped[str] = mapped_column(String(3), default="001")


class Item(Base):
    """A physical copy with its own barcode."""

    __tablename__ = "item"

    id: Mapped[int] = mapped_column(primary_key=True)
    barcode: Mapped[str] = mapped_column(String(64), unique=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("bib_record.id"), index=True)
    home_branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    current_branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    item_type_id: Mapped[int] = mapped_column(ForeignKey("item_type.id"))
    location: Mapped[str | None] = mapped_column(String(80), default=None)
    collection: Mapped[str | None] = mapped_column(String(80), default=None)
    call_number: Mapped[str | None] = mapped_column(String(120), default=None)
    status: Mapped[ItemStatus] = mapped_column(
        enum_column(ItemStatus), default=ItemStatus.AVAILABLE
    )
    price_minor: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Added by issue #4: the branch an item is on its way to (its home, or a hold's
    # pickup branch), and since when; None when it is not in transit.
    transit_to_branch_id: Mapped[int | None] = mapped_column(
        ForeignKey("branch.id"), default=None
    )
    transit_since: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Free text a terminal stored about the item (SIP2's item status update, CH),
    # e.g. a sorter's note or an RFID security setting.
    properties: Mapped[str | None] = mapped_column(Text, default=None)

    record: Mapped[BibRecord] = relationship()
    home_branch: Mapped[Branch] = relationship(foreign_keys=[home_branch_id])
    current_branch: Mapped[Branch] = relationship(foreign_keys=[current_branch_id])
    transit_to_branch: Mapped[Branch | None] = relationship(
        foreign_keys=[transit_to_branch_id]
    )
    item_type: Mapped[ItemType] = relationship()


class LoanRule(Base):
    """How long, how often and how much a patron category may borrow of an item type.

    Rules form a matrix over branch x patron category x item type. A None branch,
    category or item type is a wildcard; the most specific rule wins, and a
    branch outweighs a category, which outweighs an item type (see
    `ils.rules.matrix`). The branch is the one where the checkout happens.

    The loan period is `loan_days` days (due at the end of the last day), or,
    when `loan_hours` is set, that many hours (due to the hour) with
    `loan_days` 0. Fine amounts are minor units of the institution's currency.
    """

    __tablename__ = "loan_rule"
    __table_args__ = (
        UniqueConstraint(
            "branch_id",
            "patron_category_id",
            "item_type_id",
            name="uq_loan_rule_branch_category_type",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patron_category_id: Mapped[int | None] = mapped_column(
        ForeignKey("patron_category.id"), default=None
    )
    item_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("item_type.id"), default=None
    )
    loan_days: Mapped[int] = mapped_column(Integer)
    renewals_allowed: Mapped[int] = mapped_column(Integer, default=0)
    max_loans: Mapped[int] = mapped_column(Integer)

    # Added by issue #4: the branch dimension and everything beyond the period.
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"), default=None)
    loan_hours: Mapped[int | None] = mapped_column(Integer, default=None)
    # The item may not leave the building: a checkout is refused.
    in_house_only: Mapped[bool] = mapped_column(Boolean, default=False)
    fine_minor: Mapped[int] = mapped_column(Integer, default=0)
    fine_unit: Mapped[FineUnit] = mapped_column(
        enum_column(FineUnit), default=FineUnit.DAY
    )
    # Counted in `fine_unit`s: a loan this many days (or hours) late is not fined.
    fine_grace: Mapped[int] = mapped_column(Integer, default=0)
    # The most one loan can be fined; None is no cap.
    fine_cap_minor: Mapped[int | None] = mapped_column(Integer, default=None)
    # Days the branch is closed are not counted when fining.
    fines_skip_closed_days: Mapped[bool] = mapped_column(Boolean, default=True)
    holds_allowed: Mapped[bool] = mapped_column(Boolean, default=True)
    # Branch codes, separated by spaces, where holds may be picked up; None is any.
    hold_pickup_branches: Mapped[str | None] = mapped_column(Text, default=None)
    # Added by issue #4: fees charged at checkout (rental) and when a hold is
    # placed; 0 is none.
    rental_fee_minor: Mapped[int] = mapped_column(Integer, default=0)
    hold_fee_minor: Mapped[int] = mapped_column(Integer, default=0)
    # Staff may override this rule's refusals (loan limit, renewal limit).
    staff_override: Mapped[bool] = mapped_column(Boolean, default=True)

    branch: Mapped[Branch | None] = relationship()
    patron_category: Mapped[PatronCategory | None] = relationship()
    item_type: Mapped[ItemType | None] = relationship()


class BranchHours(Base):
    """The hours a branch is open on one weekday; a weekday without a row is closed.

    A branch with no rows at all has no calendar: it counts as open all day,
    every day. Times are wall-clock times in the branch's time zone.
    """

    __tablename__ = "branch_hours"
    __table_args__ = (
        UniqueConstraint("branch_id", "weekday", name="uq_branch_hours_weekday"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    # Monday is 0, as `date.weekday()` counts.
    weekday: Mapped[int] = mapped_column(Integer)
    opens: Mapped[time] = mapped_column(Time)
    closes: Mapped[time] = mapped_column(Time)


class BranchClosedDay(Base):
    """A date on which a branch is closed although its weekday has hours."""

    __tablename__ = "branch_closed_day"
    __table_args__ = (
        UniqueConstraint("branch_id", "day", name="uq_branch_closed_day_day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    day: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(String(200), default="")


class Loan(Base):
    """An item lent to a patron, open until `returned_at` is set.

    The partial unique index allows one open loan per item, so that two terminals
    checking out the same item at once leave exactly one loan on any database.
    """

    __tablename__ = "loan"
    __table_args__ = (
        Index(
            "uq_loan_open_item",
            "item_id",
            unique=True,
            sqlite_where=text("returned_at IS NULL"),
            postgresql_where=text("returned_at IS NULL"),
        ),
        Index("ix_loan_patron_open", "patron_id", "returned_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))
    # None once the loan history is anonymised after return.
    patron_id: Mapped[int | None] = mapped_column(ForeignKey("patron.id"))
    branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    checked_out_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    returned_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    # Added by issue #4: kept when the patron link is dropped, for statistics.
    patron_category_id: Mapped[int | None] = mapped_column(
        ForeignKey("patron_category.id"), default=None
    )

    item: Mapped[Item] = relationship()
    patron: Mapped[Patron | None] = relationship()
    branch: Mapped[Branch] = relationship()


class CirculationLog(Base):
    """The transaction log: one row per circulation event, for staff and statistics.

    `terminal` is the SIP login or other source of the event. `patron_id` is
    cleared by anonymisation like a loan's.
    """

    __tablename__ = "circulation_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    event: Mapped[LoanEvent] = mapped_column(enum_column(LoanEvent))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("item.id"), default=None)
    patron_id: Mapped[int | None] = mapped_column(ForeignKey("patron.id"), default=None)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"), default=None)
    terminal: Mapped[str | None] = mapped_column(String(100), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)


class Hold(Base):
    """A patron's request for a title (any copy) or for one item.

    The queue of a title is its PENDING holds in placement order. When an item is
    trapped for a hold, `trapped_item_id` names it; the partial unique index keeps
    one item trapped for at most one active hold on any database.
    """

    __tablename__ = "hold"
    __table_args__ = (
        Index(
            "uq_hold_trapped_item",
            "trapped_item_id",
            unique=True,
            sqlite_where=text("status IN ('in_transit', 'waiting')"),
            postgresql_where=text("status IN ('in_transit', 'waiting')"),
        ),
        Index("ix_hold_record_status", "record_id", "status", "placed_at"),
        Index("ix_hold_patron_status", "patron_id", "status"),
        # Plain indexes beside the partial one: SQLite cannot use a partial index
        # for a status list given as bound parameters, and scanned the whole
        # hold history on every checkin (bench/core.py).
        Index("ix_hold_trapped_item", "trapped_item_id"),
        Index("ix_hold_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # None once a finished hold is anonymised.
    patron_id: Mapped[int | None] = mapped_column(ForeignKey("patron.id"))
    record_id: Mapped[int] = mapped_column(ForeignKey("bib_record.id"))
    # Set for an item-level hold: only this copy will do.
    item_id: Mapped[int | None] = mapped_column(ForeignKey("item.id"), default=None)
    pickup_branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    status: Mapped[HoldStatus] = mapped_column(
        enum_column(HoldStatus), default=HoldStatus.PENDING
    )
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The patron no longer wants the hold after this date; None: no end.
    expires_on: Mapped[date | None] = mapped_column(Date, default=None)
    trapped_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("item.id"), default=None
    )
    trapped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # A WAITING hold expires when not picked up by then.
    pickup_deadline: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Who placed it: a staff user name or "sip:<login>".
    placed_by: Mapped[str] = mapped_column(String(100), default="")

    patron: Mapped[Patron | None] = relationship()
    record: Mapped[BibRecord] = relationship()
    item: Mapped[Item | None] = relationship(foreign_keys=[item_id])
    trapped_item: Mapped[Item | None] = relationship(foreign_keys=[trapped_item_id])
    pickup_branch: Mapped[Branch] = relationship()


class Fee(Base):
    """Money a patron owes, in minor units of the institution's currency.

    `balance_minor` is what is still owed: `amount_minor` less every allocation
    of a payment (or write-off) to this fee. A fee is open while its balance is
    above zero.
    """

    __tablename__ = "fee"
    __table_args__ = (
        Index("ix_fee_patron_open", "patron_id", "balance_minor"),
        Index("ix_fee_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # None once a settled fee is anonymised (a patron's data erased).
    patron_id: Mapped[int | None] = mapped_column(ForeignKey("patron.id"))
    kind: Mapped[FeeKind] = mapped_column(enum_column(FeeKind))
    amount_minor: Mapped[int] = mapped_column(Integer)
    balance_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(Text, default="")
    item_id: Mapped[int | None] = mapped_column(ForeignKey("item.id"), default=None)
    loan_id: Mapped[int | None] = mapped_column(ForeignKey("loan.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # A staff user name, "sip:<login>", or "system" for fines and lost fees.
    created_by: Mapped[str] = mapped_column(String(100), default="")

    patron: Mapped[Patron | None] = relationship()
    item: Mapped[Item | None] = relationship()
    loan: Mapped[Loan | None] = relationship()
    allocations: Mapped[list[PaymentAllocation]] = relationship(
        back_populates="fee", order_by="PaymentAllocation.id"
    )


class Payment(Base):
    """Money received (or a write-off or a use of credit), once, as recorded.

    What it paid is in its allocations; whatever is left over became the
    patron's credit.
    """

    __tablename__ = "payment"
    __table_args__ = (Index("ix_payment_patron", "patron_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patron_id: Mapped[int | None] = mapped_column(ForeignKey("patron.id"))
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod))
    # The terminal ("sip:<login>") or staff user that took it.
    terminal: Mapped[str] = mapped_column(String(100), default="")
    # The payment system's own id (SIP2's BK), if it gave one.
    transaction_id: Mapped[str | None] = mapped_column(String(100), default=None)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")

    patron: Mapped[Patron | None] = relationship()
    allocations: Mapped[list[PaymentAllocation]] = relationship(
        back_populates="payment", order_by="PaymentAllocation.id"
    )


class PaymentAllocation(Base):
    """The part of one payment that went to one fee."""

    __tablename__ = "payment_allocation"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"), index=True)
    fee_id: Mapped[int] = mapped_column(ForeignKey("fee.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(Integer)

    payment: Mapped[Payment] = relationship(back_populates="allocations")
    fee: Mapped[Fee] = relationship(back_populates="allocations")
