"""The fee service: charging, paying and writing off, one transaction per use case.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy, and never `ils.fees` (which
re-exports `FeeService`). It never logs: it returns views and receipts or raises
`CirculationRefused`. Locking and retries are described in `ils.fees`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ils import queries
from ils.db import Database
from ils.fee_charges import charge_fee, charge_lost_item, institution_of
from ils.ledger import (
    NON_MONEY_METHODS,
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
    split_amount,
)
from ils.models import (
    FeeKind,
    Item,
    ItemStatus,
    Loan,
    LoanEvent,
    Patron,
    Payment,
    PaymentMethod,
    utcnow,
)
from ils.results import CirculationRefused, Refusal
from ils.storable import is_code

# Attempts of one use case that meets deadlocks or serialisation failures.
_ATTEMPTS = 5
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

_T = TypeVar("_T")

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
