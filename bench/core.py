"""Checkouts and checkins per second through the circulation service, big against small.

The cost of one checkout must not grow with the catalogue. This script lends
and takes back items through `ils.circulation.Circulation`, the service the
SIP2 server calls, on two libraries made by `bench/make_library.py` with the
same proportions: the big one given with `--db` (say 1,000,000 items and
200,000 patrons) and a small one of 10,000 items and 2,000 patrons, which the
script makes itself (a temporary SQLite file, or a database `<name>_small` on
the same PostgreSQL server) unless `--small-db` names one already made.

A round is `--ops` checkouts of shelf items picked at random over the whole
catalogue by random patrons, then the checkins of the same items. Rounds
alternate between the two libraries in one process, so a busy moment on the
machine hurts both alike; the median and best round of each are printed in
operations per wall-clock second (the database's own work is the point, so
wall time, not CPU time), with the ratio small/big of the medians. The target
is a ratio of at most 1.2; the script exits with status 1 above it.

`--statements` also times every SQL statement the service sends and prints the
ones whose mean time grows most from the small library to the big one: where to
look for a missing index.

Run from the repository root:

    .venv/bin/python bench/make_library.py --db sqlite:///var/big.sqlite3
    .venv/bin/python bench/core.py --db sqlite:///var/big.sqlite3
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.make_library import (
    BRANCHES,
    EPOCH,
    LibrarySize,
    item_barcode,
    make_library,
    patron_barcode,
)
from ils.circulation import Circulation
from ils.db import Database, display_url, normalise_url
from ils.models import Hold, Item, Loan, Patron
from ils.results import CirculationRefused

TARGET_RATIO = 1.2
SMALL_ITEMS = 10_000


@dataclass(slots=True)
class StatementTimes:
    """Total seconds and count per SQL statement text."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def watch(self, engine: sa.Engine) -> None:
        """Time every statement `engine` runs from now on."""

        def before(conn: Any, _c: Any, _s: str, _p: Any, context: Any, _m: Any) -> None:
            context._bench_started = time.perf_counter()

        def after(
            conn: Any, _c: Any, statement: str, _p: Any, context: Any, _m: Any
        ) -> None:
            key = " ".join(statement.split())
            self.seconds[key] += time.perf_counter() - context._bench_started
            self.calls[key] += 1

        sa.event.listen(engine, "before_cursor_execute", before)
        sa.event.listen(engine, "after_cursor_execute", after)

    def mean(self, key: str) -> float:
        calls = self.calls.get(key, 0)
        return self.seconds.get(key, 0.0) / calls if calls else 0.0


@dataclass(slots=True)
class Library:
    """One library under test and its rounds."""

    name: str
    url: str
    database: Database
    circulation: Circulation
    items: int
    patrons: int
    finished_holds: int
    stride: int
    checkouts: list[float] = field(default_factory=list)
    checkins: list[float] = field(default_factory=list)
    # The same rates per CPU second of this process.
    checkouts_cpu: list[float] = field(default_factory=list)
    checkins_cpu: list[float] = field(default_factory=list)
    # Counted rounds only: checkout-and-checkin pairs and their wall time.
    pairs: int = 0
    seconds: float = 0.0
    times: StatementTimes = field(default_factory=StatementTimes)

    def shelf_item(self, chooser: random.Random) -> int:
        """The serial of an item that `make_library` did not put on loan."""
        while True:
            serial = chooser.randint(1, self.items)
            if self.stride == 0 or (serial - 1) % self.stride != 0:
                return serial


def _sizes(database: Database) -> tuple[int, int, int, int]:
    """Items, patrons, open loans and holds of a library made by make_library."""
    with database.read() as session:
        items = session.scalar(sa.select(sa.func.max(Item.id))) or 0
        patrons = session.scalar(sa.select(sa.func.max(Patron.id))) or 0
        open_loans = (
            session.scalar(
                sa.text("SELECT count(*) FROM loan WHERE returned_at IS NULL")
            )
            or 0
        )
        holds = session.scalar(sa.select(sa.func.count()).select_from(Hold)) or 0
    return items, patrons, open_loans, holds


