"""Overdue fines by the loan rule: days or hours, grace, cap, closed days, DST.

Every expected amount below was worked out by hand from the dates in the test,
in the branch's time zone (Europe/London: GMT in winter, BST from the last
Sunday of March, which is 28 March 2027, to 31 October 2027).
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from ils.calendar import BranchCalendar, OpeningHours
from ils.fees import overdue_fine_minor
from ils.models import FineUnit, LoanRule

LONDON = ZoneInfo("Europe/London")


def _rule(
    *,
    fine: int = 20,
    unit: FineUnit = FineUnit.DAY,
    grace: int = 0,
    cap: int | None = None,
    skip_closed: bool = True,
) -> LoanRule:
    return LoanRule(
        loan_days=14,
        max_loans=10,
        fine_minor=fine,
        fine_unit=unit,
        fine_grace=grace,
        fine_cap_minor=cap,
        fines_skip_closed_days=skip_closed,
    )


def _london(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


OPEN_DAILY = BranchCalendar(zone=LONDON)


def _fine(rule: LoanRule, due: str, back: str, calendar: BranchCalendar) -> int:
    return overdue_fine_minor(
        due_at=_london(due), returned_at=_london(back), rule=rule, calendar=calendar
    )


def test_three_days_late_at_twenty_pence_a_day_is_sixty_pence() -> None:
    """Due Sunday 10 January at the end of the day, back Wednesday: 11, 12, 13 late."""
    assert 60 == _fine(_rule(), "2027-01-10T23:59:59", "2027-01-13T10:00", OPEN_DAILY)


def test_returned_on_time_or_early_is_not_fined() -> None:
    """A return at or before the due time costs nothing."""
    rule = _rule()
    assert 0 == _fine(rule, "2027-01-10T23:59:59", "2027-01-10T23:59:59", OPEN_DAILY)
    assert 0 == _fine(rule, "2027-01-10T23:59:59", "2027-01-09T12:00", OPEN_DAILY)


def test_a_rule_without_a_fine_never_fines() -> None:
    """A fine of 0 per day is no fine, however late."""
    assert 0 == _fine(
        _rule(fine=0), "2027-01-10T23:59:59", "2027-06-01T10:00", OPEN_DAILY
    )


def test_within_the_grace_is_free_and_beyond_it_every_day_is_fined() -> None:
    """Three grace days: 3 days late costs 0; 4 days late costs 4 x 20p = 80p."""
    rule = _rule(grace=3)
    assert 0 == _fine(rule, "2027-01-10T23:59:59", "2027-01-13T10:00", OPEN_DAILY)
    assert 80 == _fine(rule, "2027-01-10T23:59:59", "2027-01-14T10:00", OPEN_DAILY)


def test_the_cap_limits_one_loans_fine() -> None:
    """Ten days at 20p would be 2.00; the cap of 1.50 wins."""
    assert 150 == _fine(
        _rule(cap=150), "2027-01-10T23:59:59", "2027-01-20T10:00", OPEN_DAILY
    )


def test_a_closed_day_is_not_fined_when_the_rule_says_so() -> None:
    """Tuesday 12 January closed: late 11 and 13 only, 40p; without skipping, 60p."""
    calendar = BranchCalendar(zone=LONDON, closed=frozenset({date(2027, 1, 12)}))
    due, back = "2027-01-10T23:59:59", "2027-01-13T10:00"
    assert 40 == _fine(_rule(), due, back, calendar)
    assert 60 == _fine(_rule(skip_closed=False), due, back, calendar)


def test_a_weekday_without_opening_hours_is_not_fined() -> None:
    """Open Monday to Saturday: due Fri 15th, back Mon 18th is Sat and Mon, 40p."""
    hours = {day: OpeningHours(opens=time(9), closes=time(17)) for day in range(6)}
    calendar = BranchCalendar(zone=LONDON, hours=hours)
    assert 40 == _fine(_rule(), "2027-01-15T23:59:59", "2027-01-18T10:00", calendar)


def test_days_are_counted_in_the_branchs_zone_across_the_spring_change() -> None:
    """Due Sat 27 March 23:59:59 GMT, back Mon 29 March 00:30 BST: 28 and 29, 40p.

    In UTC the return is still Sunday 28 March 23:30, which would count one day.
    """
    assert 40 == _fine(_rule(), "2027-03-27T23:59:59", "2027-03-29T00:30", OPEN_DAILY)


def test_hours_are_real_hours_across_the_spring_change() -> None:
    """Due 00:30 GMT on 28 March, back 03:30 BST: the wall shows 3 hours, 2 passed."""
    rule = _rule(fine=50, unit=FineUnit.HOUR)
    assert 100 == _fine(rule, "2027-03-28T00:30", "2027-03-28T03:30", OPEN_DAILY)


def test_hours_are_real_hours_across_the_autumn_change() -> None:
    """Due 00:30 BST on 31 October, back 02:30 GMT: the wall shows 2 hours, 3 passed."""
    rule = _rule(fine=50, unit=FineUnit.HOUR)
    assert 150 == _fine(rule, "2027-10-31T00:30", "2027-10-31T02:30", OPEN_DAILY)


def test_a_started_hour_is_a_whole_hour() -> None:
    """Sixty-one minutes late at 50p an hour is two hours, 1.00."""
    rule = _rule(fine=50, unit=FineUnit.HOUR)
    assert 100 == _fine(rule, "2027-01-15T15:00", "2027-01-15T16:01", OPEN_DAILY)


def test_the_hours_of_a_closed_day_are_not_fined() -> None:
    """Due Fri 15 Jan 17:00, back Mon 18 10:00, Sun 17 closed: 7+24+10 = 41 h.

    At 10p an hour that is 4.10; counting Sunday too it is 65 hours, 6.50.
    """
    calendar = BranchCalendar(zone=LONDON, closed=frozenset({date(2027, 1, 17)}))
    due, back = "2027-01-15T17:00", "2027-01-18T10:00"
    assert 410 == _fine(_rule(fine=10, unit=FineUnit.HOUR), due, back, calendar)
    assert 650 == _fine(
        _rule(fine=10, unit=FineUnit.HOUR, skip_closed=False), due, back, calendar
    )


def test_an_hour_grace_is_counted_in_hours() -> None:
    """One grace hour: 59 minutes late is free, 90 minutes late is 2 hours at 50p."""
    rule = _rule(fine=50, unit=FineUnit.HOUR, grace=1)
    assert 0 == _fine(rule, "2027-01-15T15:00", "2027-01-15T15:59", OPEN_DAILY)
    assert 100 == _fine(rule, "2027-01-15T15:00", "2027-01-15T16:30", OPEN_DAILY)


def test_an_hour_loan_fined_by_the_day_late_the_same_day_is_one_day() -> None:
    """Due 15:00, back 17:00 the same day, fined by the day: one day, 20p."""
    assert 20 == _fine(_rule(), "2027-01-15T15:00", "2027-01-15T17:00", OPEN_DAILY)
