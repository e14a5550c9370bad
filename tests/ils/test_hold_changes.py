"""Changing a hold's expiry date and pickup branch, alone or together in one
transaction, the refusals, and `ils holds change`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ils.circulation import Circulation
from ils.holds import EXPIRY_OF_TRAPPED, EXPIRY_PASSED
from ils.holds_commands import holds_group
from ils.models import Branch, Hold, HoldStatus, LoanEvent
from ils.results import CirculationRefused, Refusal
from tests.ils.circulation_support import (
    NOW,
    circulation,
    clock,
    library,
    library_templates,
    log_details,
    update_rule,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]


def stored(library: Library) -> list[tuple[str, date | None, HoldStatus]]:
    """Every hold as stored: (pickup branch code, expiry date, status), by id."""
    with library.database.read() as session:
        rows = session.execute(
            sa.select(Branch.code, Hold.expires_on, Hold.status)
            .join(Branch, Branch.id == Hold.pickup_branch_id)
            .order_by(Hold.id)
        ).all()
    return [(code, expires_on, status) for code, expires_on, status in rows]


def refused(call: object) -> CirculationRefused:
    """Run a zero-argument call that must be refused, and give the refusal."""
    assert callable(call)
    with pytest.raises(CirculationRefused) as raised:
        call()
    return raised.value


def on_loan_with_hold(
    library: Library,
    circulation: Circulation,
    *,
    pickup: str = "NORTH",
    expires_on: date | None = date(2026, 1, 31),
) -> int:
    """Item B1 on loan to P0 and a pending hold of P1's on it; the hold's id."""
    library.add_item("B1")
    library.add_patron("P0")
    library.add_patron("P1")
    circulation.checkout("P0", "B1", branch_code="NORTH")
    return circulation.place_hold(
        "P1", item_barcode="B1", pickup_branch_code=pickup, expires_on=expires_on
    ).hold_id


def test_expiry_of_a_pending_hold_is_moved_then_cleared_each_with_a_log_row(
    library: Library, circulation: Circulation
) -> None:
    """31 Jan becomes 10 Feb, then none at all; the same date again writes nothing."""
    hold_id = on_loan_with_hold(library, circulation)

    later = circulation.change_hold("P1", hold_id, expires_on=date(2026, 2, 10))
    again = circulation.change_hold("P1", hold_id, expires_on=date(2026, 2, 10))
    cleared = circulation.change_hold("P1", hold_id, expires_on=None)

    assert (later.expires_on, later.status) == (date(2026, 2, 10), HoldStatus.PENDING)
    assert again.expires_on == date(2026, 2, 10)
    assert cleared.expires_on is None
    assert stored(library) == [("NORTH", None, HoldStatus.PENDING)]
    assert log_details(library, LoanEvent.HOLD_CHANGED) == [
        f"hold {hold_id} expires 2026-02-10",
        f"hold {hold_id} no expiry",
    ]


def test_a_day_before_today_in_the_pickup_branch_zone_is_refused(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """At 03:00 UTC on 16 Jan it is the 16th in London but still the 15th in Los
    Angeles: the 15th is past for a North hold and today for a West one."""
    hold_id = on_loan_with_hold(library, circulation)
    library.add_patron("P2")
    west = circulation.place_hold("P2", item_barcode="B1", pickup_branch_code="WEST")
    clock.now = datetime(2026, 1, 16, 3, 0, tzinfo=UTC)

    north_past = refused(
        lambda: circulation.change_hold("P1", hold_id, expires_on=date(2026, 1, 15))
    )
    north_today = circulation.change_hold("P1", hold_id, expires_on=date(2026, 1, 16))
    west_today = circulation.change_hold(
        "P2", west.hold_id, expires_on=date(2026, 1, 15)
    )

    assert north_past.reason is Refusal.HOLDS_NOT_ALLOWED
    assert north_past.message == EXPIRY_PASSED
    assert north_today.expires_on == date(2026, 1, 16)
    assert west_today.expires_on == date(2026, 1, 15)


def test_expiry_of_a_trapped_hold_is_refused_waiting_or_in_transit(
    library: Library, circulation: Circulation
) -> None:
    """Once a copy is set aside (waiting at North, or on its way to West), the hold
    lasts to its pickup deadline, and a new last day is refused."""
    hold_id = on_loan_with_hold(library, circulation)
    library.add_item("C1", title="Salt Roads")
    library.add_patron("P2")
    to_west = circulation.place_hold(
        "P2",
        item_barcode="C1",
        pickup_branch_code="WEST",
        expires_on=date(2026, 2, 1),
    )
    circulation.checkin("B1", branch_code="NORTH")
    circulation.checkin("C1", branch_code="NORTH")

    waiting = refused(
        lambda: circulation.change_hold("P1", hold_id, expires_on=date(2026, 3, 1))
    )
    in_transit = refused(
        lambda: circulation.change_hold("P2", to_west.hold_id, expires_on=None)
    )

    assert (waiting.reason, waiting.message) == (
        Refusal.HOLDS_NOT_ALLOWED,
        EXPIRY_OF_TRAPPED,
    )
    assert (in_transit.reason, in_transit.message) == (
        Refusal.HOLDS_NOT_ALLOWED,
        EXPIRY_OF_TRAPPED,
    )
    assert stored(library) == [
        ("NORTH", date(2026, 1, 31), HoldStatus.WAITING),
        ("WEST", date(2026, 2, 1), HoldStatus.IN_TRANSIT),
    ]
    assert log_details(library, LoanEvent.HOLD_CHANGED) == []


def test_another_patrons_hold_is_not_found_and_stays_as_it_was(
    library: Library, circulation: Circulation
) -> None:
    """P2 cannot change P1's hold, by expiry or by pickup branch."""
    hold_id = on_loan_with_hold(library, circulation)
    library.add_patron("P2")

    by_expiry = refused(
        lambda: circulation.change_hold("P2", hold_id, expires_on=date(2026, 3, 1))
    )
    by_pickup = refused(
        lambda: circulation.change_hold("P2", hold_id, pickup_branch_code="WEST")
    )

    assert by_expiry.reason is Refusal.HOLD_NOT_FOUND
    assert by_pickup.reason is Refusal.HOLD_NOT_FOUND
    assert stored(library) == [("NORTH", date(2026, 1, 31), HoldStatus.PENDING)]


