"""Loan rules as a matrix over branch, patron category and item type, loaded from a
rules file, shown and explained."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from ils import queries
from ils.circulation import Circulation
from ils.db import Database
from ils.models import Branch, FineUnit, ItemType, LoanRule, PatronCategory
from ils.results import REFUSAL_MESSAGES, CirculationRefused, Refusal
from ils.rules.commands import rules_group
from ils.rules.rulesfile import RulesFileError, parse_rules
from ils.rules.store import load_rules
from ils.schema import alembic_config, upgrade_database
from tests.ils.factories import Library, SettableClock, build_library

# Thursday 15 January 2026, 05:30 UTC: 05:30 in London, still the 14th in Los
# Angeles.
NOW = datetime(2026, 1, 15, 5, 30, tzinfo=UTC)

# The factory library's four rules, as a file, plus whatever a test adds.
BASE_RULES = """
[[rule]]
category = "ADULT"
item_type = "DVD"
loan_days = 3
max_loans = 2

[[rule]]
category = "ADULT"
loan_days = 14
renewals = 1
max_loans = 3

[[rule]]
item_type = "DVD"
loan_days = 7
max_loans = 1

[[rule]]
loan_days = 28
renewals = 2
max_loans = 10
"""


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library (branches NORTH and WEST) on each engine in turn."""
    built = build_library(database_url)
    yield built
    built.database.dispose()


@pytest.fixture
def circulation(library: Library) -> Circulation:
    """The service on the test library, at NOW."""
    return Circulation(library.database, clock=SettableClock(NOW))


def load(library: Library, extra: str = "") -> list[str]:
    """Load BASE_RULES plus `extra` into the library, returning the change list."""
    return load_rules(
        library.database, parse_rules(BASE_RULES + extra, "rules.toml"), "rules.toml"
    )


def days_lent(circulation: Circulation, patron: str, item: str, branch: str) -> float:
    """How long a checkout lends the item for, in days from NOW."""
    due = circulation.checkout(patron, item, branch_code=branch).due_at
    return (due - NOW).total_seconds() / 86400


def test_branch_rule_beats_category_and_type_rule_for_every_branch(
    library: Library, circulation: Circulation
) -> None:
    """North's own ten-day rule wins over the three-day adult DVD rule at North, while
    an adult borrowing a DVD at West still gets three days."""
    load(library, '[[rule]]\nbranch = "NORTH"\nloan_days = 10\nmax_loans = 5\n')
    library.add_patron("A1")
    library.add_item("D1", item_type="DVD")
    library.add_item("D2", item_type="DVD", branch="WEST")

    north = circulation.checkout("A1", "D1", branch_code="NORTH").due_at
    west = circulation.checkout("A1", "D2", branch_code="WEST").due_at

    # End of 25 January in London (UTC+0); end of 17 January in Los Angeles
    # (UTC-8), whose 14 January is the checkout day.
    assert datetime(2026, 1, 25, 23, 59, 59, tzinfo=UTC) == north
    assert datetime(2026, 1, 18, 7, 59, 59, tzinfo=UTC) == west


def test_branch_and_category_rule_beats_branch_and_type_rule(
    library: Library, circulation: Circulation
) -> None:
    """At North, a rule for North's adults (5 days) beats one for North's DVDs
    (2 days), because the category counts for more than the item type."""
    load(
        library,
        '[[rule]]\nbranch = "NORTH"\ncategory = "ADULT"\nloan_days = 5\nmax_loans = 5\n'
        '[[rule]]\nbranch = "NORTH"\nitem_type = "DVD"\nloan_days = 2\nmax_loans = 5\n',
    )
    library.add_patron("A1")
    library.add_item("D1", item_type="DVD")

    due = circulation.checkout("A1", "D1", branch_code="NORTH").due_at

    assert datetime(2026, 1, 20, 23, 59, 59, tzinfo=UTC) == due


def test_in_house_only_item_type_is_refused_with_its_own_reason(
    library: Library, circulation: Circulation
) -> None:
    """Reference books under an in-house-only rule cannot be checked out, even by an
    adult whose own rule is more specific, and the patron is told the item is for
    use in the library."""
    load(
        library,
        '[[rule]]\nitem_type = "REF"\nin_house_only = true\nloan_days = 1\n'
        "max_loans = 0\n",
    )
    library.add_patron("A1")
    library.add_item("R1", item_type="REF")

    with pytest.raises(CirculationRefused) as raised:
        circulation.checkout("A1", "R1", branch_code="NORTH")

    assert raised.value.reason is Refusal.ITEM_IN_HOUSE_ONLY
    assert raised.value.message == REFUSAL_MESSAGES[Refusal.ITEM_IN_HOUSE_ONLY]
    assert "library only" in raised.value.message