def _tidy(database: Database) -> None:
    """Put back what an interrupted run left: its loans open, items in transit."""
    with database.transaction() as session:
        session.execute(
            sa.update(Loan)
            .where(Loan.returned_at.is_(None), Loan.checked_out_at > EPOCH)
            .values(returned_at=Loan.checked_out_at)
        )
        session.execute(
            sa.update(Item)
            .where(Item.transit_to_branch_id.is_not(None))
            .values(
                transit_to_branch_id=None,
                transit_since=None,
                current_branch_id=Item.home_branch_id,
            )
        )


def _open(name: str, url: str, statements: bool, sql: list[str]) -> Library:
    database = Database(url, pool_size=2)
    _tidy(database)
    for statement in sql:
        with database.transaction() as session:
            session.execute(sa.text(statement))
    items, patrons, open_loans, holds = _sizes(database)
    if not items or not patrons:
        raise SystemExit(f"{display_url(url)} holds no library; run make_library.py")
    library = Library(
        name=name,
        url=url,
        database=database,
        circulation=Circulation(database),
        items=items,
        patrons=patrons,
        finished_holds=holds,
        # make_library lends every stride-th item; the benchmark must not
        # count on those being on the shelf. Loans it made itself are returned.
        stride=max(1, items // open_loans) if open_loans else 0,
    )
    if statements:
        library.times.watch(database.engine)
    return library


@contextmanager
def _small_database(big_url: str, given: str | None) -> Iterator[tuple[str, bool]]:
    """The small library's URL, and whether it still has to be made."""
    if given:
        yield given, False
        return
    parsed = normalise_url(big_url)
    if parsed.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/small.sqlite3", True
        return

    name = f"{parsed.database}_small"
    admin = sa.create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False), True
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _round(library: Library, ops: int, chooser: random.Random) -> None:
    serials: set[int] = set()
    while len(serials) < ops:
        serials.add(library.shelf_item(chooser))
    # Each item is lent and returned at its home branch, so that it goes back
    # on the shelf there and not into transit.
    work = [
        (
            item_barcode(serial),
            patron_barcode(chooser.randint(1, library.patrons)),
            BRANCHES[serial % 2],
        )
        for serial in serials
    ]

    started, started_cpu = time.perf_counter(), time.process_time()
    for item, patron, branch in work:
        library.circulation.checkout(patron, item, branch_code=branch, terminal="bench")
    middle, middle_cpu = time.perf_counter(), time.process_time()
    for item, _, branch in work:
        library.circulation.checkin(item, branch_code=branch, terminal="bench")
    ended, ended_cpu = time.perf_counter(), time.process_time()

    library.checkouts.append(ops / (middle - started))
    library.checkins.append(ops / (ended - middle))
    library.checkouts_cpu.append(ops / max(middle_cpu - started_cpu, 1e-9))
    library.checkins_cpu.append(ops / max(ended_cpu - middle_cpu, 1e-9))
    library.pairs += ops
    library.seconds += ended - started


