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
How fines are reckoned is in docs/fees.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ils import queries
from ils.currency import MAX_MINOR
from ils.db import Database
from ils.fines import overdue_fine_minor
from ils.ledger import (
    FOUND_NOTE,
    NON_MONEY_METHODS,
    AllocationView,
    FeeView,
    PaymentReceipt,
    allocate,
    build_receipt,
    check_amount,
    earlier_payment,
    fee_views,
    log_payment,
    payable_fees,
    repeat_receipt,
    same_payment,
    spend_credit,
    split_amount,
    written_off_minor,
)
from ils.models import (
    Branch,
    CirculationLog,
    Fee,
    FeeKind,
    Institution,
    Item,
    ItemStatus,
    Loan,
    LoanEvent,
    Patron,
    Payment,
    PaymentAllocation,
    PaymentMethod,
    utcnow,
)
from ils.results import CirculationRefused, Refusal
from ils.storable import is_code

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

# Attempts of one use case that meets deadlocks or serialisation failures.
_ATTEMPTS = 5
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

_T = TypeVar("_T")


# Charging, inside the caller's transaction.


def institution_of(session: Session, patron: Patron) -> Institution:
    """The institution a patron belongs to: that of their home branch."""
    return queries.institution_of_patron(session, patron)


def charge_fee(
    session: Session,
    *,
    patron: Patron,
    kind: FeeKind,
    amount_minor: int,
    description: str,
    by: str,
    moment: datetime,
    item: Item | None = None,
    loan: Loan | None = None,
) -> Fee | None:
    """Record a fee in the institution's currency (None when amount is 0), apply any
    credit the patron has, and write the circulation log row. Called inside the
    caller's transaction.

    The caller holds the patron's row lock (it changes `credit_minor`).

    Raises:
        ValueError: a negative amount, or one too large to store.
    """
    if amount_minor < 0 or amount_minor > MAX_MINOR:
        raise ValueError(f"a fee of {amount_minor} minor units cannot be charged")
    if amount_minor == 0:
        return None
    currency = institution_of(session, patron).currency
    fee = Fee(
        patron_id=patron.id,
        kind=kind,
        amount_minor=amount_minor,
        balance_minor=amount_minor,
        currency=currency,
        description=description,
        item_id=None if item is None else item.id,
        loan_id=None if loan is None else loan.id,
        created_at=moment,
        created_by=by,
    )
    session.add(fee)
    session.flush()
    session.add(
        CirculationLog(
            at=moment,
            event=LoanEvent.FEE_CHARGED,
            item_id=fee.item_id,
            patron_id=patron.id,
            branch_id=None if loan is None else loan.branch_id,
            terminal=by,
            detail=f"fee {fee.id} {kind.value} {amount_minor} {currency}",
        )
    )
    if patron.credit_minor > 0:
        spend_credit(session, patron, [fee], moment=moment, by=by)
    session.flush()
    return fee


def charge_lost_item(
    session: Session,
    *,
    patron: Patron,
    item: Item,
    moment: datetime,
    by: str,
    loan: Loan | None = None,
) -> list[Fee]:
    """Charge a lost item: its price as a LOST fee, and the institution's processing
    fee as a PROCESSING fee. Either is skipped when it is 0 (an item with no price
    has no lost fee). Called inside the caller's transaction, patron locked."""
    institution = institution_of(session, patron)
    title = item.record.title
    charged = [
        charge_fee(
            session,
            patron=patron,
            kind=FeeKind.LOST,
            amount_minor=item.price_minor or 0,
            description=f"Lost: {title}",
            by=by,
            moment=moment,
            item=item,
            loan=loan,
        ),
        charge_fee(
            session,
            patron=patron,
            kind=FeeKind.PROCESSING,
            amount_minor=institution.lost_processing_fee_minor,
            description=f"Processing a lost item: {title}",
            by=by,
            moment=moment,
            item=item,
            loan=loan,
        ),
    ]
    return [fee for fee in charged if fee is not None]


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