def test_hourly_loan_is_due_hours_later_not_at_end_of_day(
    library: Library, circulation: Circulation
) -> None:
    """A four-hour DVD loan at North at 05:30 is due at 09:30 the same morning."""
    load(
        library,
        '[[rule]]\nbranch = "NORTH"\nitem_type = "DVD"\nloan_hours = 4\n'
        "max_loans = 1\n",
    )
    library.add_patron("A1")
    library.add_item("D1", item_type="DVD")

    due = circulation.checkout("A1", "D1", branch_code="NORTH").due_at

    assert datetime(2026, 1, 15, 9, 30, tzinfo=UTC) == due


def test_checkout_due_date_skips_the_branchs_closed_days(
    library: Library, circulation: Circulation
) -> None:
    """A child's 28-day book at North would be due Thursday 12 February; North is
    closed that day and has no Friday hours, so it is due Saturday the 14th."""
    load(
        library,
        "[calendar.NORTH]\n"
        'hours = { monday = "09:00-17:00", thursday = "09:00-17:00",'
        ' saturday = "10:00-13:00" }\n'
        "closed = [2026-02-12]\n",
    )
    library.add_patron("C1", category="CHILD")
    library.add_item("B1")

    due = circulation.checkout("C1", "B1", branch_code="NORTH").due_at

    assert datetime(2026, 2, 14, 23, 59, 59, tzinfo=UTC) == due


def test_loading_replaces_the_rules_and_stores_every_setting(library: Library) -> None:
    """Loading a file with one catch-all rule leaves exactly that rule, with its fine,
    grace, cap, hold and closed-day settings as written."""
    rules = parse_rules(
        "[[rule]]\nloan_days = 21\nrenewals = 2\nmax_loans = 10\nfine = 25\n"
        'fine_per = "hour"\ngrace = 2\nfine_cap = 500\nfines_skip_closed_days = false\n'
        'holds_allowed = false\npickup_branches = ["NORTH", "WEST"]\n',
        "rules.toml",
    )

    changes = load_rules(library.database, rules, "rules.toml")

    with library.database.read() as session:
        rule = session.scalars(sa.select(LoanRule)).one()
        stored = (
            rule.branch_id,
            rule.loan_days,
            rule.loan_hours,
            rule.fine_minor,
            rule.fine_unit,
            rule.fine_grace,
            rule.fine_cap_minor,
            rule.fines_skip_closed_days,
            rule.holds_allowed,
            rule.hold_pickup_branches,
        )
    assert (None, 21, None, 25, FineUnit.HOUR, 2, 500, False, False, "NORTH WEST") == (
        stored
    )
    assert [line.split(":")[0] for line in changes] == [
        "removed * / ADULT / DVD",
        "removed * / ADULT / *",
        "removed * / * / DVD",
        "changed * / * / *",
    ]


def test_a_file_naming_an_unknown_branch_changes_nothing(library: Library) -> None:
    """A rule for branch SOUTH, which the library lacks, is reported by file and key,
    and the four rules already loaded stay."""
    rules = parse_rules(
        BASE_RULES + '[[rule]]\nbranch = "SOUTH"\nloan_days = 1\nmax_loans = 1\n',
        "rules.toml",
    )

    with pytest.raises(RulesFileError) as raised:
        load_rules(library.database, rules, "rules.toml")

    assert [
        "rules.toml: rule[5].branch: no branch has the code 'SOUTH'"
    ] == raised.value.problems
    with library.database.read() as session:
        assert 4 == session.scalar(sa.select(sa.func.count()).select_from(LoanRule))


def test_file_mistakes_are_each_named_by_key() -> None:
    """A misspelt key, a rule with both periods and bad opening hours are all listed,
    each with the file and the key."""
    text = (
        "[[rule]]\nloan_days = 7\nmax_loan = 3\nmax_loans = 3\n"
        "[[rule]]\nloan_days = 7\nloan_hours = 2\nmax_loans = 1\n"
        '[calendar.NORTH]\nhours = { monday = "17:00-09:00" }\n'
    )

    with pytest.raises(RulesFileError) as raised:
        parse_rules(text, "loan-rules.toml")

    assert [
        "loan-rules.toml: rule[1].max_loan: not a key this table has (misspelt?)",
        "loan-rules.toml: rule[2]: give exactly one of loan_days and loan_hours",
        "loan-rules.toml: calendar.NORTH.hours.monday: '17:00-09:00' is not opening"
        " hours like '09:00-17:30' (opening time 17:00 is not before closing time"
        " 09:00)",
    ] == raised.value.problems


