"""Charging fees inside a transaction, automatic borrowing blocks, and lost items
found again, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.demo import build_demo, patron_barcode
from ils.fees import (
    FeeService,
    borrowing_block,
    charge_fee,
    charge_lost_item,
    lost_item_found,
)
from ils.models import (
    CirculationLog,
    Fee,
    FeeKind,
    Item,
    ItemStatus,
    LoanEvent,
    Patron,
    PaymentMethod,
)
from ils.results import CirculationRefused, Refusal
from tests.ils.factories import Library, SettableClock
from tests.ils.fees_support import (
    add_loan,
    assert_books_balance,
    library_copy,
    set_institution,
)

NOW = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine in turn."""
    yield from library_copy(request.param, tmp_path)


@pytest.fixture
def fees(library: Library) -> FeeService:
    """The fee service at NOW."""
    return FeeService(library.database, clock=SettableClock(NOW))


def _charge(library: Library, barcode: str, kind: FeeKind, amount: int) -> int | None:
    with library.database.transaction() as session:
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == barcode))
        assert patron is not None
        fee = charge_fee(
            session,
            patron=patron,
            kind=kind,
            amount_minor=amount,
            description="test",
            by="system",
            moment=NOW,
        )
        return None if fee is None else fee.id


def test_a_fee_is_charged_in_the_institutions_currency_and_logged(
    library: Library,
) -> None:
    """A 1.20 overdue fee is recorded in GBP, wholly owed, with a FEE_CHARGED row."""
    library.add_patron("P1")

    fee_id = _charge(library, "P1", FeeKind.OVERDUE, 120)

    with library.database.read() as session:
        fee = session.get(Fee, fee_id)
        assert fee is not None
        assert (120, 120, "GBP") == (fee.amount_minor, fee.balance_minor, fee.currency)
        events = session.scalars(sa.select(CirculationLog.event)).all()
    assert [LoanEvent.FEE_CHARGED] == events


def test_a_fee_of_nothing_is_not_recorded(library: Library) -> None:
    """Charging 0 records no fee and returns None."""
    library.add_patron("P1")
    assert _charge(library, "P1", FeeKind.OVERDUE, 0) is None
    with library.database.read() as session:
        assert 0 == session.scalar(sa.select(sa.func.count()).select_from(Fee))


def test_credit_pays_a_new_fee_at_once(library: Library, fees: FeeService) -> None:
    """A patron with 3.00 credit charged 2.00 owes nothing and keeps 1.00 credit."""
    set_institution(library, overpayment_as_credit=True)
    library.add_patron("P1")
    _charge(library, "P1", FeeKind.MANUAL, 100)
    fees.pay("P1", 400, "GBP", PaymentMethod.CASH, "desk", None)

    fee_id = _charge(library, "P1", FeeKind.DAMAGE, 200)

    with library.database.read() as session:
        fee = session.get(Fee, fee_id)
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == "P1"))
        assert fee is not None
        assert patron is not None
        assert 0 == fee.balance_minor
        assert 100 == patron.credit_minor
    assert_books_balance(library)


def test_fees_at_the_limit_block_borrowing(library: Library) -> None:
    """With a 5.00 limit, 4.99 owed lets the patron borrow and 5.00 does not."""
    set_institution(library, fee_limit_minor=500)
    library.add_patron("P1")
    _charge(library, "P1", FeeKind.OVERDUE, 499)

    with library.database.read() as session:
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == "P1"))
        assert patron is not None
        assert borrowing_block(session, patron, NOW) is None

    _charge(library, "P1", FeeKind.OVERDUE, 1)
    with library.database.read() as session:
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == "P1"))
        assert patron is not None
        assert Refusal.FEES_OVER_LIMIT is borrowing_block(session, patron, NOW)


def test_overdues_at_the_limit_block_borrowing(library: Library) -> None:
    """With an overdue limit of 2, one overdue loan is fine and two block."""
    set_institution(library, overdue_limit=2)
    library.add_patron("P1")
    for barcode in ("I1", "I2", "I3"):
        library.add_item(barcode)
    out = NOW - timedelta(days=20)
    add_loan(library, "P1", "I1", out=out, due=NOW - timedelta(days=1))
    add_loan(library, "P1", "I3", out=out, due=NOW + timedelta(days=1))

    with library.database.read() as session:
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == "P1"))
        assert patron is not None
        assert borrowing_block(session, patron, NOW) is None

    add_loan(library, "P1", "I2", out=out, due=NOW - timedelta(hours=1))
    with library.database.read() as session:
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == "P1"))
        assert patron is not None
        assert Refusal.OVERDUES_OVER_LIMIT is borrowing_block(session, patron, NOW)


def test_no_limits_never_block(library: Library) -> None:
    """Without limits set, fees and overdues do not block borrowing."""
    library.add_patron("P1")
    library.add_item("I1")
    add_loan(library, "P1", "I1", out=NOW - timedelta(days=30), due=NOW)
    _charge(library, "P1", FeeKind.OVERDUE, 10_000)
    with library.database.read() as session:
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == "P1"))
        assert patron is not None
        assert borrowing_block(session, patron, NOW + timedelta(days=9)) is None


def _lose(library: Library, patron: str, item: str) -> list[int]:
    with library.database.transaction() as session:
        found = session.scalar(sa.select(Patron).where(Patron.barcode == patron))
        copy = session.scalar(sa.select(Item).where(Item.barcode == item))
        assert found is not None
        assert copy is not None
        charged = charge_lost_item(
            session, patron=found, item=copy, moment=NOW, by="staff"
        )
        return [fee.id for fee in charged]


