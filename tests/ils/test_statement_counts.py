"""How many SQL statements a checkout, a checkin and an item look-up send.

The numbers are ceilings: each request reads its rows once (the item and
patron views built once, the trapped hold asked once, primary keys through the
session's identity map), so a change that adds repeated reads fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

from ils.circulation import Circulation
from tests.ils.factories import Library, SettableClock, build_library

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)

# Ceilings, counted by hand from the code path of each request in the test
# library (no holds, fees or blocks), BEGIN not counted. A checkout: branch,
# patron, blocks, institution, item, loan, the rules (the item type's and the
# general one in one statement), whether any hold concerns the item (one
# statement; when one does, the trapped and pending holds are read, twice),
# loan count, hours, closed days, two inserts, then the views: the item in one
# statement, category, loans, fees = 17 (31, 23, 21, then 20 before #5's
# reductions); without the patron's account after it (`account=False`, as the
# SIP2 server asks) the last three go = 14. A checkin: branch, borrower and
# lost-fee payers in one statement, the borrower (locked), item, loan, whether
# any hold concerns the item, insert, update of the loan, the item's view in
# one statement = 9 (17, 14, then 10). An item look-up: the view in one
# statement = 1 (9 before).
CHECKOUT_MOST = 17
CHECKOUT_WITHOUT_ACCOUNT_MOST = 14
CHECKIN_MOST = 9
ITEM_MOST = 1


class StatementCount:
    """Counts the statements an engine sends while `counting` is on."""

    def __init__(self) -> None:
        self.counting = False
        self.statements: list[str] = []

    def __call__(self, *args: Any) -> None:
        if self.counting:
            self.statements.append(str(args[2]))

    def during(self, call: Any) -> int:
        self.statements.clear()
        self.counting = True
        try:
            call()
        finally:
            self.counting = False
        return sum(
            1
            for statement in self.statements
            if not statement.startswith(("BEGIN", "PRAGMA"))
        )


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library on each engine in turn, with a patron and two items."""
    built = build_library(database_url)
    built.add_patron("P1")
    built.add_item("B1", title="Salt Roads")
    built.add_item("B2", title="Tide Tables")
    yield built
    built.database.dispose()


@pytest.fixture
def counter(library: Library) -> StatementCount:
    """A statement counter on the library's engine."""
    count = StatementCount()
    event.listen(library.database.engine, "before_cursor_execute", count)
    return count


def test_checkout_and_checkin_stay_under_their_statement_ceilings(
    library: Library, counter: StatementCount
) -> None:
    """A plain checkout, item look-up and checkin send no more than their ceilings."""
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    # A first checkout, not counted, so that the counted one is not the
    # patron's first.
    circulation.checkout("P1", "B1", branch_code="NORTH", terminal="kiosk-1")

    lent = counter.during(
        lambda: circulation.checkout(
            "P1", "B2", branch_code="NORTH", terminal="kiosk-1"
        )
    )
    looked_up = counter.during(lambda: circulation.item("B2"))
    returned = counter.during(
        lambda: circulation.checkin("B2", branch_code="NORTH", terminal="kiosk-1")
    )

    assert lent <= CHECKOUT_MOST, counter.statements
    assert looked_up <= ITEM_MOST, counter.statements
    assert returned <= CHECKIN_MOST, counter.statements


def test_a_checkout_without_the_account_reads_no_account(
    library: Library, counter: StatementCount
) -> None:
    """With `account=False` a checkout carries no patron view and sends no more
    than its own ceiling; the loan is made all the same."""
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    circulation.checkout("P1", "B1", branch_code="NORTH", terminal="kiosk-1")
    results = []
    lent = counter.during(
        lambda: results.append(
            circulation.checkout(
                "P1", "B2", branch_code="NORTH", terminal="kiosk-1", account=False
            )
        )
    )

    assert results[0].patron is None
    assert lent <= CHECKOUT_WITHOUT_ACCOUNT_MOST, counter.statements
    account = circulation.patron("P1")
    assert account is not None
    assert ["B1", "B2"] == sorted(loan.item_barcode for loan in account.loans)
