"""The SIP2 server's configuration: a TOML file read into typed, validated objects.

Layer: `sip2server`. Imports the standard library, pydantic, the codec's
output-setting enums, `cryptography`'s names for certificate subject
attributes and `ils.secrets` (to check password hashes); never imports Twisted
or the rest of `ils`.

Every problem is reported as a `ConfigError` naming the file, the key and what is
wrong with it, so an operator can fix a file without reading code. The commented
example in `config/sip2server.toml` documents every option.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import socket
import tomllib
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from cryptography.x509.oid import NameOID
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ils.secrets import hash_problem, verify_secret
from sip2server.endpoint_text import clashes, split_unescaped
from sip2server.policy import TerminalPolicy
from sip2server.protocol import (
    DelimiterPolicy,
    DueDateStyle,
    FieldOrder,
    encoding_problem,
)

DEFAULT_LISTEN = "tcp:6001:interface=127.0.0.1"


class ConfigError(ValueError):
    """A configuration file that cannot be used, with where and why."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]) -> None:
        self.path = Path(path)
        self.problems = problems
        # A problem of the whole file (not TOML at all) has no key.
        lines = [
            f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}"
            for key, problem in problems
        ]
        super().__init__("\n".join(lines))


class Terminator(enum.Enum):
    """How a reply frame ends: as the spec says (CR), CRLF, or as the client's did."""

    CR = "cr"
    CRLF = "crlf"
    MIRROR = "mirror"


class ErrorDetection(enum.Enum):
    """Whether replies carry AY/AZ: never, as the request did, or always required."""

    OFF = "off"
    AUTO = "auto"
    REQUIRED = "required"


_Code = Annotated[
    str, StringConstraints(min_length=1, max_length=32, strip_whitespace=True)
]

# The longest timeout a setting may have: a day. Longer (or inf) is a slip of
# the keyboard, and no timer needs it.
MAX_TIMEOUT = 86_400.0
_Seconds = Annotated[float, Field(ge=0, le=MAX_TIMEOUT, allow_inf_nan=False)]

# The request types an account may be allowed, by their names in BX of 98.
# Login (93), status (99) and resend (97) are the session's own machinery and
# are always allowed.
MESSAGE_NAMES = (
    "patron_status_request",
    "checkout",
    "checkin",
    "block_patron",
    "patron_information",
    "end_patron_session",
    "fee_paid",
    "item_information",
    "item_status_update",
    "patron_enable",
    "hold",
    "renew",
    "renew_all",
)

# Keys of an account that an [institution.CODE] table may not set: they say
# who the account is (and which terminals may be it), not how it behaves.
_OWN_KEYS = frozenset(
    {
        "login",
        "password",
        "password_hash",
        "institution",
        "certificate_fingerprints",
        "certificate_subjects",
    }
)


# -- terminals' TLS certificates --------------------------------------------------

_HEX = re.compile(r"[0-9A-Fa-f]+")


def normal_fingerprint(text: str) -> str:
    """A SHA-256 certificate fingerprint as `openssl x509 -fingerprint -sha256`
    prints it (`AB:CD:...`, 32 pairs), from that form, plain hex, either case,
    or the whole `sha256 Fingerprint=...` line.

    Raises:
        ValueError: saying what is wrong and how to get a fingerprint.
    """
    how = "get it with: openssl x509 -in terminal.pem -noout -fingerprint -sha256"
    given = text.strip()
    head, equals, tail = given.partition("=")
    if equals and head.strip().lower().replace("-", "") in (
        "sha256 fingerprint",
        "fingerprint",
    ):
        given = tail.strip()
    if given.lower().startswith("sha256:"):
        given = given[len("sha256:") :]
    digits = given.replace(":", "").replace(" ", "")
    if not _HEX.fullmatch(digits):
        raise ValueError(
            f"{text!r} is not a SHA-256 fingerprint (hex digits, pairs may be "
            f"separated by ':'); {how}"
        )
    if len(digits) != 64:
        older = " (that is a SHA-1 fingerprint's length)" if len(digits) == 40 else ""
        raise ValueError(
            f"{text!r} has {len(digits)} hex digits, a SHA-256 fingerprint has "
            f"64{older}; {how}"
        )
    upper = digits.upper()
    return ":".join(upper[index : index + 2] for index in range(0, 64, 2))


