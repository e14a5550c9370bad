"""The gate's SIP2 item lookup against a real server on a loopback port.

The server runs in the test's reactor on a real SQLite database with the stock
library of `tests/sip2server`: the gate does not care which engine is behind
the server, and `tests/sip2server` runs every engine. The lookup is blocking,
so it runs in a thread, as the gate runs it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import threads

from drivers.gate.config import SipSection
from drivers.gate.lookup import ItemFacts, SipItemLookup, SipLookupError
from sip2server.app import RunningServer, start_server
from sip2server.client import SipClient, SipClientError
from sip2server.protocol import (
    CheckoutRequest,
    CheckoutResponse,
    CirculationStatus,
    LoginRequest,
)
from tests.ils.factories import Library
from tests.sip2server.conftest import (
    ADA,
    INSTITUTION,
    ITEMS,
    LOCATION,
    LOGIN,
    PASSWORD,
    PIN,
    server_config,
    stock_library,
)


@dataclass
class LibraryServer:
    """A running SIP2 server on the stock library, which a test may stop."""

    host: str
    port: int
    url: str
    library: Library
    server: RunningServer
    stopped: bool = field(default=False)

    async def stop(self) -> None:
        """Stop the server (once; the fixture does not stop it again)."""
        if not self.stopped:
            self.stopped = True
            await self.server.stop()


@pytest_twisted.async_yield_fixture
async def library_server(sqlite_url: str) -> AsyncIterator[LibraryServer]:
    """A running server with the stock library on a SQLite file."""
    # Imported here: importing the reactor at the top would install the wrong one.
    from twisted.internet import reactor  # noqa: PLC0415

    library = stock_library(sqlite_url)
    server = await start_server(server_config(sqlite_url), reactor)
    host, port = server.addresses()[0]
    running = LibraryServer(host, port, sqlite_url, library, server)
    try:
        yield running
    finally:
        await running.stop()
        library.database.dispose()


def gate_sip(target: LibraryServer, **values: Any) -> SipSection:
    """The [sip] section of a gate that logs in with the test server's account."""
    return SipSection.model_validate(
        {
            "host": target.host,
            "port": target.port,
            "login": LOGIN,
            "password": PASSWORD,
            "institution": INSTITUTION,
            "location": LOCATION,
            **values,
        }
    )


def check_out(target: LibraryServer, item: str) -> None:
    """Lend `item` to Ada through SIP2, as a kiosk would (blocking)."""
    with SipClient(target.host, target.port) as kiosk:
        kiosk.request(LoginRequest(login_user_id=LOGIN, login_password=PASSWORD))
        reply = kiosk.request(
            CheckoutRequest(
                sc_renewal_policy=False,
                no_block=False,
                transaction_date=datetime.now(),
                institution_id=INSTITUTION,
                patron_identifier=ADA,
                patron_password=PIN,
                item_identifier=item,
            )
        ).message
    assert isinstance(reply, CheckoutResponse)
    assert reply.ok


@pytest_twisted.ensureDeferred
async def test_lookup_gives_title_and_status_of_items(
    library_server: LibraryServer,
) -> None:
    """An item on the shelf is available, one checked out is on loan."""
    lookup = SipItemLookup(gate_sip(library_server))
    await threads.deferToThread(check_out, library_server, ITEMS[1])

    shelf: ItemFacts = await threads.deferToThread(lookup.lookup, ITEMS[0])
    loan: ItemFacts = await threads.deferToThread(lookup.lookup, ITEMS[1])
    lookup.close()

    assert ("Tide Tables, volume 01", CirculationStatus.AVAILABLE) == (
        shelf.title,
        shelf.status,
    )
    assert not shelf.on_loan
    assert ("Tide Tables, volume 02", CirculationStatus.CHARGED) == (
        loan.title,
        loan.status,
    )
    assert loan.on_loan


