"""Holds as a librarian describes them: the queue, trapping at checkin, the hold
shelf and its deadline, transit to the pickup branch, cancelling, moving and
expiring holds, and the refusals, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from ils.circulation import Circulation
from ils.models import FeeKind, HoldStatus
from ils.results import CheckinAlert, Refusal
from tests.ils.circulation_support import (
    NOW,
    add_copy,
    circulation,
    clock,
    close_day,
    fees_of,
    hold_states,
    library,
    library_templates,
    refusal_of,
    set_institution,
    update_rule,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]

PENDING, WAITING, IN_TRANSIT = (
    HoldStatus.PENDING,
    HoldStatus.WAITING,
    HoldStatus.IN_TRANSIT,
)


def lend_out(library: Library, circulation: Circulation, *items: str) -> None:
    """Patron P0 borrows the items, so that holds queue for them."""
    library.add_patron("P0")
    for barcode in items:
        circulation.checkout("P0", barcode, branch_code="NORTH")


def test_returned_item_fills_the_second_hold_because_the_first_has_expired(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """The first patron's hold ran out on the 20th; the return on the 21st goes to
    the second patron, whose hold waits seven days on the hold shelf."""
    library.add_item("B1")
    lend_out(library, circulation, "B1")
    library.add_patron("P1")
    library.add_patron("P2")
    circulation.place_hold(
        "P1",
        item_barcode="B1",
        pickup_branch_code="NORTH",
        expires_on=date(2026, 1, 20),
    )
    clock.now = NOW + timedelta(minutes=1)
    circulation.place_hold("P2", item_barcode="B1", pickup_branch_code="NORTH")

    clock.now = datetime(2026, 1, 21, 10, 0, tzinfo=UTC)
    result = circulation.checkin("B1", branch_code="NORTH")

    assert result.alert is CheckinAlert.HOLD_HERE
    assert result.hold_patron_barcode == "P2"
    assert result.destination_branch_code is None
    # 21 Jan + 7 days, end of the day in London (UTC in winter).
    assert result.hold_pickup_deadline == datetime(2026, 1, 28, 23, 59, 59, tzinfo=UTC)
    assert hold_states(library) == [("P1", PENDING, None), ("P2", WAITING, "B1")]
    expiry = circulation.expire_holds()
    assert [view.patron_barcode for view in expiry.expired] == ["P1"]
    assert hold_states(library)[0] == ("P1", HoldStatus.EXPIRED, None)


def test_hold_for_another_branch_travels_there_and_is_refused_to_a_third_patron(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Returned at North for a West pickup, the item goes in transit to West, a
    third patron cannot borrow it on the way, and at West it waits for the holder."""
    library.add_item("B1")
    lend_out(library, circulation, "B1")
    library.add_patron("P2")
    library.add_patron("P3")
    circulation.place_hold("P2", item_barcode="B1", pickup_branch_code="WEST")

    at_north = circulation.checkin("B1", branch_code="NORTH")

    assert at_north.alert is CheckinAlert.HOLD_TRANSIT
    assert at_north.destination_branch_code == "WEST"
    assert at_north.hold_patron_barcode == "P2"
    assert at_north.item.in_transit_to == "WEST"
    assert at_north.item.on_hold_shelf is False
    refused = refusal_of(lambda: circulation.checkout("P3", "B1", branch_code="NORTH"))
    assert refused is Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON

    clock.now = NOW + timedelta(days=1)
    at_west = circulation.checkin("B1", branch_code="WEST")

    assert at_west.alert is CheckinAlert.HOLD_HERE
    assert at_west.destination_branch_code is None
    # Trapped on the shelf at 02:00 on 16 Jan in Los Angeles; seven days on is
    # the end of 23 Jan there, 07:59:59 UTC on the 24th.
    assert at_west.hold_pickup_deadline == datetime(2026, 1, 24, 7, 59, 59, tzinfo=UTC)
    assert at_west.item.on_hold_shelf is True
    assert hold_states(library) == [("P2", WAITING, "B1")]
    loan = circulation.checkout("P2", "B1", branch_code="WEST")
    assert loan.item.borrower_barcode == "P2"
    assert hold_states(library) == [("P2", HoldStatus.FULFILLED, "B1")]


