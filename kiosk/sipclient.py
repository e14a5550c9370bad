"""The kiosk's link to the SIP2 server: non-blocking, on Twisted's asyncio reactor.

Layer: `kiosk`. Uses Twisted and the sans-I/O codec `sip2server.protocol`; never
`ils`. The kiosk is a SIP2 client like any vendor's: it logs in (93), asks for
the server's status (99) at an interval, and sends one request at a time.

`SipLink` keeps one connection up: it reconnects with a doubling delay after a
failure, fails a request that gets no reply within the timeout (and drops the
connection, since a late reply could be taken for the next one), and says
whether the kiosk can serve (`LinkState.ONLINE`) or is out of order.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer, protocol
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.logger import Logger

from sip2server.protocol import (
    AcsStatusResponse,
    Decoded,
    Framer,
    LoginRequest,
    LoginResponse,
    Message,
    ProtocolError,
    RequestScResend,
    ScStatusRequest,
    decode,
    encode,
    redact_frame,
)

from .config import AccountSection, ServerSection
from .tls import client_tls_options

log = Logger()


class LinkState(enum.Enum):
    """Whether the kiosk can talk to the server."""

    CONNECTING = "connecting"
    ONLINE = "online"
    # Cannot serve: unreachable, login refused, or the server says it is offline.
    OUT_OF_ORDER = "out_of_order"


class SipLinkError(ConnectionError):
    """The request could not be answered: no connection, no reply, or nonsense."""

    #: False when the request surely never left the kiosk, True when it was
    #: written and its outcome is unknown.
    sent: bool = False

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.sent = sent


class UnsupportedRequestError(SipLinkError):
    """The server answered 96 twice: it does not handle this kind of request."""


class _Wire(protocol.Protocol):
    """Bytes to frames to decoded messages, for one connection."""

    # Twisted types this through zope.interface, which mypy cannot follow.
    transport: Any

    def __init__(self, link: SipLink) -> None:
        self._link = link
        self._framer = Framer()

    def dataReceived(self, data: bytes) -> None:
        for frame in self._framer.feed(data):
            self._link._frame_arrived(self, frame.payload)

    def connectionLost(self, reason: Any = None) -> None:
        self._link._lost(self)


class SipLink:
    """One kiosk's connection to the SIP2 server, kept up for as long as it runs."""

    def __init__(
        self,
        server: ServerSection,
        account: AccountSection,
        *,
        location: str,
        reactor: Any,
        clock: Any = None,
        max_print_width: int = 40,
    ) -> None:
        self._server = server
        self._account = account
        self._location = location
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._max_print_width = max_print_width

        self.state = LinkState.CONNECTING
        #: The last 98 received, for the staff screen and the menu.
        self.status: AcsStatusResponse | None = None
        #: Why the link is out of order, in words for staff (never for patrons).
        self.problem = ""
        self._state_listeners: list[Callable[[LinkState], None]] = []

        self._wire: _Wire | None = None
        self._sequence = 0
        self._lock = defer.DeferredLock()
        self._waiting: defer.Deferred[bytes] | None = None
        self._timeout_call: Any = None
        self._delay = server.reconnect_min
        self._reconnect_call: Any = None
        self._status_call: Any = None
        self._running = False
        self._problem_on_loss = ""
        #: The client TLS options with `server.tls` (read once: a `ca_file`
        #: that cannot be used stops the kiosk at start, naming the key).
        self._tls = (
            client_tls_options(server.host, server.ca_file, key="server.ca_file")
            if server.tls
            else None
        )
        # A connection attempt is under way whose outcome a request should
        # wait for: the first one, and the one after a live connection broke.
        self._trying = False
        self._settle_waiters: list[defer.Deferred[None]] = []

    # -- lifetime --------------------------------------------------------------

    def on_state(self, listener: Callable[[LinkState], None]) -> None:
        """Call `listener(state)` on every change of state."""
        self._state_listeners.append(listener)

    def start(self) -> None:
        """Connect, log in and keep the connection up until `stop`."""
        self._running = True
        self._trying = True
        self._connect_soon(0)

    def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._running = False
        self._settle()
        for call in (self._reconnect_call, self._status_call):
            if call is not None and call.active():
                call.cancel()
        self._reconnect_call = self._status_call = None
        if self._wire is not None and self._wire.transport is not None:
            self._wire.transport.loseConnection()

    def check_now(self) -> None:
        """Try at once instead of waiting out the back-off (staff asked)."""
        if self._wire is None and self._running:
            if self._reconnect_call is not None and self._reconnect_call.active():
                self._reconnect_call.cancel()
            self._delay = self._server.reconnect_min
            self._connect_soon(0)

    @property
    def trying(self) -> bool:
        """Whether the link is (re)connecting after a start or a lost connection,
        so that whether the server can be asked is not known yet."""
        return self._running and self._trying

    async def settled(self) -> None:
        """Wait while the link is `trying`, at most `server.timeout` seconds.

        A request made while the kiosk logs in (at start, or just after a live
        connection broke) waits to be sent online instead of being counted as
        offline at once; when the attempt fails, or takes too long, the wait
        ends and the state says what to do.
        """
        if not self.trying:
            return
        waiter: defer.Deferred[None] = defer.Deferred()
        self._settle_waiters.append(waiter)
        limit = self._clock.callLater(self._server.timeout, self._settle_one, waiter)
        try:
            await waiter
        finally:
            if limit.active():
                limit.cancel()

    def _settle_one(self, waiter: defer.Deferred[None]) -> None:
        if waiter in self._settle_waiters:
            self._settle_waiters.remove(waiter)
            waiter.callback(None)

    def _settle(self) -> None:
        """The attempt has an outcome (or was given up): release the waiters."""
        self._trying = False
        waiters, self._settle_waiters = self._settle_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- requests --------------------------------------------------------------

    async def request(self, message: Message) -> Message:
        """Send one request and return the server's reply.

        Raises:
            SipLinkError: not connected, no reply in time, or an unusable reply.
            UnsupportedRequestError: the server answered 96 to it and to its resend.
        """
        if self.state is not LinkState.ONLINE:
            raise SipLinkError("the server is not available", sent=False)
        return await self._exchange(message)

    async def _exchange(self, message: Message) -> Message:
        await self._lock.acquire()
        if self._wire is None:
            # The connection went while this request waited its turn: fail it
            # and hand the lock on at the next turn of the loop, not from
            # here (woken inside the previous release, a queue of such
            # requests would nest one release in the next, as deep as it is).
            self._reactor.callLater(0, self._lock.release)
            raise SipLinkError("not connected", sent=False)
        try:
            reply = await self._send_and_wait(message)
            if isinstance(reply, RequestScResend):
                # 96: the spec says send it again; a second 96 means the server
                # will never take this kind of request.
                reply = await self._send_and_wait(message)
                if isinstance(reply, RequestScResend):
                    raise UnsupportedRequestError(
                        f"the server does not answer {message.command}", sent=True
                    )
            return reply
        finally:
            self._lock.release()

    async def _send_and_wait(self, message: Message) -> Message:
        wire = self._wire
        if wire is None or wire.transport is None:
            raise SipLinkError("not connected", sent=False)
        sequence = self._sequence if self._server.error_detection else None
        self._sequence = (self._sequence + 1) % 10
        frame = encode(
            message,
            sequence=sequence,
            error_detection=self._server.error_detection,
            encoding=self._server.encoding,
        )
        waiting: defer.Deferred[bytes] = defer.Deferred()
        self._waiting = waiting
        self._timeout_call = self._clock.callLater(
            self._server.timeout, self._no_reply, wire
        )
        log.debug("sent {frame}", frame=redact_frame(frame.rstrip(b"\r")))
        wire.transport.write(frame)
        payload = await waiting
        try:
            decoded = decode(payload, encoding=self._server.encoding)
        except ProtocolError as problem:
            self._drop(wire, f"unusable reply: {problem}")
            raise SipLinkError(f"unusable reply: {problem}", sent=True) from None
        mismatch = _unchecked(decoded, self._server.error_detection) or _mismatch(
            message, decoded, sequence
        )
        if mismatch:
            # Replies and requests are out of step (a reply duplicated or lost):
            # nothing more on this connection can be trusted.
            self._drop(wire, mismatch)
            raise SipLinkError(mismatch, sent=True)
        return without_controls(decoded.message)

    def _frame_arrived(self, wire: _Wire, payload: bytes) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None or wire is not self._wire:
            log.warn("a reply nobody asked for was dropped")
            return
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        waiting.callback(payload)

    def _no_reply(self, wire: _Wire) -> None:
        self._drop(wire, f"no reply within {self._server.timeout:g} s")

    def _fail_waiting(self, reason: str) -> None:
        waiting, self._waiting = self._waiting, None
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        if waiting is not None:
            waiting.errback(SipLinkError(reason, sent=True))

    # -- connection ------------------------------------------------------------

    def _set_state(self, state: LinkState, problem: str = "") -> None:
        self.problem = problem
        if state is self.state:
            return
        self.state = state
        log.info("server link {state} {problem}", state=state.value, problem=problem)
        for listener in list(self._state_listeners):
            listener(state)

    def _connect_soon(self, delay: float) -> None:
        if self._running:
            self._reconnect_call = self._clock.callLater(delay, self._connect)

    def _connect(self) -> None:
        self._reconnect_call = None
        endpoint: Any = TCP4ClientEndpoint(
            self._reactor,
            self._server.host,
            self._server.port,
            timeout=max(1, int(self._server.timeout)),
        )
        if self._tls is not None:
            # TODO(#6): no client certificate yet, for listeners with client_ca.
            endpoint = wrapClientTLS(self._tls, endpoint)
        attempt = connectProtocol(endpoint, _Wire(self))  # type: ignore[no-untyped-call]
        attempt.addCallbacks(self._connected, self._connect_failed)

    def _connect_failed(self, failure: Any) -> None:
        self._back_off()
        # Listeners hear of the state after the attempt is over, waiters after them.
        self._trying = False
        self._set_state(
            LinkState.OUT_OF_ORDER, f"cannot connect: {failure.getErrorMessage()}"
        )
        self._settle()

    def _back_off(self) -> None:
        delay = self._delay
        self._delay = min(self._delay * 2, self._server.reconnect_max)
        self._connect_soon(delay)

    def _connected(self, wire: _Wire) -> None:
        self._wire = wire
        if not self._running:
            self._drop(wire, "stopped")
            return
        defer.ensureDeferred(self._log_in(wire)).addErrback(
            lambda failure: self._drop(wire, failure.getErrorMessage())
        )

    async def _log_in(self, wire: _Wire) -> None:
        reply = await self._exchange(
            LoginRequest(
                login_user_id=self._account.login,
                login_password=self._account.password,
                location_code=self._location,
            )
        )
        if not (isinstance(reply, LoginResponse) and reply.ok):
            self._drop(wire, "the server refused the kiosk's SIP login")
            return
        await self._check_status(wire)

    async def _check_status(self, wire: _Wire, *, polled: bool = False) -> None:
        reply = await self._exchange(
            ScStatusRequest(max_print_width=self._max_print_width)
        )
        if wire is not self._wire:
            return
        if not isinstance(reply, AcsStatusResponse):
            self._drop(wire, f"answered 99 with {reply.command}")
            return
        self.status = reply
        if polled:
            # The connection stayed up a whole status interval: only now is
            # the back-off over (a server dropping every connection right
            # after the 99 would otherwise be hammered at the shortest delay).
            self._delay = self._server.reconnect_min
        # The next poll is set before listeners hear of the state.
        self._status_call = self._clock.callLater(
            self._server.status_interval, self._poll, wire
        )
        self._trying = False
        if reply.online_status:
            self._set_state(LinkState.ONLINE)
        else:
            self._set_state(LinkState.OUT_OF_ORDER, "the server says it is offline")
        self._settle()

    def _poll(self, wire: _Wire) -> None:
        self._status_call = None
        defer.ensureDeferred(self._check_status(wire, polled=True)).addErrback(
            lambda failure: self._drop(wire, failure.getErrorMessage())
        )

    def _drop(self, wire: _Wire, reason: str) -> None:
        if wire is not self._wire:
            return
        self._problem_on_loss = reason
        if wire.transport is not None:
            wire.transport.abortConnection()
        else:  # pragma: no cover - a wire always has a transport once connected
            self._lost(wire)

    def _lost(self, wire: _Wire) -> None:
        if wire is not self._wire:
            return
        self._wire = None
        # A live connection broke: the next attempt (after the back-off) is
        # worth waiting for. One that broke while logging in was the attempt.
        was_online = self.state is LinkState.ONLINE
        reason = self._problem_on_loss or "connection lost"
        self._problem_on_loss = ""
        self._fail_waiting(reason)
        if self._status_call is not None and self._status_call.active():
            self._status_call.cancel()
        self._status_call = None
        if self._running:
            self._back_off()
        retrying = was_online and self._running
        self._trying = retrying
        self._set_state(LinkState.OUT_OF_ORDER, reason)
        if not retrying:
            self._settle()


