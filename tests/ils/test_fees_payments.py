"""Payments, credit and write-offs through the fee service, on SQLite and PostgreSQL,
and amounts given as text."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.currency import format_amount, parse_amount
from ils.fees import FeeService, PaymentReceipt
from ils.models import FeeKind, Patron, Payment, PaymentMethod
from ils.results import CirculationRefused, Refusal
from tests.ils.factories import Library, SettableClock
from tests.ils.fees_support import assert_books_balance, library_copy, set_institution

NOW = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine in turn, with patrons P1 and P2."""
    for built in library_copy(request.param, tmp_path):
        built.add_patron("P1")
        built.add_patron("P2", surname="Lindqvist")
        yield built


@pytest.fixture
def clock() -> SettableClock:
    """A clock set to NOW."""
    return SettableClock(NOW)


@pytest.fixture
def fees(library: Library, clock: SettableClock) -> FeeService:
    """The fee service on the settable clock."""
    return FeeService(library.database, clock=clock)


def refusal_of(call: Callable[[], object]) -> Refusal:
    """Run a call that must be refused, and give its reason."""
    with pytest.raises(CirculationRefused) as raised:
        call()
    return raised.value.reason


def _charge(fees: FeeService, barcode: str, amount: int, kind: FeeKind) -> int:
    return fees.charge(
        barcode, kind=kind, amount_minor=amount, description=kind.value, by="staff"
    ).id


def _credit(library: Library, barcode: str) -> int:
    with library.database.read() as session:
        credit = session.scalar(
            sa.select(Patron.credit_minor).where(Patron.barcode == barcode)
        )
    assert credit is not None
    return credit


# Scenarios.


def test_a_patron_pays_two_fees_oldest_first_and_the_overpayment_is_kept_as_credit(
    library: Library, fees: FeeService, clock: SettableClock
) -> None:
    """A patron owing a 1.50 overdue fine (older) and a 4.00 damage fee pays 3.00,
    then 5.00: the fine is paid first, the damage fee next, and 2.50 left over
    becomes credit, which pays a 1.00 hold fee charged the next day."""
    set_institution(library, overpayment_as_credit=True)
    fine = _charge(fees, "P1", 150, FeeKind.OVERDUE)
    clock.now = NOW + timedelta(minutes=5)
    damage = _charge(fees, "P1", 400, FeeKind.DAMAGE)

    first = fees.pay("P1", 300, "GBP", PaymentMethod.CASH, "sip:kiosk1", "TX-1")
    assert [(fine, 150, 0), (damage, 150, 250)] == [
        (a.fee_id, a.amount_minor, a.balance_after_minor) for a in first.allocations
    ]
    assert (0, 250) == (first.credit_added_minor, first.owed_minor)

    second = fees.pay("P1", 500, "GBP", PaymentMethod.CARD, "sip:kiosk1", "TX-2")
    assert [(damage, 250, 0)] == [
        (a.fee_id, a.amount_minor, a.balance_after_minor) for a in second.allocations
    ]
    assert (250, 0, 250) == (
        second.credit_added_minor,
        second.owed_minor,
        second.credit_minor,
    )

    clock.now = NOW + timedelta(days=1)
    hold_fee = fees.charge(
        "P1", kind=FeeKind.HOLD, amount_minor=100, description="hold", by="system"
    )
    assert 0 == hold_fee.balance_minor
    assert 150 == _credit(library, "P1")
    assert () == fees.fees_of("P1")
    assert_books_balance(library)


def test_a_payment_is_recorded_with_method_terminal_and_transaction_id(
    library: Library, fees: FeeService
) -> None:
    """The payment row keeps what the terminal said about it."""
    _charge(fees, "P1", 200, FeeKind.MANUAL)
    receipt = fees.pay("P1", 200, "gbp", PaymentMethod.CREDIT_CARD, "sip:k2", "BK-77")

    with library.database.read() as session:
        payment = session.get(Payment, receipt.payment_id)
        assert payment is not None
        assert (200, "GBP", PaymentMethod.CREDIT_CARD, "sip:k2", "BK-77", NOW) == (
            payment.amount_minor,
            payment.currency,
            payment.method,
            payment.terminal,
            payment.transaction_id,
            payment.at,
        )


