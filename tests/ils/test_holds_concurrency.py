"""Holds under concurrent terminals, with real threads on real databases: one item
is never trapped for two holds, and a mixed workload of holds, checkouts and
checkins leaves the holds consistent."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ils.circulation import Circulation
from ils.models import Hold, HoldStatus, Item, Loan
from ils.results import CirculationRefused
from tests.ils.circulation_support import (
    NOW,
    hold_states,
    library,
    library_templates,
)
from tests.ils.factories import Library, SettableClock
from tests.ils.test_circulation_concurrency import postgres_deadlocks

__all__ = ["library", "library_templates"]

THREADS = 8


def run_together(calls: list[object]) -> list[str]:
    """Run the calls in threads released at once; name each outcome."""
    barrier = threading.Barrier(len(calls))
    outcomes = [""] * len(calls)

    def run(index: int) -> None:
        call = calls[index]
        assert callable(call)
        barrier.wait()
        try:
            call()
        except CirculationRefused as refusal:
            outcomes[index] = refusal.reason.value
        except Exception as error:  # reported as an outcome
            outcomes[index] = repr(error)
        else:
            outcomes[index] = "done"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    return outcomes


def test_terminals_checking_in_one_item_at_once_trap_it_for_one_hold(
    library: Library,
) -> None:
    """Eight sorters checking in the same returned book, with two patrons waiting,
    leave it trapped for the first patron only."""
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    library.add_item("B1")
    for patron in ("P0", "P1", "P2"):
        library.add_patron(patron)
    circulation.checkout("P0", "B1", branch_code="NORTH")
    circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.place_hold("P2", item_barcode="B1", pickup_branch_code="WEST")

    outcomes = run_together(
        [lambda: circulation.checkin("B1", branch_code="NORTH")] * THREADS
    )

    assert Counter(outcomes) == {"done": THREADS}
    assert hold_states(library) == [
        ("P1", HoldStatus.WAITING, "B1"),
        ("P2", HoldStatus.PENDING, None),
    ]


def test_the_database_never_stores_one_item_trapped_for_two_holds(
    library: Library,
) -> None:
    """Writing a second active hold on a trapped item, past every check in the
    service, is stopped by the partial unique index on either database."""
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    library.add_item("B1")
    library.add_patron("P1")
    library.add_patron("P2")
    first = circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")
    second = circulation.place_hold("P2", item_barcode="B1", pickup_branch_code="NORTH")

    def trap(hold_id: int) -> None:
        with library.database.transaction() as session:
            item_id = session.scalar(sa.select(Item.id).where(Item.barcode == "B1"))
            session.execute(
                sa.update(Hold)
                .where(Hold.id == hold_id)
                .values(status=HoldStatus.WAITING, trapped_item_id=item_id)
            )

    trap(first.hold_id)
    with pytest.raises(IntegrityError):
        trap(second.hold_id)
    # A finished hold no longer counts: the index covers active holds only.
    with library.database.transaction() as session:
        session.execute(
            sa.update(Hold)
            .where(Hold.id == first.hold_id)
            .values(status=HoldStatus.FULFILLED)
        )
    trap(second.hold_id)


MIX_STEPS = 12


def test_mixed_holds_checkouts_and_checkins_keep_holds_consistent(
    library: Library,
) -> None:
    """Terminals placing and cancelling holds, lending and returning two shared
    items at random meet only refusals (never a deadlock), and afterwards no
    item is trapped for more than one hold or trapped while on loan."""
    circulation = Circulation(library.database)
    items = ["B1", "B2"]
    library.add_item("B1")
    library.add_item("B2")
    patrons = [f"P{number}" for number in range(THREADS)]
    for patron in patrons:
        library.add_patron(patron)
    barrier = threading.Barrier(THREADS)
    faults: list[BaseException] = []
    outcomes: Counter[str] = Counter()
    tally = threading.Lock()

    def terminal(number: int) -> None:
        chooser = random.Random(number)
        patron = patrons[number]
        barrier.wait()
        for _step in range(MIX_STEPS):
            barcode = chooser.choice(items)
            branch = chooser.choice(["NORTH", "WEST"])
            action = chooser.random()
            try:
                if action < 0.3:
                    circulation.checkout(patron, barcode, branch_code=branch)
                    outcome = "checkout"
                elif action < 0.6:
                    circulation.checkin(barcode, branch_code=branch)
                    outcome = "checkin"
                elif action < 0.8:
                    circulation.place_hold(
                        patron, item_barcode=barcode, pickup_branch_code=branch
                    )
                    outcome = "hold"
                else:
                    for hold in circulation.holds_of(patron).pending:
                        circulation.cancel_hold(patron, hold.hold_id)
                    outcome = "cancel"
            except CirculationRefused as refusal:
                outcome = refusal.reason.value
            except BaseException as error:  # collected for the assertion
                faults.append(error)
                return
            with tally:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=terminal, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads)
    assert faults == []
    assert sum(outcomes.values()) == THREADS * MIX_STEPS
    assert outcomes["try_again"] == 0
    with library.database.read() as session:
        trapped = session.execute(
            sa.select(Hold.trapped_item_id, sa.func.count())
            .where(Hold.status.in_([HoldStatus.WAITING, HoldStatus.IN_TRANSIT]))
            .group_by(Hold.trapped_item_id)
        ).all()
        on_loan = set(
            session.scalars(sa.select(Loan.item_id).where(Loan.returned_at.is_(None)))
        )
    assert all(count == 1 for _item, count in trapped)
    assert not {item for item, _count in trapped} & on_loan
    assert postgres_deadlocks(library) in (None, 0)
