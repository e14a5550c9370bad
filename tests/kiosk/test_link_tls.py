"""The kiosk's SIP2 link over TLS, checking the server's certificate.

Finding 9b of the second adversarial trial of issue #6: the kiosk could not
use a TLS listener, so PINs and the kiosk's SIP password crossed the network
in clear. Here a TLS listener on loopback (a throwaway certificate for
127.0.0.1) forwards to the real server with the demo library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from twisted.internet import defer, ssl

from kiosk.model import Screen
from kiosk.sipclient import LinkState, SipLink
from kiosk.transactions import Action, Result
from tests.kiosk.conftest import ITEMS, LiveServer, Relay, kiosk_config
from tests.kiosk.test_mailer_tls import self_signed_pem
from tests.kiosk.test_session import sign_in, start_kiosk
from tests.kiosk.test_sipclient import _reactor, reached


@pytest_twisted.async_yield_fixture
async def tls_port(
    live_server: LiveServer, tmp_path: Path
) -> AsyncIterator[tuple[int, Path]]:
    """A TLS listener in front of the live server: its port and the CA file."""
    assert live_server.server is not None
    pem, ca_file = self_signed_pem(tmp_path)
    options = ssl.PrivateCertificate.loadPEM(pem).options()
    relay = Relay(_reactor(), live_server.server.addresses()[0][1])
    listening = _reactor().listenSSL(0, relay, options, interface="127.0.0.1")
    try:
        yield listening.getHost().port, ca_file
    finally:
        relay.cut()
        await defer.maybeDeferred(listening.stopListening)


@pytest_twisted.ensureDeferred
async def test_a_patron_borrows_over_a_tls_link(
    tls_port: tuple[int, Path], tmp_path: Path
) -> None:
    """With `server.tls` and the server's CA, the kiosk logs in over TLS and a
    patron signs in and borrows a book."""
    port, ca_file = tls_port
    kiosk = await start_kiosk(
        _Port(port),  # type: ignore[arg-type]
        tmp_path,
        server={"tls": True, "ca_file": str(ca_file)},
    )
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.scan(ITEMS[0])
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    assert Screen.ITEMS is check.screen
    assert [Result.DONE] == [row.result for row in check.rows]


@pytest_twisted.ensureDeferred
async def test_a_server_certificate_the_kiosk_does_not_trust_is_refused(
    tls_port: tuple[int, Path], tmp_path: Path
) -> None:
    """Trusting another CA, the kiosk never logs in: the link is out of order."""
    port, _ = tls_port
    (tmp_path / "other").mkdir()
    _, other_ca = self_signed_pem(tmp_path / "other")
    config = kiosk_config(
        port, tmp_path, server={"tls": True, "ca_file": str(other_ca)}
    )
    link = SipLink(config.server, config.account, location="MAIN", reactor=_reactor())
    try:
        link.start()
        await reached(link, LinkState.OUT_OF_ORDER)
    finally:
        link.stop()

    assert link.status is None


class _Port:
    """Where the TLS listener is (what `start_kiosk` needs of a live server)."""

    def __init__(self, port: int) -> None:
        self.port = port
