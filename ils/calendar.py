"""A branch's calendar, and the due times it allows.

Layer: `ils`, the bottom. Imports only the standard library: it works on plain
values (`BranchCalendar`), which `ils.queries.branch_calendar` reads from the
tables. It never logs and never touches the database.

How a due time is set (documented for librarians in docs/loan-rules.md):

- A loan in days is due at the end (23:59:59) of the day that many days after
  the checkout day, both counted in the branch's time zone. If that day is
  closed, the loan is due at the end of the next open day.
- A loan in hours is due that many hours after checkout, to the second. If that
  moment is after the branch closes that day, the loan is due at closing time
  (the patron must bring it back before the doors shut), unless closing time is
  not after the checkout, in which case it is due at closing time on the next
  open day. If the moment is before the branch opens that day, the loan is due
  at closing time that day. On a closed day it is due at closing time on the
  next open day.

A day is closed when it is one of the branch's closed dates, or when the branch
has opening hours for some weekdays but not for this one. A branch with no
opening hours at all is open all day, every day, as before calendars existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# A loan in days is due at the last second of its day in the branch's time zone.
END_OF_DAY = time(23, 59, 59)

# How far ahead to look for an open day. Only a calendar closed for a whole year
# exhausts this; the day first found is then kept, so a checkout still works.
_SEARCH_DAYS = 366

WEEKDAYS = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpeningHours:
    """When a branch opens and closes on one weekday, wall-clock in its zone."""

    opens: time
    closes: time

    def __post_init__(self) -> None:
        if not self.opens < self.closes:
            raise ValueError(
                f"opening time {self.opens:%H:%M} is not before "
                f"closing time {self.closes:%H:%M}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchCalendar:
    """A branch's time zone, opening hours per weekday and closed dates.

    Attributes:
        zone: the time zone the branch's dates and hours are reckoned in.
        hours: opening hours by weekday (Monday is 0); empty means open all day,
            every day.
        closed: dates on which the branch is closed.
    """

    zone: ZoneInfo
    hours: Mapping[int, OpeningHours] = field(default_factory=dict)
    closed: frozenset[date] = frozenset()

    def is_open(self, day: date) -> bool:
        """Whether the branch opens at all on `day`."""
        if day in self.closed:
            return False
        return not self.hours or day.weekday() in self.hours

    def hours_on(self, day: date) -> OpeningHours:
        """The opening hours of an open `day`; all day when there are no hours."""
        all_day = OpeningHours(opens=time(0), closes=END_OF_DAY)
        return self.hours.get(day.weekday(), all_day)

    def next_open_day(self, day: date) -> date:
        """`day` itself if the branch opens on it, else the first open day after;
        `day` again if none opens within a year."""
        for offset in range(_SEARCH_DAYS):
            candidate = day + timedelta(days=offset)
            if self.is_open(candidate):
                return candidate
        return day

    def local(self, day: date, wall_clock: time) -> datetime:
        """A wall-clock time on `day` in the branch's zone, as aware UTC."""
        return datetime.combine(day, wall_clock, tzinfo=self.zone).astimezone(UTC)


def due_after_days(start: datetime, days: int, calendar: BranchCalendar) -> datetime:
    """When a loan of `days` days made at `start` is due, in UTC."""
    day = start.astimezone(calendar.zone).date() + timedelta(days=days)
    return calendar.local(calendar.next_open_day(day), END_OF_DAY)


def due_after_hours(start: datetime, hours: int, calendar: BranchCalendar) -> datetime:
    """When a loan of `hours` hours made at `start` is due, in UTC."""
    due = start.astimezone(UTC) + timedelta(hours=hours)
    day = due.astimezone(calendar.zone).date()

    def closing(on: date) -> datetime:
        return calendar.local(on, calendar.hours_on(on).closes)

    if calendar.is_open(day):
        opening = calendar.local(day, calendar.hours_on(day).opens)
        if due < opening:
            return closing(day)
        if due <= closing(day):
            return due
        if closing(day) > start:
            return closing(day)
    return closing(calendar.next_open_day(day + timedelta(days=1)))