def test_a_partial_payment_by_fee_id_pays_only_that_fee(
    library: Library, fees: FeeService
) -> None:
    """Paying 1.00 of the newer 3.00 fee leaves it at 2.00 and the older untouched."""
    older = _charge(fees, "P1", 500, FeeKind.OVERDUE)
    newer = _charge(fees, "P1", 300, FeeKind.RENTAL)

    fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "desk", None, fee_id=newer)

    balances = {view.id: view.balance_minor for view in fees.fees_of("P1")}
    assert {older: 500, newer: 200} == balances
    assert_books_balance(library)


def test_an_overpayment_is_refused_when_the_library_keeps_no_credit(
    library: Library, fees: FeeService
) -> None:
    """Paying 2.01 of a 2.00 fee is refused and changes nothing."""
    fee = _charge(fees, "P1", 200, FeeKind.MANUAL)
    reason = refusal_of(
        lambda: fees.pay("P1", 201, "GBP", PaymentMethod.CASH, "desk", None, fee)
    )
    assert Refusal.OVERPAYMENT_REFUSED is reason
    assert [200] == [view.balance_minor for view in fees.fees_of("P1")]
    assert 0 == _credit(library, "P1")


def test_payments_are_refused_for_clear_reasons(
    library: Library, fees: FeeService
) -> None:
    """Another patron's fee, a paid fee, nothing owed, a wrong currency and bad
    amounts each get their own reason."""
    theirs = _charge(fees, "P2", 100, FeeKind.MANUAL)
    mine = _charge(fees, "P1", 100, FeeKind.MANUAL)
    fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "desk", None, mine)

    def pay(amount: object, currency: str = "GBP", fee: int | None = None) -> None:
        fees.pay("P1", amount, currency, PaymentMethod.CASH, "desk", None, fee)  # type: ignore[arg-type]

    assert Refusal.FEE_NOT_FOUND is refusal_of(lambda: pay(100, fee=theirs))
    assert Refusal.FEE_NOT_FOUND is refusal_of(lambda: pay(100, fee=999_999))
    assert Refusal.NOTHING_OWED is refusal_of(lambda: pay(100, fee=mine))
    assert Refusal.NOTHING_OWED is refusal_of(lambda: pay(100))
    _charge(fees, "P1", 100, FeeKind.MANUAL)
    assert Refusal.WRONG_CURRENCY is refusal_of(lambda: pay(100, "EUR"))
    for bad in (0, -5, 1.0, True, "100", 2**31):
        assert Refusal.INVALID_AMOUNT is refusal_of(lambda bad=bad: pay(bad))
    assert Refusal.UNKNOWN_PATRON is refusal_of(
        lambda: fees.pay("NOPE", 100, "GBP", PaymentMethod.CASH, "desk", None)
    )
    assert_books_balance(library)


def test_a_write_off_clears_a_fee_without_money_or_credit(
    library: Library, fees: FeeService
) -> None:
    """Writing off 0.50 of a 2.00 fee, then the rest, leaves nothing owed and no
    credit, recorded as WRITE_OFF payments."""
    fee = _charge(fees, "P1", 200, FeeKind.DAMAGE)

    part = fees.write_off(
        "P1", by="staff", note="goodwill", fee_id=fee, amount_minor=50
    )
    assert (PaymentMethod.WRITE_OFF, 150) == (part.method, part.owed_minor)
    rest = fees.write_off("P1", by="staff", note="goodwill")
    assert (150, 0, 0) == (rest.amount_minor, rest.owed_minor, rest.credit_minor)
    assert Refusal.NOTHING_OWED is refusal_of(
        lambda: fees.write_off("P1", by="staff", note="again")
    )
    assert_books_balance(library)


