"""The PROXY header read in pieces (#5): the parser alone, the reader under a
Clock, and a real server on loopback fed the header a few bytes per TCP read.

The TCP tests wait, between two writes, until the server holds every byte sent
so far (an event on the reactor, not a sleep), so each piece is a read of its own.
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from sip2server.app import RunningServer
from sip2server.listeners import ProxyHeaderFactory, ProxyHeaderReader
from sip2server.proxy_header import (
    ProxyAddress,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
    ProxyVersion,
)
from tests.sip2server.test_transports import Launcher, proxy_v1, proxy_v2, target
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    in_thread,
)

PROXIED = [{"endpoint": "haproxy:tcp:0:interface=127.0.0.1"}]
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def parse_in_pieces(data: bytes, cuts: list[int]) -> tuple[ProxyHeader, bytes]:
    """Feed `data` cut at `cuts`; the header and the bytes after it."""
    parser = ProxyHeaderParser()
    edges = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(edges):
        read = parser.feed(data[start:end])
        if read is not None:
            header, rest = read
            return header, rest + data[end:]
    raise AssertionError(f"no header from {data!r}")


def v2_local() -> bytes:
    """A v2 header with the LOCAL command (a balancer's own health check)."""
    return SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


# -- the parser alone ----------------------------------------------------------


def test_v1_line_gives_both_addresses_and_keeps_what_follows() -> None:
    """A whole v1 line gives source and destination; the SIP2 bytes stay."""
    header, rest = parse_in_pieces(
        b"PROXY TCP4 203.0.113.7 10.0.1.11 40000 6002\r\n9900302.00\r", []
    )

    assert ProxyVersion.V1 == header.version
    assert ProxyAddress(host="203.0.113.7", port=40000) == header.source
    assert ProxyAddress(host="10.0.1.11", port=6002) == header.destination
    assert b"9900302.00\r" == rest


@pytest.mark.parametrize(
    "data",
    [
        proxy_v1("203.0.113.7") + b"99",
        proxy_v1("2001:db8:5::17") + b"99",
        proxy_v2("203.0.113.7") + b"99",
        proxy_v2("2001:db8:5::17") + b"99",
    ],
    ids=["v1-ipv4", "v1-ipv6", "v2-ipv4", "v2-ipv6"],
)
def test_every_single_cut_gives_the_same_header(data: bytes) -> None:
    """Cut anywhere, and fed one byte at a time, a header reads as when whole."""
    whole = parse_in_pieces(data, [])

    for cut in range(1, len(data)):
        assert whole == parse_in_pieces(data, [cut])
    assert whole == parse_in_pieces(data, list(range(1, len(data))))


@given(
    source=st.ip_addresses(),
    port=st.integers(0, 65535),
    version=st.sampled_from([proxy_v1, proxy_v2]),
    after=st.binary(max_size=20),
    cuts=st.lists(st.integers(1, 80), max_size=10),
)
def test_any_pieces_of_any_header_give_its_source(
    source: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    version: Callable[[str, int], bytes],
    after: bytes,
    cuts: list[int],
) -> None:
    """Whatever the address, port and cuts, the source and the rest come back."""
    header_bytes = version(str(source), port)
    data = header_bytes + after

    header, rest = parse_in_pieces(data, [cut for cut in cuts if cut < len(data)])

    assert ProxyAddress(host=str(source), port=port) == header.source
    assert after == rest


def test_v2_extensions_after_the_addresses_are_skipped() -> None:
    """A v2 body longer than its addresses (TLVs) ends where its length says."""
    body = (
        ipaddress.ip_address("198.51.100.4").packed
        + ipaddress.ip_address("10.0.1.11").packed
        + struct.pack("!HH", 51000, 6002)
        + bytes([0x04, 0x00, 0x03])  # a NOOP extension, three bytes of value
        + b"abc"
    )
    data = SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body

    header, rest = parse_in_pieces(data + b"99", [13, 20])

    assert ProxyAddress(host="198.51.100.4", port=51000) == header.source
    assert b"99" == rest


@pytest.mark.parametrize(
    "data",
    [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", v2_local()],
    ids=["v1-unknown", "v1-unknown-with-addresses", "v2-local"],
)
def test_a_balancers_own_connection_gives_no_address(data: bytes) -> None:
    """UNKNOWN (v1) and LOCAL (v2) leave the socket's address to stand."""
    header, rest = parse_in_pieces(data, [3, 9])

    assert header.source is None
    assert b"" == rest


@pytest.mark.parametrize(
    ("data", "fails_at"),
    [
        (b"9900302.00\r", 1),  # plain SIP2 on a PROXY listener
        (b"\x16\x03\x01\x02\x00", 1),  # a TLS ClientHello
        (b"PROXX TCP4", 5),
        (b"\r\n\r\n\x00\r\nQUIX\n", 11),
        (SIGNATURE + bytes([0x11]), 13),  # version 1 in a v2 header
        (SIGNATURE + bytes([0x22]), 13),  # command 2
        (SIGNATURE + bytes([0x21, 0x12]), 14),  # UDP
        (SIGNATURE + bytes([0x21, 0x11, 0xFF, 0xFF]), 16),  # 65535 bytes to come
        (SIGNATURE + bytes([0x21, 0x21, 0x00, 0x0C]), 16),  # IPv6 in 12 bytes
        (b"PROXY " + b"A" * 101, 107),  # no end within the v1 limit
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31),  # LF without CR
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 32),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", 28),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 33),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", 33),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", 36),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 30),
    ],
    ids=[
        "sip2",
        "tls",
        "v1-prefix",
        "v2-signature",
        "v2-version",
        "v2-command",
        "v2-udp",
        "v2-oversize",
        "v2-short-body",
        "v1-oversize",
        "v1-bare-lf",
        "v1-protocol",
        "v1-family",
        "v1-scope",
        "v1-plus-port",
        "v1-big-port",
        "v1-missing-port",
    ],
)
def test_bytes_that_cannot_be_a_header_fail_at_the_first_wrong_byte(
    data: bytes, fails_at: int
) -> None:
    """Fed byte by byte, a bad header fails on the byte that gives it away."""
    parser = ProxyHeaderParser()
    for index in range(fails_at - 1):
        assert parser.feed(data[index : index + 1]) is None

    with pytest.raises(ProxyHeaderError):
        parser.feed(data[fails_at - 1 : fails_at])


