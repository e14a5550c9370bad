"""Requests queued on the SIP2 link all fail cleanly when the connection goes.

A latent twin of finding 0 of the second adversarial trial of issue #6:
requests wait their turn on the link's lock; when the connection dropped, each
woke inside the previous one's release and failed at once, so a long queue
would overflow the stack and leave the lock held. The server here logs the
kiosk in and then never answers; the link's timers run on a `Clock`.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from twisted.internet import defer, protocol, task
from twisted.internet.task import Clock

from kiosk.sipclient import LinkState, SipLinkError
from sip2server.protocol import ItemInformationRequest
from tests.kiosk.conftest import ITEMS
from tests.kiosk.test_sipclient import (
    _reactor,
    _SilentAfterLogin,
    make_link,
    reached,
)


@pytest_twisted.ensureDeferred
async def test_300_requests_waiting_when_the_connection_drops_all_fail(
    tmp_path: Path,
) -> None:
    """The request on the wire times out; the 300 behind it each fail as
    "not connected" (never sent), and the link's lock is free afterwards."""
    listening = _reactor().listenTCP(
        0, protocol.Factory.forProtocol(_SilentAfterLogin), interface="127.0.0.1"
    )
    clock = Clock()
    link = make_link(listening.getHost().port, tmp_path, clock, timeout=5.0)

    def ask() -> defer.Deferred[object]:
        request = ItemInformationRequest(
            transaction_date=None, institution_id="DEMO", item_identifier=ITEMS[0]
        )
        return defer.ensureDeferred(link.request(request))

    try:
        link.start()
        clock.advance(0)
        await reached(link, LinkState.ONLINE)
        asked = [ask() for _ in range(301)]
        clock.advance(5.0)
        outcomes = await defer.DeferredList(asked, consumeErrors=True)
        for _ in range(10):
            if not link._lock.locked:
                break
            await task.deferLater(_reactor(), 0, lambda: None)
        locked = link._lock.locked
    finally:
        link.stop()
        await defer.maybeDeferred(listening.stopListening)

    errors = [result.value for ok, result in outcomes if not ok]
    assert 301 == len(errors)
    assert all(isinstance(error, SipLinkError) for error in errors)
    assert [True] + [False] * 300 == [error.sent for error in errors]
    assert not locked
