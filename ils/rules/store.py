"""Putting a checked rules file into the database, and reading the rules back for
people: the change list of a load, the table of `ils rules show` and the
reasoning of `ils rules explain`.

Layer: `ils`. Imports SQLAlchemy and the core's modules. Returns text lines; it
never prints or logs (the commands print them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.calendar import WEEKDAYS, BranchCalendar
from ils.db import Database
from ils.models import (
    Branch,
    BranchClosedDay,
    BranchHours,
    FineUnit,
    Institution,
    ItemType,
    LoanRule,
    PatronCategory,
)
from ils.rules.matrix import Pattern, due_at
from ils.rules.rulesfile import RuleEntry, RulesFile, RulesFileError

ANY = "*"

# (branch, category, item type) codes; None is any.
RuleKey = tuple[str | None, str | None, str | None]


def _codes(
    session: Session, model: type[Branch | PatronCategory | ItemType]
) -> dict[str, int]:
    return {code: id_ for id_, code in session.execute(sa.select(model.id, model.code))}


def _label(key: RuleKey) -> str:
    return " / ".join(ANY if code is None else code for code in key)


def describe_rule(rule: LoanRule) -> str:
    """One line for a rule's settings, as a librarian would read them."""
    if rule.loan_hours is not None:
        period = f"{rule.loan_hours} hours"
    else:
        period = f"{rule.loan_days} days"
    parts = [
        "in-house only" if rule.in_house_only else f"loan {period}",
        f"renewals {rule.renewals_allowed}",
        f"max loans {rule.max_loans}",
        f"fine {rule.fine_minor}/{rule.fine_unit.value}",
        f"grace {rule.fine_grace}",
        "no cap" if rule.fine_cap_minor is None else f"cap {rule.fine_cap_minor}",
        "holds " + ("allowed" if rule.holds_allowed else "not allowed"),
    ]
    if rule.hold_pickup_branches:
        parts.append(f"pickup at {rule.hold_pickup_branches}")
    if not rule.fines_skip_closed_days:
        parts.append("closed days fined")
    if rule.rental_fee_minor:
        parts.append(f"rental fee {rule.rental_fee_minor}")
    if rule.hold_fee_minor:
        parts.append(f"hold fee {rule.hold_fee_minor}")
    parts.append("staff override " + ("allowed" if rule.staff_override else "never"))
    return ", ".join(parts)


# The institution's settings as `ils rules show` names them: the key of the
# rules file, the column, and how a value reads.
SETTINGS: tuple[tuple[str, str], ...] = (
    ("fee_limit", "fee_limit_minor"),
    ("overdue_limit", "overdue_limit"),
    ("overpayment_as_credit", "overpayment_as_credit"),
    ("refund_lost_when_found", "refund_lost_when_found"),
    ("lost_processing_fee", "lost_processing_fee_minor"),
    ("pin_max_failures", "pin_max_failures"),
    ("pin_lock_minutes", "pin_lock_minutes"),
    ("loan_history_days", "loan_history_days"),
    ("hold_pickup_days", "hold_pickup_days"),
    ("max_holds", "max_holds"),
)


def _setting_text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _settings(session: Session) -> dict[str, list[str]]:
    """Each institution's settings as `key = value` lines, by institution code."""
    return {
        institution.code: [
            f"{key} = {_setting_text(getattr(institution, column))}"
            for key, column in SETTINGS
        ]
        for institution in session.scalars(
            sa.select(Institution).order_by(Institution.code)
        )
    }


def _rule_key(rule: LoanRule) -> RuleKey:
    return (
        None if rule.branch is None else rule.branch.code,
        None if rule.patron_category is None else rule.patron_category.code,
        None if rule.item_type is None else rule.item_type.code,
    )


def _rules_by_key(session: Session) -> dict[RuleKey, str]:
    return {
        _rule_key(rule): describe_rule(rule)
        for rule in session.scalars(sa.select(LoanRule))
    }


