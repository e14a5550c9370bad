"""The loan-rule matrix: which rule applies, in what order rules are tried, and
the due time a rule gives.

Layer: `ils`, the bottom. Imports `ils.models`, `ils.calendar` and the standard
library only.

A rule names a branch, a patron category and an item type, each of which may be
left empty to mean "any". For a checkout, the rule that matches and names the
most dimensions wins; between rules naming the same number, the branch counts
for more than the category, and the category for more than the item type. So
the order tried, most specific first, is (B = branch, C = category, T = type,
* = any):

    B C T, B C *, B * T, B * *, * C T, * C *, * * T, * * *

A branch rule always beats a rule for every branch, even one that names both
category and item type: a branch that writes its own rule has decided for its
own building.

One setting is the item type's, not the patron's: whether the item may leave
the building. It is taken from the most specific matching rule that names the
item type, so that "reference books stay in" is not undone by a rule for all
of a category's loans. With no such rule, the chosen rule decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ils.calendar import BranchCalendar, due_after_days, due_after_hours
from ils.models import LoanRule


@dataclass(frozen=True, slots=True, kw_only=True)
class Pattern:
    """Which dimensions a rule names: True for a named one, False for any."""

    branch: bool
    category: bool
    item_type: bool

    @property
    def weight(self) -> int:
        """How specific the pattern is; a higher weight wins."""
        return 4 * self.branch + 2 * self.category + self.item_type


# Every pattern, most specific first: the order `applicable_rule` tries them in.
SEARCH_ORDER: tuple[Pattern, ...] = tuple(
    sorted(
        (
            Pattern(branch=b, category=c, item_type=t)
            for b in (True, False)
            for c in (True, False)
            for t in (True, False)
        ),
        key=lambda pattern: -pattern.weight,
    )
)


def pattern_of(rule: LoanRule) -> Pattern:
    """The dimensions `rule` names."""
    return Pattern(
        branch=rule.branch_id is not None,
        category=rule.patron_category_id is not None,
        item_type=rule.item_type_id is not None,
    )


def matches(
    rule: LoanRule, *, branch_id: int, category_id: int, item_type_id: int
) -> bool:
    """Whether `rule` covers a checkout at this branch, for this category and type."""
    return (
        rule.branch_id in (None, branch_id)
        and rule.patron_category_id in (None, category_id)
        and rule.item_type_id in (None, item_type_id)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleChoice:
    """The rule that applies to a checkout, and the more specific ones that were absent.

    Attributes:
        rule: the rule that applies, or None when none matches.
        absent: the patterns tried before it (or all of them) that no rule filled.
        in_house_only: whether the item must stay in the building.
    """

    rule: LoanRule | None
    absent: tuple[Pattern, ...]
    in_house_only: bool


def choose_rule(
    rules: Iterable[LoanRule], *, branch_id: int, category_id: int, item_type_id: int
) -> RuleChoice:
    """The most specific of `rules` that covers the checkout, and why it was chosen."""
    by_pattern = {
        pattern_of(rule): rule
        for rule in rules
        if matches(
            rule,
            branch_id=branch_id,
            category_id=category_id,
            item_type_id=item_type_id,
        )
    }
    naming_type = [
        by_pattern[pattern]
        for pattern in SEARCH_ORDER
        if pattern.item_type and pattern in by_pattern
    ]
    absent: list[Pattern] = []
    for pattern in SEARCH_ORDER:
        rule = by_pattern.get(pattern)
        if rule is not None:
            decides = naming_type[0] if naming_type else rule
            return RuleChoice(
                rule=rule, absent=tuple(absent), in_house_only=decides.in_house_only
            )
        absent.append(pattern)
    return RuleChoice(rule=None, absent=tuple(absent), in_house_only=False)


def due_at(rule: LoanRule, start: datetime, calendar: BranchCalendar) -> datetime:
    """When a loan made under `rule` at `start` is due, in UTC (see `ils.calendar`)."""
    if rule.loan_hours is not None:
        return due_after_hours(start, rule.loan_hours, calendar)
    return due_after_days(start, rule.loan_days, calendar)
