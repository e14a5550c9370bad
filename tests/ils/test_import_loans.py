"""The loan CSV import: times in the branch's zone, bad rows by line and column,
dry runs, and batches a second run resumes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ils.importing.commands import import_group
from ils.importing.loans import import_loans
from ils.importing.report import ImportSetupError
from ils.models import Item, Loan, Patron
from tests.ils.factories import Library, build_library

HEADER = "cardnumber,barcode,issuedate,date_due,renewals_count,branchcode"


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library with patrons P1, P2 and items at NORTH (London) and WEST
    (Los Angeles)."""
    library = build_library(database_url, pool_size=2)
    library.add_patron("P1")
    library.add_patron("P2", home_branch="WEST")
    for barcode in ("N1", "N2", "N3", "N4"):
        library.add_item(barcode, branch="NORTH")
    library.add_item("W1", branch="WEST")
    yield library
    library.database.dispose()


def write(tmp_path: Path, text: str, name: str = "loans.csv") -> Path:
    """A CSV file in the test's folder."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def loans(library: Library) -> dict[str, tuple[str, datetime, datetime, int, str]]:
    """Open loans by item barcode: patron, checkout, due, renewals, branch id."""
    with library.database.read() as session:
        rows = session.execute(
            sa.select(
                Item.barcode,
                Patron.barcode,
                Loan.checked_out_at,
                Loan.due_at,
                Loan.renewals,
                Loan.branch_id,
            )
            .join(Item, Item.id == Loan.item_id)
            .join(Patron, Patron.id == Loan.patron_id)
            .where(Loan.returned_at.is_(None))
        ).all()
    return {row[0]: (row[1], row[2], row[3], row[4], str(row[5])) for row in rows}


def utc(*parts: int) -> datetime:
    """A UTC moment."""
    return datetime(*parts, tzinfo=UTC)


def test_dates_are_read_in_the_loan_branchs_time_zone(
    library: Library, tmp_path: Path
) -> None:
    """A bare date starts (checkout) or ends (due) in the branch's zone; a zone wins."""
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,N1,2026-11-20,2026-12-11,2,NORTH\n"
        # No branch: the item's home, WEST, in Los Angeles (UTC-8 in winter).
        "P2,W1,2026-11-20,2026-12-11,0,\n"
        "P1,N2,2026-11-20T14:30:00+01:00,2026-12-11T12:00:00Z,,NORTH\n"
        # London in summer is UTC+1.
        "P1,N3,2026-07-01 09:15,2026-07-22,1,NORTH\n",
    )

    report = import_loans(library.database, path)

    assert (report.read, report.imported, report.skipped) == (4, 4, 0)
    assert report.problems == ()
    found = loans(library)
    assert found["N1"][:4] == (
        "P1",
        utc(2026, 11, 20, 0, 0),
        utc(2026, 12, 11, 23, 59, 59),
        2,
    )
    assert found["W1"][:4] == (
        "P2",
        utc(2026, 11, 20, 8, 0),
        utc(2026, 12, 12, 7, 59, 59),
        0,
    )
    assert found["N2"][1:3] == (utc(2026, 11, 20, 13, 30), utc(2026, 12, 11, 12, 0))
    assert found["N3"][1:4] == (
        utc(2026, 7, 1, 8, 15),
        utc(2026, 7, 22, 22, 59, 59),
        1,
    )


def test_every_bad_row_is_reported_with_line_and_column_and_the_rest_import(
    library: Library, tmp_path: Path
) -> None:
    """Unknown patrons, items and branches, bad values and repeats are refused."""
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,N1,2026-11-20,2026-12-11,0,NORTH\n"  # 2 good
        "NOBODY,N2,2026-11-20,2026-12-11,0,NORTH\n"  # 3
        "P1,NOTHING,2026-11-20,2026-12-11,0,NORTH\n"  # 4
        "P1,N2,2026-11-20,2026-12-11,0,SOUTH\n"  # 5
        "P1,N2,2026-11-31,2026-12-11,0,NORTH\n"  # 6
        "P1,N2,2026-11-20,2026-11-19,0,NORTH\n"  # 7
        "P1,N2,2026-11-20,2026-12-11,two,NORTH\n"  # 8
        "P2,N1,2026-11-21,2026-12-11,0,NORTH\n"  # 9 N1 lent at line 2
        "P1,N1,2026-11-20,2026-12-11,0,NORTH\n"  # 10 same as 2
        "P1,N4,2026-11-20,2026-12-11,0,NORTH\n",  # 11 good
    )

    report = import_loans(library.database, path)

    assert (report.read, report.imported, report.skipped) == (10, 2, 8)
    assert [(p.position, p.column) for p in report.problems] == [
        (3, "cardnumber"),
        (4, "barcode"),
        (5, "branchcode"),
        (6, "issuedate"),
        (7, "date_due"),
        (8, "renewals_count"),
        (9, "barcode"),
        (10, None),
    ]
    messages = [p.message for p in report.problems]
    assert messages[0] == "unknown patron NOBODY"
    assert messages[1] == "unknown item NOTHING"
    assert messages[2] == "unknown branch SOUTH"
    assert messages[3].startswith("bad date: '2026-11-31'")
    assert messages[4] == "due before checkout"
    assert messages[6] == "item already lent at line 2 of this file"
    assert messages[7] == "duplicate row: the same loan as line 2"
    assert sorted(loans(library)) == ["N1", "N4"]


