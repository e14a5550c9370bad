"""Payments an adversarial test sent: a transaction id reused for another
amount or fee, and codes holding NUL characters; each refused by name on SQLite
and PostgreSQL, with the books still balanced."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.fees import FeeService
from ils.models import FeeKind, Payment, PaymentMethod
from ils.results import CirculationRefused, Refusal
from tests.ils.factories import Library, SettableClock
from tests.ils.fees_support import assert_books_balance, library_copy

NOW = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine in turn, with patron P1."""
    for built in library_copy(request.param, tmp_path):
        built.add_patron("P1")
        yield built


@pytest.fixture
def fees(library: Library) -> FeeService:
    """The fee service on a fixed clock."""
    return FeeService(library.database, clock=SettableClock(NOW))


def refused(call: object) -> CirculationRefused:
    """Run a zero-argument call that must be refused, and give the refusal."""
    assert callable(call)
    with pytest.raises(CirculationRefused) as raised:
        call()
    return raised.value


def charge(fees: FeeService, amount: int) -> int:
    """A damage fee of `amount` on P1; its id."""
    return fees.charge(
        "P1", kind=FeeKind.DAMAGE, amount_minor=amount, description="d", by="staff"
    ).id


def payments(library: Library) -> list[int]:
    """Every payment's amount, in the order recorded."""
    with library.database.read() as session:
        return list(
            session.scalars(sa.select(Payment.amount_minor).order_by(Payment.id))
        )


def test_a_transaction_id_reused_for_another_amount_is_refused(
    library: Library, fees: FeeService
) -> None:
    """A kiosk pays 2.00 as BK-1, then sends BK-1 again for 0.05: that is no repeat
    of the first payment, so it is refused as INVALID_AMOUNT with its own words,
    and only the 2.00 is on the books."""
    charge(fees, 500)
    fees.pay("P1", 200, "GBP", PaymentMethod.CARD, "sip:kiosk1", "BK-1")

    refusal = refused(
        lambda: fees.pay("P1", 5, "GBP", PaymentMethod.CARD, "sip:kiosk1", "BK-1")
    )

    assert refusal.reason is Refusal.INVALID_AMOUNT
    assert (
        refusal.message == "This transaction id was already used for another payment."
    )
    assert payments(library) == [200]
    assert [view.balance_minor for view in fees.fees_of("P1")] == [300]
    assert_books_balance(library)


def test_a_transaction_id_reused_for_another_fee_is_refused(
    library: Library, fees: FeeService
) -> None:
    """BK-2 paid 1.00 towards the first fee; BK-2 again for 1.00 towards the second
    fee is refused, while the same payment for the first fee is the repeat it
    looks like."""
    first = charge(fees, 300)
    second = charge(fees, 400)
    paid = fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "desk", "BK-2", fee_id=first)

    other_fee = refused(
        lambda: fees.pay(
            "P1", 100, "GBP", PaymentMethod.CASH, "desk", "BK-2", fee_id=second
        )
    )
    again = fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "desk", "BK-2", fee_id=first)

    assert other_fee.reason is Refusal.INVALID_AMOUNT
    assert (again.repeated, again.payment_id) == (True, paid.payment_id)
    assert payments(library) == [100]
    assert [view.balance_minor for view in fees.fees_of("P1")] == [200, 400]


def test_codes_with_nul_are_refused_before_the_database(
    library: Library, fees: FeeService
) -> None:
    """A NUL in the patron's barcode is UNKNOWN_PATRON, in an item barcode
    UNKNOWN_ITEM, and in a terminal or transaction id INVALID_AMOUNT, on
    PostgreSQL (which stores no NUL) as on SQLite; nothing is paid."""
    charge(fees, 500)

    patron = refused(
        lambda: fees.pay("P\x001", 100, "GBP", PaymentMethod.CASH, "T", None)
    )
    listing = refused(lambda: fees.fees_of("P1\x00"))
    item = refused(
        lambda: fees.charge(
            "P1",
            kind=FeeKind.DAMAGE,
            amount_minor=100,
            description="d",
            by="staff",
            item_barcode="B\x001",
        )
    )
    terminal = refused(
        lambda: fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "T\x00", None)
    )
    transaction = refused(
        lambda: fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "T", "x\x00")
    )

    assert (patron.reason, listing.reason, item.reason) == (
        Refusal.UNKNOWN_PATRON,
        Refusal.UNKNOWN_PATRON,
        Refusal.UNKNOWN_ITEM,
    )
    assert terminal.reason is Refusal.INVALID_AMOUNT
    assert transaction.reason is Refusal.INVALID_AMOUNT
    assert payments(library) == []
