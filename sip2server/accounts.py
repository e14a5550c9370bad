"""SIP logins: who may connect as a terminal, from where, and how many at once.

Layer: `sip2server`. Uses `ils.secrets` for password hashes and
`cryptography` to read terminals' TLS certificates; never logs passwords;
imports nothing of Twisted.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ils.secrets import hash_secret, verify_secret
from sip2server.config import AccountConfig, SubjectKey, fold_value

# Addresses with recent failed logins kept before old entries are swept.
_MAX_TRACKED_ADDRESSES = 10_000

# Failed logins from one address, whatever the login, that lock the address out,
# as a multiple of the per-login limit (`max_failed_logins_per_address`).
ADDRESS_WIDE_FACTOR = 5

# Characters of a login that key its failed-login count.
LOGIN_KEY_LENGTH = 64


class AccountBook:
    """The SIP accounts of one server configuration, looked up by login."""

    def __init__(self, accounts: Iterable[AccountConfig]) -> None:
        self._by_login = {account.login: account for account in accounts}

    def __len__(self) -> int:
        return len(self._by_login)

    def __iter__(self) -> Iterable[AccountConfig]:
        return iter(self._by_login.values())

    def get(self, login: str) -> AccountConfig | None:
        """The account with this login, or None (no password is checked)."""
        return self._by_login.get(login)

    def authenticate(self, login: str, password: str) -> AccountConfig | None:
        """The account for this login if the password is right, else None.

        An unknown login costs the same hash as a known one, so that response
        time does not tell a caller which logins exist.
        """
        account = self._by_login.get(login)
        if account is None:
            verify_secret(password, _decoy_hash())
            return None
        if account.password_hash is not None:
            ok = verify_secret(password, account.password_hash)
        else:
            # A plain password costs a hash too, so that timing does not tell a
            # plain account from an unknown login.
            verify_secret(password, _decoy_hash())
            expected = account.password or ""
            ok = hmac.compare_digest(password.encode(), expected.encode())
        return account if ok else None


@dataclass(frozen=True, slots=True)
class TerminalCertificate:
    """A terminal's TLS client certificate, as accounts' certificate keys see it.

    `fingerprint` is its SHA-256 as `openssl x509 -fingerprint -sha256` prints
    it; `subject` its RFC 4514 text, for the log; `subject_key` the subject as
    `AccountConfig.admits_certificate` compares it.
    """

    fingerprint: str
    subject: str
    subject_key: SubjectKey

    @classmethod
    def of(cls, certificate: x509.Certificate) -> TerminalCertificate:
        """The parts of a certificate that accounts are tied to."""
        digest = certificate.fingerprint(hashes.SHA256()).hex().upper()
        name = certificate.subject
        # ASN.1 holds the least specific RDN first; RFC 4514 text, and the
        # subjects in the configuration, the most specific first.
        key = tuple(
            frozenset(
                (attribute.oid.dotted_string, fold_value(_text(attribute.value)))
                for attribute in rdn
            )
            for rdn in reversed(name.rdns)
        )
        return cls(
            fingerprint=":".join(
                digest[index : index + 2] for index in range(0, len(digest), 2)
            ),
            subject=name.rfc4514_string(),
            subject_key=key,
        )


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.hex()


def certificate_refusal(
    account: AccountConfig, *, tls: bool, certificate: TerminalCertificate | None
) -> str | None:
    """Why a connection may not log in as `account` for want of the right
    certificate (for the log; the terminal gets 940), or None if it may.

    An account with no certificate keys admits any connection.
    """
    if not account.tied_to_certificates:
        return None
    if not tls:
        return (
            "the account is tied to client certificates and this connection "
            "is plain TCP, not TLS"
        )
    if certificate is None:
        return (
            "the account is tied to client certificates and the terminal sent "
            "none (only a listener with tls.client_ca asks for one)"
        )
    if account.admits_certificate(certificate.fingerprint, certificate.subject_key):
        return None
    return (
        f"the terminal's certificate (subject {certificate.subject}, sha256 "
        f"{certificate.fingerprint}) is in neither the account's "
        "certificate_fingerprints nor its certificate_subjects"
    )


@functools.cache
def _decoy_hash() -> str:
    # A hash of a random string nobody knows, checked against for unknown logins.
    return hash_secret(secrets.token_hex(16))


def address_key(host: str) -> str:
    """Whom failed logins from `host` are counted against.

    An IPv6 address counts as its /64: one subscriber or site is handed a
    whole /64, and could otherwise try from a fresh address each time.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Admission:
    """Who may be connected and logged in right now, across all listeners.

    Shared by every connection of a server: the cap on open connections, each
    account's connection limit, and the failed-login counts per address and
    login, and per address. Logins
    run in worker threads and connections open and close on the reactor's, so
    every change happens under one lock.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        max_failed_logins: int,
        failed_login_window: float,
        clock: Callable[[], float] = time.monotonic,
        max_unauthenticated_per_address: int = 50,
    ) -> None:
        self.max_connections = max_connections
        self.max_unauthenticated_per_address = max_unauthenticated_per_address
        self._waiting: dict[str, int] = {}
        self.max_failed_logins = max_failed_logins
        self.failed_login_window = failed_login_window
        self._clock = clock
        self._lock = threading.Lock()
        self._live: set[int] = set()
        self._seats: dict[str, set[int]] = {}
        self._holder: dict[int, str] = {}
        self._failures: dict[str | tuple[str, str], deque[float]] = {}

    def configure(
        self, *, max_connections: int, max_failed_logins: int, window: float
    ) -> None:
        """Take new limits (on reload); connections already open stay open."""
        with self._lock:
            self.max_connections = max_connections
            self.max_failed_logins = max_failed_logins
            self.failed_login_window = window

    # -- connections -----------------------------------------------------------

    def connect(self, token: int) -> bool:
        """Count new connection `token`; False when the server is full."""
        with self._lock:
            if len(self._live) >= self.max_connections:
                return False
            self._live.add(token)
            return True

    def disconnect(self, token: int) -> None:
        """A connection closed: free it and any account seat it held."""
        with self._lock:
            self._live.discard(token)
            self._release(token)

    def arrive(self, host: str) -> bool:
        """Count a connection from `host` not yet logged in; False if too many.

        Loopback is not capped: it is this machine (a local TLS terminator or
        proxy that sends no PROXY header brings every terminal from there).
        """
        if _loopback(host):
            return True
        key = address_key(host)
        with self._lock:
            count = self._waiting.get(key, 0)
            if count >= self.max_unauthenticated_per_address:
                return False
            self._waiting[key] = count + 1
            return True

    def depart(self, host: str) -> None:
        """A connection counted by `arrive` logged in or closed."""
        if _loopback(host):
            return
        key = address_key(host)
        with self._lock:
            count = self._waiting.get(key, 0) - 1
            if count > 0:
                self._waiting[key] = count
            else:
                self._waiting.pop(key, None)

    @property
    def open_connections(self) -> int:
        """Connections counted as open now."""
        return len(self._live)

    # -- account seats ---------------------------------------------------------

    def take_seat(self, token: int, account: AccountConfig) -> bool:
        """Count connection `token` as logged in to `account`, within its limit.

        Whatever account the connection held before is released first (a
        terminal may log in again on the same connection). False when the
        account is at its limit or the connection has closed meanwhile.
        """
        with self._lock:
            self._release(token)
            if token not in self._live:
                return False
            holders = self._seats.setdefault(account.login, set())
            if account.max_connections and len(holders) >= account.max_connections:
                return False
            holders.add(token)
            self._holder[token] = account.login
            return True

    def release_seat(self, token: int) -> None:
        """The connection no longer uses its account (a failed login, say)."""
        with self._lock:
            self._release(token)

    def seats(self) -> dict[str, int]:
        """Logged-in connections per account login."""
        with self._lock:
            return {login: len(holders) for login, holders in self._seats.items()}

    def _release(self, token: int) -> None:
        login = self._holder.pop(token, None)
        if login is not None:
            self._seats[login].discard(token)

    # -- failed logins per address and login ---------------------------------

    def login_blocked(self, host: str, login: str) -> str | None:
        """Why logins as `login` from `host` are refused for now, or None.

        Failures count per (address, login): a guesser at one account locks
        out that account from that address, not the other terminals behind
        the same address (a local TLS terminator brings them all from
        loopback). A wider cap, `ADDRESS_WIDE_FACTOR` times as many failures
        from the address whatever the login, stops spraying many logins.
        """
        address = address_key(host)
        with self._lock:
            if self._recent_failures((address, _login_key(login))) >= (
                self.max_failed_logins
            ):
                return "too many failed logins for this login from this address"
            if self._recent_failures(address) >= self.address_wide_limit:
                return "too many failed logins from this address"
        return None

    @property
    def address_wide_limit(self) -> int:
        """Failed logins from one address, any login, before all are refused."""
        return self.max_failed_logins * ADDRESS_WIDE_FACTOR

    def address_blocked(self, host: str, login: str = "") -> bool:
        """Whether logins as `login` from `host` are refused for now."""
        return self.login_blocked(host, login) is not None

    def login_failed(self, host: str, login: str = "") -> int:
        """Count a failed login as `login` from `host`; returns that login's
        count from that address in the window."""
        address = address_key(host)
        pair = (address, _login_key(login))
        with self._lock:
            if len(self._failures) > _MAX_TRACKED_ADDRESSES:
                # A scan from many addresses must not grow the table without end.
                for known in list(self._failures):
                    self._recent_failures(known)
            now = self._clock()
            for key in (address, pair):
                self._recent_failures(key)
                self._failures.setdefault(key, deque()).append(now)
            return len(self._failures[pair])

    def _recent_failures(self, key: str | tuple[str, str]) -> int:
        failures = self._failures.get(key)
        if failures is None:
            return 0
        oldest = self._clock() - self.failed_login_window
        while failures and failures[0] <= oldest:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return len(failures)


def _login_key(login: str) -> str:
    # Only the start of a login names it here: a peer sending 8,000-character
    # logins must not make the table hold them (real logins are short).
    return login[:LOGIN_KEY_LENGTH]