# Attribute names a subject may use (in any case), as RFC 4514 and OpenSSL
# write them; any other attribute is written as its dotted OID.
_SUBJECT_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "TITLE": NameOID.TITLE,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
}
_DOTTED = re.compile(r"[0-9]+(\.[0-9]+)+")

# A subject as compared: its RDNs in written order (most specific first), each
# a set of (attribute OID, value folded to lower case with single spaces).
SubjectKey = tuple[frozenset[tuple[str, str]], ...]


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_value(value: str) -> str:
    """An attribute value as compared: the case of ASCII letters and runs of
    ASCII spaces do not count; every other character must be the same (so
    a long s is not an s, nor a no-break space a space: #5, trial 3 T1)."""
    return " ".join(part for part in value.split(" ") if part).translate(_ASCII_LOWER)


def _unescaped(value: str) -> str:
    # RFC 4514 escapes: a backslash before a special character, or two hex
    # digits for one byte of the UTF-8 value.
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char != "\\":
            out += char.encode()
            index += 1
            continue
        if index + 1 == len(value):
            # It escaped a trailing space that was stripped; folding drops it.
            break
        pair = value[index + 1 : index + 3]
        if len(pair) == 2 and _HEX.fullmatch(pair):
            out.append(int(pair, 16))
            index += 3
        else:
            out += value[index + 1].encode()
            index += 2
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise ValueError("its \\HH escapes are not UTF-8") from None


@functools.lru_cache(maxsize=1024)
def parse_subject(text: str) -> SubjectKey:
    """A certificate subject written as RFC 4514 text (`CN=kiosk-1,O=Library`,
    most specific first, as `openssl x509 -subject -nameopt rfc2253` prints it),
    ready to compare with a certificate's.

    Spaces around `,`, `+` and `=` and the case of attribute names do not
    matter; a `,` inside a value is written `\\,`.

    Raises:
        ValueError: naming the part that does not parse.
    """
    rdns: list[frozenset[tuple[str, str]]] = []
    try:
        pieces = split_unescaped(text, ",")
    except ValueError as error:
        raise ValueError(f"{text!r} is not a certificate subject: {error}") from None
    for piece in pieces:
        attributes = set()
        for part in split_unescaped(piece, "+"):
            name, equals, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not equals or not name:
                raise ValueError(
                    f"{text!r} is not a certificate subject: {part.strip()!r} is "
                    "not NAME=value; write it like CN=kiosk-1,O=Library"
                )
            oid = _SUBJECT_ATTRIBUTES.get(name.upper())
            if oid is not None:
                dotted = oid.dotted_string
            elif _DOTTED.fullmatch(name):
                dotted = name
            else:
                raise ValueError(
                    f"{text!r}: {name!r} is not a subject attribute name; use "
                    + ", ".join(_SUBJECT_ATTRIBUTES)
                    + " or a dotted OID"
                )
            if not value:
                raise ValueError(f"{text!r}: {name} has no value")
            if value.startswith("#"):
                raise ValueError(
                    f"{text!r}: {name} is given as #hex (BER); write the value as text"
                )
            attributes.add((dotted, fold_value(_unescaped(value))))
        rdns.append(frozenset(attributes))
    return tuple(rdns)


def _fingerprint(value: str) -> str:
    return normal_fingerprint(value)


def _subject(value: str) -> str:
    parse_subject(value.strip())
    return value.strip()


