"""Fees: overdue fines by the loan rule, charges, payments, credit and write-offs.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy. It never logs: it returns results,
writes `CirculationLog` rows, or raises `CirculationRefused`.

Money is an integer count of minor units in the institution's currency
(`ils.currency`). The books always balance:

- a fee's `balance_minor` is its `amount_minor` less the sum of its
  allocations (a payment or write-off may be split over several fees);
- a payment of real money (cash, card, ...) is allocated to fees, and what is
  left over becomes the patron's `credit_minor` (when the institution keeps
  overpayments as credit; otherwise the payment is refused);
- credit is spent by a payment with method CREDIT, allocated like any other,
  made automatically when a fee is charged to a patron who has credit;
- a write-off is a payment with method WRITE_OFF: it clears a balance and
  brings no money;
- a lost item found again gives back what was paid for it as credit: a CREDIT
  payment of minus that amount, allocated as minus that amount to the fee,
  after which the whole fee is written off.

So, for every patron, money received = allocations of real money + credit
+ credit spent, and nothing appears or vanishes (tests/ils/test_fees_ledger.py
checks it).

The functions taking a `Session` run inside the caller's transaction, which
must already hold the patron's row lock (the checkout and checkin take it
first). `FeeService` runs each of its use cases in its own transaction, locking
the patron row first as the checkout does, then the fees, and retries on a
deadlock or serialisation failure; two terminals paying one fee at once are
serialised by the patron lock, so the second sees the first's allocation.
How fines are reckoned is in docs/fees.md. Charging lives in `ils.fee_charges`
and the service in `ils.fee_service`; both are re-exported here.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.fee_charges import charge_fee, charge_lost_item, institution_of
from ils.fee_service import FeeService
from ils.fines import overdue_fine_minor
from ils.ledger import (
    FOUND_NOTE,
    NON_MONEY_METHODS,
    AllocationView,
    FeeView,
    PaymentReceipt,
    allocate,
    fee_views,
    log_payment,
    written_off_minor,
)
from ils.models import (
    Branch,
    Fee,
    FeeKind,
    Institution,
    Item,
    LoanEvent,
    Patron,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from ils.results import Refusal

# Re-exported: callers find the fee functions and views here.
__all__ = [
    "FOUND_NOTE",
    "NON_MONEY_METHODS",
    "AllocationView",
    "FeeService",
    "FeeView",
    "PaymentReceipt",
    "borrowing_block",
    "charge_fee",
    "charge_lost_item",
    "fee_views",
    "institution_of",
    "lost_item_found",
    "open_fees_minor",
    "overdue_fine_minor",
]

# Automatic blocks.


def open_fees_minor(session: Session, patron_id: int) -> int:
    """The sum of a patron's open fee balances."""
    return queries.open_fees_minor(session, patron_id)


def borrowing_block(
    session: Session, patron: Patron, moment: datetime
) -> Refusal | None:
    """FEES_OVER_LIMIT or OVERDUES_OVER_LIMIT by the institution's settings, else None.

    Fees are checked first. A limit of 0 blocks on any fee or overdue at all;
    a limit of None never blocks. (The patron view's `may_borrow` uses the same
    rule, `ils.queries.automatic_block`.)
    """
    return queries.automatic_block(session, patron, moment)


# A lost item found again.


def lost_item_found(session: Session, *, item: Item, moment: datetime, by: str) -> int:
    """A lost item is back: cancel or credit its lost fee by the institution's
    setting; returns the minor units credited or cancelled.

    With `refund_lost_when_found` set, each LOST fee of the item not already
    cancelled this way is settled: what was paid towards it (in money or
    credit, not written off) goes back to its patron as credit, and the rest
    is written off. Processing fees stay: the work was done. Without the
    setting, nothing changes and 0 is returned. Locks each fee's patron row
    (inside the caller's transaction); the log rows are WRITE_OFF rows.
    """
    institution = session.scalar(
        sa.select(Institution)
        .join(Branch, Branch.institution_id == Institution.id)
        .where(Branch.id == item.home_branch_id)
    )
    if institution is None or not institution.refund_lost_when_found:
        return 0

    already = (
        sa.select(PaymentAllocation.fee_id)
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(Payment.note == FOUND_NOTE)
    )
    fees = session.scalars(
        sa.select(Fee)
        .where(
            Fee.item_id == item.id,
            Fee.kind == FeeKind.LOST,
            Fee.id.not_in(already),
        )
        .order_by(Fee.id)
    ).all()

    settled = 0
    for fee in fees:
        patron = None
        if fee.patron_id is not None:
            queries.lock_patron(session, fee.patron_id)
            patron = session.get(Patron, fee.patron_id, populate_existing=True)
        session.refresh(fee)
        written_off = written_off_minor(session, fee.id)
        paid = fee.amount_minor - fee.balance_minor - written_off
        refund = paid if patron is not None else 0
        if refund > 0 and patron is not None:
            back = Payment(
                patron_id=patron.id,
                amount_minor=-refund,
                currency=fee.currency,
                method=PaymentMethod.CREDIT,
                terminal=by,
                at=moment,
                note=FOUND_NOTE,
            )
            allocate(session, back, [(fee, -refund)])
            patron.credit_minor += refund
        cancel = fee.balance_minor
        if cancel > 0:
            write_off = Payment(
                patron_id=fee.patron_id,
                amount_minor=cancel,
                currency=fee.currency,
                method=PaymentMethod.WRITE_OFF,
                terminal=by,
                at=moment,
                note=FOUND_NOTE,
            )
            allocate(session, write_off, [(fee, cancel)])
            log_payment(
                session,
                payment=write_off,
                patron=patron,
                event=LoanEvent.WRITE_OFF,
                moment=moment,
                extra=f": fee {fee.id} cancelled, {refund} to credit",
            )
        settled += cancel
    session.flush()
    return settled
