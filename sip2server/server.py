"""The Twisted SIP2 server: a thin adapter between TCP connections and the codec.

Layer: `sip2server`. The protocol object only frames, decodes, queues and
encodes; what a message means is decided by `TerminalSession` in a worker
thread, so a slow database never stalls framing for other terminals.

Per connection, requests are answered strictly in order, one at a time (SIP2
is request and response), while other connections proceed in parallel up to
the thread pool's size.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import functools
import ipaddress
import itertools
import re
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, TimeoutMixin
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from sip2server.accounts import TerminalCertificate
from sip2server.config import ErrorDetection, Terminator
from sip2server.logs import LineBudget, clipped
from sip2server.protocol import (
    AcsStatusResponse,
    CheckinResponse,
    CheckoutResponse,
    Decoded,
    DelimiterPolicy,
    EndSessionResponse,
    FeePaidResponse,
    FieldOrder,
    Frame,
    Framer,
    HoldResponse,
    ItemStatusUpdateResponse,
    LoginRequest,
    LoginResponse,
    PatronEnableResponse,
    PatronInformationResponse,
    PatronStatusResponse,
    ProtocolError,
    RemoteProtocolError,
    RenewAllResponse,
    RenewResponse,
    RequestAcsResend,
    RequestScResend,
    ScStatusRequest,
    decode,
    encode,
    redact,
    redact_frame,
)
from sip2server.protocol import Reply as ProtocolReply
from sip2server.session import Reply, TerminalSession, request_name

if TYPE_CHECKING:
    from sip2server.accounts import AccountBook, Admission
    from sip2server.mapping import SipCirculation
    from sip2server.metrics import ServerMetrics
    from sip2server.txlog import TransactionLog

log = Logger(namespace="sip2server")

# Frames waiting per connection before the server stops reading from it: a
# terminal that pipelines more than this is slowed down, not buffered forever.
MAX_QUEUED_FRAMES = 32

# Bytes handed to the framer at a time (see SipConnection._fill_queue).
FRAMING_CHUNK = 1024

# Replies made on the spot (96, 97, 98, replays) before the reactor turns to the
# other connections: a flood of garbage from one peer must not starve the rest.
IMMEDIATE_REPLIES_PER_TURN = 32

# Unusable frames in a row after which a peer is taken not to speak SIP2 and
# is disconnected, and how many of them are logged in detail.
MAX_PROTOCOL_ERRORS = 50
DETAILED_WARNINGS = 5

# Failed logins on one connection before it is closed. Refusals that may not
# hold on a retry (busy, locked out for now, database unavailable) do not count.
MAX_FAILED_LOGINS = 5

# Refused-login lines per address written in detail each period; the rest are
# counted and summed up in one line per address when the period ends.
DETAILED_LOGIN_REFUSALS = 10
LOGIN_REFUSAL_PERIOD = 60.0

# Refused connections (server full) logged in detail before only every 100th is.
_DETAILED_REFUSALS = 10

# Quoted text longer than this in an error's reason is cut before it is logged:
# it is the peer's own input, which may hold a password cut loose by a stray |.
_QUOTED = re.compile(r"'([^']{0,2})[^']{3,}'")

_connection_ids = itertools.count(1)

# The queue of every connection with no frames waiting. An empty deque holds a
# block of 64 slots (about 700 bytes); an idle terminal needs none, so its
# connection shares this one, which can hold nothing, until frames arrive.
_NO_FRAMES: deque[Frame] = deque(maxlen=0)

# An error-detection trailer at the end of a frame: the terminal wants AZ in 96.
_TRAILER = re.compile(rb"(?:AY(\d))?AZ[0-9A-Fa-f]{1,4}\s*$")


def _trailer_of(payload: bytes) -> tuple[bool, int | None]:
    """Whether a frame that did not decode asked for AZ, and its AY digit."""
    match = _TRAILER.search(payload)
    if match is None:
        return False, None
    return True, None if match.group(1) is None else int(match.group(1))


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


# glibc's mallopt parameter for the size from which blocks are mapped on their
# own (and unmapped when freed), and the size we fix it at.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 20


@functools.cache
def return_hash_memory() -> bool:
    """Have the C library give large blocks back to the system when freed.

    Each login check runs scrypt, whose table is 8 MiB (n = 2**13, r = 8). By
    default glibc raises its mapping threshold past a block that size once the
    first one is freed, so every thread that has hashed a password keeps 8 to
    16 MiB in its own arena for good: about 30 MB with two login threads,
    measured with `bench/load.py --idle`. Fixing the threshold at 1 MiB makes
    such blocks mapped and unmapped each time. Process-wide and done once;
    False, changing nothing, where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


