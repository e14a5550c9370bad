"""The one-statement item view (`ils.item_lookup`) agrees with the ORM view
(`ils.queries.item_view`) on items in every state, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from ils import queries
from ils.circulation import Circulation
from ils.item_lookup import item_view_by_barcode
from ils.models import Item, ItemStatus
from ils.results import ItemView
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


def both_views(library: Library) -> list[tuple[ItemView, ItemView | None]]:
    """(ORM view, one-statement view) of every item in the library."""
    pairs = []
    with library.database.read() as session:
        for item in session.scalars(sa.select(Item).order_by(Item.id)):
            orm = queries.item_view(session, item)
            pairs.append((orm, item_view_by_barcode(session, item.barcode)))
    return pairs


def test_views_agree_on_items_on_the_shelf_on_loan_held_in_transit_and_lost(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Shelf, loan, a queue of a title hold and an item hold, hold shelf,
    transit to a pickup branch, transit home and a lost item each give the same
    view both ways."""
    library.add_patron("P0")
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("SHELF")
    library.add_item("LOANED")
    library.add_item("QUEUED")
    library.add_item("WAITING")
    library.add_item("TRAVELS")
    library.add_item("HOMEWARD")
    library.add_item("LOST", status=ItemStatus.LOST)
    add_copy(library, "SISTER", of="QUEUED")
    add_copy(library, "WESTERN", of="SHELF", branch="WEST")

    circulation.checkout("P0", "LOANED", branch_code="NORTH")
    circulation.checkout("P0", "QUEUED", branch_code="NORTH")
    clock.now = NOW + timedelta(minutes=1)
    circulation.place_hold("P1", item_barcode="QUEUED", pickup_branch_code="NORTH")
    clock.now = NOW + timedelta(minutes=2)
    circulation.place_hold(
        "P2", item_barcode="QUEUED", pickup_branch_code="NORTH", item_level=True
    )

    circulation.checkout("P0", "WAITING", branch_code="NORTH")
    circulation.place_hold("P1", item_barcode="WAITING", pickup_branch_code="NORTH")
    circulation.checkin("WAITING", branch_code="NORTH")

    circulation.checkout("P0", "TRAVELS", branch_code="NORTH")
    circulation.place_hold("P2", item_barcode="TRAVELS", pickup_branch_code="WEST")
    circulation.checkin("TRAVELS", branch_code="NORTH")

    circulation.checkin("HOMEWARD", branch_code="WEST")

    pairs = both_views(library)
    assert len(pairs) == 9
    for orm, fast in pairs:
        assert fast == orm, orm.barcode
    by_barcode = {orm.barcode: orm for orm, _ in pairs}
    # Checked by hand against the story above, so that agreement is not
    # agreement on a wrong answer.
    assert by_barcode["LOANED"].borrower_barcode == "P0"
    assert by_barcode["QUEUED"].hold_queue_length == 2
    # The other copy could fill the title hold, not the item hold.
    assert by_barcode["SISTER"].hold_queue_length == 1
    assert by_barcode["WAITING"].on_hold_shelf is True
    assert by_barcode["WAITING"].hold_patron_barcode == "P1"
    assert by_barcode["TRAVELS"].in_transit_to == "WEST"
    assert by_barcode["TRAVELS"].hold_pickup_branch_code == "WEST"
    assert by_barcode["HOMEWARD"].in_transit_to == "NORTH"
    assert by_barcode["LOST"].status is ItemStatus.LOST
    assert by_barcode["WESTERN"].home_branch_code == "WEST"


def test_unknown_barcode_gives_no_view(library: Library) -> None:
    """A barcode no item has is None, not an error."""
    with library.database.read() as session:
        assert item_view_by_barcode(session, "NO-SUCH-ITEM") is None


def test_view_sees_a_change_flushed_in_the_same_unit(
    library: Library, circulation: Circulation
) -> None:
    """Inside a write unit, a flushed change of the item shows in the view."""
    library.add_item("B1")
    with library.database.transaction() as session:
        item = queries.item_by_barcode(session, "B1")
        assert item is not None
        item.call_number = "NEW 123"
        session.flush()
        view = item_view_by_barcode(session, "B1")
    assert view is not None
    assert view.call_number == "NEW 123"
