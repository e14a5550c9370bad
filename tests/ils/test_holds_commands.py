"""`ils holds expire` and `ils holds queue`, as an operator runs them."""

from __future__ import annotations

from click.testing import CliRunner

from ils.circulation import Circulation
from ils.holds_commands import holds_group
from ils.models import HoldStatus
from tests.ils.circulation_support import (
    NOW,
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
    assert lines[-1] == "1 holds expired; 1 items passed to the next hold"
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