def _found(library: Library, item: str) -> int:
    with library.database.transaction() as session:
        copy = session.scalar(sa.select(Item).where(Item.barcode == item))
        assert copy is not None
        return lost_item_found(session, item=copy, moment=NOW, by="desk")


def test_a_lost_item_is_charged_its_price_and_the_processing_fee(
    library: Library,
) -> None:
    """A 12.99 item lost with a 5.00 processing fee makes two fees, 12.99 and 5.00."""
    set_institution(library, lost_processing_fee_minor=500)
    library.add_patron("P1")
    library.add_item("I1", price_minor=1299)

    _lose(library, "P1", "I1")

    with library.database.read() as session:
        rows = session.execute(
            sa.select(Fee.kind, Fee.amount_minor).order_by(Fee.id)
        ).all()
    assert [(FeeKind.LOST, 1299), (FeeKind.PROCESSING, 500)] == list(map(tuple, rows))


def test_a_lost_item_found_unpaid_has_its_lost_fee_cancelled(library: Library) -> None:
    """Found before paying: the 12.99 is written off, the processing fee stays."""
    set_institution(library, lost_processing_fee_minor=500)
    library.add_patron("P1")
    library.add_item("I1", price_minor=1299)
    _lose(library, "P1", "I1")

    assert 1299 == _found(library, "I1")

    with library.database.read() as session:
        rows = session.execute(
            sa.select(Fee.kind, Fee.balance_minor).order_by(Fee.id)
        ).all()
    assert [(FeeKind.LOST, 0), (FeeKind.PROCESSING, 500)] == list(map(tuple, rows))
    assert 0 == _found(library, "I1"), "a second finding changes nothing"
    assert_books_balance(library)


def test_a_lost_item_found_after_part_payment_gives_the_payment_back_as_credit(
    library: Library, fees: FeeService
) -> None:
    """Paid 5.00 of 12.99: found, the fee is cleared and the 5.00 becomes credit."""
    library.add_patron("P1")
    library.add_item("I1", price_minor=1299)
    (lost_fee,) = _lose(library, "P1", "I1")
    fees.pay("P1", 500, "GBP", PaymentMethod.CASH, "desk", "T-1", fee_id=lost_fee)

    assert 1299 == _found(library, "I1")

    with library.database.read() as session:
        fee = session.get(Fee, lost_fee)
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == "P1"))
        assert fee is not None
        assert patron is not None
        assert 0 == fee.balance_minor
        assert 500 == patron.credit_minor
    assert_books_balance(library)


def test_a_lost_item_found_keeps_its_fee_when_the_library_does_not_refund(
    library: Library,
) -> None:
    """With refunds off, finding the item changes nothing and returns 0."""
    set_institution(library, refund_lost_when_found=False)
    library.add_patron("P1")
    library.add_item("I1", price_minor=1299)
    _lose(library, "P1", "I1")

    assert 0 == _found(library, "I1")
    with library.database.read() as session:
        assert 1299 == session.scalar(sa.select(Fee.balance_minor))


def test_staff_declare_a_loan_lost_and_its_return_cancels_the_bill(
    library: Library, fees: FeeService
) -> None:
    """An item on loan declared lost bills its borrower 12.99 and 5.00 processing
    and is marked lost; when it is checked in, the 12.99 is cancelled and the
    5.00 stays."""
    set_institution(library, lost_processing_fee_minor=500)
    library.add_patron("P1")
    library.add_item("I1", price_minor=1299)
    add_loan(library, "P1", "I1", out=NOW - timedelta(days=40), due=NOW)

    billed = fees.mark_lost("I1", by="staff")

    assert [(FeeKind.LOST, 1299), (FeeKind.PROCESSING, 500)] == [
        (fee.kind, fee.amount_minor) for fee in billed
    ]
    with library.database.read() as session:
        assert ItemStatus.LOST is session.scalar(
            sa.select(Item.status).where(Item.barcode == "I1")
        )
    Circulation(library.database, clock=SettableClock(NOW)).checkin(
        "I1", branch_code="NORTH"
    )
    assert [(FeeKind.PROCESSING, 500)] == [
        (fee.kind, fee.balance_minor) for fee in fees.fees_of("P1")
    ]
    assert_books_balance(library)


def test_only_an_item_on_loan_can_be_declared_lost(
    library: Library, fees: FeeService
) -> None:
    """An item on the shelf has nobody to bill; an unknown barcode is unknown."""
    library.add_item("I1")
    with pytest.raises(CirculationRefused) as raised:
        fees.mark_lost("I1", by="staff")
    assert Refusal.ITEM_NOT_ON_LOAN is raised.value.reason
    with pytest.raises(CirculationRefused) as raised:
        fees.mark_lost("NOPE", by="staff")
    assert Refusal.UNKNOWN_ITEM is raised.value.reason


def test_the_demo_library_charges_bob_two_fees(sqlite_url: str) -> None:
    """`ils demo` leaves Bob owing a 1.50 fine and a 0.80 damage charge."""
    demo = build_demo(sqlite_url, patrons=5, fees=True)
    bob = patron_barcode(2)
    assert [(bob, "overdue", 150), (bob, "damage", 80)] == [
        (fee.patron_barcode, fee.kind, fee.balance_minor) for fee in demo.fees
    ]
