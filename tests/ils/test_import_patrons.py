"""The patron CSV importer: Koha columns in, hashed PINs stored, bad rows reported."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ils.db import Database
from ils.importing.commands import import_group
from ils.importing.patrons import import_patrons
from ils.importing.report import ImportSetupError
from ils.models import Branch, Institution, Patron, PatronCategory
from ils.schema import upgrade_database
from ils.secrets import verify_secret

HEADER = (
    "cardnumber,surname,firstname,categorycode,branchcode,dateexpiry,email,phone,pin"
)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A database on each engine with the schema, one branch MAIN and category ADULT."""
    upgrade_database(database_url)
    db = Database(database_url)
    with db.transaction() as session:
        institution = Institution(code="LIB", name="Library")
        session.add(Branch(code="MAIN", name="Main", institution=institution))
        session.add(PatronCategory(code="ADULT", name="Adult"))
    yield db
    db.dispose()


def patrons_by_barcode(database: Database) -> dict[str, Patron]:
    """Every stored patron, by card number, detached with its columns loaded."""
    with database.read() as session:
        patrons = {patron.barcode: patron for patron in session.scalars(select(Patron))}
        # Detach them before the read unit rolls back, which would expire them.
        session.expunge_all()
    return patrons


def test_good_rows_import_with_hashed_pins(database: Database, tmp_path: Path) -> None:
    """Each row becomes a patron; the PIN is stored hashed and verifies."""
    path = tmp_path / "p.csv"
    path.write_text(
        f"{HEADER}\n"
        "21234000000018,Reader,Alice,ADULT,MAIN,2030-06-30,alice@example.org,555-0100,4321\n"
        "21234000000026,Borrower,Bob,ADULT,MAIN,,,,\n",
        encoding="utf-8",
    )

    report = import_patrons(database, path)

    assert (report.read, report.imported, report.skipped) == (2, 2, 0)
    assert report.problems == ()
    patrons = patrons_by_barcode(database)
    alice, bob = patrons["21234000000018"], patrons["21234000000026"]
    assert (alice.surname, alice.firstname) == ("Reader", "Alice")
    assert alice.expires_on == date(2030, 6, 30)
    assert (alice.email, alice.phone) == ("alice@example.org", "555-0100")
    assert alice.pin_hash is not None
    assert "4321" not in alice.pin_hash
    assert verify_secret("4321", alice.pin_hash)
    assert (bob.pin_hash, bob.expires_on, bob.email) == (None, None, None)


def test_bad_rows_are_reported_by_line_and_the_rest_import(
    database: Database, tmp_path: Path
) -> None:
    """Missing fields, a bad date, an unknown branch and a repeat are each refused."""
    path = tmp_path / "p.csv"
    path.write_text(
        f"{HEADER}\n"
        "1001,One,,ADULT,MAIN,,,,\n"
        ",NoCard,,ADULT,MAIN,,,,\n"
        "1003,,,ADULT,MAIN,,,,\n"
        "1004,BadDate,,ADULT,MAIN,31/12/2030,,,\n"
        "1005,Nowhere,,ADULT,WEST,,,,\n"
        "1001,Again,,ADULT,MAIN,,,,\n"
        "1007,Kid,,CHILD,MAIN,,,,\n",
        encoding="utf-8",
    )

    report = import_patrons(database, path)

    assert (report.read, report.imported, report.skipped) == (7, 2, 5)
    assert [problem.position for problem in report.problems] == [3, 4, 5, 7, 6]
    assert "no cardnumber" in report.problems[0].message
    assert "no surname" in report.problems[1].message
    assert "31/12/2030" in report.problems[2].message
    assert "appears earlier" in report.problems[3].message
    assert "branch 'WEST' does not exist" in report.problems[4].message
    assert [entry.split(" (")[0] for entry in report.created] == [
        "patron category CHILD"
    ]
    assert set(patrons_by_barcode(database)) == {"1001", "1007"}


def test_bom_prefixed_file_with_koha_extras_and_password_alias(
    database: Database, tmp_path: Path
) -> None:
    """A BOM is ignored, `password` is read as the PIN and extra columns are listed."""
    path = tmp_path / "koha.csv"
    path.write_bytes(
        "\ufeffborrowernumber,cardnumber,surname,firstname,categorycode,branchcode,"
        "password,sort1\n"
        "17,2001,Müller,Jürgen,ADULT,MAIN,9876,x\n".encode()
    )

    report = import_patrons(database, path)

    assert report.imported == 1
    [problem] = report.problems
    assert problem.position == 1
    assert problem.message == "column(s) not imported: borrowernumber, sort1"
    patron = patrons_by_barcode(database)["2001"]
    assert (patron.surname, patron.firstname) == ("Müller", "Jürgen")
    assert patron.pin_hash is not None
    assert verify_secret("9876", patron.pin_hash)


def test_existing_patrons_are_skipped_unless_update_is_asked_for(
    database: Database, tmp_path: Path
) -> None:
    """A known cardnumber is skipped with a problem, or overwritten with update."""
    first = tmp_path / "first.csv"
    first.write_text(f"{HEADER}\n3001,Old,Name,ADULT,MAIN,,,,1111\n", encoding="utf-8")
    second = tmp_path / "second.csv"
    second.write_text(f"{HEADER}\n3001,New,Name,ADULT,MAIN,,,,\n", encoding="utf-8")
    import_patrons(database, first)

    skipped = import_patrons(database, second)
    updated = import_patrons(database, second, update=True)

    assert (skipped.skipped, skipped.problems[0].position) == (1, 2)
    assert "--update" in skipped.problems[0].message
    assert (updated.updated, updated.imported) == (1, 0)
    patron = patrons_by_barcode(database)["3001"]
    assert patron.surname == "New"
    # An empty PIN in an update keeps the PIN the patron had.
    assert patron.pin_hash is not None
    assert verify_secret("1111", patron.pin_hash)


def test_header_without_required_columns_is_refused(
    database: Database, tmp_path: Path
) -> None:
    """A file whose header lacks cardnumber stops before anything is stored."""
    path = tmp_path / "p.csv"
    path.write_text(
        "surname,categorycode,branchcode\nOne,ADULT,MAIN\n", encoding="utf-8"
    )

    with pytest.raises(ImportSetupError, match="cardnumber"):
        import_patrons(database, path)

    assert patrons_by_barcode(database) == {}


def test_command_lists_problems_and_fails_only_when_nothing_imports(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The command exits 0 with problems listed, and 1 when nothing imported."""
    upgrade_database(sqlite_url)
    database = Database(sqlite_url)
    with database.transaction() as session:
        session.add(
            Branch(
                code="MAIN", name="Main", institution=Institution(code="L", name="L")
            )
        )
    database.dispose()
    good = tmp_path / "good.csv"
    good.write_text(f"{HEADER}\n4001,A,,ADULT,MAIN,,,,\n4002,,,ADULT,MAIN,,,,\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\n4003,B,,ADULT,NOWHERE,,,,\n")
    runner = CliRunner()

    partly = runner.invoke(import_group, ["patrons", "--db", sqlite_url, str(good)])
    nothing = runner.invoke(import_group, ["patrons", "--db", sqlite_url, str(bad)])

    assert partly.exit_code == 0, partly.output
    assert "line #3: no surname; row skipped" in partly.output
    assert "2 rows read, 1 imported, 1 skipped" in partly.output
    assert nothing.exit_code == 1
    assert "nothing was imported" in nothing.output
