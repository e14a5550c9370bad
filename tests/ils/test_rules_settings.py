"""The rules file's [settings] table and the fee and override keys of a rule:
loaded into the database, shown and explained, and mistakes named by key."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ils.models import Institution, LoanRule
from ils.rules.commands import rules_group
from ils.rules.rulesfile import RulesFileError, parse_rules
from tests.ils.circulation_support import library, library_templates
from tests.ils.factories import Library

__all__ = ["library", "library_templates"]

RULES = """
[settings]
hold_pickup_days = 5
max_holds = 10
fee_limit = 500
overdue_limit = "none"
overpayment_as_credit = true

[[rule]]
loan_days = 28
max_loans = 10

[[rule]]
item_type = "DVD"
loan_days = 7
max_loans = 2
rental_fee = 150
hold_fee = 50
staff_override = false
"""


def test_settings_and_rule_fees_are_loaded_shown_and_explained(
    library: Library, tmp_path: Path
) -> None:
    """`ils rules load` sets the institution's settings and the DVD rule's fees,
    says what changed, and `show` and `explain` print them."""
    url = library.database.engine.url.render_as_string(hide_password=False)
    rules_file = tmp_path / "loan-rules.toml"
    rules_file.write_text(RULES, encoding="utf-8")
    library.add_patron("P1")
    library.add_item("D1", item_type="DVD")
    runner = CliRunner()

    loaded = runner.invoke(rules_group, ["load", str(rules_file), "--db", url])
    shown = runner.invoke(rules_group, ["show", "--db", url])
    explained = runner.invoke(rules_group, ["explain", "P1", "D1", "--db", url])

    assert 0 == loaded.exit_code, loaded.output
    assert "settings CITY: hold_pickup_days = 7  ->  hold_pickup_days = 5" in (
        loaded.output
    )
    assert "settings CITY: fee_limit = none  ->  fee_limit = 500" in loaded.output
    with library.database.read() as session:
        institution = session.scalars(sa.select(Institution)).one()
        settings = (
            institution.hold_pickup_days,
            institution.max_holds,
            institution.fee_limit_minor,
            institution.overdue_limit,
            institution.overpayment_as_credit,
            # Left out of the file: unchanged from the default.
            institution.pin_max_failures,
        )
        dvd = session.scalars(
            sa.select(LoanRule).where(LoanRule.item_type_id.is_not(None))
        ).one()
        fees = (dvd.rental_fee_minor, dvd.hold_fee_minor, dvd.staff_override)
    assert (5, 10, 500, None, True, 5) == settings
    assert (150, 50, False) == fees
    assert 0 == shown.exit_code, shown.output
    assert "  * / * / DVD: rental fee 150, hold fee 50, staff override never" in (
        shown.output.splitlines()
    )
    assert "  hold_pickup_days = 5" in shown.output.splitlines()
    assert "  overdue_limit = none" in shown.output.splitlines()
    assert 0 == explained.exit_code, explained.output
    assert (
        "fees: rental 150 at checkout, hold 50 when a hold is placed (minor units);"
        " staff may not override this rule's refusals"
    ) in explained.output.splitlines()


def test_settings_mistakes_are_each_named_by_key() -> None:
    """A negative limit, a word for a number and a misspelt key are each reported
    with the file and key."""
    with pytest.raises(RulesFileError) as raised:
        parse_rules(
            '[settings]\nfee_limit = -1\nmax_holds = "lots"\nhold_days = 3\n'
            "[[rule]]\nloan_days = 7\nmax_loans = 1\nrental_fee = -5\n",
            "rules.toml",
        )

    assert raised.value.problems == [
        'rules.toml: settings.fee_limit: give a number 0 or more, or "none" for'
        " no limit",
        'rules.toml: settings.max_holds: give a number 0 or more, or "none" for'
        " no limit",
        "rules.toml: settings.hold_days: not a key this table has (misspelt?)",
        "rules.toml: rule[1].rental_fee: Input should be greater than or equal to 0",
    ]
