"""Where each of a patron's holds stands in its title's queue (`queue_places`),
read in one statement, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event

from ils.circulation import Circulation
from ils.hold_views import QueuePlace, queue_places
from ils.results import HoldView
from tests.ils.circulation_support import (
    NOW,
    add_copy,
    circulation,
    clock,
    library,
    library_templates,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]


def places(library: Library, patron: str) -> dict[int, tuple[int, int]]:
    """The patron's queue places as {hold id: (position, length)}."""
    with library.database.read() as session:
        found = queue_places(session, patron)
    return {hold_id: (p.position, p.length) for hold_id, p in found.items()}


def test_positions_count_title_and_item_holds_still_waiting_in_placement_order(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """P1 (title) is ahead of P2 (one copy) and P3 (title, placed at the same
    moment as P2 but later in id): 1, 2 and 3 of 3; P2 is alone on a second
    title (1 of 1). Once a copy is trapped for P1, P1 leaves the queue and P2
    and P3 move up to 1 and 2 of 2."""
    library.add_item("B1", title="Salt Roads")
    add_copy(library, "B1b", of="B1")
    library.add_item("B2", title="Tide Tables")
    for patron in ("P1", "P2", "P3"):
        library.add_patron(patron)

    def hold(patron: str, item: str, *, item_level: bool = False) -> HoldView:
        return circulation.place_hold(
            patron, item_barcode=item, pickup_branch_code="NORTH", item_level=item_level
        )

    clock.now = NOW + timedelta(minutes=1)
    p1 = hold("P1", "B1")
    clock.now = NOW + timedelta(minutes=2)
    p2 = hold("P2", "B1b", item_level=True)
    p3 = hold("P3", "B1")
    clock.now = NOW + timedelta(minutes=3)
    p2_other = hold("P2", "B2")
    assert p2.hold_id < p3.hold_id

    assert {p1.hold_id: (1, 3)} == places(library, "P1")
    assert {p2.hold_id: (2, 3), p2_other.hold_id: (1, 1)} == places(library, "P2")
    assert {p3.hold_id: (3, 3)} == places(library, "P3")

    # B1 off the open shelf and checked in: trapped for P1, the first in line.
    clock.now = NOW + timedelta(minutes=4)
    circulation.checkin("B1", branch_code="NORTH")

    assert {} == places(library, "P1")
    assert {p2.hold_id: (1, 2), p2_other.hold_id: (1, 1)} == places(library, "P2")
    assert {p3.hold_id: (2, 2)} == places(library, "P3")


def test_queue_places_are_one_statement_and_empty_for_an_unknown_card(
    library: Library, circulation: Circulation
) -> None:
    """Three holds of one patron are placed with a single SELECT; an unknown card
    has no places."""
    for barcode in ("B1", "B2", "B3"):
        library.add_item(barcode, title=f"Title {barcode}")
    library.add_patron("P1")
    for barcode in ("B1", "B2", "B3"):
        circulation.place_hold("P1", item_barcode=barcode, pickup_branch_code="NORTH")
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    with library.database.read() as session:
        session.connection()  # the transaction's own statements are not counted
        event.listen(library.database.engine, "before_cursor_execute", count)
        try:
            found = queue_places(session, "P1")
        finally:
            event.remove(library.database.engine, "before_cursor_execute", count)
        nobody = queue_places(session, "NO-SUCH-CARD")

    assert 1 == len(statements), statements
    assert [QueuePlace] * 3 == [type(place) for place in found.values()]
    assert [(1, 1)] * 3 == [(p.position, p.length) for p in found.values()]
    assert {} == nobody
