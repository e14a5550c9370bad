"""The MARC importer: real files in, catalogue rows out, bad input reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pymarc import Field, Indicators, Record, Subfield
from sqlalchemy import func, select

from ils.db import Database
from ils.importing.barcodes import is_luhn_valid, luhn_check_digit
from ils.importing.marc import import_marc
from ils.importing.marcmap import price_in_minor_units, trim_isbd
from ils.importing.report import ImportSetupError
from ils.models import BibRecord, Branch, Item, ItemStatus, ItemType
from ils.schema import upgrade_database

GPO_FILE = "data/marc/gpo-cgp-northernmarianaislands-20250422.mrc"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A database on each engine with the current schema."""
    upgrade_database(database_url)
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    """A SQLite database with the current schema."""
    upgrade_database(sqlite_url)
    db = Database(sqlite_url)
    yield db
    db.dispose()


def book(
    control: str, title: str, *holdings: list[tuple[str, str]], leader9: str = "a"
) -> Record:
    """A small book record with a 245 and optional 952 fields."""
    fields = [
        Field(tag="001", data=control),
        Field(
            tag="245",
            indicators=Indicators("1", "0"),
            subfields=[Subfield("a", f"{title} /"), Subfield("c", "A. Writer.")],
        ),
    ]
    for pairs in holdings:
        fields.append(
            Field(
                tag="952",
                indicators=Indicators(" ", " "),
                subfields=[Subfield(code, value) for code, value in pairs],
            )
        )
    leader = f"00000nam {leader9}2200000 i 4500"
    return Record(leader=leader, fields=fields, force_utf8=leader9 == "a")


def write(path: Path, *chunks: bytes) -> Path:
    """Write the given bytes to `path` and return it."""
    path.write_bytes(b"".join(chunks))
    return path


def titles(database: Database) -> list[str]:
    """Every stored title in import order."""
    with database.read() as session:
        return list(session.scalars(select(BibRecord.title).order_by(BibRecord.id)))


def test_luhn_check_digit_matches_published_barcodes() -> None:
    """Published Dynix, JerseyCat and Koha sample barcodes carry the Luhn digit."""
    assert luhn_check_digit("3319100010586") == "4"
    assert is_luhn_valid("30234000517861")
    assert is_luhn_valid("23529000152273")
    assert not is_luhn_valid("31234000000017")


def test_isbd_punctuation_is_trimmed_but_initials_are_kept() -> None:
    """Trailing " /", " :" and a final full stop go; an initial's full stop stays."""
    assert trim_isbd("Moby-Dick, or, The whale /") == "Moby-Dick, or, The whale"
    assert trim_isbd("Northern Mariana Islands :") == "Northern Mariana Islands"
    assert trim_isbd("United States.") == "United States"
    assert trim_isbd("Izuka, Scot K.,") == "Izuka, Scot K."


def test_prices_become_minor_units() -> None:
    """A decimal price string becomes a whole number of cents."""
    assert price_in_minor_units("12.50") == 1250
    assert price_in_minor_units("7") == 700
    assert price_in_minor_units("$1,250.00") == 125000
    with pytest.raises(ValueError, match="two decimals"):
        price_in_minor_units("1.005")


