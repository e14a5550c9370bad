"""A patron's standing: lists, counts, paging and the fourteen conditions, each
from real rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.fees import FeeService
from ils.models import FeeKind, HoldStatus, ItemStatus, Loan
from ils.patron_status import PatronStanding, page, read_standing
from ils.pins import check_pin
from tests.ils.factories import PIN, Library, SettableClock
from tests.ils.fees_support import add_hold, add_loan, library_copy, set_institution

NOW = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine in turn, with adult patron P1."""
    for built in library_copy(request.param, tmp_path):
        built.add_patron("P1", pin=PIN)
        yield built


@pytest.fixture
def fees(library: Library) -> FeeService:
    """The fee service at NOW."""
    return FeeService(library.database, clock=SettableClock(NOW))


def _standing(
    library: Library, first: int | None = None, last: int | None = None
) -> PatronStanding:
    found = read_standing(library.database, "P1", NOW, first=first, last=last)
    assert found is not None
    return found


def _true_conditions(standing: PatronStanding) -> set[str]:
    return {
        field.name
        for field in dataclasses.fields(standing.conditions)
        if getattr(standing.conditions, field.name)
    }


def _loan(library: Library, item: str, due: datetime, patron: str = "P1") -> None:
    library.add_item(item)
    add_loan(library, patron, item, out=due - 14 * DAY, due=due)


def test_a_patron_in_good_standing_has_no_conditions(library: Library) -> None:
    """One loan due next week and nothing owed: every condition is off."""
    _loan(library, "I1", NOW + 7 * DAY)
    standing = _standing(library)
    assert set() == _true_conditions(standing)
    assert (1, 0) == (standing.charged_count, standing.overdue_count)


def test_an_unknown_card_has_no_standing(library: Library) -> None:
    """A barcode nobody has gives None."""
    assert read_standing(library.database, "NOPE", NOW) is None


def test_the_lists_a_terminal_shows(library: Library, fees: FeeService) -> None:
    """Two loans (one overdue), a hold waiting, a hold in the queue and one in
    transit, two fees, and another patron waiting for the overdue loan: each
    list holds what it should, and the overdue recall is flagged."""
    library.add_patron("P2", surname="Lindqvist")
    _loan(library, "LATE", NOW - 2 * DAY)
    _loan(library, "FINE", NOW + 3 * DAY)
    for barcode in ("SHELF", "QUEUE", "ROAD"):
        library.add_item(barcode)
    waiting = add_hold(
        library, "P1", "SHELF", placed=NOW - DAY, status=HoldStatus.WAITING
    )
    queued = add_hold(library, "P1", "QUEUE", placed=NOW - DAY)
    moving = add_hold(
        library, "P1", "ROAD", placed=NOW - 2 * DAY, status=HoldStatus.IN_TRANSIT
    )
    add_hold(library, "P2", "LATE", placed=NOW - DAY)
    fine = fees.charge(
        "P1", kind=FeeKind.OVERDUE, amount_minor=120, description="", by="s"
    )
    damage = fees.charge(
        "P1", kind=FeeKind.DAMAGE, amount_minor=300, description="", by="s"
    )

    standing = _standing(library)

    assert ["LATE", "FINE"] == [loan.item_barcode for loan in standing.charged]
    assert ["LATE"] == [loan.item_barcode for loan in standing.overdue]
    assert [waiting] == [hold.hold_id for hold in standing.holds_available]
    assert [moving, queued] == [hold.hold_id for hold in standing.holds_unavailable]
    assert [fine.id, damage.id] == [fee.id for fee in standing.fees]
    assert ["LATE"] == [loan.item_barcode for loan in standing.recalls]
    assert (2, 1, 1, 2, 2, 1) == (
        standing.charged_count,
        standing.overdue_count,
        standing.holds_available_count,
        standing.holds_unavailable_count,
        standing.fees_count,
        standing.recalls_count,
    )
    assert (420, 120, "GBP") == (
        standing.fines_minor,
        standing.overdue_fines_minor,
        standing.currency,
    )
    assert 420 == standing.patron.fines_minor
    assert {"recall_overdue"} == _true_conditions(standing)


def test_a_hold_by_the_patron_themself_is_not_a_recall(library: Library) -> None:
    """Only another patron's pending hold makes a loan a recall."""
    _loan(library, "I1", NOW - DAY)
    add_hold(library, "P1", "I1", placed=NOW - DAY)
    assert 0 == _standing(library).recalls_count


def test_lists_are_paged_from_one_with_both_ends_included(library: Library) -> None:
    """Of five loans, 2 to 3 gives the second and third; 4 onwards the last two;
    a last before the first gives none; the count is always five."""
    for number in range(1, 6):
        _loan(library, f"I{number}", NOW + number * DAY)

    def barcodes(first: int | None, last: int | None) -> list[str]:
        return [loan.item_barcode for loan in _standing(library, first, last).charged]

    assert ["I2", "I3"] == barcodes(2, 3)
    assert ["I4", "I5"] == barcodes(4, None)
    assert ["I1"] == barcodes(None, 1)
    assert [] == barcodes(3, 2)
    assert ["I5"] == barcodes(5, 99)
    assert 5 == _standing(library, 2, 3).charged_count


