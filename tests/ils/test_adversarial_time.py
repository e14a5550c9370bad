"""Requests with odd times or odd codes, as an adversarial test sent them: a
return dated in year 9999, a checkout in year 1, NUL bytes in barcodes; each gets
a clean answer on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils.circulation import Circulation, retry_pause
from ils.models import CirculationLog, FeeKind, Loan, LoanEvent
from ils.results import Refusal
from ils.units import Known, LoanChangedHands
from tests.ils.circulation_support import (
    NOW,
    circulation,
    clock,
    fees_of,
    library,
    library_templates,
    refusal_of,
    update_rule,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]


def test_return_dated_in_the_future_is_taken_as_now(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A return stamped 30 December 9999 by a broken terminal ends the loan now and
    is fined for the days late up to now, not for eight thousand years."""
    update_rule(library, "ADULT", None, fine_minor=20)
    library.add_patron("P1")
    library.add_item("B1")
    # Due at the end of 29 January 2026 (14 days from 15 January).
    circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)

    result = circulation.checkin(
        "B1",
        branch_code="NORTH",
        returned_at=datetime(9999, 12, 30, tzinfo=UTC),
    )

    assert result.returned_at == clock.now
    # Three days late: 30 and 31 January and 1 February, at 20p.
    assert fees_of(library, "P1") == [(FeeKind.OVERDUE, 60, 60)]
    with library.database.read() as session:
        assert session.scalar(sa.select(Loan.returned_at)) == clock.now


def test_return_at_the_largest_time_is_taken_as_now(
    library: Library, circulation: Circulation
) -> None:
    """A return at datetime.max, the last instant Python knows, ends the loan
    now without a fine instead of charging up to year 9999."""
    update_rule(library, "ADULT", None, fine_minor=20)
    library.add_patron("P1")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")

    result = circulation.checkin(
        "B1", branch_code="NORTH", returned_at=datetime.max.replace(tzinfo=UTC)
    )

    assert result.returned_at == NOW
    assert fees_of(library, "P1") == []


def test_checkout_dated_in_year_9999_is_lent_now(
    library: Library, circulation: Circulation
) -> None:
    """A checkout stamped 25 December 9999 is lent at the clock's time and due 14
    days later at the end of the day, instead of failing on a due date past 9999."""
    library.add_patron("P1")
    library.add_item("B1")

    result = circulation.checkout(
        "P1", "B1", branch_code="NORTH", at=datetime(9999, 12, 25, tzinfo=UTC)
    )

    assert result.due_at == datetime(2026, 1, 29, 23, 59, 59, tzinfo=UTC)
    with library.database.read() as session:
        assert session.scalar(sa.select(Loan.checked_out_at)) == NOW


def test_checkout_dated_in_year_one_is_a_value_error(
    library: Library, circulation: Circulation
) -> None:
    """A checkout stamped 1 January of year 1 at a branch west of UTC is refused
    with a ValueError naming `at`, not an OverflowError, and lends nothing."""
    library.add_patron("P1")
    library.add_item("B1")

    with pytest.raises(ValueError, match="at is 0001-01-01"):
        circulation.checkout(
            "P1", "B1", branch_code="WEST", at=datetime(1, 1, 1, 1, tzinfo=UTC)
        )

    with library.database.read() as session:
        assert session.scalar(sa.select(sa.func.count(Loan.id))) == 0


def test_renewal_dated_in_the_future_is_made_now(
    library: Library, circulation: Circulation
) -> None:
    """A renewal stamped a year ahead renews from now: due 14 days after the clock's
    time, the end of 29 January, not in 2027."""
    update_rule(library, "ADULT", None, renewals_allowed=3)
    library.add_patron("P1")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH", at=NOW - timedelta(days=10))

    result = circulation.renew("P1", "B1", at=NOW + timedelta(days=365))

    assert result.due_at == datetime(2026, 1, 29, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["P1\x00", "P\n1", "\udc80"])
