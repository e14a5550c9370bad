"""Generate a big library quickly: a catalogue, patrons and a loan history.

The data is made for the circulation benchmark (`bench/core.py`): one
institution BENCH with two branches, two patron categories, two item types and
a generous loan rule, then `--items` items on `--items / --copies` titles,
`--patrons` patrons, `--open-loans` items on loan now, `--returned-loans`
loans already returned and `--finished-holds` holds already fulfilled.
Everything is written with SQLAlchemy Core inserts, many rows per statement
and 20,000 per round trip, in one transaction per table; no PIN is hashed (the
patrons have none), so nothing slow runs per row.

Barcodes follow the project's 14-digit layout with library code 9999: items are
3 9999 <serial> <check>, patrons 2 9999 <serial> <check>, serials from 1. Item
serial N belongs to title (N - 1) // copies + 1. Open loans go to items 1, 1 + k,
1 + 2k, ... (k = items // open-loans), to patrons in turn, so that the items the
benchmark lends (see `bench/core.py`) are known to be on the shelf.

Run from the repository root:

    .venv/bin/python bench/make_library.py --db sqlite:///var/big.sqlite3 \\
        --items 1000000 --patrons 200000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from ils.db import normalise_url
from ils.importing.barcodes import BarcodeKind, make_barcode
from ils.models import (
    BibRecord,
    Branch,
    Hold,
    Institution,
    Item,
    ItemType,
    Loan,
    LoanRule,
    Patron,
    PatronCategory,
)
from ils.schema import upgrade_database

LIBRARY_CODE = "9999"
INSTITUTION_CODE = "BENCH"
BRANCHES = ("CENTRAL", "HARBOUR")
CATEGORIES = ("ADULT", "CHILD")
ITEM_TYPES = (("BOOK", "001"), ("DVD", "006"))
CHUNK = 20_000
# Every generated date is reckoned back from this moment.
EPOCH = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

TITLE_WORDS = (
    "tide", "harbour", "lantern", "orchard", "meridian", "granite", "willow",
    "compass", "ember", "quarry", "saffron", "atlas", "falcon", "cinder",
)  # fmt: skip
SURNAMES = ("Okafor", "Lindqvist", "Marchetti", "Nakamura", "Abernathy", "Quill")


def item_barcode(serial: int) -> str:
    """The benchmark library's item barcode with this serial."""
    return make_barcode(BarcodeKind.ITEM, LIBRARY_CODE, serial)


def patron_barcode(serial: int) -> str:
    """The benchmark library's patron barcode with this serial."""
    return make_barcode(BarcodeKind.PATRON, LIBRARY_CODE, serial)


