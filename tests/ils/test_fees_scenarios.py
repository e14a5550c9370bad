"""Desk scenarios for fees, blocks and PINs, through the circulation service as a
kiosk drives it, on SQLite and PostgreSQL.

The test library's adult loans are 14 days at NORTH (Europe/London, open every
day, GMT in January): a book borrowed on Monday 4 January 2027 is due at the end
of Monday 18 January.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.fees import FeeService, borrowing_block
from ils.models import FeeKind, LoanRule, Patron, PaymentMethod
from ils.results import CirculationRefused, Refusal
from tests.ils.factories import PIN, Library, SettableClock
from tests.ils.fees_support import assert_books_balance, library_copy, set_institution

BORROWED = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)
# Thursday 21 January: three days late (19, 20 and 21 January).
THREE_DAYS_LATE = datetime(2027, 1, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine, adult P1 with a PIN, books I1 to I3, and
    fines of 25p a day on every rule."""
    for built in library_copy(request.param, tmp_path):
        built.add_patron("P1", pin=PIN)
        for barcode in ("I1", "I2", "I3"):
            built.add_item(barcode)
        with built.database.transaction() as session:
            session.execute(sa.update(LoanRule).values(fine_minor=25))
        yield built


@pytest.fixture
def clock() -> SettableClock:
    """The desk's clock, starting when the books were borrowed."""
    return SettableClock(BORROWED)


@pytest.fixture
def desk(library: Library, clock: SettableClock) -> Circulation:
    """The circulation service on the desk's clock."""
    return Circulation(library.database, clock=clock)


def refusal_of(call: Callable[[], object]) -> Refusal:
    """Run a call that must be refused, and give its reason."""
    with pytest.raises(CirculationRefused) as raised:
        call()
    return raised.value.reason


def test_a_patron_with_overdues_over_the_limit_cannot_borrow_until_one_is_back(
    library: Library, desk: Circulation, clock: SettableClock
) -> None:
    """The library blocks borrowing at two overdue items. A patron with two books
    three days overdue tries to borrow a third and is refused; they return one,
    are fined 75p (3 days at 25p), and may then borrow."""
    set_institution(library, overdue_limit=2)
    desk.checkout("P1", "I1", branch_code="NORTH")
    desk.checkout("P1", "I2", branch_code="NORTH")
    clock.now = THREE_DAYS_LATE

    with library.database.read() as session:
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == "P1"))
        assert patron is not None
        assert Refusal.OVERDUES_OVER_LIMIT is borrowing_block(
            session, patron, clock.now
        )
    assert Refusal.OVERDUES_OVER_LIMIT is refusal_of(
        lambda: desk.checkout("P1", "I3", branch_code="NORTH")
    )
    view = desk.patron("P1")
    assert view is not None
    assert not view.may_borrow

    desk.checkin("I1", branch_code="NORTH")
    assert [(FeeKind.OVERDUE, 75)] == [
        (fee.kind, fee.amount_minor)
        for fee in FeeService(library.database).fees_of("P1")
    ]
    result = desk.checkout("P1", "I3", branch_code="NORTH")
    assert not result.renewal


def test_a_patron_over_the_fee_limit_pays_at_the_kiosk_and_borrows_again(
    library: Library, desk: Circulation, clock: SettableClock
) -> None:
    """The library blocks borrowing at 50p owed. A book returned three days late
    costs 75p, so the next loan is refused; the patron pays 1.00 by card at the
    kiosk, 25p is kept as credit, and the loan goes through."""
    set_institution(library, fee_limit_minor=50, overpayment_as_credit=True)
    desk.checkout("P1", "I1", branch_code="NORTH")
    clock.now = THREE_DAYS_LATE
    desk.checkin("I1", branch_code="NORTH")

    assert Refusal.FEES_OVER_LIMIT is refusal_of(
        lambda: desk.checkout("P1", "I2", branch_code="NORTH")
    )
    view = desk.patron("P1")
    assert view is not None
    assert (75, "GBP") == (view.fines_minor, view.currency)

    fees = FeeService(library.database, clock=clock)
    receipt = fees.pay("P1", 100, "GBP", PaymentMethod.CARD, "sip:kiosk1", "BK-1")
    assert (75, 25, 0) == (
        sum(a.amount_minor for a in receipt.allocations),
        receipt.credit_added_minor,
        receipt.owed_minor,
    )
    desk.checkout("P1", "I2", branch_code="NORTH")
    view = desk.patron("P1")
    assert view is not None
    assert (0, 25) == (view.fines_minor, view.credit_minor)
    assert_books_balance(library)


def test_five_wrong_pins_at_the_kiosk_lock_the_card_for_thirty_minutes(
    library: Library, desk: Circulation, clock: SettableClock
) -> None:
    """A patron keys five wrong PINs at the kiosk; the right PIN is then refused
    as locked for 30 minutes, and accepted once the 30 minutes are over."""
    for _ in range(5):
        assert Refusal.WRONG_PIN is refusal_of(
            lambda: desk.checkout("P1", "I1", branch_code="NORTH", pin="0000")
        )
    locked_at = clock.now

    clock.now = locked_at + timedelta(minutes=29, seconds=59)
    assert Refusal.PIN_LOCKED is refusal_of(
        lambda: desk.checkout("P1", "I1", branch_code="NORTH", pin=PIN)
    )
    view = desk.patron("P1")
    assert view is not None
    assert view.pin_locked

    clock.now = locked_at + timedelta(minutes=30)
    result = desk.checkout("P1", "I1", branch_code="NORTH", pin=PIN)
    assert "I1" == result.item.barcode


def test_a_card_without_a_pin_is_refused_when_a_pin_is_given(
    library: Library, desk: Circulation
) -> None:
    """A patron who never set a PIN types one at the kiosk: refused as a wrong
    PIN (they are sent to staff), and never locked however often it happens."""
    library.add_patron("P2", surname="Lindqvist")
    for _ in range(6):
        assert Refusal.WRONG_PIN is refusal_of(
            lambda: desk.checkout("P2", "I1", branch_code="NORTH", pin="1234")
        )
    view = desk.patron("P2")
    assert view is not None
    assert not view.pin_locked
