"""Title holds are queued and filled per institution (#5, second trial F1): an
item fills, is trapped for or is held for only holds picked up at a branch of
its own institution (that of its home branch), on SQLite and PostgreSQL.

The test library (CITY: NORTH, WEST) gets a second institution, OTHER, with the
branch OMAIN and the patron O1. B1 is CITY's copy of a title; B2 is OTHER's copy
of the same title (one record, as in a consortium sharing its catalogue).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from ils import queries
from ils.circulation import Circulation
from ils.models import Branch, Hold, HoldStatus, Institution, Item
from ils.results import CheckinAlert, Refusal
from tests.ils.circulation_support import (
    NOW,
    add_copy,
    circulation,
    clock,
    hold_states,
    library,
    library_templates,
    refusal_of,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]

PENDING, WAITING = HoldStatus.PENDING, HoldStatus.WAITING


@pytest.fixture
def two(library: Library) -> Library:
    """The test library plus OTHER (branch OMAIN, patron O1, copy B2 of B1's
    title) and the CITY patron P1."""
    with library.database.transaction() as session:
        other = Institution(code="OTHER", name="Other Libraries", currency="GBP")
        session.add(other)
        session.flush()
        session.add(
            Branch(
                institution_id=other.id,
                code="OMAIN",
                name="Other Main",
                timezone="Europe/London",
            )
        )
    library.add_item("B1", title="Salt Roads")
    add_copy(library, "B2", of="B1", branch="OMAIN")
    library.add_patron("O1", surname="Varga", home_branch="OMAIN")
    library.add_patron("P1")
    return library


def transit_of(library: Library, barcode: str) -> str | None:
    """The branch code the item is in transit to, if any."""
    with library.database.read() as session:
        item = session.scalars(sa.select(Item).where(Item.barcode == barcode)).one()
        return None if item.transit_to_branch is None else item.transit_to_branch.code


def test_a_copy_is_trapped_only_for_its_own_institutions_hold(
    two: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """OTHER's hold is first in the title's queue, yet CITY's copy checked in at
    NORTH goes to CITY's hold, and OTHER's own copy at OMAIN goes to OTHER's."""
    circulation.place_hold("O1", item_barcode="B1", pickup_branch_code="OMAIN")
    clock.now = NOW + timedelta(minutes=1)
    circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")

    city = circulation.checkin("B1", branch_code="NORTH")

    assert city.alert is CheckinAlert.HOLD_HERE
    assert city.hold_patron_barcode == "P1"
    assert city.destination_branch_code is None
    assert hold_states(two) == [("O1", PENDING, None), ("P1", WAITING, "B1")]

    other = circulation.checkin("B2", branch_code="OMAIN")

    assert other.alert is CheckinAlert.HOLD_HERE
    assert other.hold_patron_barcode == "O1"
    assert hold_states(two) == [("O1", WAITING, "B2"), ("P1", WAITING, "B1")]


def test_a_copy_with_only_another_institutions_hold_goes_home_untrapped(
    two: Library, circulation: Circulation
) -> None:
    """CITY's copy returned at WEST with only OTHER's hold on the title travels
    home to NORTH; it is never sent to OMAIN nor named for OTHER's patron."""
    circulation.place_hold("O1", item_barcode="B1", pickup_branch_code="OMAIN")

    result = circulation.checkin("B1", branch_code="WEST")

    assert result.alert is CheckinAlert.TRANSIT_HOME
    assert result.hold_patron_barcode is None
    assert result.destination_branch_code == "NORTH"
    assert transit_of(two, "B1") == "NORTH"
    assert hold_states(two) == [("O1", PENDING, None)]


def test_another_institutions_hold_neither_blocks_nor_is_filled_by_a_checkout(
    two: Library, circulation: Circulation
) -> None:
    """OTHER's pending hold does not keep CITY's copy from P1, and when O1
    borrows CITY's copy (at a consortium desk) that hold stays in OTHER's queue."""
    circulation.place_hold("O1", item_barcode="B1", pickup_branch_code="OMAIN")

    circulation.checkout("P1", "B1", branch_code="NORTH")
    circulation.checkin("B1", branch_code="NORTH")
    circulation.checkout("O1", "B1", branch_code="NORTH")

    assert hold_states(two) == [("O1", PENDING, None)]