def test_a_write_off_of_more_than_is_owed_is_refused(
    library: Library, fees: FeeService
) -> None:
    """Writing off 3.00 of a 2.00 fee is an invalid amount."""
    fee = _charge(fees, "P1", 200, FeeKind.DAMAGE)
    reason = refusal_of(
        lambda: fees.write_off("P1", by="staff", note="x", fee_id=fee, amount_minor=300)
    )
    assert Refusal.INVALID_AMOUNT is reason


def test_fees_of_lists_open_fees_oldest_first_and_all_when_asked(
    library: Library, fees: FeeService, clock: SettableClock
) -> None:
    """Open fees only by default, oldest first; settled ones when asked."""
    library.add_item("I1", title="Salt and Stone")
    first = fees.charge(
        "P1",
        kind=FeeKind.DAMAGE,
        amount_minor=300,
        description="Torn cover",
        by="staff",
        item_barcode="I1",
    )
    clock.now = NOW + timedelta(hours=1)
    second = _charge(fees, "P1", 100, FeeKind.MANUAL)
    fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "desk", None, second)

    (open_fee,) = fees.fees_of("P1")
    assert (first.id, "I1", "Salt and Stone", "Torn cover") == (
        open_fee.id,
        open_fee.item_barcode,
        open_fee.title,
        open_fee.description,
    )
    everything = fees.fees_of("P1", include_settled=True)
    assert [first.id, second] == [view.id for view in everything]


# Concurrent terminals.


@pytest.mark.parametrize("as_credit", [False, True])
def test_terminals_paying_one_fee_at_once_never_overpay_it(
    library: Library, fees: FeeService, as_credit: bool
) -> None:
    """Eight terminals each pay 3.00 of one 10.00 fee at the same moment: without
    credit exactly three succeed and the fee owes 1.00; with credit a fourth pays
    the last 1.00 and leaves 2.00 credit, and the other four find nothing owed."""
    set_institution(library, overpayment_as_credit=as_credit)
    fee = _charge(fees, "P1", 1000, FeeKind.LOST)
    start = threading.Barrier(8)
    receipts: list[PaymentReceipt] = []
    refusals: list[Refusal] = []
    lock = threading.Lock()

    def terminal(number: int) -> None:
        start.wait()
        try:
            receipt = fees.pay(
                "P1", 300, "GBP", PaymentMethod.CARD, f"sip:k{number}", None, fee
            )
        except CirculationRefused as refused:
            with lock:
                refusals.append(refused.reason)
        else:
            with lock:
                receipts.append(receipt)

    threads = [threading.Thread(target=terminal, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    allocated = sum(a.amount_minor for r in receipts for a in r.allocations)
    if as_credit:
        assert (4, 1000, 200) == (len(receipts), allocated, _credit(library, "P1"))
        assert [Refusal.NOTHING_OWED] * 4 == refusals
        assert () == fees.fees_of("P1")
    else:
        assert (3, 900) == (len(receipts), allocated)
        assert [Refusal.OVERPAYMENT_REFUSED] * 5 == refusals
        assert [100] == [view.balance_minor for view in fees.fees_of("P1")]
    assert_books_balance(library)


# Amounts as text.


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("2.50", "GBP", 250),
        ("2.5", "GBP", 250),
        ("3", "USD", 300),
        (" 0.07 ", "EUR", 7),
        ("250", "JPY", 250),
        ("1.234", "KWD", 1234),
        ("0", "GBP", 0),
    ],
)
def test_amounts_as_text_become_minor_units(
    text: str, currency: str, minor: int
) -> None:
    """Text is read with the currency's ISO 4217 decimal places."""
    assert minor == parse_amount(text, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("2.505", "GBP"),
        ("2.5", "JPY"),
        ("250.", "JPY"),
        ("1.2345", "KWD"),
        ("-1.00", "GBP"),
        ("+1.00", "GBP"),
        ("1,000.00", "USD"),
        ("1e3", "USD"),
        ("", "GBP"),
        (".50", "GBP"),
        ("21474836.48", "GBP"),
    ],
)
def test_anything_else_is_an_invalid_amount(text: str, currency: str) -> None:
    """Extra decimal places, signs, separators and exponents are refused."""
    assert Refusal.INVALID_AMOUNT is refusal_of(lambda: parse_amount(text, currency))


