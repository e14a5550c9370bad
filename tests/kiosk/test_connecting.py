"""A request made while the link logs in waits for it instead of going offline.

Finding A2 of the second fresh-user walk of issue #6: "Return items" pressed
in the first moments after start (or just after a connection reset) had its
returns journalled as offline although the server was up. Against the real
server and the demo library, through the relay of tests/kiosk/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted

from kiosk.journal import Journal
from kiosk.sipclient import LinkState, SipLink
from kiosk.transactions import Patron, Result, SipDesk
from kiosk.wording import Wording
from tests.kiosk.conftest import ITEMS, PATRON, PIN, LiveServer, kiosk_config
from tests.kiosk.test_sipclient import _reactor, reached


def _desk(live_server: LiveServer, tmp_path: Path) -> tuple[SipDesk, SipLink, Journal]:
    config = kiosk_config(live_server.port, tmp_path)
    link = SipLink(config.server, config.account, location="MAIN", reactor=_reactor())
    journal = Journal(config.offline.journal)
    return SipDesk(config, link, Wording.load(), journal), link, journal


async def _lend(desk: SipDesk, link: SipLink, item: str) -> Patron:
    link.start()
    await reached(link, LinkState.ONLINE)
    found = await desk.identify(PATRON, PIN)
    assert found.patron is not None
    outcome = await desk.borrow(found.patron, item)
    assert Result.DONE is outcome.result
    return found.patron


@pytest_twisted.ensureDeferred
async def test_a_return_made_while_the_kiosk_logs_in_is_sent_online(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Scanned before the first login is done, the return waits for it and is
    done by the server; nothing goes to the offline journal."""
    desk, link, journal = _desk(live_server, tmp_path)
    try:
        await _lend(desk, link, ITEMS[0])
    finally:
        link.stop()
        journal.close()
    desk, link, journal = _desk(live_server, tmp_path)
    try:
        link.start()
        assert (LinkState.CONNECTING, True) == (link.state, link.trying)
        outcome = await desk.give_back(ITEMS[0])
        counts = journal.counts()
    finally:
        link.stop()
        journal.close()

    assert Result.DONE is outcome.result
    assert 0 == sum(counts.values())


@pytest_twisted.ensureDeferred
async def test_a_return_made_just_after_a_connection_reset_is_sent_online(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """After the line is cut, the next return waits for the reconnection and
    is done by the server; nothing goes to the offline journal."""
    desk, link, journal = _desk(live_server, tmp_path)
    try:
        await _lend(desk, link, ITEMS[1])
        live_server.relay.cut()
        await reached(link, LinkState.OUT_OF_ORDER)
        assert link.trying
        outcome = await desk.give_back(ITEMS[1])
        counts = journal.counts()
    finally:
        link.stop()
        journal.close()

    assert Result.DONE is outcome.result
    assert 0 == sum(counts.values())


@pytest_twisted.ensureDeferred
async def test_when_the_server_is_down_the_wait_ends_with_the_failed_attempt(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """With the server stopped, the attempt fails and the return is journalled
    offline as before, without waiting out the timeout."""
    desk, link, journal = _desk(live_server, tmp_path)
    await live_server.stop()
    try:
        link.start()
        outcome = await desk.give_back(ITEMS[2])
        pending = journal.pending()
    finally:
        link.stop()
        journal.close()

    assert Result.QUEUED is outcome.result
    assert [ITEMS[2]] == [entry.item for entry in pending]
    assert not link.trying
