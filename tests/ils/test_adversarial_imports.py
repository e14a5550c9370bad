"""Import files an adversarial test wrote: amounts and text PostgreSQL cannot
store, dates that overflow, and fields longer than the csv module reads. Each bad
value is a row problem by line and column, on SQLite and PostgreSQL alike, and
the good rows around it are imported."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.exporting import export_library
from ils.fees import charge_fee
from ils.importing.fees import import_fees
from ils.importing.loans import import_loans
from ils.importing.patrons import import_patrons
from ils.models import Fee, FeeKind, Hold, HoldStatus, ItemStatus, Loan, Patron
from tests.ils.factories import Library, build_library
from tests.ils.fees_support import add_hold

FEES = "cardnumber,debit_type_code,amount,description,date\n"
LOANS = "cardnumber,barcode,issuedate,date_due\n"
PATRONS = "cardnumber,surname,firstname,categorycode,branchcode\n"


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library with patron P1 and items N1 (London) and W1 (Los
    Angeles)."""
    library = build_library(database_url, pool_size=2)
    library.add_patron("P1")
    library.add_item("N1", branch="NORTH")
    library.add_item("W1", branch="WEST")
    yield library
    library.database.dispose()


def write(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    """A CSV file in the test's folder."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fee_descriptions(library: Library) -> list[str]:
    """Every stored fee's description, in the order stored."""
    with library.database.read() as session:
        return list(session.scalars(sa.select(Fee.description).order_by(Fee.id)))


@pytest.mark.parametrize("batch_size", [None, 1])
def test_fee_over_the_largest_amount_is_a_row_problem(
    library: Library, tmp_path: Path, batch_size: int | None
) -> None:
    """A fee of 99999999999 (over 2147483647 minor units) is refused on line 3 in
    the amount column, in a dry run too, and both good rows are imported, in one
    transaction or in batches of one."""
    path = write(
        tmp_path,
        FEES + "P1,manual,1.00,first,2026-11-01\n"
        "P1,manual,99999999999,big,2026-11-09\n"
        "P1,manual,2.00,second,2026-11-01\n",
    )

    dry = import_fees(library.database, path, dry_run=True)
    report = import_fees(library.database, path, batch_size=batch_size)

    assert (dry.imported, dry.skipped) == (2, 1)
    assert (report.imported, report.skipped) == (2, 1)
    assert [(p.position, p.column) for p in report.problems] == [(3, "amount")]
    assert fee_descriptions(library) == ["first", "second"]


def test_nul_in_a_fee_description_is_a_row_problem(
    library: Library, tmp_path: Path
) -> None:
    """A NUL character in a description is refused by line and column, and the
    next row is imported."""
    path = write(
        tmp_path,
        FEES + "P1,manual,1.00,nul\x00byte,2026-11-01\nP1,manual,2.00,ok,2026-11-02\n",
    )

    report = import_fees(library.database, path)

    assert (report.imported, report.skipped) == (1, 1)
    assert [(p.position, p.column) for p in report.problems] == [(2, "description")]
    assert "NUL" in report.problems[0].message
    assert fee_descriptions(library) == ["ok"]


def test_nul_in_a_patron_name_is_a_row_problem(
    library: Library, tmp_path: Path
) -> None:
    """A patron whose surname holds a NUL is refused on line 2 in the surname
    column, and the patron on line 3 is imported."""
    path = write(
        tmp_path,
        PATRONS + "PX1,Nul\x00Name,A,ADULT,NORTH\nPX2,Fine,B,ADULT,NORTH\n",
    )

    report = import_patrons(library.database, path)

    assert (report.imported, report.skipped) == (1, 1)
    assert [(p.position, p.column) for p in report.problems] == [(2, "surname")]
    with library.database.read() as session:
        barcodes = set(session.scalars(sa.select(Patron.barcode)))
    assert barcodes == {"P1", "PX2"}


def test_dates_that_overflow_in_utc_are_row_problems(
    library: Library, tmp_path: Path
) -> None:
    """A loan due at the end of 31 December 9999 at Los Angeles (past year 9999 in
    UTC) and one lent at 00:30 on 1 January of year 1 at UTC+1 (before year 1 in
    UTC) are refused in their date columns, as is a fee dated 23:00 on 31
    December 9999 at UTC-5; nothing is stored."""
    path = write(
        tmp_path,
        LOANS + "P1,W1,2026-11-01,9999-12-31\n"
        "P1,N1,0001-01-01T00:30:00+01:00,2026-12-11\n",
    )
    fees = write(
        tmp_path,
        FEES + "P1,manual,1.00,late,9999-12-31T23:00:00-05:00\n",
        name="fees.csv",
    )

    report = import_loans(library.database, path)
    fee_report = import_fees(library.database, fees)

    assert (report.imported, report.skipped) == (0, 2)
    assert [(p.position, p.column) for p in report.problems] == [
        (2, "date_due"),
        (3, "issuedate"),
    ]
    assert [(p.position, p.column) for p in fee_report.problems] == [(2, "date")]
    with library.database.read() as session:
        assert session.scalar(sa.select(sa.func.count(Loan.id))) == 0


def test_field_longer_than_the_csv_limit_is_a_row_problem(
    library: Library, tmp_path: Path
) -> None:
    """A description of 200,000 characters (over the csv module's 131,072) is
    refused on its line in the description column; the next row is imported."""
    path = write(
        tmp_path,
        FEES + f"P1,manual,1.00,{'x' * 200_000},2026-11-01\n"
        "P1,manual,2.00,short,2026-11-02\n",
    )

    report = import_fees(library.database, path)

    assert (report.imported, report.skipped) == (1, 1)
    assert [(p.position, p.column) for p in report.problems] == [(2, "description")]
    assert fee_descriptions(library) == ["short"]


def test_open_loan_of_a_held_or_unlendable_item_is_refused(
    library: Library, tmp_path: Path
) -> None:
    """An open loan of an item waiting on the hold shelf for another patron, or of
    a not-for-loan item, is refused in the barcode column and the hold stays
    waiting; a returned loan of the held item is kept as history."""
    library.add_patron("P2")
    library.add_item("R1", branch="NORTH", status=ItemStatus.NOT_FOR_LOAN)
    placed = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    add_hold(library, "P2", "N1", placed=placed, status=HoldStatus.WAITING)
    path = write(
        tmp_path,
        "cardnumber,barcode,issuedate,date_due,returndate\n"
        "P1,N1,2026-11-20,2026-12-11,\n"
        "P1,R1,2026-11-20,2026-12-11,\n"
        "P1,N1,2026-10-01,2026-10-15,2026-10-10\n",
    )

    dry = import_loans(library.database, path, dry_run=True)
    report = import_loans(library.database, path)

    assert (dry.imported, dry.skipped) == (1, 2)
    assert (report.imported, report.skipped) == (1, 2)
    assert [(p.position, p.column) for p in report.problems] == [
        (2, "barcode"),
        (3, "barcode"),
    ]
    assert "hold shelf" in report.problems[0].message
    assert "not for loan" in report.problems[1].message
    with library.database.read() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count(Loan.id)).where(Loan.returned_at.is_(None))
            )
            == 0
        )
        assert session.scalars(sa.select(Hold.status)).all() == [HoldStatus.WAITING]