def test_an_item_on_loan_in_the_database_is_refused_unless_it_is_the_same_loan(
    library: Library, tmp_path: Path
) -> None:
    """A second run counts its own loans as already there; another loan conflicts."""
    first = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,N1,2026-11-20,2026-12-11,0,NORTH\n"
        "P1,N2,2026-11-20,2026-12-11,0,NORTH\n",
        "a.csv",
    )
    import_loans(library.database, first)
    second = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,N1,2026-11-20,2026-12-11,0,NORTH\n"
        "P2,N2,2026-11-22,2026-12-13,0,NORTH\n",
        "b.csv",
    )

    report = import_loans(library.database, second)

    assert (report.imported, report.already, report.skipped) == (0, 1, 1)
    (problem,) = report.problems
    assert (problem.position, problem.column) == (3, "barcode")
    assert problem.message == (
        "item already on loan to another patron since 2026-11-20T00:00+00:00"
    )


def test_a_dry_run_changes_nothing_and_counts_what_would_be_imported(
    library: Library, tmp_path: Path
) -> None:
    """--dry-run reports the same rows and problems but stores no loan."""
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,N1,2026-11-20,2026-12-11,0,NORTH\n"
        "P1,N2,2026-11-20,2026-12-11,0,NORTH\n"
        "P1,N2,2026-11-20,2026-12-11,0,NORTH\n",
    )

    report = import_loans(library.database, path, dry_run=True)

    assert report.dry_run
    assert (report.imported, report.skipped) == (2, 1)
    assert [p.position for p in report.problems] == [4]
    assert loans(library) == {}


def test_batches_commit_as_they_go_and_a_second_run_finishes_the_file(
    library: Library, tmp_path: Path
) -> None:
    """An import cut short after its first batch is completed by running it again."""
    rows = [
        "P1,N1,2026-11-20,2026-12-11,0,NORTH",
        "P1,N2,2026-11-20,2026-12-11,0,NORTH",
        "P2,N3,2026-11-20,2026-12-11,0,NORTH",
        "P2,N4,2026-11-20,2026-12-11,0,NORTH",
        "P2,W1,2026-11-20,2026-12-11,0,WEST",
    ]
    # The first two rows went in before the run was interrupted.
    import_loans(library.database, write(tmp_path, "\n".join([HEADER, *rows[:2]]), "a"))
    seen: list[tuple[int, int]] = []

    report = import_loans(
        library.database,
        write(tmp_path, "\n".join([HEADER, *rows]) + "\n", "b"),
        batch_size=2,
        progress=lambda done, total: seen.append((done, total)),
    )

    assert (report.read, report.imported, report.already, report.skipped) == (
        5,
        3,
        2,
        0,
    )
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert sorted(loans(library)) == ["N1", "N2", "N3", "N4", "W1"]


def test_koha_and_plain_column_names_are_both_read(
    library: Library, tmp_path: Path
) -> None:
    """checkout_date, due_date, renewals and branch stand for Koha's names."""
    path = write(
        tmp_path,
        "patron_barcode,item_barcode,checkout_date,due_date,renewals,branch,extra\n"
        "P1,N1,2026-11-20,2026-12-11,1,NORTH,x\n",
    )

    report = import_loans(library.database, path)

    assert report.imported == 1
    assert [(p.position, p.message) for p in report.problems] == [
        (1, "column(s) not imported: extra")
    ]
    assert loans(library)["N1"][3] == 1


def test_a_header_without_a_required_column_stops_the_import(
    library: Library, tmp_path: Path
) -> None:
    """No due date column: nothing is read and the message names what is missing."""
    path = write(tmp_path, "cardnumber,barcode,issuedate\nP1,N1,2026-11-20\n")

    with pytest.raises(ImportSetupError, match="lacks the column"):
        import_loans(library.database, path)


def test_returned_loans_import_as_history(library: Library, tmp_path: Path) -> None:
    """A row with a return date is a returned loan and leaves the item free."""
    path = write(
        tmp_path,
        f"{HEADER},returndate\n"
        "P1,N1,2026-10-01,2026-10-22,0,NORTH,2026-10-15\n"
        "P2,N1,2026-11-20,2026-12-11,0,NORTH,\n",
    )

    report = import_loans(library.database, path)
    again = import_loans(library.database, path)

    assert report.imported == 2
    assert (again.imported, again.already) == (0, 2)
    assert loans(library)["N1"][0] == "P2"
    with library.database.read() as session:
        returned = session.scalar(
            sa.select(Loan.returned_at).where(Loan.returned_at.is_not(None))
        )
    # London is still on summer time (UTC+1) on 15 October.
    assert returned == utc(2026, 10, 14, 23, 0)


def test_command_dry_run_lists_problems_and_exits_non_zero(
    library: Library, tmp_path: Path
) -> None:
    """`ils import loans --dry-run` prints line and column and fails on a bad row."""
    path = write(
        tmp_path,
        f"{HEADER}\nP1,N1,2026-11-20,2026-12-11,0,NORTH\n"
        "P1,N2,2026-11-20,2026-11-01,0,NORTH\n",
    )
    runner = CliRunner()

    dry = runner.invoke(
        import_group, ["loans", "--db", library.database.url, "--dry-run", str(path)]
    )
    real = runner.invoke(
        import_group,
        ["loans", "--db", library.database.url, "--batch-size", "1", str(path)],
    )

    assert dry.exit_code == 1
    assert "line #3, column date_due: due before checkout" in dry.output
    assert "2 rows read, 1 would be imported, 1 skipped" in dry.output
    assert "dry run: nothing was changed" in dry.output
    assert real.exit_code == 0
    assert "2 rows read, 1 imported, 1 skipped" in real.output
    # Not a terminal: progress as plain lines.
    assert "2 of 2 rows done" in real.output
    assert sorted(loans(library)) == ["N1"]
