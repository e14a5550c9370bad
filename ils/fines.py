"""Overdue fines: how much a late return costs, by the loan rule.

Layer: `ils`, the bottom. Imports the standard library, `ils.calendar`,
`ils.currency` and `ils.models` (for `LoanRule`) only; never the database,
SIP2, Twisted or Kivy. It never logs. `ils.fees` re-exports
`overdue_fine_minor`, which is where callers find it; how fines are reckoned is
in docs/fees.md.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

from ils.calendar import BranchCalendar
from ils.currency import MAX_MINOR
from ils.models import FineUnit, LoanRule


def overdue_fine_minor(
    *,
    due_at: datetime,
    returned_at: datetime,
    rule: LoanRule,
    calendar: BranchCalendar,
) -> int:
    """The fine for a loan returned at returned_at, by the rule (grace, unit, cap,
    closed days).

    Days are counted in the branch's time zone: each day after the due day up
    to and including the day of return is a day late (a loan due and returned
    late on the same day, as an hour loan can be, is one day late). Hours are
    started hours of real time after the due time, so a night when the clocks
    change counts the hours that passed, not those on the wall. When the rule
    skips closed days, closed days (and every hour within them) are not
    counted. A loan late by no more than the grace (in the rule's unit) is not
    fined; one later than that is fined for every unit late, the grace
    included. The fine never exceeds the rule's cap.
    """
    if due_at.tzinfo is None or returned_at.tzinfo is None:
        raise ValueError("due_at and returned_at must be timezone-aware")
    # In UTC: Python subtracts two times of one zone by their wall clocks.
    due_at, returned_at = due_at.astimezone(UTC), returned_at.astimezone(UTC)
    if rule.fine_minor <= 0 or returned_at <= due_at:
        return 0
    skip = rule.fines_skip_closed_days
    if rule.fine_unit is FineUnit.HOUR:
        late = _late_hours(due_at, returned_at, calendar, skip_closed=skip)
    else:
        late = _late_days(due_at, returned_at, calendar, skip_closed=skip)
    if late <= (rule.fine_grace or 0):
        return 0
    fine = late * rule.fine_minor
    if rule.fine_cap_minor is not None:
        fine = min(fine, rule.fine_cap_minor)
    return min(fine, MAX_MINOR)


def _late_days(
    due_at: datetime,
    returned_at: datetime,
    calendar: BranchCalendar,
    *,
    skip_closed: bool,
) -> int:
    due_day = due_at.astimezone(calendar.zone).date()
    back_day = returned_at.astimezone(calendar.zone).date()
    if back_day <= due_day:
        days: list[date] = [due_day]
    else:
        days = [
            due_day + timedelta(days=offset)
            for offset in range(1, (back_day - due_day).days + 1)
        ]
    if skip_closed:
        days = [day for day in days if calendar.is_open(day)]
    return len(days)


def _late_hours(
    due_at: datetime,
    returned_at: datetime,
    calendar: BranchCalendar,
    *,
    skip_closed: bool,
) -> int:
    if not skip_closed:
        late = returned_at - due_at
    else:
        # Walk the local days the lateness spans, keeping the real time of the
        # open ones (a local day is 23 or 25 hours long when the clocks change).
        late = timedelta(0)
        day = due_at.astimezone(calendar.zone).date()
        last = returned_at.astimezone(calendar.zone).date()
        while day <= last:
            start = calendar.local(day, time(0))
            end = calendar.local(day + timedelta(days=1), time(0))
            if calendar.is_open(day):
                overlap = min(returned_at, end) - max(due_at, start)
                late += max(overlap, timedelta(0))
            day += timedelta(days=1)
    return math.ceil(late / timedelta(hours=1))