def _calendars(session: Session) -> dict[str, list[str]]:
    """Each branch's calendar as lines: one per open weekday and closed date."""
    lines: dict[str, list[str]] = {}
    codes = {id_: code for code, id_ in _codes(session, Branch).items()}
    for hours in session.scalars(
        sa.select(BranchHours).order_by(BranchHours.branch_id, BranchHours.weekday)
    ):
        lines.setdefault(codes[hours.branch_id], []).append(
            f"{WEEKDAYS[hours.weekday]} {hours.opens:%H:%M}-{hours.closes:%H:%M}"
        )
    for closed in session.scalars(
        sa.select(BranchClosedDay).order_by(
            BranchClosedDay.branch_id, BranchClosedDay.day
        )
    ):
        note = f" ({closed.note})" if closed.note else ""
        lines.setdefault(codes[closed.branch_id], []).append(
            f"closed {closed.day.isoformat()}{note}"
        )
    return lines


def _check_codes(session: Session, rules: RulesFile, source: str) -> None:
    branches = _codes(session, Branch)
    categories = _codes(session, PatronCategory)
    item_types = _codes(session, ItemType)
    problems: list[str] = []

    def check(key: str, code: str | None, known: dict[str, int], kind: str) -> None:
        if code is not None and code not in known:
            problems.append(f"{source}: {key}: no {kind} has the code {code!r}")

    for number, entry in enumerate(rules.rule, start=1):
        check(f"rule[{number}].branch", entry.branch, branches, "branch")
        check(f"rule[{number}].category", entry.category, categories, "patron category")
        check(f"rule[{number}].item_type", entry.item_type, item_types, "item type")
        for index, code in enumerate(entry.pickup_branches or (), start=1):
            check(f"rule[{number}].pickup_branches[{index}]", code, branches, "branch")
    for code in rules.calendar:
        check(f"calendar.{code}", code, branches, "branch")
    if problems:
        raise RulesFileError(problems)


def _new_rule(entry: RuleEntry, session: Session) -> LoanRule:
    branches = _codes(session, Branch)
    categories = _codes(session, PatronCategory)
    item_types = _codes(session, ItemType)
    return LoanRule(
        branch_id=None if entry.branch is None else branches[entry.branch],
        patron_category_id=None
        if entry.category is None
        else categories[entry.category],
        item_type_id=None if entry.item_type is None else item_types[entry.item_type],
        # An hourly loan keeps loan_days at 0 (see LoanRule).
        loan_days=entry.loan_days or 0,
        loan_hours=entry.loan_hours,
        renewals_allowed=entry.renewals,
        max_loans=entry.max_loans,
        in_house_only=entry.in_house_only,
        fine_minor=entry.fine,
        fine_unit=FineUnit(entry.fine_per),
        fine_grace=entry.grace,
        fine_cap_minor=entry.fine_cap,
        fines_skip_closed_days=entry.fines_skip_closed_days,
        holds_allowed=entry.holds_allowed,
        hold_pickup_branches=(
            None if entry.pickup_branches is None else " ".join(entry.pickup_branches)
        ),
        rental_fee_minor=entry.rental_fee,
        hold_fee_minor=entry.hold_fee,
        staff_override=entry.staff_override,
    )


def _changes(
    before: dict[RuleKey, str],
    after: dict[RuleKey, str],
    calendars_before: dict[str, list[str]],
    calendars_after: dict[str, list[str]],
) -> list[str]:
    lines: list[str] = []
    for key in sorted(before.keys() | after.keys(), key=_sort_key):
        old, new = before.get(key), after.get(key)
        if old is None:
            lines.append(f"added   {_label(key)}: {new}")
        elif new is None:
            lines.append(f"removed {_label(key)}: {old}")
        elif old != new:
            lines.append(f"changed {_label(key)}: {old}  ->  {new}")
    for code in sorted(calendars_before.keys() | calendars_after.keys()):
        old_lines = calendars_before.get(code, [])
        new_lines = calendars_after.get(code, [])
        lines.extend(
            f"calendar {code}: removed {line}"
            for line in old_lines
            if line not in new_lines
        )
        lines.extend(
            f"calendar {code}: added {line}"
            for line in new_lines
            if line not in old_lines
        )
    return lines or ["no changes"]