# The service: each use case in its own transaction.


def _is_retryable(error: OperationalError) -> bool:
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


class FeeService:
    """Charging, paying and writing off fees, one transaction per use case.

    Args:
        database: where the library's data lives.
        clock: the current time, timezone-aware; tests pass a fixed one.
    """

    def __init__(
        self, database: Database, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._database = database
        self._clock = clock

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock's time must be timezone-aware")
        return now.astimezone(UTC)

    def _unit(self, work: Callable[[Session], _T]) -> _T:
        last: OperationalError | None = None
        for _attempt in range(_ATTEMPTS):
            try:
                with self._database.transaction() as session:
                    return work(session)
            except OperationalError as error:
                if not _is_retryable(error):
                    raise
                last = error
        raise CirculationRefused(Refusal.TRY_AGAIN) from last

    @staticmethod
    def _patron(session: Session, barcode: str) -> Patron:
        if not is_code(barcode):
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        patron = queries.patron_by_barcode(session, barcode, lock=True)
        if patron is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        return patron

    def fees_of(
        self, patron_barcode: str, *, include_settled: bool = False
    ) -> tuple[FeeView, ...]:
        """A patron's open fees (or all of them), oldest first.

        Raises:
            CirculationRefused: UNKNOWN_PATRON.
        """
        if not is_code(patron_barcode):
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        with self._database.read() as session:
            patron = queries.patron_by_barcode(session, patron_barcode)
            if patron is None:
                raise CirculationRefused(Refusal.UNKNOWN_PATRON)
            return fee_views(session, patron.id, include_settled=include_settled)

    def charge(
        self,
        patron_barcode: str,
        *,
        kind: FeeKind,
        amount_minor: int,
        description: str,
        by: str,
        item_barcode: str | None = None,
    ) -> FeeView:
        """Charge a fee by hand (damage, processing, a manual fee, ...).

        Any credit the patron has pays it at once; the view shows what is left.

        Raises:
            CirculationRefused: INVALID_AMOUNT for an amount that is not a
                positive whole number of minor units; UNKNOWN_PATRON;
                UNKNOWN_ITEM for an item barcode not found.
        """
        check_amount(amount_minor)
        moment = self._now()

        def work(session: Session) -> FeeView:
            patron = self._patron(session, patron_barcode)
            item = None
            if item_barcode is not None:
                if not is_code(item_barcode):
                    raise CirculationRefused(Refusal.UNKNOWN_ITEM)
                item = queries.item_by_barcode(session, item_barcode)
                if item is None:
                    raise CirculationRefused(Refusal.UNKNOWN_ITEM)
            fee = charge_fee(
                session,
                patron=patron,
                kind=kind,
                amount_minor=amount_minor,
                description=description,
                by=by,
                moment=moment,
                item=item,
            )
            assert fee is not None
            return next(
                view
                for view in fee_views(session, patron.id, include_settled=True)
                if view.id == fee.id
            )

        return self._unit(work)

    def mark_lost(self, item_barcode: str, *, by: str) -> tuple[FeeView, ...]:
        """Staff declare an item on loan lost: bill its borrower its price and the
        institution's processing fee (`charge_lost_item`) and mark it LOST. The
        loan stays open until the item comes back or staff return it; a checkin
        of it later cancels the lost fee by the institution's setting.

        Raises:
            CirculationRefused: UNKNOWN_ITEM; ITEM_NOT_ON_LOAN (nobody to bill);
                TRY_AGAIN when the loan kept changing hands.
        """
        moment = self._now()

        def work(session: Session) -> tuple[FeeView, ...]:
            # The borrower is locked before the item, as everywhere in the core.
            borrower_id = session.scalar(
                sa.select(Loan.patron_id)
                .join(Item, Item.id == Loan.item_id)
                .where(Item.barcode == item_barcode, Loan.returned_at.is_(None))
            )
            if borrower_id is not None:
                queries.lock_patron(session, borrower_id)
            item = queries.item_by_barcode(session, item_barcode, lock=True)
            if item is None:
                raise CirculationRefused(Refusal.UNKNOWN_ITEM)
            loan = queries.open_loan(session, item, lock=True)
            if loan is None or loan.patron is None:
                raise CirculationRefused(Refusal.ITEM_NOT_ON_LOAN)
            if loan.patron_id != borrower_id:
                raise CirculationRefused(Refusal.TRY_AGAIN)
            charged = charge_lost_item(
                session, patron=loan.patron, item=item, moment=moment, by=by, loan=loan
            )
            item.status = ItemStatus.LOST
            ids = {fee.id for fee in charged}
            return tuple(
                view
                for view in fee_views(session, loan.patron.id, include_settled=True)
                if view.id in ids
            )

        return self._unit(work)

    def pay(  # noqa: PLR0917 - the positional order terminals are written against
        self,
        patron_barcode: str,
        amount_minor: int,
        currency: str,
        method: PaymentMethod,
        terminal: str,
        transaction_id: str | None,
        fee_id: int | None = None,
    ) -> PaymentReceipt:
        """Take a payment: for one fee, or for the oldest open fees first.

        What is paid beyond the fee (or beyond everything owed) is kept as the
        patron's credit when the institution allows it, and refused otherwise.
        A payment whose terminal and transaction id were already recorded for
        this patron is a terminal sending it again (its answer was lost): it
        is answered with the first payment's receipt, marked `repeated`, and
        nothing is paid twice. Sent again with another amount, or for another
        fee than the first went to, it is no repeat but a reused id, and is
        refused (INVALID_AMOUNT, with its own message).
        Amounts given as text are turned into minor units with
        `ils.currency.parse_amount` first.

        Raises:
            CirculationRefused: INVALID_AMOUNT (not a positive whole number of
                minor units), WRONG_CURRENCY (not the institution's),
                UNKNOWN_PATRON, FEE_NOT_FOUND (no such fee on this card),
                NOTHING_OWED (the fee, or the card, owes nothing),
                OVERPAYMENT_REFUSED, TRY_AGAIN; INVALID_AMOUNT too for a
                transaction id reused for another payment, and for a terminal
                or transaction id holding control characters.
            ValueError: a method that brings no money (CREDIT, WRITE_OFF).
        """
        if method in NON_MONEY_METHODS:
            raise ValueError(f"{method.value} is not a way to pay; see write_off")
        check_amount(amount_minor)
        if not is_code(terminal) or (
            transaction_id is not None and not is_code(transaction_id)
        ):
            raise CirculationRefused(
                Refusal.INVALID_AMOUNT,
                "The terminal or transaction id holds characters that cannot be"
                " recorded.",
            )
        moment = self._now()

        def work(session: Session) -> PaymentReceipt:
            patron = self._patron(session, patron_barcode)
            institution = institution_of(session, patron)
            if currency.upper() != institution.currency.upper():
                raise CirculationRefused(Refusal.WRONG_CURRENCY)
            if transaction_id is not None:
                earlier = earlier_payment(session, patron, terminal, transaction_id)
                if earlier is not None:
                    if not same_payment(session, earlier, amount_minor, fee_id):
                        raise CirculationRefused(
                            Refusal.INVALID_AMOUNT,
                            "This transaction id was already used for another payment.",
                        )
                    return repeat_receipt(session, patron, earlier)
            fees = payable_fees(session, patron, fee_id)
            owed = sum(fee.balance_minor for fee in fees)
            if amount_minor > owed and not institution.overpayment_as_credit:
                raise CirculationRefused(Refusal.OVERPAYMENT_REFUSED)

            payment = Payment(
                patron_id=patron.id,
                amount_minor=amount_minor,
                currency=institution.currency,
                method=method,
                terminal=terminal,
                transaction_id=transaction_id,
                at=moment,
            )
            shares = split_amount(fees, amount_minor)
            allocate(session, payment, shares)
            credit_added = amount_minor - sum(share for _fee, share in shares)
            patron.credit_minor += credit_added
            extra = f", {credit_added} to credit" if credit_added else ""
            log_payment(
                session,
                payment=payment,
                patron=patron,
                event=LoanEvent.PAYMENT,
                moment=moment,
                extra=extra,
            )
            return build_receipt(session, patron, payment, shares, credit_added)

        return self._unit(work)

    def refund_credit(
        self,
        patron_barcode: str,
        *,
        method: PaymentMethod,
        terminal: str,
        transaction_id: str | None = None,
        amount_minor: int | None = None,
    ) -> PaymentReceipt:
        """Pay a patron's credit (or `amount_minor` of it) back to them.

        Recorded as a payment of minus the amount in the method the money went
        out by, allocated to nothing: the money received and the credit held
        both fall by it, so the books still balance.

        Raises:
            CirculationRefused: UNKNOWN_PATRON; NOTHING_OWED when the patron
                holds no credit; INVALID_AMOUNT for an amount that is not
                positive or is more than the credit.
            ValueError: a method that moves no money (CREDIT, WRITE_OFF).
        """
        if method in NON_MONEY_METHODS:
            raise ValueError(f"{method.value} cannot pay money back")
        if amount_minor is not None:
            check_amount(amount_minor)
        moment = self._now()

        def work(session: Session) -> PaymentReceipt:
            patron = self._patron(session, patron_barcode)
            if patron.credit_minor <= 0:
                raise CirculationRefused(
                    Refusal.NOTHING_OWED, "This card holds no credit to pay back."
                )
            amount = patron.credit_minor if amount_minor is None else amount_minor
            if amount > patron.credit_minor:
                raise CirculationRefused(
                    Refusal.INVALID_AMOUNT, "That is more than the card's credit."
                )
            payment = Payment(
                patron_id=patron.id,
                amount_minor=-amount,
                currency=institution_of(session, patron).currency,
                method=method,
                terminal=terminal,
                transaction_id=transaction_id,
                at=moment,
                note="credit paid back",
            )
            session.add(payment)
            patron.credit_minor -= amount
            session.flush()
            log_payment(
                session,
                payment=payment,
                patron=patron,
                event=LoanEvent.PAYMENT,
                moment=moment,
                extra=", credit paid back",
            )
            return build_receipt(session, patron, payment, [], -amount)

        return self._unit(work)

    def write_off(
        self,
        patron_barcode: str,
        *,
        by: str,
        note: str,
        fee_id: int | None = None,
        amount_minor: int | None = None,
    ) -> PaymentReceipt:
        """Forgive a fee (or the oldest open fees), wholly or `amount_minor` of it.

        Recorded as a payment with method WRITE_OFF: no money, no credit.

        Raises:
            CirculationRefused: INVALID_AMOUNT (not positive, or more than is
                owed), UNKNOWN_PATRON, FEE_NOT_FOUND, NOTHING_OWED, TRY_AGAIN.
        """
        if amount_minor is not None:
            check_amount(amount_minor)
        moment = self._now()

        def work(session: Session) -> PaymentReceipt:
            patron = self._patron(session, patron_barcode)
            fees = payable_fees(session, patron, fee_id)
            owed = sum(fee.balance_minor for fee in fees)
            amount = owed if amount_minor is None else amount_minor
            if amount > owed:
                raise CirculationRefused(
                    Refusal.INVALID_AMOUNT, "That is more than is owed."
                )
            payment = Payment(
                patron_id=patron.id,
                amount_minor=amount,
                currency=fees[0].currency,
                method=PaymentMethod.WRITE_OFF,
                terminal=by,
                at=moment,
                note=note,
            )
            shares = split_amount(fees, amount)
            allocate(session, payment, shares)
            log_payment(
                session,
                payment=payment,
                patron=patron,
                event=LoanEvent.WRITE_OFF,
                moment=moment,
            )
            return build_receipt(session, patron, payment, shares, 0)

        return self._unit(work)
