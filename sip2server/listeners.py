"""Listeners: Twisted endpoints, TLS around them, and each one's account set.

Layer: `sip2server`. Uses Twisted's endpoints (tcp, tcp6, ssl, haproxy for the
PROXY protocol, systemd for socket activation) and pyOpenSSL through Twisted's
`CertificateOptions`; never imports `ils`.

TLS given in a listener's `tls` table sits inside the endpoint: with
`haproxy:tcp:...` the PROXY header comes first and TLS after it, which is what
a TCP load balancer in front of TLS terminals sends. (Twisted's own `ssl:`
endpoint works too, but wrapped in `haproxy:` it would expect the PROXY header
inside TLS.)

A tcp: or tcp6: listener with `reuse_port` binds its own socket with
SO_REUSEPORT and hands it to the reactor (`ReusePortEndpoint`), so that several
server processes share one port; the factory on top is the same as ever.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from OpenSSL.crypto import FILETYPE_PEM
from OpenSSL.crypto import Error as OpenSSLError
from OpenSSL.SSL import Connection
from OpenSSL.SSL import Error as SSLError
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IStreamServerEndpoint,
)
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from sip2server.accounts import AccountBook
from sip2server.config import AccountConfig, ListenerConfig, TlsSettings
from sip2server.endpoint_text import systemd_problem, tls_files
from sip2server.proxy_header import (
    ProxyAddress,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
)
from sip2server.server import Keepalive, SipServerFactory

log = Logger(namespace="sip2server")

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


class StartupError(RuntimeError):
    """The server cannot start with this configuration and database."""


# The listen backlog for TCP and TLS endpoints whose string gives none.
# Twisted's own default, 50, makes the kernel drop the SYN of every connection
# beyond it in a burst (all terminals reconnecting after a restart), and each
# such terminal retries only a second or more later.
DEFAULT_BACKLOG = 1024
_BACKLOG_TYPES = re.compile(r"^(haproxy:)?(tcp|tcp6|ssl):")
_HAS_BACKLOG = re.compile(r"(^|:)backlog=")


def with_default_backlog(description: str) -> str:
    """The listen string with `backlog=DEFAULT_BACKLOG` added to a TCP or TLS
    endpoint (also inside `haproxy:`) that does not give its own backlog."""
    if _BACKLOG_TYPES.match(description) and not _HAS_BACKLOG.search(description):
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


def endpoint_from(
    reactor: Any, description: str, key: str, *, reuse_port: bool = False
) -> Any:
    """The endpoint a listen string describes, with `DEFAULT_BACKLOG` for a TCP
    or TLS one that gives no backlog; with `reuse_port`, a `ReusePortEndpoint`
    (inside `haproxy:` too) for a tcp: or tcp6: one.

    Raises:
        StartupError: naming the configuration key and what is wrong.
    """
    try:
        if description.startswith(_PROXIED):
            inner = description[len(_PROXIED) :]
            return ProxiedEndpoint(
                _inner_endpoint(reactor, inner, key, reuse_port), reactor
            )
        return _inner_endpoint(reactor, description, key, reuse_port)
    except (OpenSSLError, SSLError) as error:
        # ssl: reads its key and certificate as it is parsed (#5, trial 3 T2).
        files = tls_files(description) or ("server.pem", "server.pem")
        raise StartupError(
            f"{key}: {description!r}: its private key file {files[0]!r} or "
            f"certificate file {files[1]!r} (privateKey=, certKey=; relative to "
            f"the working folder) is not a PEM key and certificate that match "
            f"({error}); name them with privateKey= and certKey=, or use a tls "
            "table on a tcp: endpoint"
        ) from None
    except (ValueError, KeyError, TypeError, IndexError, OSError) as error:
        if description.startswith("systemd:"):
            raise StartupError(
                f"{key}: {description!r}: " + systemd_problem(description, os.environ)
            ) from None
        hint = "write it like tcp:6001:interface=127.0.0.1"
        raise StartupError(
            f"{key}: {description!r} is not a listening endpoint "
            f"({type(error).__name__}: {error}); {hint}"
        ) from None


def _inner_endpoint(reactor: Any, description: str, key: str, reuse_port: bool) -> Any:
    endpoint = serverFromString(reactor, with_default_backlog(description))
    if not reuse_port:
        return endpoint
    # Twisted has parsed the string (escapes, defaults); its TCP endpoints keep
    # what they parsed in these attributes, which have not changed in years.
    port = getattr(endpoint, "_port", None)
    backlog = getattr(endpoint, "_backlog", None)
    interface = getattr(endpoint, "_interface", None)
    if not (
        isinstance(port, int) and isinstance(backlog, int) and interface is not None
    ):
        raise StartupError(
            f"{key}.reuse_port: {description!r} is not a tcp: or tcp6: endpoint"
        )
    if not interface:
        # No interface given: every address, as Twisted's own tcp: and tcp6: do.
        interface = "::" if description.lower().startswith("tcp6:") else "0.0.0.0"  # noqa: S104
    return ReusePortEndpoint(reactor, port, str(interface), backlog)


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """A TCP endpoint whose socket is bound with SO_REUSEPORT, for sharing a port.

    Twisted's `listenTCP` sets no SO_REUSEPORT, so the socket is made, bound and
    put to listen here and handed to the reactor with `adoptStreamPort`, the
    way a socket from systemd is: the factory given to `listen` (TLS, the PROXY
    header reader, the SIP2 server) is the same as for any other endpoint.
    Several processes whose sockets all have SO_REUSEPORT (and run as one user)
    share the port; the kernel gives each new connection to one of them.
    """

    def __init__(self, reactor: Any, port: int, interface: str, backlog: int) -> None:
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: Any) -> Any:
        """Bind, listen and adopt; fails with `CannotListenError` as listenTCP does."""
        return defer.execute(self._listen_now, factory)

    def _listen_now(self, factory: Any) -> IListeningPort:
        try:
            # Numeric only: an interface is an address, never a name to look up.
            family, kind, proto, _, address = socket.getaddrinfo(
                self.interface,
                self.port,
                type=socket.SOCK_STREAM,
                flags=socket.AI_NUMERICHOST | socket.AI_PASSIVE,
            )[0]
        except socket.gaierror as error:
            raise CannotListenError(self.interface, self.port, error) from None
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            raise CannotListenError(self.interface, self.port, error) from None
        try:
            port: IListeningPort = self.reactor.adoptStreamPort(
                sock.fileno(), family, factory
            )
        finally:
            # The reactor listens on its own duplicate of the descriptor.
            sock.close()
        return port


_PROXIED = "haproxy:"

# Seconds a connection to a PROXY listener has to deliver its whole header; a
# balancer sends it at once, so only a stray or hostile client takes longer.
PROXY_HEADER_TIMEOUT = 10.0


class ProxyHeaderReader(ProtocolWrapper):
    """Reads the PROXY header (v1 or v2) before the terminal's own bytes.

    The header may arrive in any number of reads; bytes that cannot be a
    header, or a header not whole within the factory's `header_timeout`, close
    the connection. Once it is read the connection is told at once
    (`proxy_header_read`), so the terminal's address counts before it sends
    anything, and `getPeer` gives that address. A header without one (v1
    UNKNOWN, v2 LOCAL: a balancer's own check) leaves the socket's address.
    """

    factory: ProxyHeaderFactory

    def __init__(self, factory: ProxyHeaderFactory, wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.parser = ProxyHeaderParser()
        self.header: ProxyHeader | None = None
        self._refused = False
        self._deadline: Any = None

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        if self.factory.header_timeout and not self.disconnecting:
            self._deadline = self.factory.clock.callLater(
                self.factory.header_timeout, self._header_overdue
            )

    def dataReceived(self, data: bytes) -> None:
        if self.header is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._refused:
            return
        try:
            read = self.parser.feed(data)
        except ProxyHeaderError as error:
            self._refuse(str(error))
            return
        if read is None:
            return
        self.header, remaining = read
        self._stop_deadline()
        self._header_read(remaining)

    def getPeer(self) -> Any:
        if self.header is not None and self.header.source is not None:
            return _twisted_address(self.header.source)
        return self.transport.getPeer()

    def getHost(self) -> Any:
        if self.header is not None and self.header.destination is not None:
            return _twisted_address(self.header.destination)
        return self.transport.getHost()

    def connectionLost(self, reason: Any) -> None:
        self._stop_deadline()
        super().connectionLost(reason)

    def _header_overdue(self) -> None:
        self._deadline = None
        if self.header is None and not self._refused:
            self._refuse(
                f"no whole header within {self.factory.header_timeout:g} s "
                f"({self.parser.pending} bytes so far)"
            )

    def _refuse(self, reason: str) -> None:
        self._refused = True
        self._stop_deadline()
        log.info(
            "PROXY header refused from peer={peer}: {reason}",
            peer=_shown(self.transport.getPeer()),
            reason=reason,
        )
        self.loseConnection()

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _header_read(self, remaining: bytes) -> None:
        # Through TLS the SIP2 connection is one wrapper further down.
        inner: Any = self.wrappedProtocol
        while not hasattr(inner, "proxy_header_read") and hasattr(
            inner, "wrappedProtocol"
        ):
            inner = inner.wrappedProtocol
        notice = getattr(inner, "proxy_header_read", None)
        if notice is not None:
            notice()
        if remaining:
            self.wrappedProtocol.dataReceived(remaining)


def _twisted_address(address: ProxyAddress) -> IPv4Address | IPv6Address:
    kind = IPv6Address if ":" in address.host else IPv4Address
    return kind("TCP", address.host, address.port)


def _shown(address: Any) -> str:
    host = str(getattr(address, "host", address))
    port = getattr(address, "port", "")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProxyHeaderFactory(WrappingFactory):
    """Wraps each connection of a PROXY listener in a `ProxyHeaderReader`.

    `header_timeout` (seconds, 0 for none) is read at each new connection.
    """

    protocol = ProxyHeaderReader

    def __init__(
        self,
        wrapped: Any,
        clock: Any,
        header_timeout: float = PROXY_HEADER_TIMEOUT,
    ) -> None:
        super().__init__(wrapped)
        self.clock = clock
        self.header_timeout = header_timeout


@implementer(IStreamServerEndpoint)
class ProxiedEndpoint:
    """An endpoint whose connections start with a PROXY protocol header."""

    def __init__(self, inner: Any, clock: Any) -> None:
        # Named as in Twisted's own wrapping endpoint, for code that looks in.
        self._wrappedEndpoint = inner
        self._clock = clock

    def listen(self, factory: Any) -> Any:
        """Listen on the inner endpoint, reading each connection's header first."""
        return self._wrappedEndpoint.listen(ProxyHeaderFactory(factory, self._clock))


def _read(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StartupError(f"{key}: cannot read {path}: {error.strerror}") from None


def _certificates(data: bytes, path: Path, key: str) -> list[Certificate]:
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise StartupError(f"{key}: {path} holds no PEM certificate")
    try:
        return [Certificate.loadPEM(block) for block in blocks]
    except Exception as error:  # pyOpenSSL raises its own error types
        raise StartupError(
            f"{key}: {path}: not a usable certificate ({error})"
        ) from None


def tls_options(settings: TlsSettings, key: str) -> CertificateOptions:
    """Server TLS options from PEM files, verifying terminals if `client_ca` is set.

    Raises:
        StartupError: a file is missing or does not hold what it should.
    """
    chain = _certificates(
        _read(settings.certificate, f"{key}.certificate"),
        settings.certificate,
        f"{key}.certificate",
    )
    try:
        private_key = KeyPair.load(
            _read(settings.private_key, f"{key}.private_key"), format=FILETYPE_PEM
        )
    except StartupError:
        raise
    except Exception as error:
        raise StartupError(
            f"{key}.private_key: {settings.private_key}: not a PEM private key "
            f"({error})"
        ) from None
    authorities = None
    # Any certificate these authorities signed gets through the handshake; an
    # account with certificate_fingerprints or certificate_subjects then admits
    # only its own terminals' (checked at login, accounts.certificate_refusal).
    if settings.client_ca is not None:
        authorities = _certificates(
            _read(settings.client_ca, f"{key}.client_ca"),
            settings.client_ca,
            f"{key}.client_ca",
        )
    try:
        options = CertificateOptions(
            privateKey=private_key.original,
            certificate=chain[0].original,
            extraCertChain=[certificate.original for certificate in chain[1:]],
            # Verify terminals against these authorities; without a certificate
            # signed by one of them the handshake fails.
            trustRoot=(trustRootFromCertificates(authorities) if authorities else None),
        )
        options.getContext()  # checks that the key matches the certificate
    except Exception as error:
        raise StartupError(
            f"{key}: the certificate and private key do not go together ({error})"
        ) from None
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ListenerTls:
    """A listener's TLS settings as of now, for each new connection's handshake.

    A reload puts new options here (new certificate files read, say): new
    connections use them, connections already open keep their session.
    """

    def __init__(self, options: CertificateOptions) -> None:
        self.options = options

    def serverConnectionForTLS(self, protocol: Any) -> Connection:
        """A server-side OpenSSL connection from the current options' context."""
        return Connection(self.options.getContext(), None)


@dataclass
class Listener:
    """One configured listener at run time; a reload swaps its accounts."""

    key: str
    config: ListenerConfig
    accounts: AccountBook
    factory: SipServerFactory
    tls: CertificateOptions | None = None
    port: IListeningPort | None = field(default=None)
    _tls_now: ListenerTls | None = field(default=None, repr=False)

    @property
    def proxied(self) -> bool:
        """Whether terminals arrive through a PROXY protocol header."""
        return self.config.endpoint.startswith("haproxy:")

    def protocol_factory(self) -> Any:
        """The factory to listen with: the SIP2 one, inside TLS if configured."""
        if self.tls is None:
            return self.factory
        self._tls_now = ListenerTls(self.tls)
        return TLSMemoryBIOFactory(self._tls_now, False, self.factory)

    def replace_tls(self, settings: TlsSettings, options: CertificateOptions) -> None:
        """Handshakes from now on use these TLS options (on reload).

        Raises:
            ValueError: the listener was started without TLS (that takes a
                restart: its connections have no TLS layer to give options to).
        """
        if self._tls_now is None:
            raise ValueError(f"{self.key}: started without TLS")
        self._tls_now.options = options
        self.tls = options
        self.config = self.config.model_copy(update={"tls": settings})

    def apply(
        self,
        config: ListenerConfig,
        accounts: list[AccountConfig],
        idle: float,
        reserved: frozenset[str] = frozenset(),
        login_timeout: float | None = None,
    ) -> None:
        """Take new settings for new logins and connections (on reload).

        With `login_timeout` (the [server] value; the listener's own wins), a
        connection not logged in yet gets the new deadline, counted from when
        it connected, or from now if it had none; 0 lifts it.
        """
        self.config = config
        self.accounts = book_for(config, accounts, reserved)
        self.factory.idle_timeout = (
            idle if config.idle_timeout is None else (config.idle_timeout)
        )
        self.factory.keepalive = keepalive_of(config)
        if login_timeout is not None:
            wanted = (
                login_timeout if config.login_timeout is None else config.login_timeout
            )
            if wanted != self.factory.login_timeout:
                move_login_deadlines(self.factory, wanted)


def move_login_deadlines(factory: SipServerFactory, timeout: float) -> int:
    """Give a listener a new login timeout, for new and waiting connections.

    A connection not logged in keeps the time it connected: its deadline
    becomes that time plus `timeout` (at once if already past); one that had no
    deadline (the old timeout was 0) gets `timeout` from now; 0 lifts every
    deadline. Returns how many waiting connections were moved.
    """
    old, factory.login_timeout = factory.login_timeout, timeout
    return sum(
        connection.move_login_deadline(old, timeout)
        for connection in list(factory.connections)
    )


def reserved_logins(listeners: Iterable[ListenerConfig]) -> frozenset[str]:
    """The logins some listener names in its `accounts` list."""
    return frozenset(
        login for listener in listeners for login in listener.accounts or ()
    )


def book_for(
    config: ListenerConfig,
    accounts: list[AccountConfig],
    reserved: frozenset[str] = frozenset(),
) -> AccountBook:
    """The accounts that may log in through a listener.

    A listener with an `accounts` list admits those; one without admits every
    account that no listener names (`reserved`): an account given to a TLS
    listener is kept off the plain one.
    """
    if config.accounts is None:
        return AccountBook(
            account for account in accounts if account.login not in reserved
        )
    allowed = set(config.accounts)
    return AccountBook(account for account in accounts if account.login in allowed)


def keepalive_of(config: ListenerConfig) -> Keepalive | None:
    """A listener's keepalive settings, or None when it is off."""
    if not config.keepalive:
        return None
    return Keepalive(
        idle=config.keepalive_idle,
        interval=config.keepalive_interval,
        count=config.keepalive_count,
    )
