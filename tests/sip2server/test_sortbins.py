"""Sort-bin rules: ordered, first match wins, each operator, and clear errors."""

from __future__ import annotations

import pytest

from sip2server.sortbins import SortBinError, parse_condition, parse_sort_bins

RULES = parse_sort_bins(
    [
        {"bin": "HOLDS-AWAY", "when": ["hold = yes", "pickup_branch != MAIN"]},
        {"bin": "HOLDS", "when": "hold = yes"},
        {"bin": "TRANSIT", "when": ["transit = yes"]},
        {"bin": "FICTION", "when": ["call_number ^= 823"]},
        {"bin": "NOT-BOOKS", "when": ["item_type !^= BO"]},
        {"bin": "BIG", "when": ["collection = ''", "call_number >= 900"]},
        {"bin": "REST"},
    ]
)


def facts(**values: str) -> dict[str, str]:
    base = {"hold": "no", "transit": "no", "item_type": "BOOK", "call_number": "500"}
    return base | values


def test_first_matching_rule_wins() -> None:
    """A hold for another branch goes to HOLDS-AWAY although HOLDS matches too."""
    assert "HOLDS-AWAY" == RULES.bin_for(facts(hold="yes", pickup_branch="EAST"))
    assert "HOLDS" == RULES.bin_for(facts(hold="yes", pickup_branch="MAIN"))


def test_text_comparisons_ignore_case_and_spaces() -> None:
    """`hold = yes` matches " YES ", and prefixes compare without case."""
    assert "HOLDS" == RULES.bin_for(facts(hold=" YES ", pickup_branch="main"))
    assert "NOT-BOOKS" == RULES.bin_for(facts(item_type="dvd"))
    assert "REST" == RULES.bin_for(facts(item_type="book"))


def test_prefix_and_numeric_comparisons() -> None:
    """823.912 starts with 823; 941.5 is at least 900; 'QA76' is not a number."""
    assert "FICTION" == RULES.bin_for(facts(call_number="823.912 AUS"))
    assert "BIG" == RULES.bin_for(facts(call_number="941.5"))
    assert "REST" == RULES.bin_for(facts(call_number="QA76"))


def test_missing_fact_is_empty_text() -> None:
    """An item without a collection matches `collection = ''`; one with, not."""
    assert "BIG" == RULES.bin_for(facts(call_number="900"))
    assert "REST" == RULES.bin_for(facts(call_number="900", collection="LOCAL"))


def test_no_rule_matching_gives_no_bin() -> None:
    """Without a catch-all, an item no rule matches gets no bin."""
    rules = parse_sort_bins([{"bin": "1", "when": ["transit = yes"]}])
    assert rules.bin_for(facts()) is None


@pytest.mark.parametrize(
    ("tables", "key", "words"),
    [
        ([{"bin": "1", "when": ["shelf = 3"]}], "sort_bin[0].when[0]", "unknown field"),
        ([{"bin": "1", "when": ["hold yes"]}], "sort_bin[0].when[0]", "FIELD OPERATOR"),
        (
            [{"bin": "1", "when": ["call_number < abc"]}],
            "sort_bin[0].when[0]",
            "number",
        ),
        ([{"bin": ""}], "sort_bin[0].bin", "non-empty"),
        ([{"bin": "a|b"}], "sort_bin[0].bin", "'|'"),
        ([{"bin": "1", "if": "x"}], "sort_bin[0].if", "unknown key"),
        ([{"bin": "1"}, {"bin": "2", "when": 3}], "sort_bin[1].when", "list"),
    ],
)
def test_bad_rules_name_the_key_and_problem(
    tables: list[dict[str, object]], key: str, words: str
) -> None:
    """Each mistake is reported with the table and key it is in."""
    with pytest.raises(SortBinError) as raised:
        parse_sort_bins(tables)
    assert key == raised.value.key
    assert words in raised.value.problem


def test_not_starts_with_is_read_as_one_operator() -> None:
    """`!^=` is its own operator, not `!` followed by `^=`."""
    condition = parse_condition("location !^= STACK", "k")
    assert "location !^= STACK" == str(condition)
    assert condition.holds_for({"location": "REF"})
    assert not condition.holds_for({"location": "stacks-2"})
