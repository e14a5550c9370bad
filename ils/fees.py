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

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ils import queries
from ils.calendar import BranchCalendar
from ils.currency import MAX_MINOR
from ils.db import Database
from ils.models import (
    BibRecord,
    Branch,
    CirculationLog,
    Fee,
    FeeKind,
    FineUnit,
    Institution,
    Item,
    Loan,
    LoanEvent,
    LoanRule,
    Patron,
    Payment,
    PaymentAllocation,
    PaymentMethod,
    utcnow,
)
from ils.results import CirculationRefused, Refusal

# The note on the payments that cancel a lost fee when the item is found.
FOUND_NOTE = "lost item found"

# Methods that bring no new money: spending credit, and forgiving.
NON_MONEY_METHODS = frozenset({PaymentMethod.CREDIT, PaymentMethod.WRITE_OFF})

# Attempts of one use case that meets deadlocks or serialisation failures.
_ATTEMPTS = 5
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

_T = TypeVar("_T")


# Overdue fines.


def overdue_fine_minor(
    *,
    due_at: datetime,
    returned_at: datetime,
    rule: LoanRule,
    calendar: BranchCalendar,
) -> int:
    """The fine for a loan returned at returned_at, by the rule (grace, unit, cap,
    closed days).

    Days are counted in the branch's time zone: each day after the due day up
    to and including the day of return is a day late (a loan due and returned
    late on the same day, as an hour loan can be, is one day late). Hours are
    started hours of real time after the due time, so a night when the clocks
    change counts the hours that passed, not those on the wall. When the rule
    skips closed days, closed days (and every hour within them) are not
    counted. A loan late by no more than the grace (in the rule's unit) is not
    fined; one later than that is fined for every unit late, the grace
    included. The fine never exceeds the rule's cap.
    """
    if due_at.tzinfo is None or returned_at.tzinfo is None:
        raise ValueError("due_at and returned_at must be timezone-aware")
    # In UTC: Python subtracts two times of one zone by their wall clocks.
    due_at, returned_at = due_at.astimezone(UTC), returned_at.astimezone(UTC)
    if rule.fine_minor <= 0 or returned_at <= due_at:
        return 0
    skip = rule.fines_skip_closed_days
    if rule.fine_unit is FineUnit.HOUR:
        late = _late_hours(due_at, returned_at, calendar, skip_closed=skip)
    else:
        late = _late_days(due_at, returned_at, calendar, skip_closed=skip)
    if late <= (rule.fine_grace or 0):
        return 0
    fine = late * rule.fine_minor
    if rule.fine_cap_minor is not None:
        fine = min(fine, rule.fine_cap_minor)
    return min(fine, MAX_MINOR)


def _late_days(
    due_at: datetime,
    returned_at: datetime,
    calendar: BranchCalendar,
    *,
    skip_closed: bool,
) -> int:
    due_day = due_at.astimezone(calendar.zone).date()
    back_day = returned_at.astimezone(calendar.zone).date()
    if back_day <= due_day:
        days: list[date] = [due_day]
    else:
        days = [
            due_day + timedelta(days=offset)
            for offset in range(1, (back_day - due_day).days + 1)
        ]
    if skip_closed:
        days = [day for day in days if calendar.is_open(day)]
    return len(days)


def _late_hours(
    due_at: datetime,
    returned_at: datetime,
    calendar: BranchCalendar,
    *,
    skip_closed: bool,
) -> int:
    if not skip_closed:
        late = returned_at - due_at
    else:
        # Walk the local days the lateness spans, keeping the real time of the
        # open ones (a local day is 23 or 25 hours long when the clocks change).
        late = timedelta(0)
        day = due_at.astimezone(calendar.zone).date()
        last = returned_at.astimezone(calendar.zone).date()
        while day <= last:
            start = calendar.local(day, time(0))
            end = calendar.local(day + timedelta(days=1), time(0))
            if calendar.is_open(day):
                overlap = min(returned_at, end) - max(due_at, start)
                late += max(overlap, timedelta(0))
            day += timedelta(days=1)
    return math.ceil(late / timedelta(hours=1))


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
        _spend_credit(session, patron, [fee], moment=moment, by=by)
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


def _spend_credit(
    session: Session, patron: Patron, fees: Sequence[Fee], *, moment: datetime, by: str
) -> None:
    """Pay `fees` in order from the patron's credit, as one CREDIT payment."""
    available = patron.credit_minor
    shares = _shares(fees, available)
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
    _allocate(session, payment, shares)
    patron.credit_minor = available - spent
    _log_payment(
        session, payment=payment, patron=patron, event=LoanEvent.PAYMENT, moment=moment
    )


def _shares(fees: Sequence[Fee], amount: int) -> list[tuple[Fee, int]]:
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


def _allocate(
    session: Session, payment: Payment, shares: Sequence[tuple[Fee, int]]
) -> None:
    session.add(payment)
    session.flush()
    for fee, share in shares:
        session.add(
            PaymentAllocation(payment_id=payment.id, fee_id=fee.id, amount_minor=share)
        )
        fee.balance_minor -= share


