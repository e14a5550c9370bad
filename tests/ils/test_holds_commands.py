"""`ils holds expire`, `ils holds queue` and `ils holds pull-list`, as an operator
runs them."""

from __future__ import annotations

from datetime import date

from click.testing import CliRunner

from ils.circulation import Circulation
from ils.holds_commands import holds_group
from ils.models import HoldStatus
from tests.ils.circulation_support import (
    NOW,
    add_copy,
    hold_states,
    library,
    library_templates,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["library", "library_templates"]


def test_expire_command_ends_uncollected_holds_and_queue_shows_the_next(
    library: Library,
) -> None:
    """A hold left on the shelf since January is expired by the daily command, the
    item passes to the next North patron, and the queue lists that hold."""
    url = library.database.engine.url.render_as_string(hide_password=False)
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    library.add_item("B1")
    library.add_patron("PATRON01")
    library.add_patron("PATRON02")
    circulation.place_hold("PATRON01", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.place_hold("PATRON02", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.checkin("B1", branch_code="NORTH")
    runner = CliRunner()

    expired = runner.invoke(holds_group, ["expire", "--db", url])
    queue = runner.invoke(holds_group, ["queue", "B1", "--db", url])
    unknown = runner.invoke(holds_group, ["queue", "NOTHING", "--db", url])

    assert expired.exit_code == 0, expired.output
    lines = expired.output.splitlines()
    assert lines[0].startswith("expired hold 1: expired, patron ****ON01, pickup NORTH")
    assert lines[1].startswith("passed on to hold 2: waiting, patron ****ON02")
    assert lines[-1] == "1 hold expired; 1 item passed to the next hold"
    assert hold_states(library) == [
        ("PATRON01", HoldStatus.EXPIRED, "B1"),
        ("PATRON02", HoldStatus.WAITING, "B1"),
    ]
    assert queue.exit_code == 0, queue.output
    assert queue.output.startswith(
        "hold 2: waiting, patron ****ON02, pickup NORTH, item B1, collect by"
    )
    assert unknown.exit_code == 1
    assert "This item is not recognised." in unknown.output


def test_pull_list_names_one_shelf_copy_per_pending_hold_without_patron_names(
    library: Library,
) -> None:
    """Two title holds on a title with a copy at North and one at West each get a
    copy to pull, in queue order; --branch keeps to one branch's shelves; a title
    whose only copy is on loan is not listed, and patrons appear masked."""
    url = library.database.engine.url.render_as_string(hide_password=False)
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    library.add_item("B1")
    add_copy(library, "W1", of="B1", branch="WEST")
    library.add_item("C1", title="Salt Roads")
    for patron in ("PATRON00", "PATRON01", "PATRON02", "PATRON03"):
        library.add_patron(patron, surname="Vasquez-Lindqvist")
    circulation.checkout("PATRON00", "C1", branch_code="NORTH")
    circulation.place_hold("PATRON01", item_barcode="B1", pickup_branch_code="WEST")
    circulation.place_hold("PATRON02", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.place_hold("PATRON03", item_barcode="C1", pickup_branch_code="NORTH")
    runner = CliRunner()

    everywhere = runner.invoke(holds_group, ["pull-list", "--db", url])
    north = runner.invoke(holds_group, ["pull-list", "--branch", "NORTH", "--db", url])
    unknown = runner.invoke(holds_group, ["pull-list", "--branch", "EAST", "--db", url])

    assert everywhere.exit_code == 0, everywhere.output
    assert everywhere.output.splitlines() == [
        "B1  The Tide Tables  [Adult non-fiction / 551.46 TUP] at NORTH -> pickup"
        " WEST, hold 1 for ****ON01, placed 2026-01-15",
        "W1  The Tide Tables  [Adult non-fiction / 551.46 TUP] at WEST -> pickup"
        " NORTH, hold 2 for ****ON02, placed 2026-01-15",
        "2 copies to pull",
    ]
    assert north.exit_code == 0, north.output
    assert north.output.splitlines()[0].startswith("B1  The Tide Tables")
    assert north.output.splitlines()[1:] == ["1 copy to pull"]
    assert "Vasquez" not in everywhere.output + north.output
    assert unknown.exit_code == 1
    assert "Error: no branch EAST in this library" in unknown.output


def test_queue_marks_an_expired_hold_and_prints_deadlines_in_the_branch_zone(
    library: Library,
) -> None:
    """A pending hold past its expiry date is listed as expired before the daily
    run ends it, and a West hold-shelf deadline is printed in Los Angeles time
    (end of 22 January there, not 07:59 on the 23rd in UTC)."""
    url = library.database.engine.url.render_as_string(hide_password=False)
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    library.add_item("W1", branch="WEST")
    library.add_item("C1", title="Salt Roads")
    for patron in ("PATRON01", "PATRON02", "PATRON03"):
        library.add_patron(patron)
    circulation.place_hold("PATRON01", item_barcode="W1", pickup_branch_code="WEST")
    circulation.checkin("W1", branch_code="WEST")
    circulation.place_hold(
        "PATRON02",
        item_barcode="C1",
        pickup_branch_code="NORTH",
        expires_on=date(2026, 1, 16),
    )
    circulation.place_hold("PATRON03", item_barcode="C1", pickup_branch_code="NORTH")
    runner = CliRunner()

    west = runner.invoke(holds_group, ["queue", "W1", "--db", url])
    north = runner.invoke(holds_group, ["queue", "C1", "--db", url])

    assert west.output == (
        "hold 1: waiting, patron ****ON01, pickup WEST, item W1,"
        " collect by 2026-01-22 23:59 America/Los_Angeles, placed 2026-01-15\n"
    )
    assert north.output.splitlines() == [
        "hold 2: expired 2026-01-16 (ended at the next expire run), patron ****ON02,"
        " pickup NORTH, placed 2026-01-15",
        "hold 3: pending #2, patron ****ON03, pickup NORTH, placed 2026-01-15",
    ]
