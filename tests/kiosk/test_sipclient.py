"""The kiosk's SIP2 link: login, status polling, timeouts, reconnecting, 96.

Connections are real TCP on loopback to the real server (or, for a server that
goes silent, to a small Twisted server speaking real SIP2 frames); timers run
on a `Clock`, so nothing waits on the wall clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.task import Clock

from kiosk.sipclient import LinkState, SipLink, SipLinkError, UnsupportedRequestError
from sip2server.protocol import (
    AcsStatusResponse,
    Framer,
    ItemInformationRequest,
    ItemInformationResponse,
    LoginResponse,
    Message,
    RenewRequest,
    RequestScResend,
    SupportedMessages,
    decode,
    encode,
)
from tests.kiosk.conftest import ITEMS, PATRON, LiveServer, kiosk_config


def _reactor() -> Any:
    from twisted.internet import reactor  # noqa: PLC0415

    return reactor


def reached(link: SipLink, state: LinkState) -> defer.Deferred[None]:
    """Fires when the link is in `state` (at once if it already is)."""
    waiting: defer.Deferred[None] = defer.Deferred()
    if link.state is state:
        waiting.callback(None)
        return waiting

    def changed(new: LinkState) -> None:
        if new is state and not waiting.called:
            waiting.callback(None)

    link.on_state(changed)
    return waiting


def make_link(port: int, tmp_path: Path, clock: Clock, **server: Any) -> SipLink:
    config = kiosk_config(port, tmp_path, server=server)
    return SipLink(
        config.server,
        config.account,
        location=config.kiosk.branch,
        reactor=_reactor(),
        clock=clock,
    )


@pytest_twisted.ensureDeferred
async def test_the_link_logs_in_and_answers_requests(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """After 93 and 99 the link is online and a 17 gets the item's 18."""
    clock = Clock()
    link = make_link(live_server.port, tmp_path, clock)
    link.start()
    clock.advance(0)
    await reached(link, LinkState.ONLINE)

    reply = await link.request(
        ItemInformationRequest(
            transaction_date=None, institution_id="DEMO", item_identifier=ITEMS[0]
        )
    )
    link.stop()

    assert isinstance(reply, ItemInformationResponse)
    assert "Pride and prejudice" == reply.title_identifier
    assert link.status is not None
    assert link.status.online_status