def _sort_key(key: RuleKey) -> tuple[str, str, str]:
    # Wildcards last within each dimension, so specific rules come first: a
    # space sorts before "*".
    branch, category, item_type = (ANY if code is None else f" {code}" for code in key)
    return (branch, category, item_type)


def load_rules(database: Database, rules: RulesFile, source: str) -> list[str]:
    """Replace every loan rule and branch calendar with those of `rules`, in one
    transaction, and say what changed.

    Raises:
        RulesFileError: the file names a branch, category or item type the
            database does not have; nothing is changed.
    """
    with database.transaction() as session:
        _check_codes(session, rules, source)
        before = _rules_by_key(session)
        calendars_before = _calendars(session)
        settings_before = _settings(session)
        for institution in session.scalars(sa.select(Institution)):
            for column, value in rules.settings.given().items():
                setattr(institution, column, value)

        session.execute(sa.delete(LoanRule))
        session.execute(sa.delete(BranchHours))
        session.execute(sa.delete(BranchClosedDay))
        session.add_all(_new_rule(entry, session) for entry in rules.rule)
        branches = _codes(session, Branch)
        for code, calendar in rules.calendar.items():
            for weekday, hours in calendar.opening_hours().items():
                session.add(
                    BranchHours(
                        branch_id=branches[code],
                        weekday=weekday,
                        opens=hours.opens,
                        closes=hours.closes,
                    )
                )
            for closed in calendar.closed:
                session.add(
                    BranchClosedDay(
                        branch_id=branches[code], day=closed.date, note=closed.note
                    )
                )
        session.flush()
        session.expire_all()
        changes = _changes(
            before, _rules_by_key(session), calendars_before, _calendars(session)
        )
        settings_after = _settings(session)
        setting_changes = [
            f"settings {code}: {old}  ->  {new}"
            for code, lines in sorted(settings_after.items())
            for old, new in zip(settings_before.get(code, lines), lines, strict=True)
            if old != new
        ]
        if setting_changes:
            changes = [line for line in changes if line != "no changes"]
            changes.extend(setting_changes)
        return changes


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    ]


def show_rules(database: Database) -> list[str]:
    """The rule matrix as a table, most specific rules first, then the calendars."""
    with database.read() as session:
        rules = sorted(
            session.scalars(sa.select(LoanRule)), key=lambda r: _sort_key(_rule_key(r))
        )
        rows: list[tuple[str, ...]] = [
            (
                "BRANCH",
                "CATEGORY",
                "ITEM TYPE",
                "LOAN",
                "RENEW",
                "MAX",
                "FINE",
                "GRACE",
                "CAP",
                "HOLDS",
                "PICKUP",
            )
        ]
        for rule in rules:
            branch, category, item_type = _rule_key(rule)
            if rule.in_house_only:
                loan = "in-house"
            elif rule.loan_hours is not None:
                loan = f"{rule.loan_hours}h"
            else:
                loan = f"{rule.loan_days}d"
            rows.append(
                (
                    branch or ANY,
                    category or ANY,
                    item_type or ANY,
                    loan,
                    str(rule.renewals_allowed),
                    str(rule.max_loans),
                    f"{rule.fine_minor}/{rule.fine_unit.value}",
                    str(rule.fine_grace),
                    "-" if rule.fine_cap_minor is None else str(rule.fine_cap_minor),
                    "yes" if rule.holds_allowed else "no",
                    rule.hold_pickup_branches or ANY,
                )
            )
        lines = _table(rows) if rules else ["no loan rules: every checkout is refused"]
        if rules:
            lines.append("")
            lines.append("fees and overrides (branch / category / item type):")
            lines.extend(
                f"  {_label(_rule_key(rule))}: rental fee {rule.rental_fee_minor},"
                f" hold fee {rule.hold_fee_minor}, staff override"
                f" {'allowed' if rule.staff_override else 'never'}"
                for rule in rules
            )
        calendars = _calendars(session)
        settings = _settings(session)
    lines.append("")
    lines.append(
        "* is any. Fines, grace and caps are in minor units; grace counts fine units."
    )
    for code, entries in sorted(calendars.items()):
        lines.append(f"calendar {code}:")
        lines.extend(f"  {entry}" for entry in entries)
    if not calendars:
        lines.append("no branch calendars: every branch counts as open every day")
    for code, entries in settings.items():
        lines.append(f"settings of {code}:")
        lines.extend(f"  {entry}" for entry in entries)
    return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class _Subject:
    branch: Branch
    patron_category: PatronCategory
    item_type: ItemType


