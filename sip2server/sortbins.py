"""Sort bins for automated materials handling: which bin a returned item goes to.

Layer: `sip2server`. Imports only the standard library. The rules see an item
as a flat mapping of named facts (`SORT_FIELDS`); the mapping layer builds those
facts from the core's checkin result, so this module knows neither the core nor
the wire format. The chosen bin is sent in CL of the checkin response (SIP2
2.00, "sort bin", an extension field 3M sorters read).

A rule set is an ordered list; the first rule whose conditions all hold wins, and
a rule with no conditions matches every item (a catch-all, usually last). In the
configuration each rule is a table:

    [[sort_bin]]
    bin = "3"
    when = ["hold = yes", "pickup_branch != MAIN"]

A condition is `FIELD OPERATOR VALUE`, with one of these operators:

    =   equal              !=  not equal
    ^=  starts with        !^= does not start with
    <  <=  >  >=           numeric comparison

A numeric comparison needs a number in the rule and reads the number at the
start of the item's fact: `call_number >= 800` matches "833.912 KAF" (833.912)
and never "F KAF", which starts with no number.

The yes/no facts (`YES_NO_FIELDS`) take `yes` or `no` (`true` and `false` mean
the same) with `=` or `!=`; anything else is refused when the rules are read.

Text comparisons ignore case and the spaces around values. A field the item has
no value for is the empty string: `collection = ""` matches items without one.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# What a rule may test, with what each means; the mapping layer fills every one.
SORT_FIELDS: dict[str, str] = {
    "branch": "the branch where the item was returned",
    "home_branch": "the item's home branch",
    "item_type": "the item type code",
    "media_type": "the 3-digit media type",
    "collection": "the item's collection code",
    "location": "the shelving location",
    "call_number": "the call number",
    "hold": "yes when the item was trapped for a hold, else no",
    "pickup_branch": "the trapped hold's pickup branch, else empty",
    "transit": "yes when the item must travel to another branch, else no",
    "transit_to": "the branch it must travel to, else empty",
    "alert": "the checkin's alert kind (none, hold_here, transit_home, ...)",
    "was_on_loan": "yes when the item was on loan, else no",
}


# Facts that are always "yes" or "no".
YES_NO_FIELDS = frozenset({"hold", "transit", "was_on_loan"})

_YES_NO = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}

# The number a fact starts with: "833.912 KAF" -> 833.912.
_LEADING_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


class Comparison(enum.Enum):
    """The operators a condition may use, by their spelling in the rules."""

    EQUAL = "="
    NOT_EQUAL = "!="
    STARTS_WITH = "^="
    NOT_STARTS_WITH = "!^="
    LESS = "<"
    LESS_OR_EQUAL = "<="
    GREATER = ">"
    GREATER_OR_EQUAL = ">="


_NUMERIC: dict[Comparison, Callable[[Decimal, Decimal], bool]] = {
    Comparison.LESS: operator.lt,
    Comparison.LESS_OR_EQUAL: operator.le,
    Comparison.GREATER: operator.gt,
    Comparison.GREATER_OR_EQUAL: operator.ge,
}

# Longest operators first, so that "!^=" is not read as "!" then "^=".
_CONDITION = re.compile(
    r"^\s*(?P<field>[a-z_]+)\s*(?P<op>!\^=|\^=|!=|<=|>=|=|<|>)\s*(?P<value>.*?)\s*$"
)


class SortBinError(ValueError):
    """A sort-bin rule that cannot be used; `key` says which, as in the config file."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One test of one item fact."""

    field: str
    comparison: Comparison
    value: str

    def holds_for(self, facts: Mapping[str, str]) -> bool:
        """Whether the item's facts satisfy this condition."""
        actual = facts.get(self.field, "").strip()
        if self.comparison in _NUMERIC:
            left, right = _leading_number(actual), _number(self.value)
            if left is None or right is None:
                return False
            return _NUMERIC[self.comparison](left, right)

        actual, wanted = actual.casefold(), self.value.casefold()
        if self.comparison is Comparison.EQUAL:
            return actual == wanted
        if self.comparison is Comparison.NOT_EQUAL:
            return actual != wanted
        if self.comparison is Comparison.STARTS_WITH:
            return actual.startswith(wanted)
        return not actual.startswith(wanted)

    def __str__(self) -> str:
        return f"{self.field} {self.comparison.value} {self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SortBinRule:
    """A bin and the conditions an item must meet, all of them, to go there."""

    bin: str
    conditions: tuple[Condition, ...]

    def matches(self, facts: Mapping[str, str]) -> bool:
        """Whether every condition holds (a rule without conditions always does)."""
        return all(condition.holds_for(facts) for condition in self.conditions)