def test_the_longest_v1_line_the_protocol_allows_is_read() -> None:
    """A 107-byte v1 line (CRLF included) is accepted; the limit is not one short."""
    line = b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n"
    assert 107 == len(line)

    header, rest = parse_in_pieces(line + b"99", [50, 100, 106])

    assert header.source is None
    assert b"99" == rest


# -- the reader under a Clock ----------------------------------------------------


class Recorder(Protocol):
    """The SIP2 side of a wrapped connection, recording what reaches it."""

    def __init__(self) -> None:
        self.received = b""
        self.notified = 0

    def proxy_header_read(self) -> None:
        """Count the reader's notice that the header is in."""
        self.notified += 1

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def reader_on(clock: task.Clock) -> tuple[ProxyHeaderReader, StringTransport]:
    """A reader with a 5-second header timeout, connected over a StringTransport."""
    factory = ProxyHeaderFactory(Factory.forProtocol(Recorder), clock, header_timeout=5)
    reader = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.1.2", 50000))
    reader.makeConnection(transport)
    return reader, transport


def test_a_header_not_whole_within_the_timeout_closes_the_connection() -> None:
    """Half a header is waited for until header_timeout, then the connection ends."""
    clock = task.Clock()
    reader, transport = reader_on(clock)

    reader.dataReceived(b"PROXY TCP4 203.0")
    clock.advance(4.9)
    still_open = not transport.disconnecting
    clock.advance(0.2)

    assert still_open
    assert transport.disconnecting
    assert b"" == reader.wrappedProtocol.received


def test_a_header_completed_in_time_is_not_cut_off_later() -> None:
    """Once the header is whole the timeout no longer applies; bytes pass through."""
    clock = task.Clock()
    reader, transport = reader_on(clock)

    reader.dataReceived(b"PROXY TCP6 2001:db8::5 ")
    clock.advance(4)
    reader.dataReceived(b"::1 40000 6001\r\n99")
    clock.advance(60)
    reader.dataReceived(b"00302.00\r")

    assert not transport.disconnecting
    assert 1 == reader.wrappedProtocol.notified
    assert b"9900302.00\r" == reader.wrappedProtocol.received
    assert IPv6Address("TCP", "2001:db8::5", 40000) == reader.getPeer()
    assert IPv6Address("TCP", "::1", 6001) == reader.getHost()


def test_a_header_without_an_address_keeps_the_socket_peer() -> None:
    """After v2 LOCAL, getPeer is the socket's own peer."""
    reader, _ = reader_on(task.Clock())

    reader.dataReceived(v2_local())

    assert IPv4Address("TCP", "10.0.1.2", 50000) == reader.getPeer()


# -- a real server, the header in pieces over TCP ----------------------------------


def header_factory(running: RunningServer) -> ProxyHeaderFactory:
    """The PROXY wrapping factory the first listener's port listens with."""
    port: Any = running.listeners[0].port
    factory = port.factory
    assert isinstance(factory, ProxyHeaderFactory)
    return factory


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Turn the reactor until `condition()` holds; fail after `seconds`."""
    from twisted.internet import reactor  # noqa: PLC0415

    deadline = reactor.seconds() + seconds
    while not condition():
        assert reactor.seconds() < deadline, "the server never got there"
        await task.deferLater(reactor, 0.002, lambda: None)


async def send_in_pieces(
    running: RunningServer, terminal: RawTerminal, pieces: list[bytes]
) -> None:
    """Write each piece, waiting until the server holds it before the next."""
    factory = header_factory(running)
    sent = 0
    for piece in pieces:
        await in_thread(terminal.send, piece)
        sent += len(piece)
        expected = sent

        def arrived(expected: int = expected) -> bool:
            return any(
                reader.parser.pending == expected or reader.header is not None
                for reader in factory.protocols
            )

        await until(arrived)


class SeenLog:
    """Log events while in a `with` block."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> SeenLog:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def peers(self, start: str) -> list[str]:
        """The peer= of each event whose format starts with `start`."""
        return [
            event["peer"]
            for event in self.events
            if event.get("log_format", "").startswith(start)
        ]

    def field(self, start: str, name: str) -> list[Any]:
        """Field `name` of each event whose format starts with `start`."""
        return [
            event[name]
            for event in self.events
            if event.get("log_format", "").startswith(start)
        ]