class LoginSlots:
    """The threads that check login passwords, and the logins waiting for them.

    Password hashes are slow on purpose; run on the request threads, a flood
    of logins (from many spoofed addresses, each under its own limit) would
    make every terminal's checkouts wait behind them. Logins get their own
    small pool instead, and at most `backlog` of them wait: a login beyond
    that is refused at once as busy (940), which a terminal retries.
    Used on the reactor's thread only. Making one also makes the hashes'
    memory go back to the system after each check (`return_hash_memory`).
    """

    def __init__(self, pool: ThreadPool, backlog: int) -> None:
        return_hash_memory()
        self.pool = pool
        self.backlog = backlog
        self.waiting = 0
        self.refused = 0

    @property
    def full(self) -> bool:
        """Whether a new login must be refused as busy."""
        return self.waiting >= self.backlog


# Why a login was refused when the login threads were all taken.
LOGINS_BUSY = "server busy checking other logins; try again"


@dataclass(frozen=True, slots=True)
class Keepalive:
    """TCP keepalive on a listener's connections (seconds, seconds, probes)."""

    idle: int
    interval: int
    count: int


def _socket_of(transport: Any) -> socket.socket | None:
    # Under TLS or PROXY wrappers the TCP transport is a few levels down.
    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    handle = getattr(transport, "getHandle", lambda: None)()
    return handle if isinstance(handle, socket.socket) else None