def exported_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an exported CSV file, by column name."""
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def test_export_quotes_formula_cells_and_the_import_reads_them_back(
    library: Library, tmp_path: Path
) -> None:
    """A surname "=HYPERLINK(...)" and a fee description "@SUM(1+1)" are written
    with a quote before them, so a spreadsheet runs nothing; --raw-cells writes
    them as they are; importing the quoted patrons.csv over the library gives
    the surname back without the quote."""
    name = '=HYPERLINK("http://127.0.0.1/x","Click")'
    library.add_patron("PF", surname=name, firstname="-Ann")
    with library.database.transaction() as session:
        patron = session.scalars(sa.select(Patron).where(Patron.barcode == "PF")).one()
        charge_fee(
            session,
            patron=patron,
            kind=FeeKind.MANUAL,
            amount_minor=100,
            description="@SUM(1+1)",
            by="staff",
            moment=datetime(2026, 11, 1, tzinfo=UTC),
        )

    export_library(library.database, tmp_path / "safe")
    export_library(library.database, tmp_path / "raw", raw_cells=True)
    safe = {
        row["cardnumber"]: row
        for row in exported_rows(tmp_path / "safe" / "patrons.csv")
    }
    raw = {
        row["cardnumber"]: row
        for row in exported_rows(tmp_path / "raw" / "patrons.csv")
    }
    (fee,) = exported_rows(tmp_path / "safe" / "fees.csv")
    with library.database.transaction() as session:
        session.execute(
            sa.update(Patron).where(Patron.barcode == "PF").values(surname="Changed")
        )
    report = import_patrons(
        library.database, tmp_path / "safe" / "patrons.csv", update=True
    )

    assert (safe["PF"]["surname"], safe["PF"]["firstname"]) == (f"'{name}", "'-Ann")
    assert safe["P1"]["surname"] == "Okafor"
    assert fee["description"] == "'@SUM(1+1)"
    assert (raw["PF"]["surname"], raw["PF"]["firstname"]) == (name, "-Ann")
    assert report.skipped == 0
    with library.database.read() as session:
        back = session.execute(
            sa.select(Patron.surname, Patron.firstname).where(Patron.barcode == "PF")
        ).one()
    assert tuple(back) == (name, "-Ann")
