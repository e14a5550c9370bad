"""The offline journal failing during a replay: staff are told, patrons are
still served online, and no screen is left waiting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest_twisted

from kiosk.model import Receipt, Screen
from kiosk.sipclient import LinkState
from kiosk.transactions import Action, Result
from tests.kiosk.conftest import ITEMS, LiveServer
from tests.kiosk.test_session import sign_in, start_kiosk
from tests.kiosk.test_sipclient import reached


@pytest_twisted.ensureDeferred
async def test_a_journal_locked_during_the_replay_is_reported_and_patrons_go_on(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Another process holds the journal's lock when the server comes back: the
    replay stops with the problem on the staff screen, and the next patron signs
    in and borrows online."""
    started = await start_kiosk(live_server, tmp_path)
    check = started.check
    other: sqlite3.Connection | None = None
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.scan(ITEMS[0])
        check.finish()
        check.receipt(Receipt.NONE)
        await live_server.stop()
        await reached(started.link, LinkState.OUT_OF_ORDER)
        check.start_returns()
        await check.scan(ITEMS[0])
        assert check.rows[0].result is Result.QUEUED
        check.finish()
        check.receipt(Receipt.NONE)

        other = sqlite3.connect(str(tmp_path / "journal.sqlite3"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        await live_server.restart()
        await reached(started.link, LinkState.ONLINE)
        await sign_in(check)

        assert check.screen is Screen.MENU
        assert check.busy is False
        assert check.desk.journal_problem is not None
        assert "offline journal" in check.staff_status()
        check.choose(Action.BORROW)
        await check.scan(ITEMS[1])
        assert [(row.barcode, row.result) for row in check.rows] == [
            (ITEMS[1], Result.DONE)
        ]
    finally:
        if other is not None:
            other.rollback()
            other.close()
        started.link.stop()
        started.journal.close()