@pytest.mark.parametrize(
    ("header", "source", "shown"),
    [
        (proxy_v1, "203.0.113.7", "203.0.113.7:40000"),
        (proxy_v1, "2001:db8:5::17", "[2001:db8:5::17]:40000"),
        (proxy_v2, "203.0.113.7", "203.0.113.7:40000"),
        (proxy_v2, "2001:db8:5::17", "[2001:db8:5::17]:40000"),
    ],
    ids=["v1-ipv4", "v1-ipv6", "v2-ipv4", "v2-ipv6"],
)
@pytest_twisted.ensureDeferred
async def test_a_header_sent_byte_by_byte_gives_the_terminal_its_address(
    launcher: Launcher,
    header: Callable[[str], bytes],
    source: str,
    shown: str,
) -> None:
    """One TCP read per byte: the allowlist and the log see the header's address."""
    running = await launcher.start(
        listeners=PROXIED,
        kiosk={"allowed_networks": ["203.0.113.0/24", "2001:db8:5::/48"]},
    )
    data = header(source)

    with SeenLog() as seen, RawTerminal(target(running)) as terminal:
        await send_in_pieces(
            running, terminal, [data[i : i + 1] for i in range(len(data))]
        )
        login = await in_thread(terminal.exchange, LOGIN_FRAME)

    assert b"941" == login
    assert [shown] == seen.peers("terminal connected")


@pytest.mark.parametrize("header", [proxy_v1, proxy_v2], ids=["v1", "v2"])
@pytest_twisted.ensureDeferred
async def test_a_header_outside_the_allowlist_in_pieces_is_refused_login(
    launcher: Launcher, header: Callable[[str], bytes]
) -> None:
    """Split in three, a header from outside allowed_networks gets 940, not 941."""
    running = await launcher.start(
        listeners=PROXIED, kiosk={"allowed_networks": ["203.0.113.0/24"]}
    )
    data = header("198.51.100.9")

    with RawTerminal(target(running)) as terminal:
        await send_in_pieces(running, terminal, [data[:3], data[3:14], data[14:]])
        login = await in_thread(terminal.exchange, LOGIN_FRAME)

    assert b"940" == login


@pytest_twisted.ensureDeferred
async def test_the_header_tail_and_a_frame_in_one_read_are_both_used(
    launcher: Launcher,
) -> None:
    """The read that ends the header may start the first frame; it is answered."""
    running = await launcher.start(listeners=PROXIED)
    data = proxy_v2("203.0.113.7") + STATUS_FRAME

    with RawTerminal(target(running)) as terminal:
        await send_in_pieces(running, terminal, [data[:20], data[20:30]])
        await in_thread(terminal.send, data[30:])
        status = await in_thread(terminal.reply)

    assert b"98" == status[:2]


@pytest.mark.parametrize(
    ("pieces", "reason"),
    [
        ([b"PROX", b"Y!"], "not a PROXY header"),
        ([b"PROXY ", b"A" * 60, b"A" * 60], "longer than 107"),
        ([SIGNATURE[:7], SIGNATURE[7:], bytes([0x21, 0x11, 0xFF, 0xFF])], "65535"),
    ],
    ids=["garbage", "v1-oversize", "v2-oversize"],
)
@pytest_twisted.ensureDeferred
async def test_a_bad_header_in_pieces_closes_the_connection(
    launcher: Launcher, pieces: list[bytes], reason: str
) -> None:
    """Garbage or an oversize header, however split, is closed and logged why."""
    running = await launcher.start(listeners=PROXIED)

    with SeenLog() as seen, RawTerminal(target(running)) as terminal:
        await send_in_pieces(running, terminal, pieces[:-1])
        await in_thread(terminal.send, pieces[-1])
        closed = await in_thread(terminal.wait_for_close)
        await until(lambda: bool(seen.field("PROXY header refused", "reason")))

    assert closed
    (said,) = seen.field("PROXY header refused", "reason")
    assert reason in said


@pytest_twisted.ensureDeferred
async def test_a_header_that_never_completes_is_closed_after_the_timeout(
    launcher: Launcher,
) -> None:
    """With no login deadline, half a header is still closed by the header timeout."""
    running = await launcher.start(listeners=PROXIED, server={"login_timeout": 0})
    header_factory(running).header_timeout = 0.5

    with SeenLog() as seen, RawTerminal(target(running)) as terminal:
        await in_thread(terminal.send, b"PROXY TCP4 203.0")
        closed = await in_thread(terminal.wait_for_close)
        await until(lambda: bool(seen.field("PROXY header refused", "reason")))

    assert closed
    (said,) = seen.field("PROXY header refused", "reason")
    assert said.startswith("no whole header within 0.5 s")