_Fingerprint = Annotated[str, AfterValidator(_fingerprint)]
_Subject = Annotated[str, AfterValidator(_subject)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped(network: str) -> str:
    """An IPv4-mapped IPv6 network (::ffff:10.9.0.0/112) as IPv4 (10.9.0.0/16).

    Terminals' addresses are compared as IPv4 (a dual-stack socket's
    ::ffff:a.b.c.d is unwrapped), so the network must be IPv4 too to match.
    """
    parsed = ipaddress.ip_network(network, strict=False)
    if not isinstance(parsed, ipaddress.IPv6Network) or not parsed.subnet_of(_MAPPED):
        return network
    address = parsed.network_address.ipv4_mapped
    assert address is not None  # inside ::ffff:0:0/96
    return str(ipaddress.IPv4Network((address, parsed.prefixlen - 96)))


def unsendable(text: str) -> str | None:
    """Why a terminal could never send `text` as a SIP2 field value, or None.

    SIP2 ends a variable field at `|` and a frame at CR; control characters do
    not survive the terminals' own handling (they are spaces in our replies).
    """
    if "|" in text:
        return "it contains '|', which ends a SIP2 field"
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"it contains the control character U+{ord(char):04X}"
    return None


@functools.lru_cache(maxsize=256)
def _hashes_empty_password(stored: str) -> bool:
    # One scrypt per distinct hash (about 26 ms), so a reload of an unchanged
    # file does not pay again.
    return verify_secret("", stored)


_EMPTY_ADVICE = (
    "an empty password lets in anyone who knows the login; give a real one, "
    "hashed with `ils hash-password`"
)


class AccountConfig(_Strict):
    """One SIP login: a terminal (kiosk, gate, sorter) or a group of them."""

    login: _Code
    # Exactly one of the two. A plain password is for demos and tests only; use
    # `ils hash-password` output for anything real.
    password: str | None = None
    password_hash: str | None = None
    institution: _Code
    # The branch code where this terminal's transactions happen (checkout branch,
    # return branch) unless a request names another with AP or CP.
    location: _Code
    terminator: Terminator = Terminator.MIRROR
    error_detection: ErrorDetection = ErrorDetection.AUTO
    # Any Python codec that writes ASCII as single bytes; "ascii" transliterates.
    encoding: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)] = (
        "utf-8"
    )
    # What a `|` inside a value becomes in replies; control characters are always
    # spaces.
    delimiter_in_value: DelimiterPolicy = DelimiterPolicy.SPACE
    field_order: FieldOrder = FieldOrder.SPEC
    due_date_format: DueDateStyle = DueDateStyle.SIP
    patron_pin_required: bool = False
    # Networks (IPv4 or IPv6, CIDR) this account may log in from; empty allows
    # any address. Behind a load balancer with the PROXY protocol, the address
    # is the terminal's own, from the PROXY header.
    allowed_networks: tuple[str, ...] = ()
    # Connections logged in as this account at once, across all listeners;
    # 0 means no limit. A login beyond it is refused (940) and logged.
    max_connections: Annotated[int, Field(ge=0)] = 0
    # The request types this account may send, by their BX names (see
    # MESSAGE_NAMES); None allows all. Others get a negative reply (or 96).
    messages: tuple[str, ...] | None = None
    # The terminal's TLS client certificate, for an account that must not log
    # in with its password alone. Either list given ties the account: a login
    # is admitted only over TLS with a certificate whose SHA-256 fingerprint is
    # in `certificate_fingerprints` or whose whole subject is one of
    # `certificate_subjects`; any other login gets 940, as a wrong password
    # does. Fingerprints name one certificate exactly (a renewal needs the new
    # one added); subjects ("CN=kiosk-1,O=Library") survive renewal and trust
    # every CA in the listener's client_ca to issue them only to that terminal.
    # Certificates are asked for only on listeners with a tls.client_ca.
    certificate_fingerprints: tuple[_Fingerprint, ...] = ()
    certificate_subjects: tuple[_Subject, ...] = ()
    # What this account's terminals are told and allowed beyond the SIP2
    # defaults: checkin routing and sort bins, gates' security markers, checkout
    # refusals, hidden and template fields (sip2server.policy; every key is in
    # config/sip2server.toml). An [institution.CODE] policy is merged under it,
    # key by key.
    policy: TerminalPolicy = TerminalPolicy()

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"{network!r} is not an IP network; write 192.0.2.0/24, "
                    "2001:db8::/32 or a single address"
                ) from None
            try:
                # A single address is /32 (IPv4) or /128 (IPv6).
                ipaddress.ip_network(network, strict=True)
            except ValueError:
                # 10.20.0.31/16 would silently admit all of 10.20.0.0/16.
                widened = ipaddress.ip_network(network, strict=False)
                address = network.split("/", 1)[0]
                raise ValueError(
                    f"{network!r} has host bits set: it would admit all of "
                    f"{widened}; write {widened} for the network or {address} "
                    "for the one address"
                ) from None
        return tuple(_unmapped(network) for network in value)

    @field_validator("messages")
    @classmethod
    def _message_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if name not in MESSAGE_NAMES:
                raise ValueError(
                    f"{name!r} is not a message name; use any of "
                    + ", ".join(MESSAGE_NAMES)
                )
        return value

    @field_validator("login")
    @classmethod
    def _sendable_login(cls, value: str) -> str:
        problem = unsendable(value)
        if problem is not None:
            raise ValueError(f"{problem}; no terminal could send it as CN in a 93")
        return value

    @field_validator("password")
    @classmethod
    def _real_password(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value == "":
            raise ValueError(_EMPTY_ADVICE)
        problem = unsendable(value)
        if problem is not None:
            raise ValueError(f"{problem}; no terminal could send it as CO in a 93")
        return value

    @field_validator("password_hash")
    @classmethod
    def _usable_hash(cls, value: str | None) -> str | None:
        if value is None:
            return value
        problem = hash_problem(value)
        if problem is not None:
            # Every login would fail as a wrong password: say so now instead.
            raise ValueError(f"not a usable password hash: {problem}")
        if _hashes_empty_password(value):
            raise ValueError(f"it is the hash of an empty password: {_EMPTY_ADVICE}")
        return value

    def allows_address(self, host: str) -> bool:
        """Whether a terminal at `host` may log in as this account."""
        if not self.allowed_networks:
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            # An IPv4 terminal on a dual-stack socket shows as ::ffff:a.b.c.d.
            address = address.ipv4_mapped
        return any(
            address in ipaddress.ip_network(network, strict=False)
            for network in self.allowed_networks
        )

    @property
    def tied_to_certificates(self) -> bool:
        """Whether a login needs a TLS client certificate this account names."""
        return bool(self.certificate_fingerprints or self.certificate_subjects)

    def admits_certificate(self, fingerprint: str, subject: SubjectKey) -> bool:
        """Whether a certificate with this fingerprint (`AB:CD:...`) and subject
        (`parse_subject`'s form) is one this account's terminals may use."""
        if fingerprint in self.certificate_fingerprints:
            return True
        return any(parse_subject(text) == subject for text in self.certificate_subjects)

    def allows_message(self, name: str) -> bool:
        """Whether this account may send the request type with this BX name."""
        return self.messages is None or name in self.messages

    @field_validator("encoding")
    @classmethod
    def _usable_encoding(cls, value: str) -> str:
        problem = encoding_problem(value)
        if problem is not None:
            raise ValueError(
                f"{problem}; use utf-8, cp850, iso-8859-1, ascii or another "
                "ASCII-compatible Python codec name"
            )
        return value

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("give exactly one of 'password' or 'password_hash'")
        return self


class TlsSettings(_Strict):
    """TLS on a listener: the server's certificate and, optionally, the terminals'."""

    # PEM files. The certificate file may hold the chain after the server's own.
    certificate: Path
    private_key: Path
    # PEM file of the authorities that sign terminals' certificates. When given,
    # a terminal without a certificate signed by one of them cannot connect.
    client_ca: Path | None = None


_REUSE_PORT_HINTS = {
    "ssl": "; for TLS on a shared port, give a tcp: endpoint a [listeners.tls] table",
    "systemd": (
        "; a systemd: socket belongs to its socket unit and is handed to one "
        "service; give each process a tcp: listener with reuse_port instead"
    ),
}


class ListenerConfig(_Strict):
    """One listening endpoint, with the accounts that may log in through it."""

    # A Twisted endpoint string: tcp:6001:interface=0.0.0.0, tcp6:6001:...,
    # haproxy:tcp:6002 (PROXY protocol v1 or v2 in front), systemd:domain=INET:
    # index=0 (socket activation), or ssl:6443:privateKey=...:certKey=...
    endpoint: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    # Logins that may use this listener; None allows every account.
    accounts: tuple[str, ...] | None = None
    # TLS inside this endpoint (after the PROXY header, if any).
    tls: TlsSettings | None = None
    # Seconds of silence before a connection is closed; None: [server] value.
    idle_timeout: _Seconds | None = None
    # Seconds to log in before a connection is closed; None: [server] value.
    login_timeout: _Seconds | None = None
    # TCP keepalive probes, so that a terminal that vanished (power cut, NAT
    # table flushed) is noticed: seconds idle before the first probe, seconds
    # between probes, unanswered probes before the connection is dropped.
    keepalive: bool = True
    keepalive_idle: Annotated[int, Field(ge=1, le=32767)] = 120
    keepalive_interval: Annotated[int, Field(ge=1, le=32767)] = 30
    keepalive_count: Annotated[int, Field(ge=1, le=127)] = 4
    # Whether a status request (99) is answered before the terminal logs in.
    status_before_login: bool = True
    # Bind a tcp: or tcp6: endpoint (also inside haproxy:) with SO_REUSEPORT,
    # so that several `ils serve` processes with this same file share the one
    # port and the kernel spreads new connections among them (Linux and the
    # BSDs; docs/deployment.md, "Several processes on one port"). Every process
    # on the port must set it; one that binds without it keeps the port alone.
    reuse_port: bool = False

    @field_validator("reuse_port")
    @classmethod
    def _reusable_endpoint(cls, value: bool, info: ValidationInfo) -> bool:
        endpoint = info.data.get("endpoint")
        if not value or endpoint is None:
            return value
        if not hasattr(socket, "SO_REUSEPORT"):
            raise ValueError(
                "this platform has no SO_REUSEPORT, so processes cannot share a "
                "port; run one process, or several on their own ports behind a "
                "load balancer"
            )
        kind = endpoint.lower().removeprefix("haproxy:").partition(":")[0]
        if kind not in ("tcp", "tcp6"):
            raise ValueError(
                f"only tcp: and tcp6: endpoints (also inside haproxy:) can share "
                f"a port, not {endpoint!r}{_REUSE_PORT_HINTS.get(kind, '')}"
            )
        return value


class MetricsSection(_Strict):
    """The HTTP endpoint for Prometheus (/metrics) and health checks (/healthz)."""

    # A Twisted endpoint string; None turns the endpoint off. Keep it on
    # loopback or a management network: it needs no password.
    listen: str | None = None


class ServerSection(_Strict):
    """Listeners and process-wide settings."""

    # Plain listeners open to every account. [[listeners]] tables add more with
    # their own settings; with neither, the server listens on DEFAULT_LISTEN.
    listen: list[str] | None = None

    @field_validator("listen", mode="before")
    @classmethod
    def _one_endpoint(cls, value: Any) -> Any:
        # listen = "tcp:6001" means the one endpoint, as ["tcp:6001"] does.
        return [value] if isinstance(value, str) else value

    # Threads that run database work, so a slow query never stalls other terminals.
    threads: Annotated[int, Field(ge=1, le=200)] = 10
    # Patron names and barcodes are masked in logs unless this is set to false.
    mask_patron_data: bool = True
    log_level: Annotated[
        str, StringConstraints(pattern="^(debug|info|warn|error)$")
    ] = "info"
    # Largest accepted frame in bytes; longer input is answered with 96.
    max_frame_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 8192
    # Seconds without a byte from a terminal before its connection is closed;
    # 0 keeps idle connections open. Kiosks send 99 every few minutes. Every
    # timeout is at most MAX_TIMEOUT (a day).
    idle_timeout: _Seconds = 0
    # Connections open at once, all listeners together; more are closed at once.
    max_connections: Annotated[int, Field(ge=1)] = 5000
    # Failed logins from one address within failed_login_window seconds after
    # which further logins from that address are refused until the window ends.
    max_failed_logins_per_address: Annotated[int, Field(ge=1)] = 20
    failed_login_window: Annotated[
        float, Field(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)
    ] = 300
    # Threads that check login passwords (a deliberately slow hash), apart from
    # the request threads, so a flood of logins never delays circulation; and
    # logins that may wait for one: more are refused at once (940) as busy.
    login_threads: Annotated[int, Field(ge=1, le=16)] = 2
    login_backlog: Annotated[int, Field(ge=1)] = 16
    # Seconds a connection may stay open without logging in (0: no limit), so
    # idle connections that never log in cannot fill max_connections.
    login_timeout: _Seconds = 30
    # Connections from one address (an IPv6 /64) open at once and not logged
    # in; more from there are closed at once. Logged-in ones do not count.
    max_unauthenticated_per_address: Annotated[int, Field(ge=1)] = 50
    # One line per circulation transaction (checkout, checkin, renewal, fee,
    # hold, ...) with masked patron and item ids; None writes none. The file
    # is reopened on SIGHUP, for log rotation.
    transaction_log: Path | None = None


class DatabaseSection(_Strict):
    """Where the core database is."""

    url: Annotated[str, StringConstraints(min_length=1)]
    # SQLite only: seconds a request waits for another writer before it is
    # refused as "unavailable"; keep it below the terminals' own timeout.
    busy_timeout: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 5.0
    # SQLite only: "full" syncs every commit to disk; "normal" only at
    # checkpoints (faster writes; a power cut may undo the latest ones).
    sqlite_synchronous: Literal["full", "normal"] = "full"


class ServerConfig(_Strict):
    """A whole server configuration file."""

    server: ServerSection = Field(default_factory=ServerSection)
    listeners: list[ListenerConfig] = Field(default_factory=list)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    database: DatabaseSection
    # [institution.CODE]: account settings shared by every account of that
    # institution; an account's own value wins. Merged before validation.
    institution: dict[str, dict[str, Any]] = Field(default_factory=dict)
    accounts: list[AccountConfig] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _institution_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = data.get("institution") or {}
        accounts = data.get("accounts")
        if not isinstance(defaults, dict) or not isinstance(accounts, list):
            return data
        merged = []
        for account in accounts:
            shared = (
                defaults.get(account.get("institution"))
                if isinstance(account, dict)
                else None
            )
            merged.append(
                _merge_under(shared, account) if isinstance(shared, dict) else account
            )
        return {**data, "accounts": merged}

    @field_validator("institution")
    @classmethod
    def _known_default_keys(
        cls, value: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        allowed = set(AccountConfig.model_fields) - _OWN_KEYS
        for code, table in value.items():
            for key in table:
                if key not in allowed:
                    raise ValueError(
                        f"{code}.{key}: not an account setting an institution "
                        "can give (login, passwords, institution and "
                        "certificates are each account's own)"
                    )
        return value

    @model_validator(mode="after")
    def _unique_logins(self) -> Self:
        logins = [account.login for account in self.accounts]
        duplicates = sorted({login for login in logins if logins.count(login) > 1})
        if duplicates:
            raise ValueError(f"login {duplicates[0]!r} is defined more than once")
        for index, listener in enumerate(self.listeners):
            unknown = sorted(set(listener.accounts or ()) - set(logins))
            if unknown:
                raise ValueError(
                    f"listeners[{index}].accounts: {unknown[0]!r} is not the login "
                    "of any [[accounts]] table"
                )
        return self

    def all_listeners(self) -> list[tuple[str, ListenerConfig]]:
        """Every listener with the configuration key it comes from, in order."""
        plain = self.server.listen
        if plain is None and not self.listeners:
            plain = [DEFAULT_LISTEN]
        found = [
            (f"server.listen[{index}]", ListenerConfig(endpoint=endpoint))
            for index, endpoint in enumerate(plain or ())
        ]
        found += [
            (f"listeners[{index}]", listener)
            for index, listener in enumerate(self.listeners)
        ]
        return found


def missing_tls_files(config: ServerConfig) -> list[str]:
    """Each listener's TLS file that does not exist, by its key (no file is read)."""
    problems = []
    for key, listener in config.all_listeners():
        tls = listener.tls
        if tls is None:
            continue
        for name in ("certificate", "private_key", "client_ca"):
            path = getattr(tls, name)
            if path is not None and not path.is_file():
                problems.append(f"{key}.tls.{name}: no such file {path}")
    return problems


def socket_activation_warnings(config: ServerConfig) -> list[str]:
    """What to check by hand when systemd's socket sits beside other listeners.

    A `systemd:` listener's port is in the .socket unit, not in this file, so
    a clash cannot be proved here; each listener that opens a port of its own
    is named, with the key that opens it.
    """
    found = config.all_listeners()
    if not any(listener.endpoint.startswith("systemd:") for _, listener in found):
        return []
    warnings = []
    if config.server.listen:
        warnings.append(
            "server.listen: with a systemd: listener the socket unit opens the "
            "SIP2 port; [server] listen opens "
            + ", ".join(config.server.listen)
            + " as well, and if the socket unit has the same port the start "
            "fails with 'Address already in use'; leave [server] listen out "
            "unless it is another port"
        )
    for key, listener in found:
        if key.startswith("listeners[") and not listener.endpoint.startswith(
            "systemd:"
        ):
            warnings.append(
                f"{key}.endpoint: {listener.endpoint} opens its own port beside "
                "the socket unit's; make sure no ListenStream= of "
                "ils-sip2server.socket uses it"
            )
    return warnings


# The text in a setting that `ils serve` replaces by its instance name.
_INSTANCE_FIELD = "{instance}"


def endpoint_clashes(config: ServerConfig) -> list[tuple[str, str]]:
    """Listeners (and metrics.listen) that would bind the same port twice.

    Each is named by its key with the earlier key it collides with; `ils serve`
    would stop with "Address already in use". Port 0, systemd: sockets and
    endpoints with {instance} are not compared.
    """
    found = [
        (f"{key}.endpoint" if key.startswith("listeners[") else key, settings.endpoint)
        for key, settings in config.all_listeners()
    ]
    if config.metrics.listen is not None:
        found.append(("metrics.listen", config.metrics.listen))
    return clashes(
        [(key, endpoint) for key, endpoint in found if _INSTANCE_FIELD not in endpoint]
    )


def transaction_log_problem(config: ServerConfig) -> str | None:
    """Why `server.transaction_log` cannot be opened as a file, or None.

    The server creates no folders: the log's folder must exist (and be the
    server user's to write). A path with {instance} is checked as far as the
    part without it.
    """
    path = config.server.transaction_log
    if path is None:
        return None
    folder = path.parent
    if _INSTANCE_FIELD not in str(folder):
        if not folder.exists():
            return (
                f"the folder {folder} does not exist; the server creates none: "
                "make it, writable by the server's user"
            )
        if not folder.is_dir():
            return f"{folder} is not a folder"
    if _INSTANCE_FIELD not in str(path) and path.is_dir():
        return f"{path} is a folder; name a file in it, such as {path}/transactions.log"
    return None


def location_problems(
    config: ServerConfig, branch_institutions: dict[str, str]
) -> list[str]:
    """Accounts whose location is a branch of another institution.

    `branch_institutions` maps each branch code in the database to its
    institution's code. An account's location must be a branch of its own
    institution or of one in its policy's serves_institutions; otherwise its
    returns would be taken in at another library's branch. Branches the
    database lacks are reported by the caller.
    """
    problems = []
    for index, account in enumerate(config.accounts):
        owner = branch_institutions.get(account.location)
        allowed = {account.institution, *account.policy.serves_institutions}
        if owner is None or owner in allowed:
            continue
        problems.append(
            f"accounts[{index}] ({account.login}): location {account.location!r} "
            f"is a branch of {owner!r}, not of {account.institution!r}"
            + (
                " or of its policy.serves_institutions"
                if account.policy.serves_institutions
                else ""
            )
            + "; give a branch of the account's own institution"
        )
    return problems


def _merge_under(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """An account's keys over its institution's; tables (policy) merge key by key."""
    merged = dict(defaults)
    for key, value in own.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _merge_under(below, value)
        else:
            merged[key] = value
    return merged


def _key(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(part)
    return ".".join(parts) or "(top level)"


def parse_config(data: dict[str, Any], path: Path | str) -> ServerConfig:
    """Validate an already-parsed TOML document.

    Raises:
        ConfigError: naming each key that is missing, unknown or invalid.
    """
    inherited = _institution_problems(data)
    try:
        config = ServerConfig.model_validate(data)
    except ValidationError as error:
        problems = [(key, problem) for key, _, problem in inherited]
        for item in error.errors():
            key, problem = _key(tuple(item["loc"])), _message(item)
            # A mistake in [institution.X] shows in each of its accounts too;
            # it is reported once, under the institution's own key.
            if not any(
                key.endswith(f"].{sub}") and problem == said and key != sub
                for _, sub, said in inherited
            ):
                problems.append((key, problem))
        raise ConfigError(path, problems) from None
    if inherited:
        raise ConfigError(path, [(key, problem) for key, _, problem in inherited])
    unseen = unseen_certificate_problems(config) + endpoint_clashes(config)
    if unseen:
        raise ConfigError(path, unseen)
    return config


def unseen_certificate_problems(config: ServerConfig) -> list[tuple[str, str]]:
    """Accounts tied to certificates that no listener they may use asks for.

    Only a listener with `tls.client_ca` asks terminals for a certificate; an
    account tied to certificates but admitted only on others could never log
    in. Each is named by its key, with the problem.
    """
    listeners = [listener for _, listener in config.all_listeners()]
    reserved = {login for listener in listeners for login in listener.accounts or ()}
    problems = []
    for index, account in enumerate(config.accounts):
        if not account.tied_to_certificates:
            continue
        admitting = [
            listener
            for listener in listeners
            if (
                account.login in listener.accounts
                if listener.accounts is not None
                else account.login not in reserved
            )
        ]
        if any(
            listener.tls is not None and listener.tls.client_ca is not None
            for listener in admitting
        ):
            continue
        key = (
            "certificate_fingerprints"
            if account.certificate_fingerprints
            else "certificate_subjects"
        )
        problems.append(
            (
                f"accounts[{index}].{key}",
                f"{account.login!r} is tied to client certificates, but no "
                "listener it may log in through asks terminals for one; give "
                "such a listener a [listeners.tls] client_ca",
            )
        )
    return problems


def _message(item: Any) -> str:
    return str(item["msg"]).removeprefix("Value error, ")


def _institution_problems(data: Any) -> list[tuple[str, str, str]]:
    """Mistakes in [institution.CODE] tables: (key, key within an account, problem).

    Each table is checked as the account settings it gives, alone, so that its
    mistake is named by the table's key, not by each account that inherits it.
    """
    tables = data.get("institution") if isinstance(data, dict) else None
    if not isinstance(tables, dict):
        return []
    found = []
    for code, table in tables.items():
        if not isinstance(table, dict):
            continue
        # Keys an institution may not give are reported by _known_default_keys.
        settable = set(AccountConfig.model_fields) - _OWN_KEYS
        given = {key: value for key, value in table.items() if key in settable}
        probe = {
            **given,
            "login": "x",
            "password": "x",
            "institution": "x",
            "location": "x",
        }
        try:
            AccountConfig.model_validate(probe)
        except ValidationError as error:
            for item in error.errors():
                location = tuple(item["loc"])
                if location and location[0] in given:
                    sub = _key(location)
                    found.append((f"institution.{code}.{sub}", sub, _message(item)))
    return found


def load_config(path: Path | str) -> ServerConfig:
    """Read and validate a configuration file.

    Raises:
        ConfigError: the file is missing, is not TOML, or has invalid keys.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(path, [("(file)", "no such file")]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [("", f"not a valid TOML file ({error})")]) from None
    except RecursionError:
        # tomllib reads nested arrays and tables by recursion, and gives up
        # with Python's own error past its depth.
        raise ConfigError(
            path, [("", "not a valid TOML file (arrays or tables nested too deeply)")]
        ) from None
    try:
        return parse_config(data, path)
    except RecursionError:
        raise ConfigError(
            path, [("", "not a usable configuration (values nested too deeply)")]
        ) from None