@pytest_twisted.ensureDeferred
async def test_status_is_asked_again_at_the_configured_interval(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Each status_interval the link sends 99 and keeps the newest 98."""
    clock = Clock()
    link = make_link(live_server.port, tmp_path, clock, status_interval=30.0)
    link.start()
    clock.advance(0)
    await reached(link, LinkState.ONLINE)
    first = link.status

    polled: defer.Deferred[None] = defer.Deferred()
    original = link._check_status

    async def watched(wire: Any, **options: Any) -> None:
        await original(wire, **options)
        polled.callback(None)

    link._check_status = watched  # type: ignore[method-assign]
    clock.advance(30.0)
    await polled
    link.stop()

    assert link.status is not first
    assert LinkState.ONLINE is link.state


@pytest_twisted.ensureDeferred
async def test_a_request_answered_96_twice_is_reported_as_unsupported(
    tmp_path: Path,
) -> None:
    """A server that answers 29 with 96 gets it once more; then the link gives up
    on that request and stays online."""
    _ResendAsker.heard = []
    factory = protocol.Factory.forProtocol(_ResendAsker)
    port = _reactor().listenTCP(0, factory, interface="127.0.0.1")
    clock = Clock()
    link = make_link(port.getHost().port, tmp_path, clock)
    try:
        link.start()
        clock.advance(0)
        await reached(link, LinkState.ONLINE)
        with pytest.raises(UnsupportedRequestError):
            await link.request(
                RenewRequest(
                    third_party_allowed=False,
                    no_block=False,
                    transaction_date=None,
                    institution_id="DEMO",
                    patron_identifier=PATRON,
                    item_identifier=ITEMS[0],
                )
            )
        assert LinkState.ONLINE is link.state
    finally:
        link.stop()
        await defer.maybeDeferred(port.stopListening)

    assert [b"93", b"99", b"29", b"29"] == [frame[:2] for frame in _ResendAsker.heard]


@pytest_twisted.ensureDeferred
async def test_reconnects_with_doubling_delays_after_the_server_stops(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A lost server puts the link out of order; retries wait 0.05, 0.1, 0.2, 0.2 s."""
    clock = Clock()
    link = make_link(
        live_server.port, tmp_path, clock, reconnect_min=0.05, reconnect_max=0.2
    )
    link.start()
    clock.advance(0)
    await reached(link, LinkState.ONLINE)

    await live_server.stop()
    await reached(link, LinkState.OUT_OF_ORDER)
    delays = []
    for _ in range(4):
        (call,) = clock.getDelayedCalls()
        delays.append(round(call.getTime() - clock.seconds(), 3))
        failed: defer.Deferred[None] = defer.Deferred()
        original = link._back_off

        def noted(original: Any = original, failed: Any = failed) -> None:
            link._back_off = original  # type: ignore[method-assign]
            original()
            failed.callback(None)

        link._back_off = noted  # type: ignore[method-assign]
        clock.advance(delays[-1])
        await failed

    await live_server.restart()
    (call,) = clock.getDelayedCalls()
    clock.advance(call.getTime() - clock.seconds())
    await reached(link, LinkState.ONLINE)
    link.stop()

    assert [0.05, 0.1, 0.2, 0.2] == delays
    assert LinkState.ONLINE is link.state


class _SilentAfterLogin(protocol.Protocol):
    """A SIP2 server that logs the kiosk in, reports its status, then says nothing.

    Its replies carry the trailer (AY and AZ) when the request did, as a server
    doing error detection must.
    """

    heard: ClassVar[list[bytes]] = []

    def connectionMade(self) -> None:
        self.framer = Framer()
        self.sequence: int | None = None

    def other(self) -> None:
        """What it does with any other request: nothing."""

    def reply(self, message: Message) -> None:
        """Send `message` with the trailer of the request it answers."""
        resend = isinstance(message, RequestScResend)
        self.transport.write(
            encode(
                message,
                sequence=None if resend else self.sequence,
                error_detection=self.sequence is not None,
            )
        )

    def dataReceived(self, data: bytes) -> None:
        for frame in self.framer.feed(data):
            self.heard.append(frame.payload)
            self.sequence = decode(frame.payload).sequence
            if not frame.payload.startswith((b"93", b"99")):
                self.other()
            elif frame.payload.startswith(b"93"):
                self.reply(LoginResponse(ok=True))
            elif frame.payload.startswith(b"99"):
                self.reply(
                    AcsStatusResponse(
                        online_status=True,
                        checkin_ok=True,
                        checkout_ok=True,
                        acs_renewal_policy=True,
                        status_update_ok=False,
                        offline_ok=False,
                        timeout_period=100,
                        retries_allowed=3,
                        date_time_sync=None,
                        institution_id="DEMO",
                        supported_messages=SupportedMessages(),
                    )
                )


class _ResendAsker(_SilentAfterLogin):
    """A SIP2 server that answers every other request with 96 (resend)."""

    heard: ClassVar[list[bytes]] = []

    def other(self) -> None:
        self.reply(RequestScResend())


@pytest_twisted.ensureDeferred
async def test_a_request_without_reply_fails_after_the_timeout(tmp_path: Path) -> None:
    """No reply within `timeout` fails the request as sent and resets the link."""
    factory = protocol.Factory.forProtocol(_SilentAfterLogin)
    port = _reactor().listenTCP(0, factory, interface="127.0.0.1")
    clock = Clock()
    link = make_link(port.getHost().port, tmp_path, clock, timeout=5.0)
    try:
        link.start()
        clock.advance(0)
        await reached(link, LinkState.ONLINE)

        asked = defer.ensureDeferred(
            link.request(
                ItemInformationRequest(
                    transaction_date=None, institution_id="DEMO", item_identifier="x"
                )
            )
        )
        clock.advance(5.0)
        with pytest.raises(SipLinkError) as raised:
            await asked
        await reached(link, LinkState.OUT_OF_ORDER)
    finally:
        link.stop()
        await defer.maybeDeferred(port.stopListening)

    assert raised.value.sent is True
    assert "no reply within 5 s" == link.problem


@pytest_twisted.ensureDeferred
async def test_a_refused_login_puts_the_kiosk_out_of_order(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A wrong SIP password leaves the link out of order, saying why for staff."""
    clock = Clock()
    config = kiosk_config(
        live_server.port, tmp_path, account={"password": "not-the-password"}
    )
    link = SipLink(
        config.server,
        config.account,
        location="MAIN",
        reactor=_reactor(),
        clock=clock,
    )
    link.start()
    clock.advance(0)
    await reached(link, LinkState.OUT_OF_ORDER)
    link.stop()

    assert "the server refused the kiosk's SIP login" == link.problem
    with pytest.raises(SipLinkError):
        await link.request(
            ItemInformationRequest(
                transaction_date=None, institution_id="DEMO", item_identifier="x"
            )
        )
