"""Listeners: Twisted endpoints, TLS around them, and each one's account set.

Layer: `sip2server`. Uses Twisted's endpoints (tcp, tcp6, ssl, haproxy for the
PROXY protocol, systemd for socket activation) and pyOpenSSL through Twisted's
`CertificateOptions`; never imports `ils`.

TLS given in a listener's `tls` table sits inside the endpoint: with
`haproxy:tcp:...` the PROXY header comes first and TLS after it, which is what
a TCP load balancer in front of TLS terminals sends. (Twisted's own `ssl:`
endpoint works too, but wrapped in `haproxy:` it would expect the PROXY header
inside TLS.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from OpenSSL.crypto import FILETYPE_PEM
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    trustRootFromCertificates,
)
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import (
    HAProxyProtocolWrapper,
    HAProxyWrappingFactory,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from sip2server.accounts import AccountBook
from sip2server.config import AccountConfig, ListenerConfig, TlsSettings
from sip2server.server import Keepalive, SipServerFactory

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


def endpoint_from(reactor: Any, description: str, key: str) -> Any:
    """The endpoint a listen string describes, with `DEFAULT_BACKLOG` for a TCP
    or TLS one that gives no backlog.

    Raises:
        StartupError: naming the configuration key and what is wrong.
    """
    try:
        if description.startswith(_PROXIED):
            inner = description[len(_PROXIED) :]
            return ProxiedEndpoint(
                serverFromString(reactor, with_default_backlog(inner))
            )
        return serverFromString(reactor, with_default_backlog(description))
    except (ValueError, KeyError, TypeError, IndexError, OSError) as error:
        hint = "write it like tcp:6001:interface=127.0.0.1"
        if description.startswith("systemd:"):
            hint = (
                "systemd: endpoints need the server started by its .socket unit "
                "(LISTEN_FDS); write it like systemd:domain=INET:index=0"
            )
        raise StartupError(
            f"{key}: {description!r} is not a listening endpoint "
            f"({type(error).__name__}: {error}); {hint}"
        ) from None


_PROXIED = "haproxy:"

# The longest PROXY v1 line, CRLF included, as the protocol defines it.
_V1_MAX = 107


class ProxyHeaderReader(HAProxyProtocolWrapper):
    """Reads the PROXY header (v1 or v2) before the terminal's own bytes.

    Unlike Twisted's wrapper it tells the connection as soon as the header is
    read (`proxy_header_read`), so the terminal's address counts before it
    sends anything; and it accepts v1 `UNKNOWN` (a balancer's own health
    check), keeping the socket's own address as the peer. It uses Twisted's
    header parsers, which are private: only Twisted's endpoint is public.
    """

    def dataReceived(self, data: bytes) -> None:
        if self._proxyInfo is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._parser is None and data.startswith(b"PROXY UNKNOWN"):
            end = data.find(b"\r\n")
            if 0 <= end <= _V1_MAX - 2:
                self._proxyInfo = ProxyInfo(data[:end], None, None)
                self._header_read(data[end + 2 :])
                return
        if self._parser is None:
            if len(data) >= 16 and data[:12] == V2Parser.PREFIX and data[12] >> 4 == 2:
                self._parser = V2Parser()
            elif len(data) >= 8 and data[:5] == V1Parser.PROXYSTR:
                self._parser = V1Parser()
            else:
                self.loseConnection()
                return
        try:
            info, remaining = self._parser.feed(data)
        except InvalidProxyHeader:
            self.loseConnection()
            return
        if info is not None:
            self._proxyInfo = info
            self._header_read(remaining or b"")

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


class ProxyHeaderFactory(HAProxyWrappingFactory):
    """Wraps each connection of a PROXY listener in a `ProxyHeaderReader`."""

    protocol = ProxyHeaderReader


@implementer(IStreamServerEndpoint)
class ProxiedEndpoint:
    """An endpoint whose connections start with a PROXY protocol header."""

    def __init__(self, inner: Any) -> None:
        # Named as in Twisted's own wrapping endpoint, for code that looks in.
        self._wrappedEndpoint = inner

    def listen(self, factory: Any) -> Any:
        """Listen on the inner endpoint, reading each connection's header first."""
        return self._wrappedEndpoint.listen(ProxyHeaderFactory(factory))


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
    # TODO(#5): any certificate the CA signed admits any account on this
    # listener; binding a certificate's subject to a SIP login is not done.
    # New certificate files are read at the next start, not on SIGHUP.
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


@dataclass
class Listener:
    """One configured listener at run time; a reload swaps its accounts."""

    key: str
    config: ListenerConfig
    accounts: AccountBook
    factory: SipServerFactory
    tls: CertificateOptions | None = None
    port: IListeningPort | None = field(default=None)

    @property
    def proxied(self) -> bool:
        """Whether terminals arrive through a PROXY protocol header."""
        # TODO(#5): Twisted's PROXY wrapper drops a connection whose first read
        # is shorter than the header's fixed start (8 bytes v1, 16 v2); load
        # balancers send the header in one segment, but a split one is lost.
        return self.config.endpoint.startswith("haproxy:")

    def protocol_factory(self) -> Any:
        """The factory to listen with: the SIP2 one, inside TLS if configured."""
        if self.tls is None:
            return self.factory
        return TLSMemoryBIOFactory(self.tls, False, self.factory)

    def apply(
        self,
        config: ListenerConfig,
        accounts: list[AccountConfig],
        idle: float,
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        """Take new settings for new logins and connections (on reload)."""
        self.config = config
        self.accounts = book_for(config, accounts, reserved)
        self.factory.idle_timeout = (
            idle if config.idle_timeout is None else (config.idle_timeout)
        )
        self.factory.keepalive = keepalive_of(config)
        # TODO(#5): login_timeout and max_unauthenticated_per_address keep
        # their values from the start; reload.py (not this module) would have
        # to pass the new ones here and to Admission.configure.


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