@pytest.mark.shared
def test_gpo_file_imports_every_record_with_real_titles(
    database: Database, shared_dir: Path
) -> None:
    """All 368 GPO records import, with titles, authors and dates as catalogued."""
    report = import_marc(database, shared_dir / GPO_FILE)

    assert (report.read, report.imported, report.skipped) == (368, 368, 0)
    assert report.items_created == 0
    assert report.problems == ()
    with database.read() as session:
        first = session.scalars(select(BibRecord).order_by(BibRecord.id)).first()
        assert first is not None
        assert first.control_number == "000224289"
        assert first.title == (
            "Welcoming America's newest commonwealth : the second interim report"
            " of the Northern Mariana Islands Commission on Federal Laws to the"
            " Congress of the United States"
        )
        assert first.author == "Northern Mariana Islands Commission on Federal Laws"
        assert first.publisher == "The Commission"
        assert first.publication_year == "1985"

        by_control = {
            bib.control_number: bib
            for bib in session.scalars(
                select(BibRecord).where(
                    BibRecord.control_number.in_(
                        ["001118017", "000706377", "000362158"]
                    )
                )
            )
        }
        izuka = by_control["001118017"]
        assert izuka.title.endswith("Kaloko-Honokōhau National Historic Park, Hawai'i")
        assert izuka.author == "Izuka, Scot K."
        # 245 $a "Bunitan Tåsi Act" $h "[electronic resource] :" $b "report ...".
        assert by_control["000706377"].title.startswith("Bunitan Tåsi Act : report (")
        assert by_control["000362158"].isbn == "016036843X"
        isbn_count = session.scalar(
            select(func.count()).where(BibRecord.isbn.is_not(None))
        )
        # 59 records have an 020, but only 32 of them an ISBN in $a.
        assert isbn_count == 32
        stored = session.scalars(select(BibRecord.marc)).first()
        assert stored is not None
        assert stored[9:10] == b"a"


