"""Checkin as a sorter and a returns desk see it: transit home, fines at the time
of return, lost items found, and items that were not on loan, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ils.circulation import Circulation
from ils.fees import charge_fee
from ils.models import FeeKind, ItemStatus, LoanEvent, Patron
from ils.queries import item_by_barcode
from ils.results import CheckinAlert, Refusal
from tests.ils.circulation_support import (
    NOW,
    circulation,
    clock,
    fees_of,
    library,
    library_templates,
    log_details,
    refusal_of,
    update_rule,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]


def test_item_returned_at_another_branch_goes_in_transit_home(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A North book returned at West is sent home, cannot be lent on the way, and
    is back on the shelf once checked in at North."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1", branch="NORTH")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now = NOW + timedelta(days=3)

    at_west = circulation.checkin("B1", branch_code="WEST", terminal="sorter-west")
    on_the_way = refusal_of(
        lambda: circulation.checkout("P2", "B1", branch_code="WEST")
    )
    at_home = circulation.checkin("B1", branch_code="NORTH")

    assert at_west.alert is CheckinAlert.TRANSIT_HOME
    assert at_west.destination_branch_code == "NORTH"
    assert at_west.home_branch_code == "NORTH"
    assert at_west.permanent_location == "Adult non-fiction"
    assert at_west.patron_barcode == "P1"
    assert at_west.item.in_transit_to == "NORTH"
    assert on_the_way is Refusal.ITEM_IN_TRANSIT
    assert at_home.alert is CheckinAlert.NONE
    assert at_home.destination_branch_code is None
    assert at_home.item.in_transit_to is None
    assert at_home.item.current_branch_code == "NORTH"


def test_offline_return_is_fined_for_the_days_late_when_it_was_returned(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A kiosk's offline return on 1 February is fined three days (30, 31 Jan and
    1 Feb at 20p), not the seven days to when it reached the server."""
    update_rule(library, "ADULT", None, fine_minor=20)
    library.add_patron("P1")
    library.add_item("B1")
    # Due at the end of 29 January.
    circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now = datetime(2026, 2, 5, 9, 0, tzinfo=UTC)

    result = circulation.checkin(
        "B1",
        branch_code="NORTH",
        returned_at=datetime(2026, 2, 1, 10, 0, tzinfo=UTC),
    )

    assert result.returned_at == datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    assert result.fine_minor == 60
    assert fees_of(library, "P1") == [(FeeKind.OVERDUE, 60, 60)]


def test_offline_return_sent_after_the_item_was_lent_again_leaves_the_new_loan(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """P1 returns B1 at an offline kiosk at 10:00; the desk lends it to P2 at
    10:30; the kiosk's return reaches the server at 11:00 dated 10:00: it is
    refused (and logged), and P2's loan stays open."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    clock.now = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    circulation.checkout(
        "P2", "B1", branch_code="NORTH", checkin_if_on_loan_to_other=True
    )
    clock.now = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)

    refused = refusal_of(
        lambda: circulation.checkin(
            "B1",
            branch_code="NORTH",
            returned_at=datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
        )
    )

    assert refused is Refusal.RETURN_BEFORE_LOAN
    item = circulation.item("B1")
    assert item is not None
    assert item.borrower_barcode == "P2"
    assert log_details(library, LoanEvent.REFUSAL)[-1] == "return_before_loan"


def test_a_return_dated_a_little_before_its_loan_began_still_ends_it(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A return dated two minutes before the checkout (a terminal's clock behind
    the server's) ends that loan, at the moment it began."""
    library.add_patron("P1")
    library.add_item("B1")
    clock.now = datetime(2026, 1, 15, 10, 0, 30, tzinfo=UTC)
    circulation.checkout("P1", "B1", branch_code="NORTH")

    result = circulation.checkin(
        "B1",
        branch_code="NORTH",
        returned_at=datetime(2026, 1, 15, 9, 58, 30, tzinfo=UTC),
    )

    assert result.was_on_loan is True
    assert result.returned_at == datetime(2026, 1, 15, 10, 0, 30, tzinfo=UTC)


def test_lost_item_found_at_checkin_cancels_its_lost_fee(
    library: Library, circulation: Circulation
) -> None:
    """A book marked lost, with its unpaid replacement fee, turns up in the returns
    bin: it is available again and the fee is cancelled, as the setting says."""
    library.add_patron("P1")
    library.add_item("B1", status=ItemStatus.LOST)
    with library.database.transaction() as session:
        patron = session.scalars(sa.select(Patron).where(Patron.barcode == "P1")).one()
        item = item_by_barcode(session, "B1")
        charge_fee(
            session,
            patron=patron,
            kind=FeeKind.LOST,
            amount_minor=1299,
            description="lost: The Tide Tables",
            by="staff",
            moment=NOW,
            item=item,
        )

    result = circulation.checkin("B1", branch_code="NORTH")

    assert result.alert is CheckinAlert.LOST_FOUND
    assert result.item.status is ItemStatus.AVAILABLE
    assert fees_of(library, "P1") == [(FeeKind.LOST, 1299, 0)]


def test_item_not_on_loan_is_checked_in_with_a_not_on_loan_alert(
    library: Library, circulation: Circulation
) -> None:
    """A book from the shelf put through the returns sorter is flagged, not refused;
    an unknown barcode is refused by name."""
    library.add_item("B1")

    result = circulation.checkin("B1", branch_code="NORTH")

    assert result.was_on_loan is False
    assert result.alert is CheckinAlert.NOT_ON_LOAN
    assert result.fine_minor == 0
    unknown = refusal_of(lambda: circulation.checkin("NOTHING", branch_code="NORTH"))
    assert unknown is Refusal.UNKNOWN_ITEM