def _log_payment(
    session: Session,
    *,
    payment: Payment,
    patron: Patron | None,
    event: LoanEvent,
    moment: datetime,
    extra: str = "",
) -> None:
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
        written_off = _written_off(session, fee.id)
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
            _allocate(session, back, [(fee, -refund)])
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
            _allocate(session, write_off, [(fee, cancel)])
            _log_payment(
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


def _written_off(session: Session, fee_id: int) -> int:
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
    query = (
        sa.select(Fee, Item.barcode, BibRecord.title)
        .outerjoin(Item, Item.id == Fee.item_id)
        .outerjoin(BibRecord, BibRecord.id == Item.record_id)
        .where(Fee.patron_id == patron_id)
        .order_by(Fee.created_at, Fee.id)
    )
    if not include_settled:
        query = query.where(Fee.balance_minor > 0)
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
        for fee, barcode, title in session.execute(query)
    )


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
        _check_amount(amount_minor)
        moment = self._now()

        def work(session: Session) -> FeeView:
            patron = self._patron(session, patron_barcode)
            item = None
            if item_barcode is not None:
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
        nothing is paid twice.
        Amounts given as text are turned into minor units with
        `ils.currency.parse_amount` first.

        Raises:
            CirculationRefused: INVALID_AMOUNT (not a positive whole number of
                minor units), WRONG_CURRENCY (not the institution's),
                UNKNOWN_PATRON, FEE_NOT_FOUND (no such fee on this card),
                NOTHING_OWED (the fee, or the card, owes nothing),
                OVERPAYMENT_REFUSED, TRY_AGAIN.
            ValueError: a method that brings no money (CREDIT, WRITE_OFF).
        """
        if method in NON_MONEY_METHODS:
            raise ValueError(f"{method.value} is not a way to pay; see write_off")
        _check_amount(amount_minor)
        moment = self._now()

        def work(session: Session) -> PaymentReceipt:
            patron = self._patron(session, patron_barcode)
            institution = institution_of(session, patron)
            if currency.upper() != institution.currency.upper():
                raise CirculationRefused(Refusal.WRONG_CURRENCY)
            if transaction_id is not None:
                earlier = _earlier_payment(session, patron, terminal, transaction_id)
                if earlier is not None:
                    return _repeat_receipt(session, patron, earlier)
            fees = _open_fees(session, patron, fee_id)
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
            shares = _shares(fees, amount_minor)
            _allocate(session, payment, shares)
            credit_added = amount_minor - sum(share for _fee, share in shares)
            patron.credit_minor += credit_added
            extra = f", {credit_added} to credit" if credit_added else ""
            _log_payment(
                session,
                payment=payment,
                patron=patron,
                event=LoanEvent.PAYMENT,
                moment=moment,
                extra=extra,
            )
            return _receipt(session, patron, payment, shares, credit_added)

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
            _check_amount(amount_minor)
        moment = self._now()

        def work(session: Session) -> PaymentReceipt:
            patron = self._patron(session, patron_barcode)
            fees = _open_fees(session, patron, fee_id)
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
            shares = _shares(fees, amount)
            _allocate(session, payment, shares)
            _log_payment(
                session,
                payment=payment,
                patron=patron,
                event=LoanEvent.WRITE_OFF,
                moment=moment,
            )
            return _receipt(session, patron, payment, shares, 0)

        return self._unit(work)


def _check_amount(amount_minor: int) -> None:
    # bool is an int to Python, and a float must never reach the books.
    if type(amount_minor) is not int or amount_minor <= 0 or amount_minor > MAX_MINOR:
        raise CirculationRefused(Refusal.INVALID_AMOUNT)


def _open_fees(session: Session, patron: Patron, fee_id: int | None) -> list[Fee]:
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
        fees = [fee] if fee.balance_minor > 0 else []
    else:
        fees = list(session.scalars(query.where(Fee.balance_minor > 0)))
    if not fees:
        raise CirculationRefused(Refusal.NOTHING_OWED)
    return fees


def _earlier_payment(
    session: Session, patron: Patron, terminal: str, transaction_id: str
) -> Payment | None:
    return session.scalars(
        sa.select(Payment).where(
            Payment.patron_id == patron.id,
            Payment.terminal == terminal,
            Payment.transaction_id == transaction_id,
            Payment.method.not_in(list(NON_MONEY_METHODS)),
        )
    ).first()


def _repeat_receipt(
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
    receipt = _receipt(session, patron, payment, shares, credit_added)
    return dataclasses.replace(receipt, repeated=True)


def _receipt(
    session: Session,
    patron: Patron,
    payment: Payment,
    shares: Sequence[tuple[Fee, int]],
    credit_added: int,
) -> PaymentReceipt:
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
        owed_minor=open_fees_minor(session, patron.id),
        credit_minor=patron.credit_minor,
    )
