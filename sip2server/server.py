"""The Twisted SIP2 server: a thin adapter between TCP connections and the codec.

Layer: `sip2server`. The protocol object only frames, decodes, queues and
encodes; what a message means is decided by `TerminalSession` in a worker
thread, so a slow database never stalls framing for other terminals.

Per connection, requests are answered strictly in order, one at a time (SIP2
is request and response), while other connections proceed in parallel up to
the thread pool's size.

`SipConnection` is built from parts in their own modules: `terminal_arrival`
(the terminal's address, certificate and login deadline), `frame_queue`
(framing, queueing and flow control), `reply_encoding` (how a reply is
encoded and what its outcome is named) and `frame_faults` (unusable frames and
faults while answering); `login_slots` holds the threads that check passwords.
This module answers requests and makes connections. Must not import `kiosk` or
`drivers`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from sip2server.config import ErrorDetection
from sip2server.frame_faults import DETAILED_WARNINGS, MAX_PROTOCOL_ERRORS, FrameFaults
from sip2server.frame_queue import (
    _NO_FRAMES,
    FRAMING_CHUNK,
    IMMEDIATE_REPLIES_PER_TURN,
    MAX_QUEUED_FRAMES,
    FrameQueue,
)
from sip2server.login_slots import LOGINS_BUSY, LoginSlots, return_hash_memory
from sip2server.logs import LineBudget
from sip2server.protocol import (
    Decoded,
    Frame,
    Framer,
    LoginRequest,
    LoginResponse,
    ProtocolError,
    RemoteProtocolError,
    RequestAcsResend,
    ScStatusRequest,
    decode,
    redact,
)
from sip2server.protocol import Reply as ProtocolReply
from sip2server.reply_encoding import ReplyEncoding, _result_of, _trailer_of
from sip2server.session import Reply, TerminalSession, request_name
from sip2server.terminal_arrival import (
    _DETAILED_REFUSALS,
    CONNECTION_PERIOD,
    DETAILED_CONNECTIONS,
    DETAILED_LOGIN_REFUSALS,
    LOGIN_REFUSAL_PERIOD,
    MAX_FAILED_LOGINS,
    Keepalive,
    TerminalArrival,
    _socket_of,
    _summarize_connections,
    _summarize_refused_logins,
    _tls_error,
    set_keepalive,
)

if TYPE_CHECKING:
    from sip2server.accounts import AccountBook, Admission
    from sip2server.mapping import SipCirculation
    from sip2server.metrics import ServerMetrics
    from sip2server.thread_wait import ThreadWait
    from sip2server.txlog import TransactionLog

log = Logger(namespace="sip2server")

# What importers use, including the names that moved to the parts' modules.
__all__ = [
    "DETAILED_LOGIN_REFUSALS",
    "DETAILED_WARNINGS",
    "FRAMING_CHUNK",
    "IMMEDIATE_REPLIES_PER_TURN",
    "LOGINS_BUSY",
    "LOGIN_REFUSAL_PERIOD",
    "MAX_FAILED_LOGINS",
    "MAX_PROTOCOL_ERRORS",
    "MAX_QUEUED_FRAMES",
    "_NO_FRAMES",
    "Keepalive",
    "LoginSlots",
    "SipConnection",
    "SipServerFactory",
    "_Redacted",
    "_result_of",
    "_socket_of",
    "return_hash_memory",
    "set_keepalive",
]

_connection_ids = itertools.count(1)


@dataclass(frozen=True, slots=True, repr=False)
class _Redacted:
    """A message rendered for the log only if a log line is actually written.

    Debug lines about every message are filtered out at the default level;
    redacting each message up front would cost on every request for nothing.
    """

    message: Any
    mask_patron: bool

    def __str__(self) -> str:
        return redact(self.message, mask_patron=self.mask_patron)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    # Whatever renders the event (text, JSON, a test's repr) sees only this.
    __repr__ = __str__


@dataclass(frozen=True, slots=True)
class _Request:
    """A request that has been decoded and waits for its reply."""

    frame: Frame
    decoded: Decoded
    started: float = 0.0


@implementer(IPushProducer, IHandshakeListener)
class SipConnection(
    TerminalArrival, FrameQueue, ReplyEncoding, FrameFaults, TimeoutMixin, Protocol
):
    """One terminal's TCP connection.

    It is also the producer of its replies: when a terminal stops reading and
    the outgoing buffer fills, the server stops reading its requests too, so a
    slow reader costs bounded memory. On a TLS listener Twisted tells it when
    the handshake is done (`handshakeCompleted`), and it hands the terminal's
    certificate to the session for accounts tied to certificates.
    """

    def __init__(self, factory: SipServerFactory) -> None:
        self.factory = factory
        self.connection_id = next(_connection_ids)
        self.framer = Framer(max_length=factory.max_frame_bytes)
        self.session = factory.new_session(self.connection_id)
        self.peer = "?"
        self.host = ""
        self._admitted = False
        self._introduced = False
        self._queue = _NO_FRAMES
        self._unframed = bytearray()
        self._busy = False
        self._closed = False
        # What error detection needs: the last reply sent, and the (sequence,
        # checksum, bytes) of the request it answered, for 97 and retransmissions.
        self._last_reply: bytes | None = None
        self._last_request_key: tuple[int, str, bytes] | None = None
        self._peer_uses_crlf = False
        self._reading_paused = False
        self._output_blocked = False
        self._drain_later: Any = None
        self._protocol_errors = 0
        self._warnings = 0
        self._failed_logins = 0
        self._close_after_reply = False
        # Until the terminal logs in: the deadline to do so, and whether it is
        # counted against its address's cap on connections not logged in.
        self._login_deadline: Any = None
        self._waiting_login = False
        # Whether "terminal connected" was written (see connection_lines), and
        # so whether "terminal disconnected" will be.
        self._connection_logged = False

    def connectionMade(self) -> None:
        self._learn_peer()
        admission = self.factory.admission
        if admission is not None and not admission.connect(self.connection_id):
            self.factory.refused += 1
            if (
                self.factory.refused <= _DETAILED_REFUSALS
                or self.factory.refused % 100 == 0
            ):
                log.warn(
                    "server full ({limit} connections); refusing conn={conn} "
                    "peer={peer} ({count} refused so far)",
                    limit=admission.max_connections,
                    conn=self.connection_id,
                    peer=self.peer,
                    count=self.factory.refused,
                )
            self._closed = True
            self.transport.abortConnection()
            return
        self._admitted = True
        self.factory.connections.add(self)
        self.transport.registerProducer(self, True)
        self.setTimeout(self.factory.idle_timeout or None)
        if self.factory.login_timeout:
            self._login_deadline = self.factory.reactor.callLater(
                self.factory.login_timeout, self._login_overdue
            )
        if self.factory.keepalive is not None:
            set_keepalive(self.transport, self.factory.keepalive)
        if not self.factory.proxied:
            # Behind a proxy the terminal's address comes with its first bytes.
            self._introduce()

    def connectionLost(self, reason: Failure = Factory.noisy) -> None:  # type: ignore[assignment]
        if not self._admitted:
            return
        self._logged_in()
        self.factory.connections.discard(self)
        if self.factory.admission is not None:
            self.factory.admission.disconnect(self.connection_id)
        self._closed = True
        self._queue.clear()
        self._unframed.clear()
        self.setTimeout(None)
        if self._drain_later is not None and self._drain_later.active():
            self._drain_later.cancel()
        if self.factory.proxied and not self._introduced:
            # Closed before a whole PROXY header came: the peer hung up, or
            # our ProxyHeaderReader (listeners.py) refused the header or its
            # timing and logged why; either way the terminal never began.
            log.warn(
                "no PROXY header from conn={conn} peer={peer} on listener "
                "{listener}; closed (a PROXY listener takes only the load "
                "balancer's connections, which start with the header)",
                conn=self.connection_id,
                peer=self.peer,
                listener=self.factory.name,
            )
            return
        tls_error = _tls_error(reason)
        if tls_error is not None:
            log.warn(
                "TLS failed conn={conn} peer={peer} login={login}: {problem}",
                conn=self.connection_id,
                peer=self.peer,
                login=self.session.login or "-",
                problem=tls_error,
            )
            return
        if not self._connection_logged:
            return
        log.info(
            "terminal disconnected conn={conn} peer={peer} login={login}",
            conn=self.connection_id,
            peer=self.peer,
            login=self.session.login or "-",
        )

    def dataReceived(self, data: bytes) -> None:
        if not self._introduced:
            # The PROXY header has been read: the peer is now the terminal.
            self._learn_peer()
            self._introduce()
            if self._closed:
                return
        self.resetTimeout()
        self._unframed += data
        self._drain()

    def timeoutConnection(self) -> None:
        if self._busy:
            # Silent because it waits for our reply: not idle.
            self.resetTimeout()
            return
        log.info(
            "idle for {seconds} s, closing conn={conn} peer={peer}",
            seconds=self.factory.idle_timeout,
            conn=self.connection_id,
            peer=self.peer,
        )
        self._close()

    def _immediate_reply(self, frame: Frame) -> bytes | _Request:
        """The bytes to send without the database, or the request to run."""
        if frame.tls:
            # A TLS client on a plain port will never speak plain SIP2 here.
            if self.factory.metrics is not None:
                self.factory.metrics.protocol_error()
            log.warn(
                "TLS handshake on a plain listener conn={conn} peer={peer}; closing",
                conn=self.connection_id,
                peer=self.peer,
            )
            self._close()
            return b""
        if frame.oversize:
            return self._protocol_error(
                frame, f"frame longer than {self.factory.max_frame_bytes} bytes"
            )

        try:
            decoded = decode(frame.payload, encoding=self.session.encoding)
        except RemoteProtocolError as error:
            reply = self._protocol_error(frame, str(error))
            negative = None
            if reply and error.reply is ProtocolReply.NEGATIVE and error.command:
                negative = self.session.negative_reply(error.command, frame.payload)
            if negative is None:
                return reply
            return self._encode(negative, frame, None, _trailer_of(frame.payload))
        except ProtocolError as error:
            return self._protocol_error(frame, str(error))
        self._protocol_errors = 0

        log.debug(
            "received conn={conn} {message}",
            conn=self.connection_id,
            message=_Redacted(decoded.message, self.factory.mask_patron_data),
        )
        if not decoded.error_detection and self._mode() is ErrorDetection.REQUIRED:
            # The account requires checksums (FOLIO's strict mode): a request
            # without one might be corrupt, so the terminal is asked to resend.
            log.warn(
                "request without a checksum conn={conn} peer={peer}; answered 96",
                conn=self.connection_id,
                peer=self.peer,
            )
            return self._resend_request(frame)
        if isinstance(decoded.message, RequestAcsResend):
            return self._last_reply or self._resend_request(frame)
        if isinstance(decoded.message, ScStatusRequest):
            # Needs no database: answered here, so a busy thread pool never
            # delays the keep-alive that tells a kiosk the server is there.
            status = self.session.handle(decoded.message)
            if status.message is None:
                log.info(
                    "status request before login refused conn={conn} peer={peer}; "
                    "answered 96",
                    conn=self.connection_id,
                    peer=self.peer,
                )
                self._count("sc_acs_status", "refused", 0.0)
                return self._resend_request(frame)
            self._count("sc_acs_status", "ok", 0.0)
            return self._reply_bytes(status, frame, decoded)

        key = self._request_key(decoded, frame)
        if key is not None and key == self._last_request_key and self._last_reply:
            # The terminal did not hear our reply and sent the same request again:
            # answer it again rather than, say, check the item out twice.
            log.info(
                "retransmission answered from memory conn={conn}",
                conn=self.connection_id,
            )
            return self._last_reply
        return self._refuse_busy_login(frame, decoded) or _Request(
            frame=frame, decoded=decoded, started=self.factory.reactor.seconds()
        )

    def _refuse_busy_login(self, frame: Frame, decoded: Decoded) -> bytes | None:
        """940 at once for a login when too many wait for a login thread."""
        logins = self.factory.logins
        if not isinstance(decoded.message, LoginRequest) or not logins:
            return None
        if not logins.full:
            return None
        # The session is not asked: it would end an earlier login first. Not
        # a failed login, and not remembered: the same frame again is retried.
        logins.refused += 1
        self._count("login", "busy", 0.0)
        return self._reply_bytes(
            Reply(LoginResponse(ok=False), note=LOGINS_BUSY, transient=True),
            frame,
            decoded,
        )

    def _dispatch(self, request: _Request) -> None:
        pool = self.factory.threadpool
        logins = self.factory.logins
        if isinstance(request.decoded.message, LoginRequest) and self.session.tls:
            self._read_certificate()
        if isinstance(request.decoded.message, LoginRequest) and logins is not None:
            pool = logins.pool
            logins.waiting += 1

            def done(result: Any) -> Any:
                logins.waiting -= 1
                return result

        handle: Callable[[Any], Reply] = self.session.handle
        if pool is self.factory.threadpool and self.factory.thread_wait is not None:
            # Refused without the database if no thread is free within the
            # budget, rather than queued into another request's lock wait.
            handle = self.factory.thread_wait.handle_in_time(self.session)
        deferred: defer.Deferred[Reply] = deferToThreadPool(
            self.factory.reactor, pool, handle, request.decoded.message
        )
        if pool is not self.factory.threadpool:
            deferred.addBoth(done)
        deferred.addCallback(self._send_reply, request)
        deferred.addErrback(self._fault, request)
        deferred.addBoth(self._release)

    def _send_reply(self, reply: Reply, request: _Request) -> None:
        result = _result_of(reply)
        elapsed = self.factory.reactor.seconds() - request.started
        self._count(request_name(request.decoded.message), result, elapsed)
        if reply.outage and self.factory.metrics is not None:
            self.factory.metrics.database_error()
        if self.factory.transactions is not None and self.session.account is not None:
            # Before login nothing is written: a peer that never logs in could
            # otherwise fill the disk with refusals (the server log warns of it
            # a few times per connection, which is enough).
            self.factory.transactions.record(
                conn=self.connection_id,
                login=self.session.login,
                peer=self.host,
                request=request.decoded.message,
                reply=reply.message,
                result=result,
            )
        if self._closed:
            return
        if reply.message is None:
            log.info(
                "unsupported message conn={conn} command={command}; answered 96",
                conn=self.connection_id,
                command=type(request.decoded.message).__name__,
            )
            self._write(self._resend_request(request.frame))
            return
        if reply.note and not isinstance(request.decoded.message, LoginRequest):
            log.info(
                "{command} refused conn={conn} login={login}: {note}",
                command=request_name(request.decoded.message),
                conn=self.connection_id,
                login=self.session.login,
                note=reply.note,
            )
        self._write(self._reply_bytes(reply, request.frame, request.decoded))
        if self._close_after_reply:
            self._close()

    def _count(self, command: str, result: str, seconds: float) -> None:
        if self.factory.metrics is not None:
            self.factory.metrics.answered(command, result, seconds)

    def _reply_bytes(self, reply: Reply, frame: Frame, decoded: Decoded) -> bytes:
        """Encode a reply and remember it for 97 and retransmissions.

        A transient refusal (busy, database unavailable, ...) is kept for 97
        only: the same request sent again is run again, not answered from
        memory with a refusal that may no longer hold.
        """
        self._log_session_event(decoded.message, reply)
        log.debug(
            "sending conn={conn} {message}",
            conn=self.connection_id,
            message=_Redacted(reply.message, self.factory.mask_patron_data),
        )
        data = self._encode(reply.message, frame, decoded)
        self._last_reply = data
        self._last_request_key = (
            None
            if reply.transient or reply.outage
            else self._request_key(decoded, frame)
        )
        return data

    def _release(self, _: object) -> None:
        self._busy = False
        if self._close_after_reply:
            self._close()
        self._drain()

    def rebind(self, accounts: AccountBook, circulation: SipCirculation) -> None:
        """Move a connected terminal to a reloaded configuration (SIGHUP).

        A terminal whose login no longer qualifies is closed (after the reply
        in hand, if any), and the reason is logged.
        """
        reason = self.session.rebind(accounts, circulation)
        if reason is None or self._closed:
            return
        log.warn(
            "reload: closing conn={conn} peer={peer} login={login}: {reason}",
            conn=self.connection_id,
            peer=self.peer,
            login=self.session.login,
            reason=reason,
        )
        if self._busy:
            self._close_after_reply = True
        else:
            self._close()


class SipServerFactory(Factory):
    """Makes a `SipConnection` per terminal of one listener, sharing the services.

    `new_session` is given the connection's id. `admission` counts connections
    and account seats across all listeners; `metrics` and `transactions`
    record what was answered; `logins` checks passwords apart from requests;
    `thread_wait` refuses a request that waited too long for a database thread.
    All are optional, for tests of one part.
    """

    protocol = SipConnection  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        *,
        reactor: Any,
        threadpool: ThreadPool,
        new_session: Callable[[int], TerminalSession],
        max_frame_bytes: int = 8192,
        mask_patron_data: bool = True,
        idle_timeout: float = 0,
        login_timeout: float = 0,
        keepalive: Keepalive | None = None,
        proxied: bool = False,
        name: str = "",
        admission: Admission | None = None,
        metrics: ServerMetrics | None = None,
        transactions: TransactionLog | None = None,
        logins: LoginSlots | None = None,
        thread_wait: ThreadWait | None = None,
    ) -> None:
        self.reactor = reactor
        self.logins = logins
        self.thread_wait = thread_wait
        self.threadpool = threadpool
        self.new_session = new_session
        self.max_frame_bytes = max_frame_bytes
        self.mask_patron_data = mask_patron_data
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout
        self.keepalive = keepalive
        self.proxied = proxied
        self.name = name
        self.admission = admission
        self.metrics = metrics
        self.transactions = transactions
        self.connections: set[SipConnection] = set()
        self.refused = 0
        # Connections closed for not logging in in time, or for being one too
        # many not logged in from their address.
        self.overdue = 0
        self.crowded = 0
        # Refused-login lines, per terminal address (see DETAILED_LOGIN_REFUSALS).
        self.login_lines = LineBudget(
            reactor.callLater,
            _summarize_refused_logins,
            detailed=DETAILED_LOGIN_REFUSALS,
            period=LOGIN_REFUSAL_PERIOD,
        )
        # Connected/disconnected lines of connections not logged in, per address.
        self.connection_lines = LineBudget(
            reactor.callLater,
            _summarize_connections,
            detailed=DETAILED_CONNECTIONS,
            period=CONNECTION_PERIOD,
        )

    def stopFactory(self) -> None:
        # The listener stops: say now what the budget left out.
        self.login_lines.flush()
        self.connection_lines.flush()

    def buildProtocol(self, addr: Any) -> SipConnection:
        return SipConnection(self)
