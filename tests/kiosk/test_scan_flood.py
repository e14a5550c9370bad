"""Hundreds of scans queued in the item loop never jam it.

Finding 0 of the second adversarial trial of issue #6: scans wait for their
turn (one item with the server at a time); when the session ended with about
a hundred waiting, each woke inside the previous one's release, the chain
overflowed the stack, and the lock stayed held for good: the next patron's
items did nothing at all. A scanner re-reading the book under it queued
every read. Against the real server and the demo library.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from twisted.internet import defer, task

from kiosk.transactions import Action, Result
from tests.kiosk.conftest import ITEMS, LiveServer
from tests.kiosk.test_session import sign_in, start_kiosk
from tests.kiosk.test_sipclient import _reactor

# Card-like codes (2 and 13 digits): refused in the item loop without asking
# the server, so each is done the moment its turn comes.
CARD_LIKE = [f"2{number:013d}" for number in range(300)]


@pytest_twisted.ensureDeferred
async def test_a_session_ending_with_300_scans_waiting_leaves_the_loop_free(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """300 scans wait behind a checkout when the session ends: none is sent,
    the loop is free again, and the next patron borrows normally."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        first = defer.ensureDeferred(check.scan(ITEMS[0]))
        waiting = [defer.ensureDeferred(check.scan(code)) for code in CARD_LIKE]
        check.end_session()
        await first
        await defer.gatherResults(waiting)
        jammed = check.items_in_flight()

        await sign_in(check)
        check.choose(Action.BORROW)
        await check.scan(ITEMS[1])
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    assert not jammed
    assert [(ITEMS[1], Result.DONE)] == [(r.barcode, r.result) for r in check.rows]


@pytest_twisted.ensureDeferred
async def test_re_reads_of_the_item_on_its_way_are_dropped_and_300_refusals_run(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """150 re-reads of the book being lent queue nothing; 300 codes refused
    without the server, queued behind it, are each answered in turn, and the
    loop is free afterwards."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        first = defer.ensureDeferred(check.scan(ITEMS[0]))
        rereads = [defer.ensureDeferred(check.scan(ITEMS[0])) for _ in range(150)]
        queued_after_rereads = len(check._lock.waiting)
        refused = [defer.ensureDeferred(check.scan(code)) for code in CARD_LIKE]
        await defer.gatherResults([first, *rereads, *refused])
        # The last one done hands the lock on at the next turn of the loop.
        for _ in range(10):
            if not check.items_in_flight():
                break
            await task.deferLater(_reactor(), 0, lambda: None)
        jammed = check.items_in_flight()
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    assert 0 == queued_after_rereads
    assert not jammed
    assert [(ITEMS[0], Result.DONE)] == [(r.barcode, r.result) for r in check.rows]