def test_pickup_and_expiry_change_together_in_one_log_row(
    library: Library, circulation: Circulation
) -> None:
    """Both given: the hold moves to West and lasts to 1 March, logged once."""
    hold_id = on_loan_with_hold(library, circulation)

    both = circulation.change_hold(
        "P1", hold_id, pickup_branch_code="WEST", expires_on=date(2026, 3, 1)
    )

    assert (both.pickup_branch_code, both.expires_on) == ("WEST", date(2026, 3, 1))
    assert stored(library) == [("WEST", date(2026, 3, 1), HoldStatus.PENDING)]
    assert log_details(library, LoanEvent.HOLD_CHANGED) == [
        f"hold {hold_id} pickup at WEST, expires 2026-03-01"
    ]


def test_a_refused_half_of_a_change_leaves_the_other_half_unapplied(
    library: Library, circulation: Circulation
) -> None:
    """A pickup the rule forbids, or an unknown one, with a good expiry changes
    nothing; a good pickup with a past expiry moves nothing either."""
    hold_id = on_loan_with_hold(library, circulation)
    update_rule(library, "ADULT", None, hold_pickup_branches="NORTH")

    def change(pickup: str, expires_on: date) -> Refusal:
        return refused(
            lambda: circulation.change_hold(
                "P1", hold_id, pickup_branch_code=pickup, expires_on=expires_on
            )
        ).reason

    forbidden = change("WEST", date(2026, 3, 1))
    unknown = change("MOON", date(2026, 3, 1))
    update_rule(library, "ADULT", None, hold_pickup_branches=None)
    past = change("WEST", date(2026, 1, 1))

    assert forbidden is Refusal.PICKUP_BRANCH_NOT_ALLOWED
    assert unknown is Refusal.UNKNOWN_BRANCH
    assert past is Refusal.HOLDS_NOT_ALLOWED
    assert stored(library) == [("NORTH", date(2026, 1, 31), HoldStatus.PENDING)]
    assert log_details(library, LoanEvent.HOLD_CHANGED) == []


def test_change_command_sets_and_clears_the_last_day_and_refuses_clearly(
    library: Library,
) -> None:
    """`ils holds change` moves a hold and sets its last day in one go, clears it
    with --no-expiry, and names a past day or a missing choice as the problem."""
    url = library.database.engine.url.render_as_string(hide_password=False)
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    hold_id = on_loan_with_hold(library, circulation, expires_on=None)
    runner = CliRunner()

    both = runner.invoke(
        holds_group,
        [
            "change",
            str(hold_id),
            "--pickup",
            "WEST",
            "--expires",
            f"{date.today().year + 1}-01-31",
            "--db",
            url,
        ],
    )
    cleared = runner.invoke(
        holds_group, ["change", str(hold_id), "--no-expiry", "--db", url]
    )
    past = runner.invoke(
        holds_group, ["change", str(hold_id), "--expires", "2020-01-01", "--db", url]
    )
    nothing = runner.invoke(holds_group, ["change", str(hold_id), "--db", url])

    assert both.exit_code == 0, both.output
    assert both.output.startswith(f"changed hold {hold_id}: pending #1, patron P1")
    assert both.output.rstrip().endswith(
        f", wanted until {date.today().year + 1}-01-31"
    )
    assert ", pickup WEST," in both.output
    assert cleared.exit_code == 0, cleared.output
    assert cleared.output.rstrip().endswith(", no last day")
    assert past.exit_code == 1
    assert EXPIRY_PASSED in past.output
    assert nothing.exit_code == 2
    assert "name --pickup BRANCH, --expires DATE or --no-expiry" in nothing.output
    assert stored(library) == [("WEST", None, HoldStatus.PENDING)]
