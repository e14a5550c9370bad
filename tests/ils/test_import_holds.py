"""The hold CSV import: item and title holds, queue order, bad rows, second runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.importing.holds import import_holds
from ils.models import BibRecord, Hold, HoldStatus, Item, Patron
from tests.ils.factories import Library, build_library

HEADER = "cardnumber,barcode,control_number,isbn,branchcode,reservedate,expirationdate"


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library with four patrons and two titles: "Tides" (ctl-1, two
    copies T1 and T2) and "Maps" (ISBN 978-0-00-000000-2, copy M1)."""
    library = build_library(database_url, pool_size=2)
    for barcode in ("P1", "P2", "P3", "P4"):
        library.add_patron(barcode)
    library.add_item("T1", title="Tides")
    library.add_item("M1", title="Maps", branch="WEST")
    with library.database.transaction() as session:
        tides = session.scalar(sa.select(BibRecord).where(BibRecord.title == "Tides"))
        maps = session.scalar(sa.select(BibRecord).where(BibRecord.title == "Maps"))
        assert tides is not None
        assert maps is not None
        tides.control_number = "ctl-1"
        maps.isbn = "9780000000002"
        first = session.scalar(sa.select(Item).where(Item.barcode == "T1"))
        assert first is not None
        session.add(
            Item(
                barcode="T2",
                record_id=tides.id,
                home_branch_id=first.home_branch_id,
                current_branch_id=first.home_branch_id,
                item_type_id=first.item_type_id,
            )
        )
    yield library
    library.database.dispose()


def write(tmp_path: Path, text: str, name: str = "holds.csv") -> Path:
    """A CSV file in the test's folder."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def queue(library: Library, title: str) -> list[tuple[str, str | None, datetime]]:
    """The title's pending holds in queue order: patron, item, placed at."""
    with library.database.read() as session:
        rows = session.execute(
            sa.select(Patron.barcode, Item.barcode, Hold.placed_at)
            .join(Patron, Patron.id == Hold.patron_id)
            .join(BibRecord, BibRecord.id == Hold.record_id)
            .outerjoin(Item, Item.id == Hold.item_id)
            .where(BibRecord.title == title, Hold.status == HoldStatus.PENDING)
            .order_by(Hold.placed_at, Hold.id)
        ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def test_queue_is_in_placement_order_then_file_order(
    library: Library, tmp_path: Path
) -> None:
    """Holds join the title's queue by date; ties keep the order of the file."""
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,,ctl-1,,NORTH,2026-11-03,\n"
        "P2,T2,,,NORTH,2026-11-01T10:00:00Z,2026-12-31\n"
        "P3,,ctl-1,,NORTH,2026-11-03,\n"
        "P4,,,978-0-00-000000-2,WEST,2026-11-02,\n",
    )

    report = import_holds(library.database, path)

    assert (report.read, report.imported, report.skipped) == (4, 4, 0)
    # London is on GMT in November; Los Angeles on PST (UTC-8).
    assert queue(library, "Tides") == [
        ("P2", "T2", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
        ("P1", None, datetime(2026, 11, 3, 0, 0, tzinfo=UTC)),
        ("P3", None, datetime(2026, 11, 3, 0, 0, tzinfo=UTC)),
    ]
    assert queue(library, "Maps") == [
        ("P4", None, datetime(2026, 11, 2, 8, 0, tzinfo=UTC))
    ]
    with library.database.read() as session:
        expiry = session.scalar(
            sa.select(Hold.expires_on).where(Hold.item_id.is_not(None))
        )
    assert expiry == date(2026, 12, 31)


def test_a_copy_barcode_with_item_level_0_holds_the_title(
    library: Library, tmp_path: Path
) -> None:
    """item_level_hold 0 turns a barcode into a title-level hold on its record."""
    path = write(
        tmp_path,
        "cardnumber,barcode,item_level_hold,branchcode,reservedate\n"
        "P1,T1,0,NORTH,2026-11-03\n",
    )

    import_holds(library.database, path)

    assert queue(library, "Tides") == [
        ("P1", None, datetime(2026, 11, 3, 0, 0, tzinfo=UTC))
    ]


def test_bad_rows_are_reported_by_line_and_column(
    library: Library, tmp_path: Path
) -> None:
    """Unknown patron, title and branch, a missing title, bad dates and repeats."""
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,,ctl-1,,NORTH,2026-11-03,\n"  # 2 good
        "NOBODY,,ctl-1,,NORTH,2026-11-03,\n"  # 3
        "P2,,ctl-9,,NORTH,2026-11-03,\n"  # 4
        "P2,,ctl-1,,SOUTH,2026-11-03,\n"  # 5
        "P2,,,,NORTH,2026-11-03,\n"  # 6
        "P2,,ctl-1,,NORTH,3 Nov 2026,\n"  # 7
        "P2,,ctl-1,,NORTH,2026-11-03,2026-11-02\n"  # 8
        "P1,,ctl-1,,NORTH,2026-11-04,\n",  # 9 P1 holds it at line 2
    )

    report = import_holds(library.database, path)

    assert (report.imported, report.skipped) == (1, 7)
    assert [(p.position, p.column, p.message) for p in report.problems] == [
        (3, "cardnumber", "unknown patron NOBODY"),
        (4, "control_number", "no record has control number ctl-9"),
        (5, "branchcode", "unknown branch SOUTH"),
        (6, None, "no item barcode, control_number or isbn: which title is held?"),
        (
            7,
            "reservedate",
            "bad date: '3 Nov 2026' is not an ISO 8601 date or date and time"
            " (e.g. 2026-12-04 or 2026-12-04T14:30:00+01:00)",
        ),
        (8, "expirationdate", "expires before it was placed"),
        (9, None, "duplicate row: this patron's hold on this title is at line 2"),
    ]


def test_a_second_run_finds_its_holds_and_refuses_a_different_one(
    library: Library, tmp_path: Path
) -> None:
    """The same hold is already imported; another open hold on the title conflicts."""
    first = write(tmp_path, f"{HEADER}\nP1,,ctl-1,,NORTH,2026-11-03,\n", "a.csv")
    import_holds(library.database, first)
    second = write(
        tmp_path,
        f"{HEADER}\nP1,,ctl-1,,NORTH,2026-11-03,\n"
        "P1,,,978-0-00-000000-2,WEST,2026-11-03,\n",
        "b.csv",
    )
    third = write(tmp_path, f"{HEADER}\nP1,T1,,,NORTH,2026-11-05,\n", "c.csv")

    again = import_holds(library.database, second, batch_size=1)
    conflict = import_holds(library.database, third)

    assert (again.imported, again.already) == (1, 1)
    assert conflict.imported == 0
    assert [p.message for p in conflict.problems] == [
        "the patron already has an open hold on this title"
    ]
    assert len(queue(library, "Tides")) == 1