@dataclass(frozen=True, slots=True, kw_only=True)
class LibrarySize:
    """How much to generate."""

    items: int
    patrons: int
    copies: int = 2
    open_loans: int = 0
    returned_loans: int = 0
    finished_holds: int = 0

    @property
    def titles(self) -> int:
        """Titles needed for `items` at `copies` per title."""
        return -(-self.items // self.copies)

    @property
    def loan_stride(self) -> int:
        """Every this-many-th item (from serial 1) is on loan."""
        return max(1, self.items // self.open_loans) if self.open_loans else 0


def _chunks(
    rows: Iterator[dict[str, Any]], size: int
) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _insert(
    engine: sa.Engine,
    table: sa.Table,
    rows: Iterator[dict[str, Any]],
    say: Callable[[str], None],
) -> int:
    """Insert `rows` into `table` in chunks, in one transaction; the rows written."""
    started = time.perf_counter()
    count = 0
    with engine.begin() as connection:
        for chunk in _chunks(rows, CHUNK):
            connection.execute(sa.insert(table), chunk)
            count += len(chunk)
    say(f"{table.name}: {count:,} rows in {time.perf_counter() - started:.1f} s")
    return count


def _structure(engine: sa.Engine) -> dict[str, int]:
    """The institution, branches, categories, item types and one loan rule."""
    with engine.begin() as connection:
        if connection.scalar(
            sa.select(Institution.id).where(Institution.code == INSTITUTION_CODE)
        ):
            raise SystemExit(
                "this database already holds the benchmark library; give a new one"
            )
        ids: dict[str, int] = {}
        ids["institution"] = connection.execute(
            sa.insert(Institution.__table__).returning(Institution.id),
            {
                "code": INSTITUTION_CODE,
                "name": "Benchmark Libraries",
                "currency": "EUR",
            },
        ).scalar_one()
        for code in BRANCHES:
            ids[f"branch:{code}"] = connection.execute(
                sa.insert(Branch.__table__).returning(Branch.id),
                {
                    "institution_id": ids["institution"],
                    "code": code,
                    "name": code.title(),
                    "timezone": "Europe/Amsterdam",
                },
            ).scalar_one()
        for code in CATEGORIES:
            ids[f"category:{code}"] = connection.execute(
                sa.insert(PatronCategory.__table__).returning(PatronCategory.id),
                {"code": code, "name": code.title()},
            ).scalar_one()
        for code, media in ITEM_TYPES:
            ids[f"type:{code}"] = connection.execute(
                sa.insert(ItemType.__table__).returning(ItemType.id),
                {"code": code, "name": code.title(), "media_type": media},
            ).scalar_one()
        # One rule for everything, generous enough that a benchmark patron never
        # reaches the loan limit.
        connection.execute(
            sa.insert(LoanRule.__table__),
            {"loan_days": 21, "renewals_allowed": 3, "max_loans": 100_000},
        )
    return ids


def _records(size: LibrarySize) -> Iterator[dict[str, Any]]:
    words = TITLE_WORDS
    for serial in range(1, size.titles + 1):
        title = (
            f"The {words[serial % len(words)]} of {words[serial // 7 % len(words)]}"
            f" {serial}"
        )
        yield {
            "id": serial,
            "control_number": f"bench{serial}",
            "title": title,
            "author": SURNAMES[serial % len(SURNAMES)],
            "isbn": None,
            "publisher": None,
            "publication_year": str(1950 + serial % 75),
            "marc": None,
            "created_at": EPOCH,
        }


def _items(size: LibrarySize, ids: dict[str, int]) -> Iterator[dict[str, Any]]:
    branches = [ids[f"branch:{code}"] for code in BRANCHES]
    types = [ids[f"type:{code}"] for code, _ in ITEM_TYPES]
    for serial in range(1, size.items + 1):
        branch = branches[serial % 2]
        yield {
            "id": serial,
            "barcode": item_barcode(serial),
            "record_id": (serial - 1) // size.copies + 1,
            "home_branch_id": branch,
            "current_branch_id": branch,
            # One item in ten is a DVD.
            "item_type_id": types[1 if serial % 10 == 0 else 0],
            "location": "Stacks",
            "collection": None,
            "call_number": f"{serial % 1000:03d} BEN",
            "status": "available",
            "price_minor": 1500,
            "created_at": EPOCH,
            "transit_to_branch_id": None,
            "transit_since": None,
        }


def _patrons(size: LibrarySize, ids: dict[str, int]) -> Iterator[dict[str, Any]]:
    branches = [ids[f"branch:{code}"] for code in BRANCHES]
    categories = [ids[f"category:{code}"] for code in CATEGORIES]
    for serial in range(1, size.patrons + 1):
        yield {
            "id": serial,
            "barcode": patron_barcode(serial),
            "surname": SURNAMES[serial % len(SURNAMES)],
            "firstname": "Bench",
            "category_id": categories[1 if serial % 5 == 0 else 0],
            "home_branch_id": branches[serial % 2],
            "pin_hash": None,
            "expires_on": date(2030, 1, 1),
            "email": None,
            "phone": None,
            "card_lost": False,
            "created_at": EPOCH,
            "pin_failures": 0,
            "pin_locked_until": None,
            "credit_minor": 0,
        }


def _loans(size: LibrarySize, ids: dict[str, int]) -> Iterator[dict[str, Any]]:
    branch = ids[f"branch:{BRANCHES[0]}"]
    adult = ids[f"category:{CATEGORIES[0]}"]
    loan_id = 0
    # History first: returned loans spread over every item and patron.
    for number in range(size.returned_loans):
        loan_id += 1
        out = EPOCH - timedelta(days=60 + number % 300, minutes=number % 1440)
        yield {
            "id": loan_id,
            "item_id": number * 7919 % size.items + 1,
            "patron_id": number * 104_729 % size.patrons + 1,
            "branch_id": branch,
            "checked_out_at": out,
            "due_at": out + timedelta(days=21),
            "returned_at": out + timedelta(days=10),
            "renewals": 0,
            "patron_category_id": adult,
        }
    # Open loans on every stride-th item, to patrons in turn.
    for number in range(size.open_loans):
        loan_id += 1
        out = EPOCH - timedelta(days=number % 20, minutes=number % 1440)
        yield {
            "id": loan_id,
            "item_id": number * size.loan_stride + 1,
            "patron_id": number % size.patrons + 1,
            "branch_id": branch,
            "checked_out_at": out,
            "due_at": out + timedelta(days=21),
            "returned_at": None,
            "renewals": 0,
            "patron_category_id": adult,
        }


def _holds(size: LibrarySize, ids: dict[str, int]) -> Iterator[dict[str, Any]]:
    """Holds already fulfilled: the history every library keeps piling up.

    None is open, so no benchmark checkout meets a hold for someone else.
    """
    branch = ids[f"branch:{BRANCHES[0]}"]
    for number in range(size.finished_holds):
        item = number * 7907 % size.items + 1
        placed = EPOCH - timedelta(days=30 + number % 700, minutes=number % 1440)
        yield {
            "id": number + 1,
            "patron_id": number * 104_723 % size.patrons + 1,
            "record_id": (item - 1) // size.copies + 1,
            "item_id": None,
            "pickup_branch_id": branch,
            "status": "fulfilled",
            "placed_at": placed,
            "expires_on": None,
            "trapped_item_id": item,
            "trapped_at": placed + timedelta(days=5),
            "pickup_deadline": placed + timedelta(days=12),
            "finished_at": placed + timedelta(days=7),
            "placed_by": "bench",
        }


def _fix_sequences(engine: sa.Engine) -> None:
    # Ids were given explicitly; PostgreSQL's sequences must be moved past them.
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as connection:
        for table in ("bib_record", "item", "patron", "loan", "hold"):
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" GREATEST((SELECT max(id) FROM {table}), 1))"
            )
        connection.exec_driver_sql("ANALYZE")


def make_library(
    url: str, size: LibrarySize, *, say: Callable[[str], None] = print
) -> None:
    """Create the schema at `url` (an empty database) and fill it to `size`."""
    if size.open_loans > size.items or size.items < 1 or size.patrons < 1:
        raise SystemExit(
            "need at least one item and patron, and no more loans than items"
        )
    upgrade_database(url)
    engine = sa.create_engine(normalise_url(url))
    if engine.dialect.name == "sqlite":
        # A bulk load of a new file: no fsync per transaction.
        sa.event.listen(
            engine,
            "connect",
            lambda connection, _record: connection.execute("PRAGMA synchronous=OFF"),
        )
    try:
        started = time.perf_counter()
        ids = _structure(engine)
        _insert(engine, BibRecord.__table__, _records(size), say)  # type: ignore[arg-type]
        _insert(engine, Item.__table__, _items(size, ids), say)  # type: ignore[arg-type]
        _insert(engine, Patron.__table__, _patrons(size, ids), say)  # type: ignore[arg-type]
        _insert(engine, Loan.__table__, _loans(size, ids), say)  # type: ignore[arg-type]
        _insert(engine, Hold.__table__, _holds(size, ids), say)  # type: ignore[arg-type]
        _fix_sequences(engine)
        if engine.dialect.name == "sqlite":
            with engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
        say(f"library made in {time.perf_counter() - started:.1f} s")
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, metavar="URL", help="an empty database")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--patrons", type=int, default=200_000)
    parser.add_argument("--copies", type=int, default=2, help="items per title")
    parser.add_argument(
        "--open-loans", type=int, help="items on loan now (default: items / 20)"
    )
    parser.add_argument(
        "--returned-loans", type=int, help="returned loans (default: items / 5)"
    )
    parser.add_argument(
        "--finished-holds",
        type=int,
        default=0,
        help="holds already fulfilled, with the item that was trapped (default 0)",
    )
    arguments = parser.parse_args()
    size = LibrarySize(
        items=arguments.items,
        patrons=arguments.patrons,
        copies=arguments.copies,
        open_loans=(
            arguments.items // 20
            if arguments.open_loans is None
            else arguments.open_loans
        ),
        returned_loans=(
            arguments.items // 5
            if arguments.returned_loans is None
            else arguments.returned_loans
        ),
        finished_holds=arguments.finished_holds,
    )
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    make_library(arguments.db, size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
