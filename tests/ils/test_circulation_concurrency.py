"""Concurrent checkouts with real threads on real databases.

Each test starts its threads together at a barrier, so that their transactions
really overlap; the database (BEGIN IMMEDIATE on SQLite, row locks on
PostgreSQL) must keep the rules all the same.
"""

from __future__ import annotations

import threading
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


def test_one_patron_racing_for_one_item_renews_within_the_limit(
    library: Library,
) -> None:
    """One patron's sixteen checkouts of an item: a loan, one renewal, then refusals."""
    circulation = Circulation(library.database)
    library.add_item("B1")
    library.add_patron("P1")

    calls = [
        lambda: circulation.checkout("P1", "B1", branch_code="NORTH")
        for _ in range(THREADS_SAME_ITEM)
    ]
    outcomes = run_together(calls)

    # The adult rule allows one renewal.
    assert Counter(outcomes) == {
        "checkout": 1,
        "renewal": 1,
        "renewal_limit_reached": THREADS_SAME_ITEM - 2,
    }
    assert open_loans(library) == 1


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