#: Requests whose reply is not the next command number.
_REPLY_COMMANDS = {"99": "98", "01": "24"}


def _same_id(asked: object, told: object) -> bool:
    if not (isinstance(asked, str) and isinstance(told, str) and asked and told):
        return True
    return asked.strip().casefold() == told.strip().casefold()


def _unchecked(decoded: Decoded, error_detection: bool) -> str:
    """Why a reply cannot be trusted under error detection ("" when it can be).

    With error detection on, every reply carries its checksum (AZ), and every
    reply but 96 its sequence number (AY) too; a wrong checksum already fails
    in `decode`. A reply without them is refused: an LF or CR inside a reply
    cuts it into a first part, without the trailer, that would otherwise be
    taken for the whole reply.
    """
    if not error_detection:
        return ""
    if decoded.checksum is None:
        return f"{decoded.message.command} without a checksum (AZ)"
    if decoded.sequence is None and not isinstance(decoded.message, RequestScResend):
        return f"{decoded.message.command} without a sequence number (AY)"
    return ""


# C0 and C1 control characters (NUL, ESC, LF, CR, TAB... and DEL), and the
# Unicode line and paragraph separators: nothing a patron should see.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


_T = TypeVar("_T")


def _clean(value: object) -> object:
    if type(value) is str:
        return _CONTROLS.sub(" ", value)
    if type(value) is tuple:
        return tuple(_clean(part) for part in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return without_controls(value)
    return value


def without_controls(message: _T) -> _T:
    """`message` with every control character in its text turned into a space.

    Every text the server sends (titles, names, screen messages, fee
    descriptions, extension fields), however deep in the reply, is cleaned
    before a screen, receipt or email can show it: a NUL would cut a label
    short, an ESC reach a receipt printer, an LF break a mail header.
    """
    if not dataclasses.is_dataclass(message) or isinstance(message, type):
        return message
    changes: dict[str, object] = {}
    for field in dataclasses.fields(message):
        if not field.init:
            continue
        value = getattr(message, field.name)
        cleaned = _clean(value)
        if cleaned != value:
            changes[field.name] = cleaned
    return dataclasses.replace(message, **changes) if changes else message


def _mismatch(request: Message, decoded: Decoded, sequence: int | None) -> str:
    """Why `decoded` cannot be the reply to `request` ("" when it can be).

    The reply must be the request's response command (or 96), carry the same
    sequence number (AY) when error detection is on (`_unchecked` makes sure
    it has one), and
    name the same patron and item when both name one. The words are for staff
    and the log: they name no patron or item.
    """
    reply = decoded.message
    if isinstance(reply, RequestScResend):
        return ""
    expected = _REPLY_COMMANDS.get(request.command)
    if expected is None and request.command.isdigit():
        expected = f"{int(request.command) + 1:02d}"
    if expected is not None and reply.command != expected:
        return f"answered {request.command} with {reply.command}"
    if (
        sequence is not None
        and decoded.sequence is not None
        and decoded.sequence != sequence
    ):
        return f"reply sequence {decoded.sequence} to request {sequence}"
    for field, what in (("patron_identifier", "patron"), ("item_identifier", "item")):
        if not _same_id(getattr(request, field, None), getattr(reply, field, None)):
            return f"the reply to {request.command} names another {what}"
    return ""


__all__ = [
    "LinkState",
    "SipLink",
    "SipLinkError",
    "UnsupportedRequestError",
    "without_controls",
]
