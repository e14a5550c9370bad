"""Concurrent checkouts with real threads on real databases.

Each test starts its threads together at a barrier, so that their transactions
really overlap; the database (BEGIN IMMEDIATE on SQLite, row locks on
PostgreSQL) must keep the rules all the same.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.models import Loan
from ils.results import CheckoutResult, CirculationRefused
from tests.ils.factories import Library, build_library

THREADS_SAME_ITEM = 16
THREADS_ONE_PATRON = 8


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library on each engine in turn, pooled for the threads."""
    built = build_library(database_url, pool_size=THREADS_SAME_ITEM)
    yield built
    built.database.dispose()


def run_together(calls: list[Callable[[], CheckoutResult]]) -> list[str]:
    """Run the calls in threads released at once; name each outcome.

    An outcome is "checkout", "renewal", a refusal's reason value, or the
    repr of any other exception (which the tests expect never to see).
    """
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = [""] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            result = calls[index]()
        except CirculationRefused as refusal:
            outcomes[index] = refusal.reason.value
        except Exception as error:  # reported as an outcome
            outcomes[index] = repr(error)
        else:
            outcomes[index] = "renewal" if result.renewal else "checkout"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    return outcomes


def open_loans(library: Library) -> int:
    """How many loans are open in the whole library."""
    with library.database.read() as session:
        count = session.scalar(
            sa.select(sa.func.count())
            .select_from(Loan)
            .where(Loan.returned_at.is_(None))
        )
    return count or 0


def test_many_patrons_racing_for_one_item_leave_one_loan(library: Library) -> None:
    """Sixteen patrons checking out one item at once: one wins, the rest are refused."""
    circulation = Circulation(library.database)
    library.add_item("B1")
    for number in range(THREADS_SAME_ITEM):
        library.add_patron(f"P{number}")

    def checkout(number: int) -> Callable[[], CheckoutResult]:
        return lambda: circulation.checkout(f"P{number}", "B1", branch_code="NORTH")

    outcomes = run_together([checkout(n) for n in range(THREADS_SAME_ITEM)])

    assert Counter(outcomes) == {
        "checkout": 1,
        "item_on_loan_to_other_patron": THREADS_SAME_ITEM - 1,
    }
    assert open_loans(library) == 1


def test_one_patron_racing_for_one_item_gets_one_loan_and_no_renewal(
    library: Library,
) -> None:
    """One patron's sixteen checkouts of an item at once: one loan, and fifteen
    confirmations of it that use no renewal (the due date cannot move yet)."""
    circulation = Circulation(library.database)
    library.add_item("B1")
    library.add_patron("P1")

    calls = [
        lambda: circulation.checkout("P1", "B1", branch_code="NORTH")
        for _ in range(THREADS_SAME_ITEM)
    ]
    outcomes = run_together(calls)

    assert Counter(outcomes) == {"checkout": THREADS_SAME_ITEM}
    assert open_loans(library) == 1
    with library.database.read() as session:
        assert [0] == list(session.scalars(sa.select(Loan.renewals)))


def test_one_patron_racing_for_many_items_stays_within_max_loans(
    library: Library,
) -> None:
    """Eight checkouts of different items for one adult (limit 3) leave three loans."""
    circulation = Circulation(library.database)
    library.add_patron("P1")
    for number in range(THREADS_ONE_PATRON):
        library.add_item(f"B{number}")

    def checkout(number: int) -> Callable[[], CheckoutResult]:
        return lambda: circulation.checkout("P1", f"B{number}", branch_code="NORTH")

    outcomes = run_together([checkout(n) for n in range(THREADS_ONE_PATRON)])

    assert Counter(outcomes) == {
        "checkout": 3,
        "max_loans_reached": THREADS_ONE_PATRON - 3,
    }
    assert open_loans(library) == 3


# The mixed workload of the robustness trial: terminals checking out and in a few
# shared items at random, for a bounded time.
MIX_THREADS = 12
MIX_ITEMS = 3
MIX_SECONDS = 4.0


def postgres_deadlocks(library: Library) -> int | None:
    """PostgreSQL's count of deadlocks in this database, or None on SQLite.

    Each backend reports its counters when it ends, so the pool is closed and
    the count is read once no other session is connected (bounded by a deadline).
    """
    if library.database.is_sqlite:
        return None
    library.database.dispose()
    engine = sa.create_engine(library.database.engine.url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + 10
    try:
        with engine.connect() as connection:
            while time.monotonic() < deadline:
                others = connection.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()"
                    )
                )
                if others == 0:
                    break
                connection.rollback()
                # Waiting on other processes; no event of ours can say when.
                time.sleep(0.05)
            connection.rollback()
            return int(
                connection.scalar(
                    sa.text(
                        "SELECT deadlocks FROM pg_stat_database"
                        " WHERE datname = current_database()"
                    )
                )
                or 0
            )
    finally:
        engine.dispose()


def test_mixed_checkouts_and_checkins_of_shared_items_stay_consistent(
    library: Library,
) -> None:
    """Terminals checking shared items out and in at random meet only refusals."""
    circulation = Circulation(library.database)
    items = [f"B{number}" for number in range(MIX_ITEMS)]
    for barcode in items:
        library.add_item(barcode)
    for number in range(MIX_THREADS):
        library.add_patron(f"P{number}")

    barrier = threading.Barrier(MIX_THREADS)
    faults: list[BaseException] = []
    outcomes: Counter[str] = Counter()
    tally = threading.Lock()

    def terminal(number: int) -> None:
        chooser = random.Random(number)
        barrier.wait()
        deadline = time.monotonic() + MIX_SECONDS
        while time.monotonic() < deadline:
            barcode = chooser.choice(items)
            try:
                if chooser.random() < 0.5:
                    circulation.checkout(f"P{number}", barcode, branch_code="NORTH")
                    outcome = "checkout"
                else:
                    circulation.checkin(barcode, branch_code="NORTH")
                    outcome = "checkin"
            except CirculationRefused as refusal:
                outcome = refusal.reason.value
            except BaseException as error:  # collected for the assertion
                faults.append(error)
                return
            with tally:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=terminal, args=(n,)) for n in range(MIX_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=MIX_SECONDS + 60)

    assert not any(thread.is_alive() for thread in threads)
    assert faults == []
    assert outcomes["checkout"] > 0
    assert outcomes["checkin"] > 0
    with library.database.read() as session:
        open_per_item = session.execute(
            sa.select(Loan.item_id, sa.func.count())
            .where(Loan.returned_at.is_(None))
            .group_by(Loan.item_id)
        ).all()
    assert all(count == 1 for _item, count in open_per_item)
    assert postgres_deadlocks(library) in (None, 0)