def test_queue_positions_and_available_holds_are_kept_apart_from_pending_ones(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Three holds queue in placement order; once the item is trapped for the
    first, that hold is available and the others move up the queue."""
    library.add_item("B1")
    lend_out(library, circulation, "B1")
    for number in (1, 2, 3):
        library.add_patron(f"P{number}")
        clock.now = NOW + timedelta(minutes=number)
        circulation.place_hold(
            f"P{number}", item_barcode="B1", pickup_branch_code="NORTH"
        )

    before = circulation.hold_queue(item_barcode="B1")
    circulation.checkin("B1", branch_code="NORTH")
    after = circulation.hold_queue(item_barcode="B1")

    assert [(v.patron_barcode, v.queue_position) for v in before] == [
        ("P1", 1),
        ("P2", 2),
        ("P3", 3),
    ]
    assert [(v.patron_barcode, v.status, v.queue_position) for v in after] == [
        ("P1", WAITING, None),
        ("P2", PENDING, 1),
        ("P3", PENDING, 2),
    ]
    first = circulation.holds_of("P1")
    second = circulation.holds_of("P2")
    assert [(v.available, v.trapped_item_barcode) for v in first.available] == [
        (True, "B1")
    ]
    assert first.pending == ()
    assert second.available == ()
    assert [v.queue_position for v in second.pending] == [1]
    item = circulation.item("B1")
    assert item is not None
    assert (item.hold_queue_length, item.on_hold_shelf, item.hold_patron_barcode) == (
        2,
        True,
        "P1",
    )


def test_holds_are_refused_each_for_its_reason(
    library: Library, circulation: Circulation
) -> None:
    """Limit, duplicate, rule, pickup branch, block and unknown hold are refused."""
    set_institution(library, max_holds=1)
    update_rule(library, "ADULT", None, hold_pickup_branches="NORTH")
    update_rule(library, None, "DVD", holds_allowed=False)
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_patron("C1", category="CHILD")
    library.add_patron("X1", block_note="Damaged three books")
    library.add_item("B1")
    library.add_item("B2")
    library.add_item("D1", item_type="DVD")
    held = circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")

    def place(patron: str, item: str, branch: str = "NORTH") -> Refusal:
        return refusal_of(
            lambda: circulation.place_hold(
                patron, item_barcode=item, pickup_branch_code=branch
            )
        )

    assert place("P1", "B1") is Refusal.ALREADY_ON_HOLD
    assert place("P1", "B2") is Refusal.MAX_HOLDS_REACHED
    assert place("P2", "B2", "WEST") is Refusal.PICKUP_BRANCH_NOT_ALLOWED
    assert place("C1", "D1") is Refusal.HOLDS_NOT_ALLOWED
    assert place("X1", "B2") is Refusal.PATRON_BLOCKED
    assert place("P2", "NOTHING") is Refusal.UNKNOWN_ITEM
    assert place("P2", "B2", "MOON") is Refusal.UNKNOWN_BRANCH
    cancel_other = refusal_of(lambda: circulation.cancel_hold("P2", held.hold_id))
    assert cancel_other is Refusal.HOLD_NOT_FOUND


def test_cancelled_waiting_hold_passes_the_item_to_the_next_hold_at_that_branch(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """The item stays on the North hold shelf for the next North patron, with a
    deadline counted from the cancellation."""
    library.add_item("B1")
    lend_out(library, circulation, "B1")
    library.add_patron("P1")
    library.add_patron("P2")
    first = circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")
    clock.now = NOW + timedelta(minutes=1)
    circulation.place_hold("P2", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.checkin("B1", branch_code="NORTH")

    clock.now = datetime(2026, 1, 17, 9, 0, tzinfo=UTC)
    cancelled = circulation.cancel_hold("P1", first.hold_id)

    assert cancelled.status is HoldStatus.CANCELLED
    assert hold_states(library) == [
        ("P1", HoldStatus.CANCELLED, "B1"),
        ("P2", WAITING, "B1"),
    ]
    waiting = circulation.holds_of("P2").available
    assert [v.pickup_deadline for v in waiting] == [
        datetime(2026, 1, 24, 23, 59, 59, tzinfo=UTC)
    ]


def test_cancelled_waiting_hold_leaves_the_item_for_checkin_when_next_is_elsewhere(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """With the next hold at West, the item is released from the North shelf, and
    staff clearing the shelf check it in, which sends it to West."""
    library.add_item("B1")
    lend_out(library, circulation, "B1")
    library.add_patron("P1")
    library.add_patron("P2")
    first = circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")
    clock.now = NOW + timedelta(minutes=1)
    circulation.place_hold("P2", item_barcode="B1", pickup_branch_code="WEST")
    circulation.checkin("B1", branch_code="NORTH")

    circulation.cancel_hold("P1", first.hold_id)
    released = circulation.item("B1")
    cleared = circulation.checkin("B1", branch_code="NORTH")

    assert released is not None
    assert (released.on_hold_shelf, released.hold_patron_barcode) == (False, None)
    assert cleared.alert is CheckinAlert.HOLD_TRANSIT
    assert cleared.destination_branch_code == "WEST"
    assert hold_states(library)[1] == ("P2", IN_TRANSIT, "B1")


def test_uncollected_hold_expires_after_its_deadline_skipping_a_closed_day(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """North is closed on the 22nd, so a hold trapped on the 15th waits until the
    end of the 23rd; `expire_holds` then ends it and the next patron gets the item."""
    close_day(library, "NORTH", date(2026, 1, 22), "Staff training")
    library.add_item("B1")
    lend_out(library, circulation, "B1")
    library.add_patron("P1")
    library.add_patron("P2")
    circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")
    clock.now = NOW + timedelta(minutes=1)
    circulation.place_hold("P2", item_barcode="B1", pickup_branch_code="NORTH")
    trapped = circulation.checkin("B1", branch_code="NORTH")

    too_soon = circulation.expire_holds(datetime(2026, 1, 23, 23, 0, tzinfo=UTC))
    late = datetime(2026, 1, 24, 0, 30, tzinfo=UTC)
    expiry = circulation.expire_holds(late)

    assert trapped.hold_pickup_deadline == datetime(2026, 1, 23, 23, 59, 59, tzinfo=UTC)
    assert too_soon.expired == ()
    assert [v.patron_barcode for v in expiry.expired] == ["P1"]
    assert [(v.patron_barcode, v.status) for v in expiry.trapped] == [("P2", WAITING)]
    # 24 Jan + 7 days.
    assert expiry.trapped[0].pickup_deadline == datetime(
        2026, 1, 31, 23, 59, 59, tzinfo=UTC
    )
    assert hold_states(library) == [
        ("P1", HoldStatus.EXPIRED, "B1"),
        ("P2", WAITING, "B1"),
    ]


def test_moving_a_waiting_hold_to_another_branch_sends_the_item_there(
    library: Library, circulation: Circulation
) -> None:
    """A patron who would rather collect at West: the item leaves the North shelf in
    transit, and waits again once checked in at West."""
    library.add_item("B1")
    lend_out(library, circulation, "B1")
    library.add_patron("P1")
    hold = circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.checkin("B1", branch_code="NORTH")

    moved = circulation.change_hold_pickup(
        "P1", hold.hold_id, pickup_branch_code="WEST"
    )
    moving = circulation.item("B1")
    arrived = circulation.checkin("B1", branch_code="WEST")

    assert (moved.status, moved.pickup_branch_code) == (IN_TRANSIT, "WEST")
    assert moving is not None
    assert moving.in_transit_to == "WEST"
    assert arrived.alert is CheckinAlert.HOLD_HERE
    assert hold_states(library) == [("P1", WAITING, "B1")]


def test_hold_fee_is_charged_when_the_hold_is_placed(
    library: Library, circulation: Circulation
) -> None:
    """An adult's rule with a 50p hold fee charges it once, at placement."""
    update_rule(library, "ADULT", None, hold_fee_minor=50)
    library.add_item("B1")
    library.add_patron("P1")

    circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")

    assert fees_of(library, "P1") == [(FeeKind.HOLD, 50, 50)]


def test_item_level_hold_waits_for_that_copy_only(
    library: Library, circulation: Circulation
) -> None:
    """A hold on copy B2 lets copy B1 go back to the shelf and traps B2."""
    library.add_item("B1")
    add_copy(library, "B2", of="B1")
    lend_out(library, circulation, "B1", "B2")
    library.add_patron("P1")
    circulation.place_hold(
        "P1", item_barcode="B2", pickup_branch_code="NORTH", item_level=True
    )

    other_copy = circulation.checkin("B1", branch_code="NORTH")
    that_copy = circulation.checkin("B2", branch_code="NORTH")

    assert other_copy.alert is CheckinAlert.NONE
    assert that_copy.alert is CheckinAlert.HOLD_HERE
    assert hold_states(library) == [("P1", WAITING, "B2")]


def test_one_title_hold_leaves_the_other_copies_on_the_shelf_free_to_lend(
    library: Library, circulation: Circulation
) -> None:
    """With three copies on the North shelf and one patron's title hold pending,
    two other patrons borrow a copy each; the last copy is kept for the hold and
    refused to a fourth patron, and the holder borrows it, filling the hold."""
    library.add_item("B1")
    add_copy(library, "B2", of="B1")
    add_copy(library, "B3", of="B1")
    for patron in ("HOLDER", "P2", "P3", "P4"):
        library.add_patron(patron)
    circulation.place_hold("HOLDER", item_barcode="B1", pickup_branch_code="NORTH")

    second = circulation.checkout("P2", "B2", branch_code="NORTH")
    third = circulation.checkout("P3", "B3", branch_code="NORTH")
    last = refusal_of(lambda: circulation.checkout("P4", "B1", branch_code="NORTH"))
    holder = circulation.checkout("HOLDER", "B1", branch_code="NORTH")

    assert (second.item.barcode, third.item.barcode) == ("B2", "B3")
    assert last is Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON
    assert holder.item.barcode == "B1"
    assert hold_states(library) == [("HOLDER", HoldStatus.FULFILLED, None)]


def test_copies_on_another_branch_or_wanted_by_an_item_hold_are_not_spare(
    library: Library, circulation: Circulation
) -> None:
    """A title hold keeps the North copy when the only other copy is at West, and
    a copy named by another patron's item-level hold is never lent to a third."""
    library.add_item("B1")
    add_copy(library, "W1", of="B1", branch="WEST")
    library.add_item("C1")
    add_copy(library, "C2", of="C1")
    for patron in ("HOLDER", "ITEMHOLDER", "P2"):
        library.add_patron(patron)
    circulation.place_hold("HOLDER", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.place_hold(
        "ITEMHOLDER", item_barcode="C1", pickup_branch_code="NORTH", item_level=True
    )

    north_copy = refusal_of(
        lambda: circulation.checkout("P2", "B1", branch_code="NORTH")
    )
    named_copy = refusal_of(
        lambda: circulation.checkout("P2", "C1", branch_code="NORTH")
    )
    other_copy = circulation.checkout("P2", "C2", branch_code="NORTH")

    assert north_copy is Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON
    assert named_copy is Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON
    assert other_copy.item.barcode == "C2"
