"""The demo library's holds: one waiting on the hold shelf and one in the queue,
placed through the circulation service, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from ils.circulation import Circulation
from ils.db import Database
from ils.demo import build_demo, patron_barcode
from ils.models import HoldStatus
from ils.rules.rulesfile import read_rules

REPO_ROOT = Path(__file__).resolve().parents[2]

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


def test_a_late_return_in_the_demo_is_fined_by_the_catch_all_rule(
    database_url: str,
) -> None:
    """Alice returns 21-day demo books: 2 days late is within the grace and not
    fined; 5 days late is fined for all 5 days at 25 cents, 1.25; 40 days late
    is capped at 5.00. The shipped rules file says the same of its catch-all."""
    demo = build_demo(database_url, patrons=6, items_per_record=1, today=TODAY)
    database = Database(database_url, pool_size=2)
    now = [datetime(2026, 12, 4, 15, 0, tzinfo=UTC)]
    circulation = Circulation(database, clock=lambda: now[0])
    try:
        first, second, third = (item.barcode for item in demo.items[:3])
        lent = circulation.checkout(patron_barcode(1), first, branch_code="MAIN")
        circulation.checkout(patron_barcode(1), second, branch_code="MAIN")
        circulation.checkout(patron_barcode(1), third, branch_code="MAIN")
        # Due at the end of 25 Dec in New York; returned at noon there on the
        # 27th (two days late) and the 30th (five).
        now[0] = datetime(2026, 12, 27, 17, 0, tzinfo=UTC)
        two_days = circulation.checkin(third, branch_code="MAIN")
        now[0] = datetime(2026, 12, 30, 17, 0, tzinfo=UTC)
        five_days = circulation.checkin(first, branch_code="MAIN")
        now[0] = datetime(2027, 2, 3, 17, 0, tzinfo=UTC)
        forty_days = circulation.checkin(second, branch_code="MAIN")
    finally:
        database.dispose()
    shipped = read_rules(REPO_ROOT / "config" / "loan-rules.toml").rule[0]

    assert lent.due_at == datetime(2026, 12, 26, 4, 59, 59, tzinfo=UTC)
    assert 0 == two_days.fine_minor
    assert 125 == five_days.fine_minor
    assert 500 == forty_days.fine_minor
    assert (None, None, 25, 2, 500) == (
        shipped.category,
        shipped.item_type,
        shipped.fine,
        shipped.grace,
        shipped.fine_cap,
    )
