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
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    trustRootFromCertificates,
)
from twisted.protocols.tls import TLSMemoryBIOFactory

from sip2server.accounts import AccountBook
from sip2server.config import AccountConfig, ListenerConfig, TlsSettings
from sip2server.server import Keepalive, SipServerFactory

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


class StartupError(RuntimeError):
    """The server cannot start with this configuration and database."""


def endpoint_from(reactor: Any, description: str, key: str) -> Any:
    """The endpoint a listen string describes.

    Raises:
        StartupError: naming the configuration key and what is wrong.
    """
    try:
        return serverFromString(reactor, description)
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
