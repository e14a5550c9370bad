"""`ils library show|set|branch`: a migrated library names its institution, sets
its currency and gives its branches names and time zones, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from click.testing import CliRunner

from ils.cli import main
from ils.fees import charge_fee
from ils.models import FeeKind, Patron
from ils.schema import upgrade_database
from tests.ils.circulation_support import library, library_templates
from tests.ils.factories import Library

__all__ = ["library", "library_templates"]


def test_a_migrated_library_sets_its_institution_and_branches(
    database_url: str,
) -> None:
    """An empty library gets institution CITY in GBP and a London branch MAIN; a
    bad zone and an unknown currency are refused by name and change nothing."""
    upgrade_database(database_url)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        outcome = runner.invoke(main, ["library", *args, "--db", database_url])
        return outcome.exit_code, outcome.output

    before = run("show")
    no_institution = run("branch", "MAIN")
    created = run("set", "--code", "CITY", "--name", "City Libraries")
    currency = run("set", "--currency", "gbp")
    branch = run("branch", "MAIN", "--timezone", "Europe/London")
    renamed = run("branch", "MAIN", "--name", "Main Library")
    bad_zone = run("branch", "MAIN", "--timezone", "Europe/Atlantis")
    bad_currency = run("set", "--currency", "XYZ")
    after = run("show")

    assert before == (0, "no institution yet: set one with `ils library set --code`\n")
    assert no_institution[0] == 1
    assert "has no institution yet" in no_institution[1]
    assert created == (0, "institution CITY: City Libraries, currency USD\n")
    assert currency == (0, "institution CITY: City Libraries, currency GBP\n")
    assert branch == (0, "created branch MAIN: MAIN, time zone Europe/London\n")
    assert renamed == (
        0,
        "updated branch MAIN: Main Library, time zone Europe/London\n",
    )
    assert bad_zone[0] == 1
    assert "time zone 'Europe/Atlantis' is not a known IANA zone" in bad_zone[1]
    assert bad_currency[0] == 1
    assert "currency 'XYZ' is not an ISO 4217 code known here" in bad_currency[1]
    assert after == (
        0,
        "institution CITY: City Libraries, currency GBP\n"
        "  branch MAIN: Main Library, time zone Europe/London\n",
    )


def test_currency_is_not_changed_under_recorded_fees(library: Library) -> None:
    """With a fee recorded in GBP, switching the institution to EUR is refused,
    since nothing would convert the amount; renaming still works."""
    url = library.database.engine.url.render_as_string(hide_password=False)
    library.add_patron("P1")
    with library.database.transaction() as session:
        patron = session.query(Patron).filter_by(barcode="P1").one()
        charge_fee(
            session,
            patron=patron,
            kind=FeeKind.MANUAL,
            amount_minor=250,
            description="Damaged cover",
            by="staff:test",
            moment=datetime(2026, 1, 15, tzinfo=UTC),
        )
    runner = CliRunner()

    refused = runner.invoke(main, ["library", "set", "--currency", "EUR", "--db", url])
    renamed = runner.invoke(main, ["library", "set", "--name", "City", "--db", url])

    assert refused.exit_code == 1
    assert "1 fee or payment is recorded in GBP" in refused.output
    assert renamed.output == "institution CITY: City, currency GBP\n"