def test_page_counts_from_one() -> None:
    """The paging rule on a plain list: 1 to 2 of abc is ab."""
    assert ("a", "b") == page(["a", "b", "c"], 1, 2)
    assert ("c",) == page(["a", "b", "c"], 3, 3)
    assert () == page(["a", "b", "c"], 4, None)


def test_a_lost_card_may_do_nothing(library: Library) -> None:
    """A card reported lost denies charging, renewing, holds and recalls."""
    library.add_patron("P9", card_lost=True)
    standing = read_standing(library.database, "P9", NOW)
    assert standing is not None
    assert {
        "card_reported_lost",
        "charge_privileges_denied",
        "renewal_privileges_denied",
        "hold_privileges_denied",
        "recall_privileges_denied",
    } == _true_conditions(standing)


def test_fees_at_the_limit_are_excessive_and_deny_borrowing(
    library: Library, fees: FeeService
) -> None:
    """Limit 5.00: 3.00 of fines and 2.50 of damage make fees (5.50) excessive but
    not fines (3.00), and borrowing is denied."""
    set_institution(library, fee_limit_minor=500)
    fees.charge("P1", kind=FeeKind.OVERDUE, amount_minor=300, description="", by="s")
    fees.charge("P1", kind=FeeKind.DAMAGE, amount_minor=250, description="", by="s")
    assert {
        "excessive_outstanding_fees",
        "charge_privileges_denied",
        "renewal_privileges_denied",
        "hold_privileges_denied",
        "recall_privileges_denied",
    } == _true_conditions(_standing(library))


def test_fines_at_the_limit_are_excessive_fines(
    library: Library, fees: FeeService
) -> None:
    """Limit 5.00 and 5.00 of overdue fines: both fines and fees are excessive."""
    set_institution(library, fee_limit_minor=500)
    fees.charge("P1", kind=FeeKind.OVERDUE, amount_minor=500, description="", by="s")
    conditions = _standing(library).conditions
    assert conditions.excessive_outstanding_fines
    assert conditions.excessive_outstanding_fees


def test_overdues_at_the_limit_are_too_many(library: Library) -> None:
    """Overdue limit 2 and two overdue loans: too many overdue, borrowing denied."""
    set_institution(library, overdue_limit=2)
    _loan(library, "I1", NOW - DAY)
    _loan(library, "I2", NOW - 2 * DAY)
    conditions = _standing(library).conditions
    assert conditions.too_many_items_overdue
    assert conditions.charge_privileges_denied


def test_loans_at_the_rules_maximum_are_too_many_charged(library: Library) -> None:
    """An adult may have three loans; with three, too many items are charged."""
    for number in range(3):
        _loan(library, f"I{number}", NOW + DAY)
    assert {"too_many_items_charged"} == _true_conditions(_standing(library))


def test_a_loan_renewed_beyond_its_rule_is_too_many_renewals(library: Library) -> None:
    """The adult rule allows one renewal; a loan renewed twice is too many."""
    _loan(library, "I1", NOW + DAY)
    with library.database.transaction() as session:
        session.execute(sa.update(Loan).values(renewals=2))
    assert {"too_many_renewals"} == _true_conditions(_standing(library))


def test_a_lost_item_still_on_loan_and_a_lost_bill(
    library: Library, fees: FeeService
) -> None:
    """A loan of an item marked lost is too many lost; its unpaid bill, too many
    billed."""
    library.add_item("GONE", status=ItemStatus.LOST)
    add_loan(library, "P1", "GONE", out=NOW - 30 * DAY, due=NOW + DAY)
    fees.charge(
        "P1",
        kind=FeeKind.LOST,
        amount_minor=1299,
        description="Lost",
        by="s",
        item_barcode="GONE",
    )
    assert {"too_many_items_lost", "too_many_items_billed"} == _true_conditions(
        _standing(library)
    )


def test_the_holds_maximum_denies_holds_but_not_borrowing(library: Library) -> None:
    """At the institution's one-hold maximum, holds and recalls are denied only."""
    set_institution(library, max_holds=1)
    library.add_item("I1")
    add_hold(library, "P1", "I1", placed=NOW - DAY)
    assert {"hold_privileges_denied", "recall_privileges_denied"} == _true_conditions(
        _standing(library)
    )


def test_a_locked_pin_shows_in_the_standing(library: Library) -> None:
    """Five wrong PINs: the standing and the patron view say the PIN is locked."""
    for _ in range(5):
        check_pin(library.database, "P1", "0000", NOW - timedelta(minutes=1))
    standing = _standing(library)
    assert standing.pin_locked
    assert standing.patron.pin_locked
