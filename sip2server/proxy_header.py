"""The PROXY protocol header a load balancer sends first, read in any pieces.

Layer: `sip2server`, sans-I/O: standard library only; it must not import
Twisted or `ils`. `ProxyHeaderParser.feed()` takes bytes as TCP hands them
over (one byte at a time is fine) and returns the header and whatever followed
it once the header is whole, None while it is not, and raises
`ProxyHeaderError` as soon as the bytes cannot be a header: the first byte
that matches neither version's start, a v1 line longer than the protocol's 107
bytes, a v2 length above `MAX_V2_BODY`.

What HAProxy's PROXY protocol specification (versions 1 and 2) defines, and
what this reads:

- v1 is one text line, `PROXY TCP4|TCP6 SOURCE DESTINATION SPORT DPORT` and
  CRLF, at most 107 bytes; `PROXY UNKNOWN ...` is a balancer's own connection
  (a health check) and gives no address.
- v2 is a 12-byte signature, a version and command byte, a family and
  transport byte and a 16-bit length, then that many bytes: the addresses,
  possibly followed by type-length-value extensions (skipped here). The LOCAL
  command, and the UNSPEC and UNIX families, give no address.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
# The longest v1 line the specification allows, CRLF included.
V1_MAX_LINE = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
# The largest v2 body accepted: a UNIX address pair takes 216 bytes, and a
# balancer's extensions (TLS details, a cloud's endpoint id) a few hundred more.
MAX_V2_BODY = 1024

# v2 address families (high nibble of byte 13) and their address block sizes.
_V2_UNSPEC, _V2_INET, _V2_INET6, _V2_UNIX = 0, 1, 2, 3
_V2_ADDRESS_BYTES = {_V2_UNSPEC: 0, _V2_INET: 12, _V2_INET6: 36, _V2_UNIX: 216}
# v2 transports (low nibble of byte 13): UNSPEC, STREAM (TCP); DGRAM (2) is
# not a SIP2 connection.
_V2_TRANSPORTS = (0, 1)


class ProxyHeaderError(ValueError):
    """The bytes cannot be a PROXY header; the message says why."""


class ProxyVersion(enum.IntEnum):
    """Which version of the protocol the header used."""

    V1 = 1
    V2 = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyAddress:
    """One end of the proxied connection, as the header gives it."""

    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyHeader:
    """A whole PROXY header.

    `source` is the terminal's address; None when the header gives none (v1
    UNKNOWN, v2 LOCAL, an UNSPEC or UNIX family): the socket's own address
    then stands.
    """

    version: ProxyVersion
    source: ProxyAddress | None
    destination: ProxyAddress | None


class ProxyHeaderParser:
    """Collects one connection's PROXY header, a piece at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._version: ProxyVersion | None = None
        self._done = False

    @property
    def pending(self) -> int:
        """Bytes received and held until the header is whole."""
        return len(self._buffer)

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """Add received bytes; the header and the bytes after it once whole.

        Raises:
            ProxyHeaderError: the bytes so far cannot begin a PROXY header.
        """
        if self._done:
            raise ProxyHeaderError("the header has already been read")
        self._buffer += data
        if self._version is None:
            self._version = _version_of(bytes(self._buffer[: len(V2_SIGNATURE)]))
            if self._version is None:
                return None
        read = (
            _v1(self._buffer) if self._version is ProxyVersion.V1 else _v2(self._buffer)
        )
        if read is None:
            return None
        header, used = read
        rest = bytes(self._buffer[used:])
        self._buffer.clear()
        self._done = True
        return header, rest


def _version_of(start: bytes) -> ProxyVersion | None:
    # The first byte tells the versions apart ('P' or CR); every byte after it
    # must go on matching that version's fixed start.
    if V1_PREFIX.startswith(start[: len(V1_PREFIX)]):
        return ProxyVersion.V1 if len(start) >= len(V1_PREFIX) else None
    if V2_SIGNATURE.startswith(start):
        return ProxyVersion.V2 if len(start) == len(V2_SIGNATURE) else None
    raise ProxyHeaderError(f"not a PROXY header: starts {start[:16]!r}")


