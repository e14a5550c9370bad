"""How a connection becomes a terminal: from the TCP accept to a good login.

Layer: `sip2server`, part of the Twisted server (`sip2server.server`): the
terminal's address (from the socket or a PROXY header), TCP keepalive, its TLS
certificate and what OpenSSL said when TLS failed, admission's cap on
connections not logged in per address, the deadline to log in, and what each
login's outcome does (the log line, the count of failed logins). Base class
`TerminalArrival` works on the state of a `SipConnection`. Must not import
`kiosk` or `drivers`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from sip2server.accounts import TerminalCertificate
from sip2server.logs import clipped
from sip2server.protocol import AcsStatusResponse, LoginRequest

if TYPE_CHECKING:
    from sip2server.server import SipServerFactory
    from sip2server.session import Reply, TerminalSession

log = Logger(namespace="sip2server")

# Refused connections (server full) logged in detail before only every 100th is.
_DETAILED_REFUSALS = 10

# Failed logins on one connection before it is closed. Refusals that may not
# hold on a retry (busy, locked out for now, database unavailable) do not count.
MAX_FAILED_LOGINS = 5

# Refused-login lines per address written in detail each period; the rest are
# counted and summed up in one line per address when the period ends.
DETAILED_LOGIN_REFUSALS = 10
LOGIN_REFUSAL_PERIOD = 60.0

# Connected/disconnected lines per address of connections not (yet) logged in,
# written in detail each period; the rest are counted and summed up as the
# refused-login lines are, so a connect-and-drop flood writes a line a period.
DETAILED_CONNECTIONS = 10
CONNECTION_PERIOD = 60.0


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


def _summarize_refused_logins(host: str, count: int, period: float) -> None:
    log.warn(
        "{count} more refused logins from {host} in the last {period:.0f} s "
        "(only the first {detailed} in each period are logged in detail)",
        count=count,
        host=host,
        period=period,
        detailed=DETAILED_LOGIN_REFUSALS,
    )


def _summarize_connections(host: str, count: int, period: float) -> None:
    log.info(
        "{count} more connections from {host} in the last {period:.0f} s "
        "(connected/disconnected lines are written for the first {detailed} "
        "in each period, and for every terminal that logs in)",
        count=count,
        host=host,
        period=period,
        detailed=DETAILED_CONNECTIONS,
    )


class TerminalArrival:
    """The part of `SipConnection` that admits a terminal and sees it log in.

    `SipConnection.__init__` sets the state below; closing goes through the
    connection's `_close` (`FrameQueue`), and `_may_warn` is the connection's.
    """

    factory: SipServerFactory
    session: TerminalSession
    transport: Any
    connection_id: int
    peer: str
    host: str
    _admitted: bool
    _introduced: bool
    _closed: bool
    _login_deadline: Any
    _waiting_login: bool
    _failed_logins: int
    _close_after_reply: bool
    _connection_logged: bool

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
        # Whether this connection gets its connected and disconnected lines is
        # decided here, within the address's budget; one left out that then
        # logs in gets its connected line at the login.
        if self.factory.connection_lines.allow(self.host):
            self._log_connected()

    def _log_connected(self) -> None:
        self._connection_logged = True
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

    def _log_session_event(self, request: Any, answer: Reply) -> None:
        # Logins are what an operator looks for first when a terminal "does not
        # work"; the login name is not secret, the password never appears.
        reply = answer.message
        if isinstance(request, LoginRequest):
            transient = answer.transient or answer.outage
            if reply.ok:
                self._logged_in()
                self._failed_logins = 0
                if not self._connection_logged:
                    self._log_connected()
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
