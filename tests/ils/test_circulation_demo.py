"""The demo library's holds: one waiting on the hold shelf and one in the queue,
placed through the circulation service, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ils.circulation import Circulation
from ils.db import Database
from ils.demo import build_demo, patron_barcode
from ils.models import HoldStatus

TODAY = date(2026, 12, 4)


def test_demo_has_a_waiting_hold_and_a_pending_one(database_url: str) -> None:
    """Bob's hold waits at Main until the end of 11 December in New York; Charlie's
    is first in the queue for East; the books to try stay free to borrow."""
    demo = build_demo(
        database_url, patrons=6, items_per_record=0, today=TODAY, holds=True
    )
    database = Database(database_url, pool_size=2)
    clock = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
    circulation = Circulation(database, clock=lambda: clock)
    try:
        bob = circulation.holds_of(patron_barcode(2))
        charlie = circulation.holds_of(patron_barcode(3))
        waiting_item = circulation.item(demo.holds[0].item_barcode)
        first_try = circulation.checkout(
            patron_barcode(1), demo.items[0].barcode, branch_code="MAIN"
        )
    finally:
        database.dispose()

    assert [(h.patron_barcode, h.pickup_branch, h.state) for h in demo.holds] == [
        (patron_barcode(2), "MAIN", "waiting"),
        (patron_barcode(3), "EAST", "pending"),
    ]
    assert demo.holds[0].item_barcode not in {item.barcode for item in demo.items}
    assert demo.holds[1].item_barcode not in {item.barcode for item in demo.items}
    assert [(h.status, h.pickup_deadline) for h in bob.available] == [
        # Trapped at noon on 4 Dec in New York; seven days on, end of day EST.
        (HoldStatus.WAITING, datetime(2026, 12, 12, 4, 59, 59, tzinfo=UTC))
    ]
    assert [(h.status, h.queue_position) for h in charlie.pending] == [
        (HoldStatus.PENDING, 1)
    ]
    assert waiting_item is not None
    assert waiting_item.on_hold_shelf is True
    assert first_try.item.borrower_barcode == patron_barcode(1)
