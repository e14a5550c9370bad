"""Due dates against a branch's calendar: closed days, opening hours, time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from ils.calendar import BranchCalendar, OpeningHours, due_after_days, due_after_hours

LONDON = ZoneInfo("Europe/London")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
AUCKLAND = ZoneInfo("Pacific/Auckland")

# Monday to Saturday, nine to eight; no Sunday opening.
WEEKDAY_HOURS = {
    weekday: OpeningHours(opens=time(9), closes=time(20)) for weekday in range(6)
}
CHRISTMAS = frozenset({date(2026, 12, 25), date(2026, 12, 26)})


def london_branch() -> BranchCalendar:
    """A London branch open Monday to Saturday 09:00-20:00, shut 25-26 December."""
    return BranchCalendar(zone=LONDON, hours=WEEKDAY_HOURS, closed=CHRISTMAS)


def test_three_week_loan_landing_on_christmas_moves_to_the_next_open_day() -> None:
    """Borrowed Friday 4 December, due Friday 25th: Christmas, Boxing Day and Sunday
    are closed, so it is due at the end of Monday 28 December."""
    start = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)

    due = due_after_days(start, 21, london_branch())

    assert datetime(2026, 12, 28, 23, 59, 59, tzinfo=UTC) == due


def test_loan_due_on_a_sunday_is_due_on_monday_when_the_branch_shuts_on_sundays() -> (
    None
):
    """A week's loan from Sunday 6 December would be due Sunday the 13th; the branch
    has no Sunday hours, so it is due at the end of Monday the 14th."""
    start = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    due = due_after_days(start, 7, london_branch())

    assert datetime(2026, 12, 14, 23, 59, 59, tzinfo=UTC) == due


def test_loan_due_on_an_open_day_keeps_its_day() -> None:
    """A week's loan from Tuesday 1 December is due at the end of Tuesday the 8th."""
    start = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)

    due = due_after_days(start, 7, london_branch())

    assert datetime(2026, 12, 8, 23, 59, 59, tzinfo=UTC) == due


def test_branch_without_hours_is_open_every_day() -> None:
    """With no calendar at all, a loan due on a Sunday stays due that Sunday."""
    start = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    due = due_after_days(start, 7, BranchCalendar(zone=LONDON))

    assert datetime(2026, 12, 13, 23, 59, 59, tzinfo=UTC) == due


def test_hourly_loan_is_due_to_the_hour_while_the_branch_is_open() -> None:
    """A four-hour loan at 10:15 on a Tuesday is due at 14:15, not at the end of day."""
    start = datetime(2026, 12, 8, 10, 15, tzinfo=UTC)

    due = due_after_hours(start, 4, london_branch())

    assert datetime(2026, 12, 8, 14, 15, tzinfo=UTC) == due


def test_hourly_loan_late_in_the_day_is_due_at_closing_time() -> None:
    """A four-hour loan at 17:30 would run to 21:30; the branch closes at 20:00, so it
    is due at 20:00 that evening."""
    start = datetime(2026, 12, 8, 17, 30, tzinfo=UTC)

    due = due_after_hours(start, 4, london_branch())

    assert datetime(2026, 12, 8, 20, 0, tzinfo=UTC) == due


def test_hourly_loan_made_after_closing_is_due_at_next_days_closing() -> None:
    """A one-hour loan at 21:00 Tuesday (at a lobby kiosk, after closing) is due at
    20:00 on Wednesday, not at a closing time already past."""
    start = datetime(2026, 12, 8, 21, 0, tzinfo=UTC)

    due = due_after_hours(start, 1, london_branch())

    assert datetime(2026, 12, 9, 20, 0, tzinfo=UTC) == due


def test_hourly_loan_running_into_a_closed_sunday_is_due_at_mondays_closing() -> None:
    """A day-long (24-hour) loan from 16:30 Saturday would end on Sunday, when the
    branch is shut, so it is due at 20:00 on Monday 14 December."""
    start = datetime(2026, 12, 12, 16, 30, tzinfo=UTC)

    due = due_after_hours(start, 24, london_branch())

    assert datetime(2026, 12, 14, 20, 0, tzinfo=UTC) == due


def test_hourly_loan_ending_before_opening_is_due_at_that_days_closing() -> None:
    """A twelve-hour loan at 19:00 Tuesday would end at 07:00 Wednesday, before the
    doors open, so it is due at Wednesday's closing time, 20:00."""
    start = datetime(2026, 12, 8, 19, 0, tzinfo=UTC)

    due = due_after_hours(start, 12, london_branch())

    assert datetime(2026, 12, 9, 20, 0, tzinfo=UTC) == due


def test_due_day_is_counted_from_the_local_date_not_the_utc_date() -> None:
    """At 05:00 UTC on 4 December it is still 21:00 on the 3rd in Los Angeles, so a
    three-week loan is due on the 24th (open), not on Christmas Day."""
    start = datetime(2026, 12, 4, 5, 0, tzinfo=UTC)
    calendar = BranchCalendar(zone=LOS_ANGELES, closed=CHRISTMAS)

    due = due_after_days(start, 21, calendar)

    # 23:59:59 PST (UTC-8) on 24 December.
    assert datetime(2026, 12, 25, 7, 59, 59, tzinfo=UTC) == due


def test_local_christmas_is_skipped_even_when_it_is_not_christmas_in_utc() -> None:
    """At 12:00 UTC on 3 December it is already 01:00 on the 4th in Auckland, so a
    three-week loan lands on the 25th there, and with the 26th also closed is due
    at the end of the 27th, New Zealand time."""
    start = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    calendar = BranchCalendar(zone=AUCKLAND, closed=CHRISTMAS)

    due = due_after_days(start, 21, calendar)

    # 23:59:59 NZDT (UTC+13) on 27 December.
    assert datetime(2026, 12, 27, 10, 59, 59, tzinfo=UTC) == due


def test_hourly_loan_uses_closing_time_in_the_branchs_own_zone() -> None:
    """At 02:00 UTC it is 15:00 in Auckland; a four-hour loan would end at 19:00
    there, after the 17:00 closing, so it is due at 17:00 NZDT (04:00 UTC)."""
    every_day = {
        weekday: OpeningHours(opens=time(9), closes=time(17)) for weekday in range(7)
    }
    start = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)

    due = due_after_hours(start, 4, BranchCalendar(zone=AUCKLAND, hours=every_day))

    assert datetime(2026, 12, 8, 4, 0, tzinfo=UTC) == due