def _v1(buffer: bytearray) -> tuple[ProxyHeader, int] | None:
    end = buffer.find(b"\n")
    if end < 0:
        if len(buffer) >= V1_MAX_LINE:
            raise ProxyHeaderError(f"v1 line longer than {V1_MAX_LINE} bytes")
        return None
    if end + 1 > V1_MAX_LINE:
        raise ProxyHeaderError(f"v1 line longer than {V1_MAX_LINE} bytes")
    if buffer[end - 1 : end] != b"\r":
        raise ProxyHeaderError("v1 line not ended by CRLF")
    line = bytes(buffer[: end - 1])
    return _v1_line(line), end + 1


def _v1_line(line: bytes) -> ProxyHeader:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 line is not ASCII") from None
    words = text.split(" ")
    if words[1:2] == ["UNKNOWN"]:
        # The balancer's own connection; whatever follows is to be ignored.
        return ProxyHeader(version=ProxyVersion.V1, source=None, destination=None)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"v1 line is not 'PROXY TCP4|TCP6 ...': {text!r}")
    family = ipaddress.IPv4Address if words[1] == "TCP4" else ipaddress.IPv6Address
    source = _v1_address(family, words[2], words[4])
    destination = _v1_address(family, words[3], words[5])
    return ProxyHeader(version=ProxyVersion.V1, source=source, destination=destination)


def _v1_address(
    family: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address],
    host: str,
    port: str,
) -> ProxyAddress:
    if "%" in host:
        raise ProxyHeaderError(f"v1 address with a scope: {host!r}")
    try:
        address = family(host)
    except ValueError:
        raise ProxyHeaderError(
            f"v1 address {host!r} is not {family.__name__}"
        ) from None
    # Digits only: int() would also take '+80', ' 80' and '8_0'.
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) < 65536):
        raise ProxyHeaderError(f"v1 port {port!r} is not 0 to 65535")
    return ProxyAddress(host=str(address), port=int(port))


def _v2(buffer: bytearray) -> tuple[ProxyHeader, int] | None:
    if len(buffer) > len(V2_SIGNATURE):
        version, command = buffer[12] >> 4, buffer[12] & 0x0F
        if version != 2 or command not in (0, 1):
            raise ProxyHeaderError(
                f"v2 version and command byte {buffer[12]:#04x} is not 0x20 or 0x21"
            )
    if len(buffer) > 13:
        family, transport = buffer[13] >> 4, buffer[13] & 0x0F
        if family not in _V2_ADDRESS_BYTES or transport not in _V2_TRANSPORTS:
            raise ProxyHeaderError(
                f"v2 family and transport byte {buffer[13]:#04x} is not a TCP one"
            )
    if len(buffer) < V2_FIXED:
        return None
    (length,) = struct.unpack("!H", buffer[14:16])
    if length > MAX_V2_BODY:
        raise ProxyHeaderError(f"v2 body of {length} bytes (at most {MAX_V2_BODY})")
    family = buffer[13] >> 4
    if length < _V2_ADDRESS_BYTES[family]:
        raise ProxyHeaderError(
            f"v2 body of {length} bytes is too short for its addresses "
            f"({_V2_ADDRESS_BYTES[family]})"
        )
    if len(buffer) < V2_FIXED + length:
        return None
    body = bytes(buffer[V2_FIXED : V2_FIXED + length])
    proxied = buffer[12] & 0x0F == 1
    source = destination = None
    if proxied and family == _V2_INET:
        source = _v2_address(body[0:4], body[8:10])
        destination = _v2_address(body[4:8], body[10:12])
    elif proxied and family == _V2_INET6:
        source = _v2_address(body[0:16], body[32:34])
        destination = _v2_address(body[16:32], body[34:36])
    header = ProxyHeader(
        version=ProxyVersion.V2, source=source, destination=destination
    )
    return header, V2_FIXED + length


def _v2_address(packed: bytes, port: bytes) -> ProxyAddress:
    (number,) = struct.unpack("!H", port)
    return ProxyAddress(host=str(ipaddress.ip_address(packed)), port=number)