def test_patron_barcode_with_control_characters_is_unknown(
    library: Library, circulation: Circulation, bad: str
) -> None:
    """A patron barcode holding a NUL, a line break or a lone surrogate is an
    unknown patron on both engines (PostgreSQL would refuse to store it), and the
    refusal is logged."""
    library.add_patron("P1")
    library.add_item("B1")

    reason = refusal_of(lambda: circulation.checkout(bad, "B1", branch_code="NORTH"))

    assert reason is Refusal.UNKNOWN_PATRON
    assert circulation.patron(bad) is None
    with library.database.read() as session:
        details = session.scalars(
            sa.select(CirculationLog.detail).where(
                CirculationLog.event == LoanEvent.REFUSAL
            )
        ).all()
    assert details == ["unknown_patron"]


def test_item_and_branch_codes_with_nul_are_refused_by_name(
    library: Library, circulation: Circulation
) -> None:
    """A NUL in an item barcode is UNKNOWN_ITEM at checkout and checkin, a NUL in a
    branch code UNKNOWN_BRANCH, and a NUL in the terminal's name is logged as
    "?", the checkout going ahead."""
    library.add_patron("P1")
    library.add_item("B1")

    checkout_item = refusal_of(
        lambda: circulation.checkout("P1", "B1\x00", branch_code="NORTH")
    )
    checkin_item = refusal_of(
        lambda: circulation.checkin("B1\x00", branch_code="NORTH")
    )
    branch = refusal_of(
        lambda: circulation.checkout("P1", "B1", branch_code="NO\x00RTH")
    )
    lent = circulation.checkout("P1", "B1", branch_code="NORTH", terminal="k\x001")

    assert checkout_item is Refusal.UNKNOWN_ITEM
    assert checkin_item is Refusal.UNKNOWN_ITEM
    assert branch is Refusal.UNKNOWN_BRANCH
    assert circulation.item("B1\x00") is None
    assert lent.renewal is False
    with library.database.read() as session:
        terminals = session.scalars(
            sa.select(CirculationLog.terminal).where(
                CirculationLog.event == LoanEvent.CHECKOUT
            )
        ).all()
    assert terminals == ["k?1"]


def test_retries_wait_a_growing_random_pause(library: Library) -> None:
    """A unit of work that keeps meeting changed rows waits before each of its four
    retries, each pause at most 0.01, 0.02, 0.04 and 0.08 seconds, and is then
    refused TRY_AGAIN; the pauses are drawn at random up to those bounds."""
    waited: list[float] = []
    circulation = Circulation(
        library.database, clock=SettableClock(NOW), pause=waited.append
    )

    def changing(_session: Session, _known: Known) -> None:
        raise LoanChangedHands

    reason = refusal_of(lambda: circulation._unit(changing, terminal="t", moment=NOW))

    assert reason is Refusal.TRY_AGAIN
    assert len(waited) == 4
    for pause, bound in zip(waited, (0.01, 0.02, 0.04, 0.08), strict=True):
        assert 0.0 <= pause <= bound
    assert retry_pause(3, lambda low, high: high) == 0.08
    assert retry_pause(0, lambda low, high: low) == 0.0


def test_offline_return_dated_before_a_renewal_ends_at_the_renewal(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A book lent on 2 March, renewed late on 6 April (fined 21 days at 10p), and
    then checked in by a kiosk that recorded the return offline on 1 April: the
    loan ends at the renewal's time and no second fine is charged."""
    update_rule(library, "ADULT", None, fine_minor=10, renewals_allowed=5)
    library.add_patron("P1")
    library.add_item("B1")
    lent = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    renewed = datetime(2026, 4, 6, 12, 0, tzinfo=UTC)
    clock.now = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)
    # Due at the end of 16 March; renewed on 6 April, 21 days late.
    circulation.checkout("P1", "B1", branch_code="NORTH", at=lent)
    circulation.renew("P1", "B1", at=renewed)
    fined_at_renewal = fees_of(library, "P1")

    result = circulation.checkin(
        "B1", branch_code="NORTH", returned_at=datetime(2026, 4, 1, tzinfo=UTC)
    )

    assert result.returned_at == renewed
    assert result.fine_minor == 0
    assert fined_at_renewal == [(FeeKind.OVERDUE, 210, 210)]
    assert fees_of(library, "P1") == fined_at_renewal