def test_a_hold_is_refused_where_its_institution_has_no_copy(
    two: Library, circulation: Circulation
) -> None:
    """A title only CITY holds cannot be reserved for pickup at OMAIN, nor can
    a CITY hold on it be moved there: PICKUP_BRANCH_NOT_ALLOWED, nothing kept."""
    two.add_item("C1", title="Only in the City")
    view = circulation.place_hold("P1", item_barcode="C1", pickup_branch_code="NORTH")

    placed = refusal_of(
        lambda: circulation.place_hold(
            "O1", item_barcode="C1", pickup_branch_code="OMAIN"
        )
    )
    moved = refusal_of(
        lambda: circulation.change_hold_pickup(
            "P1", view.hold_id, pickup_branch_code="OMAIN"
        )
    )

    assert placed is Refusal.PICKUP_BRANCH_NOT_ALLOWED
    assert moved is Refusal.PICKUP_BRANCH_NOT_ALLOWED
    assert hold_states(two) == [("P1", PENDING, None)]


def test_queue_positions_count_the_institutions_own_queue(
    two: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """O1 is first in OTHER's queue and P1 first in CITY's, though P1 placed
    after O1: neither position tells of the other library's holds."""
    other = circulation.place_hold("O1", item_barcode="B1", pickup_branch_code="OMAIN")
    clock.now = NOW + timedelta(minutes=1)
    city = circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")

    assert other.queue_position == 1
    assert city.queue_position == 1


def test_a_stale_trap_across_institutions_is_not_filled_by_the_checkout(
    two: Library, circulation: Circulation
) -> None:
    """CITY's copy trapped in transit for OTHER's hold (as the fault left such
    holds) does not fill it when O1 borrows the copy: the hold goes back to
    OTHER's queue."""
    view = circulation.place_hold("O1", item_barcode="B2", pickup_branch_code="OMAIN")
    with two.database.transaction() as session:
        hold = session.get(Hold, view.hold_id)
        b1 = session.scalars(sa.select(Item).where(Item.barcode == "B1")).one()
        assert hold is not None
        hold.status = HoldStatus.IN_TRANSIT
        hold.trapped_item_id = b1.id
        hold.trapped_at = NOW
        b1.transit_to_branch_id = hold.pickup_branch_id

    circulation.checkout("O1", "B1", branch_code="NORTH")

    assert hold_states(two) == [("O1", PENDING, None)]


def test_a_stale_trap_across_institutions_is_released_at_checkin(
    two: Library, circulation: Circulation
) -> None:
    """CITY's copy left trapped in transit for OTHER's hold, checked in at its
    home branch: the hold goes back to OTHER's queue and the copy stays home."""
    view = circulation.place_hold("O1", item_barcode="B2", pickup_branch_code="OMAIN")
    with two.database.transaction() as session:
        hold = session.get(Hold, view.hold_id)
        b1 = session.scalars(sa.select(Item).where(Item.barcode == "B1")).one()
        assert hold is not None
        hold.status = HoldStatus.IN_TRANSIT
        hold.trapped_item_id = b1.id
        hold.trapped_at = NOW
        b1.transit_to_branch_id = hold.pickup_branch_id

    result = circulation.checkin("B1", branch_code="NORTH")

    assert result.alert is not CheckinAlert.HOLD_TRANSIT
    assert result.destination_branch_code is None
    assert result.hold_patron_barcode is None
    assert hold_states(two) == [("O1", PENDING, None)]
    assert transit_of(two, "B1") is None


def test_an_items_queue_length_counts_its_own_institutions_holds(
    two: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Two OTHER holds and one CITY hold on the title: CITY's copy reports a
    queue of 1 and OTHER's copy a queue of 2, in the one-statement view and in
    the ORM view alike."""
    library = two
    library.add_patron("O2", surname="Kovacs", home_branch="OMAIN")
    circulation.place_hold("O1", item_barcode="B2", pickup_branch_code="OMAIN")
    clock.now = NOW + timedelta(minutes=1)
    circulation.place_hold("O2", item_barcode="B2", pickup_branch_code="OMAIN")
    clock.now = NOW + timedelta(minutes=2)
    circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")

    city, other = circulation.item("B1"), circulation.item("B2")

    assert city is not None
    assert other is not None
    assert (city.hold_queue_length, other.hold_queue_length) == (1, 2)
    with library.database.read() as session:
        for barcode, expected in (("B1", 1), ("B2", 2)):
            item = session.scalars(sa.select(Item).where(Item.barcode == barcode)).one()
            assert queries.item_view(session, item).hold_queue_length == expected