@pytest_twisted.ensureDeferred
async def test_unknown_item_is_reported_as_unknown(
    library_server: LibraryServer,
) -> None:
    """An id the library system does not hold comes back as not known."""
    lookup = SipItemLookup(gate_sip(library_server))

    facts: ItemFacts = await threads.deferToThread(lookup.lookup, "30000000000000")
    lookup.close()

    assert not facts.known


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_a_clear_error(library_server: LibraryServer) -> None:
    """A refused login names the keys to check and never the password."""
    lookup = SipItemLookup(gate_sip(library_server, password="not-the-password"))

    with pytest.raises(SipLookupError) as caught:
        await threads.deferToThread(lookup.lookup, ITEMS[0])

    message = str(caught.value)
    assert f"the SIP2 server refused login {LOGIN!r}" in message
    assert "not-the-password" not in message

    # The next alarm, within retry_after, is not asked but still says why.
    with pytest.raises(SipLookupError) as again:
        await threads.deferToThread(lookup.lookup, ITEMS[0])
    assert str(again.value).startswith(
        f"the SIP2 server failed a moment ago (the SIP2 server refused login {LOGIN!r}"
    )
    assert str(again.value).endswith("); not asked")


@pytest_twisted.ensureDeferred
async def test_server_gone_fails_fast_then_waits_before_asking_again() -> None:
    """Nothing listening: a lookup fails, and one within retry_after is not sent."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    clock = [100.0]
    section = SipSection.model_validate(
        {
            "port": port,
            "login": LOGIN,
            "password": PASSWORD,
            "institution": INSTITUTION,
            "retry_after": 10,
        }
    )
    lookup = SipItemLookup(section, now=lambda: clock[0])

    with pytest.raises(SipLookupError, match=f"cannot connect to 127.0.0.1:{port}"):
        await threads.deferToThread(lookup.lookup, ITEMS[0])
    clock[0] += 9
    with pytest.raises(SipLookupError, match=r"failed a moment ago \(cannot connect"):
        await threads.deferToThread(lookup.lookup, ITEMS[0])
    clock[0] += 2
    with pytest.raises(SipLookupError, match=f"cannot connect to 127.0.0.1:{port}"):
        await threads.deferToThread(lookup.lookup, ITEMS[0])


@pytest_twisted.ensureDeferred
async def test_connection_is_kept_and_renewed_after_the_server_restarts(
    library_server: LibraryServer,
) -> None:
    """A lookup with the server gone fails; after a restart the next logs in again."""
    from twisted.internet import reactor  # noqa: PLC0415

    lookup = SipItemLookup(gate_sip(library_server, retry_after=0))
    await threads.deferToThread(lookup.lookup, ITEMS[0])
    await threads.deferToThread(lookup.lookup, ITEMS[2])
    await library_server.stop()

    with pytest.raises(SipLookupError):
        await threads.deferToThread(lookup.lookup, ITEMS[0])

    listen = {"listen": [f"tcp:{library_server.port}:interface=127.0.0.1"]}
    config = server_config(library_server.url)
    again = await start_server(
        config.model_copy(update={"server": config.server.model_copy(update=listen)}),
        reactor,
    )
    try:
        facts: ItemFacts = await threads.deferToThread(lookup.lookup, ITEMS[0])
    finally:
        lookup.close()
        await again.stop()
    assert "Tide Tables, volume 01" == facts.title


class EndlessServer:
    """A loopback peer that answers any request with bytes that never end in a
    frame terminator (a broken or hostile SIP2 server)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.recv(4096)
            while not self._stop.is_set():
                try:
                    connection.sendall(b"x" * 4096)
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=10)


@pytest.fixture
def endless_server() -> Iterator[EndlessServer]:
    """An EndlessServer, closed after the test."""
    server = EndlessServer()
    yield server
    server.close()


def test_client_deadline_bounds_a_reply_that_never_ends(
    endless_server: EndlessServer,
) -> None:
    """With a deadline, a reply that keeps coming without a terminator ends in
    SipClientError (each read alone would never time out)."""
    client = SipClient("127.0.0.1", endless_server.port, timeout=5.0, deadline=0.5)
    client.connect()
    try:
        with pytest.raises(SipClientError, match=r"no complete reply within 0\.5 s"):
            client.request(LoginRequest(login_user_id=LOGIN, login_password=PASSWORD))
    finally:
        client.close()


def test_lookup_gives_up_on_a_reply_that_never_ends(
    endless_server: EndlessServer,
) -> None:
    """The gate's lookup fails with SipLookupError within its timeout when the
    server streams bytes without ever ending its reply."""
    section = SipSection.model_validate(
        {
            "port": endless_server.port,
            "login": LOGIN,
            "password": PASSWORD,
            "institution": INSTITUTION,
            "timeout": 0.5,
        }
    )

    with pytest.raises(SipLookupError, match=r"no complete reply within 0\.5 s"):
        SipItemLookup(section).lookup(ITEMS[0])