@dataclass(frozen=True, slots=True)
class SortBinRules:
    """An ordered rule set: the first matching rule gives the bin."""

    rules: tuple[SortBinRule, ...] = ()

    def bin_for(self, facts: Mapping[str, str]) -> str | None:
        """The bin of the first rule that matches, or None when none does."""
        rule = self.rule_for(facts)
        return None if rule is None else rule.bin

    def rule_for(self, facts: Mapping[str, str]) -> SortBinRule | None:
        """The first rule that matches, for explaining a choice."""
        for rule in self.rules:
            if rule.matches(facts):
                return rule
        return None


def _number(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _leading_number(text: str) -> Decimal | None:
    found = _LEADING_NUMBER.match(text.strip())
    return None if found is None else _number(found.group())


def parse_condition(text: str, key: str) -> Condition:
    """Read one condition such as `call_number ^= 823`.

    Raises:
        SortBinError: the condition is not `FIELD OPERATOR VALUE`, the field is
            not one of `SORT_FIELDS`, or a numeric comparison has no number.
    """
    found = _CONDITION.match(text)
    if found is None:
        raise SortBinError(
            key, f"{text!r} is not FIELD OPERATOR VALUE (e.g. 'item_type = DVD')"
        )
    field, value = found["field"], found["value"]
    if field not in SORT_FIELDS:
        known = ", ".join(SORT_FIELDS)
        raise SortBinError(key, f"unknown field {field!r}; use one of: {known}")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    comparison = Comparison(found["op"])
    if comparison in _NUMERIC and _number(value) is None:
        raise SortBinError(key, f"{comparison.value} needs a number, not {value!r}")
    if field in YES_NO_FIELDS:
        if comparison not in (Comparison.EQUAL, Comparison.NOT_EQUAL):
            raise SortBinError(
                key,
                f"{field} is yes or no: compare it with = or !=, not "
                f"{comparison.value}",
            )
        if value.casefold() not in _YES_NO:
            raise SortBinError(
                key, f"{field} is yes or no (or true or false), not {value!r}"
            )
        value = _YES_NO[value.casefold()]
    return Condition(field=field, comparison=comparison, value=value)


def parse_sort_bins(
    tables: Sequence[Mapping[str, object]], prefix: str = "sort_bin"
) -> SortBinRules:
    """Read the `[[sort_bin]]` tables of a configuration, in order.

    Raises:
        SortBinError: naming the first bad table and key, e.g. `sort_bin[2].when[0]`.
    """
    rules: list[SortBinRule] = []
    for index, table in enumerate(tables):
        key = f"{prefix}[{index}]"
        unknown = sorted(set(table) - {"bin", "when"})
        if unknown:
            raise SortBinError(f"{key}.{unknown[0]}", "unknown key; use bin and when")

        bin_ = table.get("bin")
        if not isinstance(bin_, str) or not bin_.strip():
            raise SortBinError(f"{key}.bin", "give the bin as non-empty text")
        if "|" in bin_ or len(bin_) > 20:
            raise SortBinError(f"{key}.bin", "a bin is at most 20 characters, no '|'")

        when = table.get("when", [])
        if isinstance(when, str):
            when = [when]
        if not isinstance(when, list) or not all(isinstance(c, str) for c in when):
            raise SortBinError(f"{key}.when", "give conditions as a list of text")
        conditions = tuple(
            parse_condition(text, f"{key}.when[{number}]")
            for number, text in enumerate(when)
        )
        rules.append(SortBinRule(bin=bin_.strip(), conditions=conditions))
    return SortBinRules(tuple(rules))
