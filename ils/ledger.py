"""The fee ledger's bookkeeping: allocating payments to fees, spending credit,
the log rows of payments, and the views and receipts handed to callers.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules below `ils.fees`; never SIP2, Twisted or Kivy. It never logs. Every
function runs inside the caller's transaction, which holds the patron's row
lock; the use cases that call them are in `ils.fees`, whose docstring explains
how the books balance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.currency import MAX_MINOR
from ils.models import (
    BibRecord,
    CirculationLog,
    Fee,
    FeeKind,
    Item,
    LoanEvent,
    Patron,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from ils.results import CirculationRefused, Refusal

# The note on the payments that cancel a lost fee when the item is found.
FOUND_NOTE = "lost item found"

# Methods that bring no new money: spending credit, and forgiving.
NON_MONEY_METHODS = frozenset({PaymentMethod.CREDIT, PaymentMethod.WRITE_OFF})


def spend_credit(
    session: Session, patron: Patron, fees: Sequence[Fee], *, moment: datetime, by: str
) -> None:
    """Pay `fees` in order from the patron's credit, as one CREDIT payment."""
    available = patron.credit_minor
    shares = split_amount(fees, available)
    spent = sum(share for _fee, share in shares)
    if spent == 0:
        return
    payment = Payment(
        patron_id=patron.id,
        amount_minor=spent,
        currency=fees[0].currency,
        method=PaymentMethod.CREDIT,
        terminal=by,
        at=moment,
        note="paid from credit",
    )
    session.add(payment)
    allocate(session, payment, shares)
    patron.credit_minor = available - spent
    log_payment(
        session, payment=payment, patron=patron, event=LoanEvent.PAYMENT, moment=moment
    )


def split_amount(fees: Sequence[Fee], amount: int) -> list[tuple[Fee, int]]:
    """How `amount` pays `fees` in order: each as far as it goes."""
    shares: list[tuple[Fee, int]] = []
    left = amount
    for fee in fees:
        if left <= 0:
            break
        share = min(left, fee.balance_minor)
        if share > 0:
            shares.append((fee, share))
            left -= share
    return shares


def allocate(
    session: Session, payment: Payment, shares: Sequence[tuple[Fee, int]]
) -> None:
    """Record `payment` and its shares of `fees`, lowering each fee's balance."""
    session.add(payment)
    session.flush()
    for fee, share in shares:
        session.add(
            PaymentAllocation(payment_id=payment.id, fee_id=fee.id, amount_minor=share)
        )
        fee.balance_minor -= share


def log_payment(
    session: Session,
    *,
    payment: Payment,
    patron: Patron | None,
    event: LoanEvent,
    moment: datetime,
    extra: str = "",
) -> None:
    """Write the circulation log row of a payment or write-off."""
    session.add(
        CirculationLog(
            at=moment,
            event=event,
            patron_id=None if patron is None else patron.id,
            terminal=payment.terminal,
            detail=(
                f"payment {payment.id} {payment.method.value}"
                f" {payment.amount_minor} {payment.currency}{extra}"
            ),
        )
    )


def written_off_minor(session: Session, fee_id: int) -> int:
    """How much of a fee has been written off."""
    total = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PaymentAllocation.amount_minor), 0))
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(
            PaymentAllocation.fee_id == fee_id,
            Payment.method == PaymentMethod.WRITE_OFF,
        )
    )
    return int(total or 0)


# Views handed to callers.


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeView:
    """One fee on a patron's account."""

    id: int
    kind: FeeKind
    amount_minor: int
    balance_minor: int
    currency: str
    description: str
    created_at: datetime
    item_barcode: str | None
    title: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationView:
    """What one payment did to one fee."""

    fee_id: int
    amount_minor: int
    balance_after_minor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentReceipt:
    """A payment or write-off as recorded, with where the money went.

    `credit_added_minor` is the part kept as credit; `owed_minor` and
    `credit_minor` are the patron's totals afterwards.
    """

    payment_id: int
    patron_barcode: str
    amount_minor: int
    currency: str
    method: PaymentMethod
    terminal: str
    transaction_id: str | None
    at: datetime
    allocations: tuple[AllocationView, ...]
    credit_added_minor: int
    owed_minor: int
    credit_minor: int
    # The payment had been recorded already: this answers a repeat of it.
    repeated: bool = False


def fee_views(
    session: Session, patron_id: int, *, include_settled: bool = False
) -> tuple[FeeView, ...]:
    """A patron's fees, oldest first; open ones only unless asked."""
    query = _ALL_FEES if include_settled else _OPEN_FEES
    return tuple(
        FeeView(
            id=fee.id,
            kind=fee.kind,
            amount_minor=fee.amount_minor,
            balance_minor=fee.balance_minor,
            currency=fee.currency,
            description=fee.description,
            created_at=fee.created_at,
            item_barcode=barcode,
            title=title,
        )
        for fee, barcode, title in session.execute(query, {"patron_id": patron_id})
    )