def test_marc8_record_with_a_combining_acute_is_decoded(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """MARC-8 "e" with a combining acute (0xE2 before "e") becomes "é" in UTF-8."""
    record = book("m8", "Cafxx", leader9=" ")
    # Same length in and out, so the leader and directory stay right.
    marc8 = record.as_marc().replace(b"Cafxx /", b"Caf\xe2e /")
    # as_marc wrote leader position 9 as "a"; MARC-8 records leave it blank.
    marc8 = marc8[:9] + b" " + marc8[10:]

    report = import_marc(sqlite_database, write(tmp_path / "m8.mrc", marc8))

    assert (report.imported, report.problems) == (1, ())
    assert titles(sqlite_database) == ["Café"]
    with sqlite_database.read() as session:
        stored = session.scalars(select(BibRecord.marc)).one()
    assert stored is not None
    assert stored[9:10] == b"a"
    assert "Café".encode() in stored


def test_952_holdings_become_items_with_branches_created_once(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """Each 952 is an item; unknown branch and type codes are made once and reported."""
    first = book(
        "h1",
        "Holdings",
        [("a", "NORTH"), ("o", "823 HOL"), ("p", "ITEM-1"), ("y", "BOOK"),
         ("g", "12.50"), ("c", "STACKS"), ("8", "FIC")],
        [("a", "NORTH"), ("b", "SOUTH"), ("p", "ITEM-2"), ("y", "REF"), ("7", "1")],
    )  # fmt: skip
    second = book("h2", "Withdrawn", [("a", "NORTH"), ("p", "ITEM-3"), ("0", "1")])

    report = import_marc(
        sqlite_database, write(tmp_path / "h.mrc", first.as_marc(), second.as_marc())
    )

    assert (report.imported, report.items_created) == (2, 3)
    assert [entry.split(" (")[0] for entry in report.created] == [
        "institution DEFAULT",
        "branch NORTH",
        "item type BOOK",
        "branch SOUTH",
        "item type REF",
    ]
    with sqlite_database.read() as session:
        items = {item.barcode: item for item in session.scalars(select(Item))}
        one, two, three = items["ITEM-1"], items["ITEM-2"], items["ITEM-3"]
        assert (one.home_branch.code, one.current_branch.code) == ("NORTH", "NORTH")
        assert (one.call_number, one.location, one.collection) == (
            "823 HOL",
            "STACKS",
            "FIC",
        )
        assert one.price_minor == 1250
        assert one.status is ItemStatus.AVAILABLE
        assert (two.home_branch.code, two.current_branch.code) == ("NORTH", "SOUTH")
        assert two.item_type.code == "REF"
        assert two.status is ItemStatus.NOT_FOR_LOAN
        assert three.status is ItemStatus.WITHDRAWN
        assert three.item_type.code == "BOOK"


def test_truncated_file_keeps_every_record_before_the_break(
    database: Database, tmp_path: Path
) -> None:
    """A file cut off inside its third record imports the first two and reports #3."""
    records = [book(f"t{n}", f"Title {n}").as_marc() for n in (1, 2, 3)]
    whole = b"".join(records)
    cut = whole[: len(records[0]) + len(records[1]) + 40]

    report = import_marc(database, write(tmp_path / "cut.mrc", cut))

    assert (report.read, report.imported, report.skipped) == (3, 2, 1)
    assert titles(database) == ["Title 1", "Title 2"]
    [problem] = report.problems
    assert problem.position == 3
    assert f"at byte {len(records[0]) + len(records[1])}" in problem.message


def test_garbage_between_records_is_skipped_and_the_rest_import(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """Stray bytes and a record with a broken directory are reported by number."""
    good = [book(f"g{n}", f"Good {n}").as_marc() for n in (1, 2, 3)]
    broken = bytearray(book("b", "Broken").as_marc())
    broken[12:17] = b"99999"  # a base address past the end of the record

    report = import_marc(
        sqlite_database,
        write(
            tmp_path / "g.mrc",
            good[0],
            b"this is not MARC at all\x1d",
            good[1],
            bytes(broken),
            good[2],
        ),
    )

    assert (report.read, report.imported, report.skipped) == (5, 3, 2)
    assert titles(sqlite_database) == ["Good 1", "Good 2", "Good 3"]
    assert [problem.position for problem in report.problems] == [2, 4]
    assert f"at byte {len(good[0])}" in report.problems[0].message


def test_duplicate_barcodes_are_skipped_but_their_records_import(
    database: Database, tmp_path: Path
) -> None:
    """A barcode seen earlier or already stored is refused, but not its title."""
    first = book("d1", "First", [("a", "MAIN"), ("p", "B1")])
    again = book(
        "d2", "Second", [("a", "MAIN"), ("p", "B1")], [("a", "MAIN"), ("p", "B2")]
    )
    import_marc(database, write(tmp_path / "one.mrc", first.as_marc()))

    later = book("d3", "Third", [("a", "MAIN"), ("p", "B2")])
    report = import_marc(
        database, write(tmp_path / "two.mrc", again.as_marc(), later.as_marc())
    )

    assert (report.imported, report.items_created) == (2, 1)
    assert [(p.position, p.message) for p in report.problems] == [
        (1, "barcode B1 is already in the database; item skipped"),
        (2, "barcode B2 appears earlier in the file; item skipped"),
    ]
    assert titles(database) == ["First", "Second", "Third"]


def test_generated_items_have_luhn_barcodes_after_the_highest_serial(
    database: Database, tmp_path: Path
) -> None:
    """--items-per-record makes 3+1234+serial+check barcodes, continuing the serials."""
    path = write(tmp_path / "g.mrc", book("a", "A").as_marc(), book("b", "B").as_marc())

    first = import_marc(database, path, items_per_record=2, branch_code="MAIN")
    second = import_marc(database, path, items_per_record=1)

    assert (first.items_created, second.items_created) == (4, 2)
    with database.read() as session:
        barcodes = list(session.scalars(select(Item.barcode).order_by(Item.id)))
        branch_codes = set(session.scalars(select(Branch.code)))
        type_codes = set(session.scalars(select(ItemType.code)))
    assert barcodes == [
        "31234000000016",
        "31234000000024",
        "31234000000032",
        "31234000000040",
        "31234000000057",
        "31234000000065",
    ]
    assert all(is_luhn_valid(barcode) for barcode in barcodes)
    assert (branch_codes, type_codes) == ({"MAIN"}, {"BOOK"})


def test_generated_items_without_a_branch_are_refused_before_reading(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """With no --branch and no branch in the database, nothing is imported."""
    path = write(tmp_path / "n.mrc", book("a", "A").as_marc())

    with pytest.raises(ImportSetupError, match="--branch"):
        import_marc(sqlite_database, path, items_per_record=1)

    assert titles(sqlite_database) == []