def _pattern_label(pattern: Pattern, subject: _Subject) -> str:
    return _label(
        (
            subject.branch.code if pattern.branch else None,
            subject.patron_category.code if pattern.category else None,
            subject.item_type.code if pattern.item_type else None,
        )
    )


def explain_rule(
    database: Database,
    patron_barcode: str,
    item_barcode: str,
    branch_code: str | None,
    now: datetime,
) -> list[str]:
    """Which rule applies to this patron borrowing this item at this branch, the
    more specific rules that were absent, and the due time a checkout now gets.

    Without `branch_code`, the item's current branch is used.

    Raises:
        LookupError: the patron, item or branch is unknown.
    """
    with database.read() as session:
        patron = queries.patron_by_barcode(session, patron_barcode)
        if patron is None:
            raise LookupError(f"no patron has the barcode {patron_barcode!r}")
        item = queries.item_by_barcode(session, item_barcode)
        if item is None:
            raise LookupError(f"no item has the barcode {item_barcode!r}")
        branch = (
            item.current_branch
            if branch_code is None
            else queries.branch_by_code(session, branch_code)
        )
        if branch is None:
            raise LookupError(f"no branch has the code {branch_code!r}")
        subject = _Subject(
            branch=branch, patron_category=patron.category, item_type=item.item_type
        )
        choice = queries.loan_rule_choice(
            session,
            branch_id=branch.id,
            category_id=patron.category_id,
            item_type_id=item.item_type_id,
        )
        lines = [
            f"patron {patron.barcode} is in category {subject.patron_category.code};"
            f" item {item.barcode} is of type {subject.item_type.code};"
            f" checkout at branch {branch.code}"
            + (" (the item's current branch)" if branch_code is None else ""),
            "rules tried, most specific first (branch / category / item type):",
        ]
        lines.extend(
            f"  {_pattern_label(pattern, subject)}: no such rule"
            for pattern in choice.absent
        )
        rule = choice.rule
        if rule is None:
            lines.append("no rule applies: a checkout is refused (no loan rule)")
            return lines
        lines.append(f"  {_label(_rule_key(rule))}: applies")
        lines.append(f"rule: {describe_rule(rule)}")
        lines.append(
            f"fees: rental {rule.rental_fee_minor} at checkout, hold"
            f" {rule.hold_fee_minor} when a hold is placed (minor units); staff"
            + (" may" if rule.staff_override else " may not")
            + " override this rule's refusals"
        )
        lines.append(
            "holds: "
            + (
                "not allowed"
                if not rule.holds_allowed
                else "allowed, picked up at "
                + (rule.hold_pickup_branches or "any branch")
            )
        )
        if choice.in_house_only:
            lines.append(
                "the item may not leave the building (the most specific rule naming"
                " its item type says so): a checkout is refused"
            )
            return lines
        zone = queries.branch_zone(branch)
        due = due_at(rule, now, queries.branch_calendar(session, branch, zone))
        local = due.astimezone(zone)
        lines.append(
            f"a checkout now would be due {local:%A %Y-%m-%d %H:%M:%S}"
            f" {branch.timezone} ({due:%Y-%m-%d %H:%M:%S} UTC)"
        )
        uncalendared = due_at(rule, now, BranchCalendar(zone=zone)).astimezone(zone)
        if uncalendared != local:
            lines.append(
                f"  (moved from {uncalendared:%A %Y-%m-%d %H:%M:%S}: the branch's"
                " calendar has it closed then)"
            )
        return lines