def _report_statements(big: Library, small: Library) -> None:
    for library in (big, small):
        calls = sum(library.times.calls.values()) / max(library.pairs, 1)
        in_sql = sum(library.times.seconds.values()) / max(library.pairs, 1)
        whole = library.seconds / max(library.pairs, 1)
        print(
            f"{library.name}: {calls:.0f} SQL statements per checkout and checkin,"
            f" {in_sql * 1e3:.1f} ms in them of {whole * 1e3:.1f} ms in all"
            " (the rest: commits, the driver, Python)"
        )
    print("SQL statements, mean time big / small (most grown first):")
    keys = [key for key in big.times.calls if key in small.times.calls]
    grown = sorted(
        keys,
        key=lambda key: big.times.mean(key) / max(small.times.mean(key), 1e-9),
        reverse=True,
    )
    for key in grown[:8]:
        ratio = big.times.mean(key) / max(small.times.mean(key), 1e-9)
        print(
            f"  {ratio:5.2f}x  {big.times.mean(key) * 1e6:8.0f} us"
            f"  {small.times.mean(key) * 1e6:8.0f} us  {key[:150]}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, metavar="URL", help="the big library")
    parser.add_argument(
        "--small-db",
        metavar="URL",
        help="a small library made by make_library.py (default: made here)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds per library")
    parser.add_argument("--ops", type=int, default=300, help="checkouts per round")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--statements", action="store_true", help="time every SQL statement"
    )
    parser.add_argument(
        "--sql",
        action="append",
        default=[],
        metavar="STATEMENT",
        help="run this on both libraries first, e.g. a CREATE INDEX to try a fix"
        " (repeatable)",
    )
    arguments = parser.parse_args()

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"python {platform.python_version()} on {platform.machine()},"
        f" {platform.system()}; SQLAlchemy {sa.__version__}"
    )
    big = _open("big", arguments.db, arguments.statements, arguments.sql)
    with _small_database(arguments.db, arguments.small_db) as (small_url, to_make):
        if to_make:
            # The same proportions as the big library: patrons per item, loans.
            make_library(
                small_url,
                LibrarySize(
                    items=SMALL_ITEMS,
                    patrons=max(1, SMALL_ITEMS * big.patrons // big.items),
                    open_loans=SMALL_ITEMS // big.stride if big.stride else 0,
                    returned_loans=SMALL_ITEMS // 5,
                    finished_holds=SMALL_ITEMS * big.finished_holds // big.items,
                ),
                say=lambda _line: None,
            )
        small = _open("small", small_url, arguments.statements, arguments.sql)
        print(
            f"big: {big.items:,} items, {big.patrons:,} patrons,"
            f" {big.finished_holds:,} finished holds ({display_url(big.url)});"
            f" small: {small.items:,} items, {small.patrons:,} patrons,"
            f" {small.finished_holds:,} finished holds; {arguments.rounds}"
            f" alternating rounds of {arguments.ops} checkouts then"
            f" {arguments.ops} checkins each"
        )

        chooser = random.Random(arguments.seed)
        try:
            # One warm-up round each, not counted: connections, caches, plans.
            for library in (big, small):
                _round(library, min(50, arguments.ops), chooser)
                library.checkouts.clear()
                library.checkins.clear()
                library.checkouts_cpu.clear()
                library.checkins_cpu.clear()
                library.pairs, library.seconds = 0, 0.0
                library.times.seconds.clear()
                library.times.calls.clear()
            for _ in range(arguments.rounds):
                for library in (big, small):
                    _round(library, arguments.ops, chooser)
        except CirculationRefused as refused:
            raise SystemExit(f"the service refused: {refused.reason.value}") from None
        finally:
            small.database.dispose()
    big.database.dispose()

    # On SQLite the database works inside this process, so its CPU time holds
    # the database's work too and is not slowed by other work on the machine;
    # PostgreSQL works in its own processes, so there only wall time counts.
    for what in ("checkouts_cpu", "checkins_cpu"):
        big_rates, small_rates = getattr(big, what), getattr(small, what)
        print(
            f"{what[:-4]:<9} per CPU second of this process: big"
            f" {statistics.median(big_rates):7.0f}/s   small"
            f" {statistics.median(small_rates):7.0f}/s   small/big"
            f" {statistics.median(small_rates) / statistics.median(big_rates):.2f}"
        )
    worst = 0.0
    for what in ("checkouts", "checkins"):
        big_rates: list[float] = getattr(big, what)
        small_rates: list[float] = getattr(small, what)
        ratio = statistics.median(small_rates) / statistics.median(big_rates)
        worst = max(worst, ratio)
        print(
            f"{what:<9} big {statistics.median(big_rates):7.0f}/s"
            f" (best {max(big_rates):5.0f})   small"
            f" {statistics.median(small_rates):7.0f}/s (best {max(small_rates):5.0f})"
            f"   small/big {ratio:.2f}"
        )
    if arguments.statements:
        _report_statements(big, small)
    verdict = "meets" if worst <= TARGET_RATIO else "misses"
    print(f"worst ratio {worst:.2f}: {verdict} the target of {TARGET_RATIO}")
    return 0 if worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
