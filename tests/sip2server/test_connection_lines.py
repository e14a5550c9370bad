"""Connected/disconnected log lines of connections that never log in are within a
budget per address (issue #5), as refused-login lines are.

Layer: tests of `sip2server` (server, terminal arrival, logs) over real TCP on
loopback with a real SQLite file.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from sip2server.app import start_server
from sip2server.terminal_arrival import DETAILED_CONNECTIONS
from tests.sip2server.conftest import SipTarget, server_config, stock_library
from tests.sip2server.test_wire_behaviour import LOGIN_FRAME, RawTerminal, in_thread

DROPPERS = 40


@pytest_twisted.inlineCallbacks
def test_connect_and_drop_flood_is_summed_up_but_a_login_gets_its_lines(
    sqlite_url: str,
) -> Any:
    """40 connect-and-drop connections write 10 connected and 10 disconnected
    lines and one summary of the 31 left out (30 droppers and the kiosk that
    came after them); the kiosk that logs in still gets both of its lines."""
    library = stock_library(sqlite_url)
    server = yield start_server(server_config(sqlite_url), reactor)
    host, port = server.addresses()[0]
    target = SipTarget(host=host, port=port, library=library, server=server)

    def talk() -> bytes:
        for _ in range(DROPPERS):
            RawTerminal(target).close()
        with RawTerminal(target) as kiosk:
            return kiosk.exchange(LOGIN_FRAME)

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        accepted = yield in_thread(talk)
        yield server.stop()
    finally:
        globalLogPublisher.removeObserver(seen.append)
        library.database.dispose()

    assert b"941" == accepted
    connected = [e for e in seen if e.get("log_format", "").startswith("terminal con")]
    disconnected = [
        e for e in seen if "terminal disconnected" in e.get("log_format", "")
    ]
    # The first 10 droppers, then the kiosk, whose line is written at its login.
    assert DETAILED_CONNECTIONS + 1 == len(connected) == 11
    assert 11 == len(disconnected)
    assert ["kiosk1"] == [e["login"] for e in disconnected if e["login"] != "-"]
    summaries = [e for e in seen if "more connections from" in e.get("log_format", "")]
    assert [(31, "127.0.0.1")] == [(e["count"], e["host"]) for e in summaries]
