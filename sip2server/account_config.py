"""SIP2 accounts in the server's configuration: one terminal's login and settings.

Layer: `sip2server`. Imports the standard library, pydantic, the codec's
output-setting enums, `cryptography`'s names for certificate subject
attributes, `ils.secrets` (to check password hashes) and `sip2server.policy`;
never imports Twisted, the rest of `ils`, or `sip2server.config` (which
builds on this module).

Holds `AccountConfig` and the checks of its values: passwords and their hashes,
allowed networks and message names, and the terminals' TLS certificates as an
account names them (SHA-256 fingerprints, RFC 4514 subjects).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import unicodedata
from typing import Annotated, Self

from cryptography.x509.oid import NameOID
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ils.secrets import hash_problem, verify_secret
from sip2server.endpoint_text import split_unescaped
from sip2server.policy import TerminalPolicy
from sip2server.protocol import (
    DelimiterPolicy,
    DueDateStyle,
    FieldOrder,
    encoding_problem,
)


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

    @field_validator("certificate_fingerprints", "certificate_subjects", mode="before")
    @classmethod
    def _not_an_empty_list(cls, value: object) -> object:
        if isinstance(value, list | tuple) and not value:
            raise ValueError(
                "an empty list ties the account to no certificate at all: list"
                " its terminals' certificates, or leave the key out"
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
