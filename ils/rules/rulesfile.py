"""Reading a loan-rules file (TOML) into checked values.

Layer: `ils`. Imports pydantic, `ils.calendar` and the standard library; not the
database. Codes are checked against the database later, by `ils.rules.store`.
The format is described, key by key, in config/loan-rules.toml and
docs/loan-rules.md.
"""

from __future__ import annotations

import tomllib
from datetime import date, time
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from ils.calendar import WEEKDAYS, OpeningHours


class RulesFileError(ValueError):
    """A rules file that cannot be used; `problems` holds one line per problem,
    each naming the file, the key and what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RuleEntry(_Strict):
    """One `[[rule]]` table of the file."""

    branch: str | None = None
    category: str | None = None
    item_type: str | None = None
    loan_days: int | None = Field(default=None, ge=1)
    loan_hours: int | None = Field(default=None, ge=1)
    renewals: int = Field(default=0, ge=0)
    max_loans: int = Field(ge=0)
    in_house_only: bool = False
    fine: int = Field(default=0, ge=0)
    fine_per: Literal["day", "hour"] = "day"
    grace: int = Field(default=0, ge=0)
    fine_cap: int | None = Field(default=None, ge=0)
    fines_skip_closed_days: bool = True
    holds_allowed: bool = True
    pickup_branches: list[str] | None = None
    rental_fee: int = Field(default=0, ge=0)
    hold_fee: int = Field(default=0, ge=0)
    staff_override: bool = True

    @model_validator(mode="after")
    def _one_period(self) -> RuleEntry:
        if (self.loan_days is None) == (self.loan_hours is None):
            raise ValueError("give exactly one of loan_days and loan_hours")
        return self

    @property
    def key(self) -> tuple[str | None, str | None, str | None]:
        """(branch, category, item type), None for any."""
        return (self.branch, self.category, self.item_type)


class ClosedDay(_Strict):
    """A date the branch is closed, with an optional note (`Christmas Day`)."""

    date: date
    note: str = ""

    @model_validator(mode="before")
    @classmethod
    def _bare_date(cls, value: Any) -> Any:
        if isinstance(value, date):
            return {"date": value}
        if not isinstance(value, dict):
            raise ValueError(
                "give a date like 2026-12-25 or"
                ' { date = 2026-12-25, note = "Christmas Day" }'
            )
        return value


class WeekHours(_Strict):
    """Opening hours per weekday, like '09:00-17:30'; a weekday left out is closed."""

    monday: str | None = None
    tuesday: str | None = None
    wednesday: str | None = None
    thursday: str | None = None
    friday: str | None = None
    saturday: str | None = None
    sunday: str | None = None

    @field_validator(*WEEKDAYS)
    @classmethod
    def _span(cls, span: str | None) -> str | None:
        if span is not None:
            _parse_span(span)
        return span


class CalendarEntry(_Strict):
    """One `[calendar.CODE]` table: a branch's opening hours and closed days."""

    hours: WeekHours | None = None
    closed: list[ClosedDay] = []

    def opening_hours(self) -> dict[int, OpeningHours]:
        """The hours by weekday number, Monday 0; empty when none are given."""
        if self.hours is None:
            return {}
        spans = self.hours.model_dump()
        return {
            number: _parse_span(spans[day])
            for number, day in enumerate(WEEKDAYS)
            if spans[day] is not None
        }


def _parse_span(span: str) -> OpeningHours:
    opens, separator, closes = span.partition("-")
    try:
        if not separator:
            raise ValueError
        return OpeningHours(
            opens=time.fromisoformat(opens.strip()),
            closes=time.fromisoformat(closes.strip()),
        )
    except ValueError as error:
        detail = f" ({error})" if str(error) else ""
        raise ValueError(
            f"{span!r} is not opening hours like '09:00-17:30'{detail}"
        ) from None


class SettingsEntry(_Strict):
    """The `[settings]` table: the institution's circulation, fee and privacy
    settings. A key left out keeps the value the database has; a limit given as
    "none" is switched off."""

    fee_limit: int | None = None
    overdue_limit: int | None = None
    overpayment_as_credit: bool | None = None
    refund_lost_when_found: bool | None = None
    lost_processing_fee: int | None = Field(default=None, ge=0)
    pin_max_failures: int | None = Field(default=None, ge=1)
    pin_lock_minutes: int | None = Field(default=None, ge=1)
    loan_history_days: int | None = None
    hold_pickup_days: int | None = Field(default=None, ge=1)
    max_holds: int | None = None

    @field_validator(
        "fee_limit", "overdue_limit", "loan_history_days", "max_holds", mode="before"
    )
    @classmethod
    def _limit(cls, value: Any) -> int | None:
        if value == "none":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ValueError('give a number 0 or more, or "none" for no limit')

    def given(self) -> dict[str, int | bool | None]:
        """The settings the file gives, by institution column."""
        columns = {
            "fee_limit": "fee_limit_minor",
            "lost_processing_fee": "lost_processing_fee_minor",
        }
        return {
            columns.get(key, key): getattr(self, key)
            for key in sorted(self.model_fields_set)
        }


class RulesFile(_Strict):
    """A whole rules file: the institution's settings, the rules and the branch
    calendars."""

    settings: SettingsEntry = SettingsEntry()
    rule: list[RuleEntry] = []
    calendar: dict[str, CalendarEntry] = {}


def _key_path(location: tuple[int | str, ...]) -> str:
    # ("rule", 2, "fine") reads as rule[3].fine: rules are counted from 1, as a
    # librarian counts the [[rule]] tables in the file.
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part + 1}]"
        elif part.startswith(("function-", "union[")):
            continue
        else:
            path += f".{part}" if path else part
    return path or "(top level)"


def _problem(problem: ErrorDetails) -> str:
    if problem["type"] == "extra_forbidden":
        return "not a key this table has (misspelt?)"
    if problem["type"] == "missing":
        return "required, but missing"
    return problem["msg"].removeprefix("Value error, ")


def parse_rules(text: str, source: str) -> RulesFile:
    """Check the text of a rules file read from `source` (a path, for messages).

    Raises:
        RulesFileError: the text is not TOML or breaks the format.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RulesFileError([f"{source}: not valid TOML: {error}"]) from None
    try:
        rules = RulesFile.model_validate(data)
    except ValidationError as error:
        raise RulesFileError(
            [
                f"{source}: {_key_path(problem['loc'])}: {_problem(problem)}"
                for problem in error.errors()
            ]
        ) from None

    seen: dict[tuple[str | None, str | None, str | None], int] = {}
    problems: list[str] = []
    for number, entry in enumerate(rules.rule, start=1):
        earlier = seen.setdefault(entry.key, number)
        if earlier != number:
            problems.append(
                f"{source}: rule[{number}]: the same branch, category and item type"
                f" as rule[{earlier}]"
            )
    if problems:
        raise RulesFileError(problems)
    return rules


def read_rules(path: Path) -> RulesFile:
    """Read and check the rules file at `path`.

    Raises:
        RulesFileError: it cannot be read, or breaks the format.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RulesFileError([f"{path}: cannot read the file: {error}"]) from None
    return parse_rules(text, str(path))
