"""The metrics and health port gives each address only a share of its slots
(issue #5), so one client that reconnects as soon as it is closed cannot keep a
monitor elsewhere from /healthz.

Layer: tests of `sip2server` (app, health) with real sockets on loopback and a
real SQLite file; the flooder's connections come from 127.0.0.2.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread

from sip2server import app
from sip2server.app import start_server
from tests.sip2server.conftest import server_config, stock_library
from tests.sip2server.test_metrics import fetch
from tests.sip2server.test_transient_refusals import wait_until
from tests.sip2server.test_wire_behaviour import in_thread

FLOODER = "127.0.0.2"


@pytest_twisted.inlineCallbacks
def test_one_address_cannot_take_every_health_port_slot(sqlite_url: str) -> Any:
    """40 connections from 127.0.0.2 keep only its 8 slots (32 are closed at
    once), and /healthz from 127.0.0.1 still answers 200 while they are open."""
    assert (app.OPERATIONS_MAX_CONNECTIONS, app.OPERATIONS_MAX_PER_ADDRESS) == (32, 8)
    library = stock_library(sqlite_url)
    config = server_config(sqlite_url)
    config = config.model_copy(
        update={
            "metrics": config.metrics.model_copy(
                update={"listen": "tcp:0:interface=127.0.0.1"}
            )
        }
    )
    server = yield start_server(config, reactor)
    address = server.operations_address()
    assert address is not None
    capped = server.operations_port.factory

    def flood_then_probe() -> tuple[int, tuple[int, str]]:
        held = [
            socket.create_connection(address, 5, source_address=(FLOODER, 0))
            for _ in range(40)
        ]
        try:
            wait_until(lambda: capped.refused == 32)
            kept = blockingCallFromThread(reactor, lambda: len(capped.protocols))
            return kept, fetch(address, "/healthz")
        finally:
            for sock in held:
                sock.close()

    try:
        kept, health = yield in_thread(flood_then_probe)
    finally:
        yield server.stop()
        library.database.dispose()

    assert 8 == kept
    assert (200, "ok\n") == health