def test_two_rules_for_the_same_cell_are_refused() -> None:
    """Two rules both for adults borrowing DVDs anywhere are a mistake in the file."""
    text = BASE_RULES + '[[rule]]\ncategory = "ADULT"\nitem_type = "DVD"\n'
    text += "loan_days = 1\nmax_loans = 1\n"

    with pytest.raises(RulesFileError) as raised:
        parse_rules(text, "rules.toml")

    assert [
        "rules.toml: rule[5]: the same branch, category and item type as rule[1]"
    ] == raised.value.problems


def test_rules_commands_load_show_and_explain(library: Library, tmp_path: Path) -> None:
    """`ils rules load` prints the change, `show` lists the North rule first, and
    `explain` names the absent rules before the one that applies."""
    url = library.database.engine.url.render_as_string(hide_password=False)
    rules_file = tmp_path / "loan-rules.toml"
    rules_file.write_text(
        BASE_RULES + '[[rule]]\nbranch = "NORTH"\nloan_days = 10\nmax_loans = 5\n',
        encoding="utf-8",
    )
    library.add_patron("C1", category="CHILD")
    library.add_item("B1")
    runner = CliRunner()

    loaded = runner.invoke(rules_group, ["load", str(rules_file), "--db", url])
    shown = runner.invoke(rules_group, ["show", "--db", url])
    explained = runner.invoke(rules_group, ["explain", "C1", "B1", "--db", url])

    assert 0 == loaded.exit_code, loaded.output
    assert "added   NORTH / * / *: loan 10 days" in loaded.output
    assert 0 == shown.exit_code, shown.output
    assert shown.output.splitlines()[1].split() == [
        "NORTH", "*", "*", "10d", "0", "5", "0/day", "0", "-", "yes", "*",
    ]  # fmt: skip
    assert 0 == explained.exit_code, explained.output
    assert explained.output.splitlines()[2:6] == [
        "  NORTH / CHILD / BOOK: no such rule",
        "  NORTH / CHILD / *: no such rule",
        "  NORTH / * / BOOK: no such rule",
        "  NORTH / * / *: applies",
    ]
    assert "a checkout now would be due" in explained.output


def test_upgrade_keeps_existing_rules_as_rules_for_every_branch(
    database_url: str,
) -> None:
    """A database at 0001 with a rule in it upgrades to a rule for any branch, with
    the same period, renewals and limit, daily, unfined and lendable."""
    command.upgrade(alembic_config(database_url), "0001")
    database = Database(database_url)
    with database.transaction() as session:
        session.execute(
            sa.text(
                "INSERT INTO loan_rule (id, patron_category_id, item_type_id,"
                " loan_days, renewals_allowed, max_loans) VALUES (1, NULL, NULL,"
                " 21, 2, 10)"
            )
        )
    database.dispose()

    upgrade_database(database_url)

    database = Database(database_url)
    with database.read() as session:
        rule = session.scalars(sa.select(LoanRule)).one()
        settings = (
            rule.branch_id,
            rule.loan_days,
            rule.loan_hours,
            rule.renewals_allowed,
            rule.max_loans,
            rule.in_house_only,
            rule.fine_minor,
            rule.fine_unit,
            rule.holds_allowed,
            rule.fines_skip_closed_days,
        )
    database.dispose()
    assert (None, 21, None, 2, 10, False, 0, FineUnit.DAY, True, True) == settings


def test_the_rules_read_at_once_are_the_rule_choice_and_the_general_rule(
    library: Library,
) -> None:
    """`loan_rules_for`, one statement, gives for every branch, category and
    item type the same rule choice as `loan_rule_choice` and the same general
    rule as `loan_rule` with no item type."""
    load(
        library,
        '[[rule]]\nbranch = "NORTH"\nloan_days = 10\nmax_loans = 5\n'
        '[[rule]]\nbranch = "WEST"\ncategory = "CHILD"\nloan_days = 5\n'
        "max_loans = 4\n"
        '[[rule]]\nbranch = "NORTH"\nitem_type = "DVD"\nloan_days = 2\n'
        "max_loans = 5\n",
    )
    with library.database.read() as session:
        branches = session.scalars(sa.select(Branch.id)).all()
        categories = session.scalars(sa.select(PatronCategory.id)).all()
        item_types = session.scalars(sa.select(ItemType.id)).all()
        compared = 0
        for branch_id, category_id, item_type_id in itertools.product(
            branches, categories, item_types
        ):
            where = {"branch_id": branch_id, "category_id": category_id}
            choice, general = queries.loan_rules_for(
                session, **where, item_type_id=item_type_id
            )
            expected = queries.loan_rule_choice(
                session, **where, item_type_id=item_type_id
            )
            assert choice == expected
            assert general is queries.loan_rule(session, **where, item_type_id=None)
            compared += 1
    assert compared == 2 * 2 * 3