def test_an_unknown_currency_is_refused() -> None:
    """A code the table does not know cannot be read."""
    assert Refusal.WRONG_CURRENCY is refusal_of(lambda: parse_amount("1.00", "XYZ"))


def test_minor_units_are_written_with_the_currencys_places() -> None:
    """250 pence is 2.50, 250 yen is 250, 1234 fils is 1.234."""
    assert ["2.50", "250", "1.234", "0.07"] == [
        format_amount(250, "GBP"),
        format_amount(250, "JPY"),
        format_amount(1234, "KWD"),
        format_amount(7, "EUR"),
    ]


def test_a_payment_sent_again_by_its_terminal_is_not_taken_twice(
    library: Library, fees: FeeService
) -> None:
    """A kiosk that lost the answer sends the same 2.00 payment (same transaction
    id) again: it gets the first receipt back, marked as a repeat, and the 5.00
    fee still owes 3.00; the same id from another terminal is a new payment."""
    _charge(fees, "P1", 500, FeeKind.OVERDUE)

    first = fees.pay("P1", 200, "GBP", PaymentMethod.CARD, "sip:kiosk1", "BK-5")
    again = fees.pay("P1", 200, "GBP", PaymentMethod.CARD, "sip:kiosk1", "BK-5")

    assert (first.payment_id, False, True) == (
        again.payment_id,
        first.repeated,
        again.repeated,
    )
    assert [200] == [a.amount_minor for a in again.allocations]
    assert [300] == [view.balance_minor for view in fees.fees_of("P1")]

    other = fees.pay("P1", 200, "GBP", PaymentMethod.CARD, "sip:kiosk2", "BK-5")
    assert not other.repeated
    assert [100] == [view.balance_minor for view in fees.fees_of("P1")]
    assert_books_balance(library)


def test_credit_is_paid_back_in_cash(library: Library, fees: FeeService) -> None:
    """A patron with 0.50 credit is paid 0.30, then the rest; a third refund finds
    nothing, and asking for more than the credit is refused."""
    set_institution(library, overpayment_as_credit=True)
    _charge(fees, "P1", 100, FeeKind.MANUAL)
    fees.pay("P1", 150, "GBP", PaymentMethod.CASH, "desk", None)

    def refund(amount: int | None = None) -> PaymentReceipt:
        return fees.refund_credit(
            "P1", method=PaymentMethod.CASH, terminal="desk", amount_minor=amount
        )

    assert Refusal.INVALID_AMOUNT is refusal_of(lambda: refund(51))
    part = refund(30)
    assert (-30, 20, ()) == (part.amount_minor, part.credit_minor, part.allocations)
    rest = refund()
    assert (-20, 0) == (rest.amount_minor, rest.credit_minor)
    assert Refusal.NOTHING_OWED is refusal_of(refund)
    assert 0 == _credit(library, "P1")
    assert_books_balance(library)


def test_paying_a_paid_charge_by_id_says_that_charge_is_paid(
    library: Library, fees: FeeService
) -> None:
    """With one fee paid and another still owed, paying the paid one again by id
    is refused as that charge being paid, not as the card owing nothing."""
    paid = _charge(fees, "P1", 100, FeeKind.MANUAL)
    _charge(fees, "P1", 250, FeeKind.DAMAGE)
    fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "desk", None, paid)

    with pytest.raises(CirculationRefused) as raised:
        fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "desk", None, paid)

    assert Refusal.NOTHING_OWED is raised.value.reason
    assert "That charge is already paid." == raised.value.message