# A patron's fees with their items' barcodes and titles, built once.
_ALL_FEES = (
    sa.select(Fee, Item.barcode, BibRecord.title)
    .outerjoin(Item, Item.id == Fee.item_id)
    .outerjoin(BibRecord, BibRecord.id == Item.record_id)
    .where(Fee.patron_id == sa.bindparam("patron_id"))
    .order_by(Fee.created_at, Fee.id)
)
_OPEN_FEES = _ALL_FEES.where(Fee.balance_minor > 0)


def check_amount(amount_minor: int) -> None:
    """Refuse (INVALID_AMOUNT) anything but a positive whole number of minor units
    that fits the books."""
    # bool is an int to Python, and a float must never reach the books.
    if type(amount_minor) is not int or amount_minor <= 0 or amount_minor > MAX_MINOR:
        raise CirculationRefused(Refusal.INVALID_AMOUNT)


def payable_fees(session: Session, patron: Patron, fee_id: int | None) -> list[Fee]:
    """The fees a payment goes to, locked: the one asked for, or all open ones
    oldest first.

    Raises:
        CirculationRefused: FEE_NOT_FOUND, NOTHING_OWED.
    """
    query = (
        sa.select(Fee)
        .where(Fee.patron_id == patron.id)
        .order_by(Fee.created_at, Fee.id)
        .with_for_update(key_share=True)
    )
    if fee_id is not None:
        fee = session.scalars(query.where(Fee.id == fee_id)).first()
        if fee is None:
            raise CirculationRefused(Refusal.FEE_NOT_FOUND)
        if fee.balance_minor <= 0:
            # The card may owe other money: say it is this charge that is paid.
            raise CirculationRefused(
                Refusal.NOTHING_OWED, "That charge is already paid."
            )
        fees = [fee]
    else:
        fees = list(session.scalars(query.where(Fee.balance_minor > 0)))
    if not fees:
        raise CirculationRefused(Refusal.NOTHING_OWED)
    return fees


def earlier_payment(
    session: Session, patron: Patron, terminal: str, transaction_id: str
) -> Payment | None:
    """The payment already recorded with this terminal and transaction id, if any."""
    return session.scalars(
        sa.select(Payment).where(
            Payment.patron_id == patron.id,
            Payment.terminal == terminal,
            Payment.transaction_id == transaction_id,
            Payment.amount_minor > 0,
            Payment.method.not_in(list(NON_MONEY_METHODS)),
        )
    ).first()


def same_payment(
    session: Session, earlier: Payment, amount_minor: int, fee_id: int | None
) -> bool:
    """Whether a payment sent again under an earlier one's transaction id is
    that payment: the same amount and, when a fee is named, allocated to that
    fee alone. Anything else is a reused id, not a repeat."""
    if earlier.amount_minor != amount_minor:
        return False
    if fee_id is None:
        return True
    fee_ids = set(
        session.scalars(
            sa.select(PaymentAllocation.fee_id).where(
                PaymentAllocation.payment_id == earlier.id
            )
        )
    )
    return fee_ids == {fee_id}


def repeat_receipt(
    session: Session, patron: Patron, payment: Payment
) -> PaymentReceipt:
    """The receipt of a payment recorded earlier; balances are as they are now."""
    rows = session.execute(
        sa.select(PaymentAllocation.amount_minor, Fee)
        .join(Fee, Fee.id == PaymentAllocation.fee_id)
        .where(PaymentAllocation.payment_id == payment.id)
        .order_by(PaymentAllocation.id)
    ).all()
    shares = [(fee, amount) for amount, fee in rows]
    credit_added = payment.amount_minor - sum(amount for _fee, amount in shares)
    receipt = build_receipt(session, patron, payment, shares, credit_added)
    return dataclasses.replace(receipt, repeated=True)


def build_receipt(
    session: Session,
    patron: Patron,
    payment: Payment,
    shares: Sequence[tuple[Fee, int]],
    credit_added: int,
) -> PaymentReceipt:
    """The receipt of a payment just allocated, with the patron's totals after it."""
    session.flush()
    return PaymentReceipt(
        payment_id=payment.id,
        patron_barcode=patron.barcode,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        method=payment.method,
        terminal=payment.terminal,
        transaction_id=payment.transaction_id,
        at=payment.at,
        allocations=tuple(
            AllocationView(
                fee_id=fee.id, amount_minor=share, balance_after_minor=fee.balance_minor
            )
            for fee, share in shares
        ),
        credit_added_minor=credit_added,
        owed_minor=queries.open_fees_minor(session, patron.id),
        credit_minor=patron.credit_minor,
    )