def set_keepalive(transport: Any, keepalive: Keepalive) -> bool:
    """Turn TCP keepalive on for a connection; False if it has no TCP socket."""
    sock = _socket_of(transport)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # Linux and most BSDs name the three knobs so; elsewhere the system's
    # defaults (two hours) apply.
    for option, value in (
        ("TCP_KEEPIDLE", keepalive.idle),
        ("TCP_KEEPINTVL", keepalive.interval),
        ("TCP_KEEPCNT", keepalive.count),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    return True


def _tls_error(reason: Failure | None) -> str | None:
    """What OpenSSL said, when a connection ended on a TLS error (a handshake)."""
    if reason is None or not isinstance(reason, Failure):
        return None
    if reason.check(SSL.Error) is None:
        return None
    # OpenSSL's error is a list of (library, function, reason) tuples.
    details = reason.value.args[0] if reason.value.args else ()
    if isinstance(details, list) and details:
        return "; ".join(str(item[-1]) for item in details if item)
    return str(reason.value) or type(reason.value).__name__


@implementer(IPushProducer, IHandshakeListener)
class SipConnection(TimeoutMixin, Protocol):
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

    def _learn_peer(self) -> None:
        peer = self.transport.getPeer()
        host = str(getattr(peer, "host", peer))
        with contextlib.suppress(ValueError):
            # One spelling per address: a PROXY v2 header gives IPv6 in full,
            # and a dual-stack socket gives IPv4 terminals as ::ffff:a.b.c.d.
            address = ipaddress.ip_address(host)
            mapped = getattr(address, "ipv4_mapped", None)
            host = str(mapped or address)
        self.host = host
        port = getattr(peer, "port", "")
        self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.session.address = host

    def handshakeCompleted(self) -> None:
        """TLS is up (IHandshakeListener): note it and the terminal's certificate."""
        self.session.tls = True
        self._read_certificate()
        certificate = self.session.certificate
        if certificate is not None:
            # The fingerprint as an account's certificate_fingerprints takes it.
            log.info(
                "TLS client certificate conn={conn} peer={peer} subject={subject} "
                "sha256={fingerprint}",
                conn=self.connection_id,
                peer=self.peer,
                subject=certificate.subject,
                fingerprint=certificate.fingerprint,
            )

    def _read_certificate(self) -> None:
        # Read again at each login too: a TLS 1.2 renegotiation may have
        # brought another certificate since the handshake.
        peer = getattr(self.transport, "getPeerCertificate", lambda: None)()
        try:
            self.session.certificate = (
                None if peer is None else TerminalCertificate.of(peer.to_cryptography())
            )
        except ValueError as error:
            self.session.certificate = None
            log.warn(
                "TLS client certificate not readable conn={conn} peer={peer}: "
                "{problem}",
                conn=self.connection_id,
                peer=self.peer,
                problem=str(error),
            )

    def proxy_header_read(self) -> None:
        """The PROXY header has been read: the peer is now the terminal."""
        if self._admitted and not self._introduced and not self._closed:
            self._learn_peer()
            self._introduce()

    def _introduce(self) -> None:
        self._introduced = True
        admission = self.factory.admission
        if admission is not None and self.session.account is None:
            if not admission.arrive(self.host):
                self.factory.crowded += 1
                if self._rarely(self.factory.crowded):
                    log.warn(
                        "{limit} connections from {host} not logged in; closing "
                        "conn={conn} peer={peer} ({count} closed so far)",
                        limit=admission.max_unauthenticated_per_address,
                        host=self.host,
                        conn=self.connection_id,
                        peer=self.peer,
                        count=self.factory.crowded,
                    )
                self._close()
                return
            self._waiting_login = True
        # TODO(#5): connected/disconnected lines of connections that never log
        # in are not budgeted per address: a connect-and-drop flood still writes
        # about 220 bytes per connection (1.8 MB in 10 s measured on loopback).
        log.info(
            "terminal connected conn={conn} peer={peer} listener={listener}",
            conn=self.connection_id,
            peer=self.peer,
            listener=self.factory.name,
        )

    @staticmethod
    def _rarely(count: int) -> bool:
        # The first few of a kind are logged in detail, then every 100th.
        return count <= _DETAILED_REFUSALS or count % 100 == 0

    def _login_overdue(self) -> None:
        self._login_deadline = None
        if self._closed or self.session.account is not None:
            return
        self.factory.overdue += 1
        if self._rarely(self.factory.overdue):
            log.info(
                "not logged in after {seconds} s, closing conn={conn} peer={peer} "
                "({count} closed so far)",
                seconds=self.factory.login_timeout,
                conn=self.connection_id,
                peer=self.peer,
                count=self.factory.overdue,
            )
        self._close()

    def move_login_deadline(self, old_timeout: float, timeout: float) -> bool:
        """Give this connection a new login timeout, if it is still waiting to log in.

        Its deadline was its connection time plus `old_timeout`; it becomes that
        time plus `timeout` (at once if already past). Without a deadline (the
        old timeout was 0) it gets `timeout` from now; a `timeout` of 0 lifts
        it. Returns False, changing nothing, when the connection is logged in
        or closed.
        """
        if self._closed or self.session.account is not None:
            return False
        deadline = self._login_deadline
        active = deadline is not None and deadline.active()
        if timeout <= 0:
            if active:
                deadline.cancel()
            self._login_deadline = None
        elif active:
            due = deadline.getTime() - old_timeout + timeout
            deadline.reset(max(0.0, due - self.factory.reactor.seconds()))
        else:
            self._login_deadline = self.factory.reactor.callLater(
                timeout, self._login_overdue
            )
        return True

    def _logged_in(self) -> None:
        # No deadline and no longer counted against the address's cap.
        if self._login_deadline is not None and self._login_deadline.active():
            self._login_deadline.cancel()
        self._login_deadline = None
        if self._waiting_login and self.factory.admission is not None:
            self.factory.admission.depart(self.host)
        self._waiting_login = False

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

    def _fill_queue(self) -> None:
        # Bytes are framed a little at a time, as the queue empties: one read of
        # tiny pipelined frames would otherwise become thousands of queued objects.
        while self._unframed and len(self._queue) < MAX_QUEUED_FRAMES:
            chunk = bytes(self._unframed[:FRAMING_CHUNK])
            del self._unframed[:FRAMING_CHUNK]
            frames = self.framer.feed(chunk)
            if frames and self._queue is _NO_FRAMES:
                self._queue = deque()
            self._queue.extend(frames)

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

    # IPushProducer: the transport's outgoing buffer is full, or has room again.

    def pauseProducing(self) -> None:
        self._output_blocked = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._output_blocked = False
        self._drain()

    def stopProducing(self) -> None:
        self._close()

    def _drain(self) -> None:
        # Answers what can be answered on the spot, a limited number per turn,
        # and hands the first real request to a worker thread; the rest waits.
        if self._drain_later is not None and self._drain_later.active():
            self._drain_later.cancel()
        self._drain_later = None
        budget = IMMEDIATE_REPLIES_PER_TURN
        while not (self._busy or self._closed or self._output_blocked):
            if not self._queue:
                # Idle again: the connection's own queue goes (see _NO_FRAMES).
                self._queue = _NO_FRAMES
                self._fill_queue()
                if not self._queue:
                    break
            if budget == 0:
                self._drain_later = self.factory.reactor.callLater(0, self._drain)
                break
            frame = self._queue.popleft()
            try:
                request = self._immediate_reply(frame)
            except Exception:
                # Our own fault (no descriptor left, say): 96, as _fault sends,
                # and the connection stays for the terminal's retry.
                log.failure(
                    "fault while answering conn={conn}", conn=self.connection_id
                )
                try:
                    request = self._resend_request(frame)
                except Exception:  # the fault may be in encoding itself
                    request = b"96\r"
            if isinstance(request, bytes):
                self._write(request)
                if self._close_after_reply:
                    self._close()
                    break
                budget -= 1
                continue
            self._busy = True
            self._dispatch(request)
        self._update_reading()

    def _update_reading(self) -> None:
        # Stop reading while replies cannot be sent or too many requests wait.
        if self._closed:
            return
        backlog = len(self._queue) + len(self._unframed) // FRAMING_CHUNK
        if not self._reading_paused and (
            self._output_blocked or backlog >= MAX_QUEUED_FRAMES
        ):
            self._reading_paused = True
            self.transport.pauseProducing()
        elif (
            self._reading_paused
            and not self._output_blocked
            and backlog < MAX_QUEUED_FRAMES // 2
        ):
            self._reading_paused = False
            self.transport.resumeProducing()

    def _protocol_error(self, frame: Frame, reason: str) -> bytes:
        """Count and log one unusable frame; 96, or nothing once the peer is cut off."""
        self._protocol_errors += 1
        if self.factory.metrics is not None:
            self.factory.metrics.protocol_error()
        if self._may_warn():
            log.warn(
                "protocol error conn={conn} peer={peer}: {reason} frame={frame}",
                conn=self.connection_id,
                peer=self.peer,
                reason=_QUOTED.sub(r"'\1...'", reason),
                frame=redact_frame(frame.payload[:200]),
            )
        if self._protocol_errors >= MAX_PROTOCOL_ERRORS:
            log.warn(
                "{count} unusable frames in a row; closing conn={conn} peer={peer}",
                count=self._protocol_errors,
                conn=self.connection_id,
                peer=self.peer,
            )
            self._close()
            return b""
        return self._resend_request(frame)

    def _may_warn(self) -> bool:
        # A peer's misbehaviour is logged in detail a few times per connection;
        # after that only the closing is, so no peer can flood the log.
        self._warnings += 1
        return self._warnings <= DETAILED_WARNINGS

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

    @staticmethod
    def _request_key(decoded: Decoded, frame: Frame) -> tuple[int, str, bytes] | None:
        if decoded.sequence is None or decoded.checksum is None:
            return None
        # The bytes too: a 16-bit sum cannot tell two different requests apart
        # (two barcodes with their digits swapped have the same sum).
        return (decoded.sequence, decoded.checksum.upper(), frame.payload)

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

        deferred: defer.Deferred[Reply] = deferToThreadPool(
            self.factory.reactor, pool, self.session.handle, request.decoded.message
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

    def _log_session_event(self, request: Any, answer: Reply) -> None:
        # Logins are what an operator looks for first when a terminal "does not
        # work"; the login name is not secret, the password never appears.
        reply = answer.message
        if isinstance(request, LoginRequest):
            transient = answer.transient or answer.outage
            if reply.ok:
                self._logged_in()
                self._failed_logins = 0
            elif not transient:
                # Only real failures count: a busy server or a lockout for now
                # is not the terminal's mistake, and closing for it would cut
                # off the terminal whose login then succeeds.
                self._failed_logins += 1
            if self.factory.metrics is not None and (reply.ok or not transient):
                self.factory.metrics.login(reply.ok)
            # Refusals per address are logged within a budget (an unknown
            # peer can send them without end); acceptances always are.
            if reply.ok or self.factory.login_lines.allow(self.host):
                emit = log.info if reply.ok else log.warn
                emit(
                    "login {outcome} conn={conn} peer={peer} login={login}{why}",
                    outcome="accepted" if reply.ok else "refused",
                    conn=self.connection_id,
                    peer=self.peer,
                    login=clipped(request.login_user_id),
                    why=f": {answer.note}" if answer.note else "",
                )
            if reply.ok:
                return
            if self._failed_logins >= MAX_FAILED_LOGINS:
                # Admission also refuses logins per address and login after its
                # own limit; this only ends the connection.
                if self.factory.login_lines.allow(self.host):
                    log.warn(
                        "{count} failed logins; closing conn={conn} peer={peer}",
                        count=self._failed_logins,
                        conn=self.connection_id,
                        peer=self.peer,
                    )
                self._close_after_reply = True
        elif (
            self.session.account is None
            and not isinstance(reply, AcsStatusResponse)
            and self._may_warn()
        ):
            log.warn(
                "request before login refused conn={conn} peer={peer} cmd={command}",
                conn=self.connection_id,
                peer=self.peer,
                command=type(request).__name__,
            )

    def _fault(self, failure: Failure, request: _Request) -> None:
        # Our own fault, not the terminal's: log it in full and tell the
        # terminal to try again, which it can; never leave it without a reply.
        log.failure(
            "fault while answering conn={conn} command={command}",
            failure,
            conn=self.connection_id,
            command=type(request.decoded.message).__name__,
        )
        elapsed = self.factory.reactor.seconds() - request.started
        self._count(request_name(request.decoded.message), "error", elapsed)
        if self._closed:
            return
        try:
            reply = self._resend_request(request.frame)
        except Exception:  # the fault may be in encoding itself
            reply = b"96\r"
        self._write(reply)

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

    def _write(self, data: bytes) -> None:
        if data and not self._closed:
            self.transport.write(data)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _terminator(self, frame: Frame) -> bytes:
        account = self.session.account
        choice = account.terminator if account else Terminator.MIRROR
        if choice is Terminator.CR:
            return b"\r"
        if choice is Terminator.CRLF:
            return b"\r\n"
        if frame.terminator == b"\r\n" or self.framer.terminator == b"\r\n":
            self._peer_uses_crlf = True
        if frame.terminator == b"\r" and self._peer_uses_crlf:
            # A CRLF whose LF comes in the next TCP segment ends the frame at CR;
            # a peer that has ever sent CRLF still waits for CRLF.
            return b"\r\n"
        return frame.terminator or b"\r"

    def _mode(self) -> ErrorDetection:
        account = self.session.account
        return account.error_detection if account else ErrorDetection.AUTO

    def _encode(
        self,
        message: Any,
        frame: Frame,
        decoded: Decoded | None,
        trailer: tuple[bool, int | None] = (False, None),
    ) -> bytes:
        """Encode a reply; `trailer` stands in for `decoded` when none was made."""
        account = self.session.account
        mode = self._mode()
        asked, sequence = (
            (decoded.error_detection, decoded.sequence) if decoded else trailer
        )
        if mode is ErrorDetection.OFF:
            error_detection = False
        elif mode is ErrorDetection.REQUIRED:
            error_detection = True
        else:
            error_detection = asked
        # Answer in the encoding the request was read in: a terminal that sent
        # Latin-1 to a UTF-8 account gets its own bytes back, not UTF-8 ones. An
        # ASCII account always gets (transliterated) ASCII.
        encoding = self.session.encoding
        if decoded is not None and codecs.lookup(encoding).name != "ascii":
            encoding = decoded.encoding
        return encode(
            message,
            sequence=sequence if error_detection else None,
            error_detection=error_detection,
            encoding=encoding,
            terminator=self._terminator(frame),
            delimiter_policy=(
                account.delimiter_in_value if account else DelimiterPolicy.SPACE
            ),
            field_order=account.field_order if account else FieldOrder.SPEC,
        )

    def _resend_request(self, frame: Frame) -> bytes:
        # 96 carries no sequence number; with error detection it carries AZ only.
        mode = self._mode()
        wants_checksum = mode is ErrorDetection.REQUIRED or (
            mode is ErrorDetection.AUTO and _TRAILER.search(frame.payload) is not None
        )
        return encode(
            RequestScResend(),
            error_detection=wants_checksum,
            encoding=self.session.encoding,
            terminator=self._terminator(frame),
        )


# Each reply's yes/no field that says whether the request was done: 12, 10,
# 16, 30, 66 and 94 name it `ok`, 38 `payment_accepted`, 20
# `item_properties_ok`, 36 `end_session`.
_OUTCOME_FIELDS: dict[type, str] = {
    CheckoutResponse: "ok",
    CheckinResponse: "ok",
    HoldResponse: "ok",
    RenewResponse: "ok",
    RenewAllResponse: "ok",
    LoginResponse: "ok",
    FeePaidResponse: "payment_accepted",
    ItemStatusUpdateResponse: "item_properties_ok",
    EndSessionResponse: "end_session",
}

# Replies about a patron (24 for 23 and 01, 26, 64): refused when the patron is
# unknown or the PIN given is wrong.
_PATRON_REPLIES = (
    PatronStatusResponse,
    PatronEnableResponse,
    PatronInformationResponse,
)


def _summarize_refused_logins(host: str, count: int, period: float) -> None:
    log.warn(
        "{count} more refused logins from {host} in the last {period:.0f} s "
        "(only the first {detailed} in each period are logged in detail)",
        count=count,
        host=host,
        period=period,
        detailed=DETAILED_LOGIN_REFUSALS,
    )


def _result_of(reply: Reply) -> str:
    """The outcome of one request as metrics and the transaction log name it.

    "unavailable" (database down), "unsupported" (answered 96), "refused" or
    "ok". 18 and 98 are always "ok": they report a state, they do nothing.
    """
    if reply.outage:
        return "unavailable"
    message = reply.message
    if message is None:
        return "unsupported"
    field = _OUTCOME_FIELDS.get(type(message))
    if field is not None:
        return "ok" if getattr(message, field) else "refused"
    if isinstance(message, _PATRON_REPLIES) and (
        message.valid_patron is False or message.valid_patron_password is False
    ):
        return "refused"
    return "ok"


class SipServerFactory(Factory):
    """Makes a `SipConnection` per terminal of one listener, sharing the services.

    `new_session` is given the connection's id. `admission` counts connections
    and account seats across all listeners; `metrics` and `transactions`
    record what was answered; `logins` checks passwords apart from requests.
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
    ) -> None:
        self.reactor = reactor
        self.logins = logins
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

    def stopFactory(self) -> None:
        # The listener stops: say now what the budget left out.
        self.login_lines.flush()

    def buildProtocol(self, addr: Any) -> SipConnection:
        return SipConnection(self)
