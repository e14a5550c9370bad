"""The byte-stream contract: backoff, the socket wrapper, and both runners
reporting loss and return of a device without spinning."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

import pytest
import pytest_twisted
import serial
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from drivers.events import BarcodeScanned, DeviceEvent, DeviceLost
from drivers.stream import (
    Backoff,
    SocketStream,
    StreamClosedError,
    StreamReader,
    TwistedStreamReader,
)
from tests.drivers.conftest import FIXED_TIME


class LineParser:
    """A minimal parser for these tests: each CR-terminated line is a barcode."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> Sequence[DeviceEvent]:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\r")
        return [
            BarcodeScanned(
                device="test", barcode=line.decode(), kind="item", raw="", at=FIXED_TIME
            )
            for line in lines
        ]


def barcodes(events: list[DeviceEvent]) -> list[str]:
    return [e.barcode for e in events if isinstance(e, BarcodeScanned)]


def kinds(events: list[DeviceEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    """Each delay doubles from the initial one, stops at the maximum, and a reset
    starts again from the initial delay."""
    backoff = Backoff(initial=0.5, factor=2.0, maximum=3.0)

    assert [0.5, 1.0, 2.0, 3.0, 3.0] == [backoff.next_delay() for _ in range(5)]
    backoff.reset()
    assert 0.5 == backoff.next_delay()


def test_backoff_refuses_a_zero_delay() -> None:
    """A zero initial delay would spin, so it is refused."""
    with pytest.raises(ValueError, match="initial > 0"):
        Backoff(initial=0)


@pytest.fixture
def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on loopback: (our end, the device's end)."""
    server = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(server.getsockname())
    theirs, _ = server.accept()
    server.close()
    return ours, theirs


def test_socket_stream_reads_times_out_and_sees_the_close(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    """A wrapped socket reads what was sent, gives b"" on a timeout as pyserial
    does, and raises StreamClosedError when the device closes."""
    ours, theirs = tcp_pair
    stream = SocketStream(ours, timeout=0.05)
    theirs.sendall(b"123\r")

    assert b"123\r" == stream.read(64)
    assert b"" == stream.read(64)
    assert 2 == stream.write(b"ok")
    assert b"ok" == theirs.recv(2)
    theirs.close()
    with pytest.raises(StreamClosedError):
        stream.read(64)
    stream.close()


def test_stream_reader_parses_what_a_loop_stream_delivers() -> None:
    """Bytes arriving on a `loop://` port come out as events, across reads."""
    port = serial.serial_for_url("loop://", timeout=0.05)
    events: list[DeviceEvent] = []
    reader = StreamReader(
        device="test",
        open_stream=lambda: port,
        parser_factory=LineParser,
        on_event=events.append,
    )

    assert reader.step()  # opens
    port.write(b"30001\r300")
    reader.step()
    port.write(b"02\r")
    reader.step()

    assert ["30001", "30002"] == barcodes(events)


def test_stream_reader_reopens_with_growing_delays_and_reports_once() -> None:
    """While the port cannot be opened the reader waits 0.5 s, then 1 s, ... and
    says DeviceLost once; when it opens again it says DeviceBack."""
    delays: list[float] = []
    events: list[DeviceEvent] = []
    attempts = iter([OSError("no such port"), OSError("no such port"), None])
    port = serial.serial_for_url("loop://", timeout=0.05)

    def open_port() -> serial.SerialBase:
        failure = next(attempts)
        if failure is not None:
            raise failure
        return port

    reader = StreamReader(
        device="scanner-1",
        open_stream=open_port,
        parser_factory=LineParser,
        on_event=events.append,
        wait=lambda seconds: delays.append(seconds) or False,
        clock=lambda: FIXED_TIME,
    )

    for _ in range(3):
        reader.step()

    assert [0.5, 1.0] == delays
    assert ["DeviceLost", "DeviceBack"] == kinds(events)
    lost = events[0]
    assert isinstance(lost, DeviceLost)
    assert "scanner-1" == lost.device
    assert "no such port" in lost.reason
    assert reader.connected


def test_stream_reader_drops_a_failed_port_and_starts_the_delays_again() -> None:
    """A read that fails (the port went away) closes the stream, reports the loss
    and waits the initial delay again, since the last opening succeeded."""
    delays: list[float] = []
    events: list[DeviceEvent] = []
    ports = [serial.serial_for_url("loop://", timeout=0.05) for _ in range(2)]
    opened = iter(ports)
    reader = StreamReader(
        device="test",
        open_stream=lambda: next(opened),
        parser_factory=LineParser,
        on_event=events.append,
        wait=lambda seconds: delays.append(seconds) or False,
    )
    reader.step()

    ports[0].close()  # reading a closed pyserial port raises SerialException
    reader.step()
    reader.step()
    ports[1].write(b"30003\r")
    reader.step()

    assert [0.5] == delays
    assert ["DeviceLost", "DeviceBack", "BarcodeScanned"] == kinds(events)
    assert "read failed" in events[0].reason  # type: ignore[union-attr]


def test_a_port_that_opens_but_fails_every_read_is_retried_less_often() -> None:
    """A port that opens and fails at once (a flapping adapter) does not reset
    the delays: they keep growing, 0.5, 1, 2 s."""
    delays: list[float] = []
    events: list[DeviceEvent] = []

    def open_broken_port() -> serial.SerialBase:
        port = serial.serial_for_url("loop://", timeout=0.05)
        port.close()
        return port

    reader = StreamReader(
        device="test",
        open_stream=open_broken_port,
        parser_factory=LineParser,
        on_event=events.append,
        wait=lambda seconds: delays.append(seconds) or False,
    )
    for _ in range(6):  # open, fail, open, fail, open, fail
        reader.step()

    assert [0.5, 1.0, 2.0] == delays
    assert ["DeviceLost", "DeviceBack", "DeviceLost", "DeviceBack", "DeviceLost"] == (
        kinds(events)
    )


def test_a_failing_handler_is_logged_and_the_reader_reads_on() -> None:
    """When the kiosk's handler raises, the failure is logged with the device
    name and the next scan is still delivered."""
    port = serial.serial_for_url("loop://", timeout=0.05)
    delivered: list[str] = []
    logged: list[LogEvent] = []

    def handler(event: DeviceEvent) -> None:
        assert isinstance(event, BarcodeScanned)
        if event.barcode == "bad":
            raise RuntimeError("handler bug")
        delivered.append(event.barcode)

    reader = StreamReader(
        device="scanner-9",
        open_stream=lambda: port,
        parser_factory=LineParser,
        on_event=handler,
    )
    reader.step()
    port.write(b"bad\rgood\r")
    globalLogPublisher.addObserver(logged.append)
    try:
        reader.step()
    finally:
        globalLogPublisher.removeObserver(logged.append)

    assert ["good"] == delivered
    (failure,) = [e for e in logged if "log_failure" in e]
    assert "scanner-9" == failure["device"]
    assert "handler bug" in str(failure["log_failure"].value)


def test_stream_reader_stops_when_the_wait_is_interrupted() -> None:
    """When the wait between attempts says "stop", the reader's step says so too
    and run() returns instead of trying again."""
    reader = StreamReader(
        device="test",
        open_stream=lambda: (_ for _ in ()).throw(OSError("gone")),
        parser_factory=LineParser,
        on_event=lambda event: None,
        wait=lambda seconds: True,
    )

    reader.run()  # returns: the first wait asked it to stop

    assert not reader.connected


def make_twisted_reader(
    connect: Callable[[protocol.Protocol], object], clock: Clock
) -> tuple[TwistedStreamReader, list[DeviceEvent]]:
    events: list[DeviceEvent] = []
    reader = TwistedStreamReader(
        device="scanner-1",
        connect=connect,
        parser_factory=LineParser,
        on_event=events.append,
        clock=clock,
        now=lambda: FIXED_TIME,
    )
    return reader, events


def test_twisted_reader_feeds_pushed_bytes_and_reconnects_on_a_clock() -> None:
    """Pushed bytes become events; when the connection ends the reader reports
    the loss and connects again after 0.5 s on the clock, then reports it back."""
    clock = Clock()
    transports: list[StringTransport] = []

    def connect(proto: protocol.Protocol) -> None:
        transport = StringTransport()
        proto.makeConnection(transport)
        transports.append(transport)

    reader, events = make_twisted_reader(connect, clock)
    reader.start()
    assert reader.protocol is not None
    reader.protocol.dataReceived(b"300")
    reader.protocol.dataReceived(b"04\r")
    reader.protocol.connectionLost(Failure(ConnectionRefusedError("unplugged")))

    clock.advance(0.49)
    assert 1 == len(transports)
    clock.advance(0.01)

    assert 2 == len(transports)
    assert ["BarcodeScanned", "DeviceLost", "DeviceBack"] == kinds(events)
    assert ["30004"] == barcodes(events)


def test_twisted_connections_that_drop_at_once_keep_the_delays_growing() -> None:
    """A device that accepts and drops each connection without sending a byte
    is retried after 0.5, 1 and 2 s; one that sent bytes resets the delay."""
    clock = Clock()
    attempts: list[float] = []
    sends_data = [False, False, False, True, False]

    def connect(proto: protocol.Protocol) -> None:
        attempts.append(clock.seconds())
        proto.makeConnection(StringTransport())
        if sends_data.pop(0):
            proto.dataReceived(b"1")
        proto.connectionLost(Failure(ConnectionRefusedError("dropped")))

    reader, events = make_twisted_reader(connect, clock)
    reader.start()
    clock.pump([0.5, 1.0, 2.0, 0.5])
    reader.stop()

    assert [0.0, 0.5, 1.5, 3.5, 4.0] == attempts
    assert "DeviceLost" == kinds(events)[0]


def test_twisted_reader_backs_off_while_the_device_is_missing() -> None:
    """Failed connections are retried after 0.5, 1 and 2 s, with one DeviceLost;
    stop() cancels the next attempt."""
    clock = Clock()
    attempts: list[float] = []

    def connect(proto: protocol.Protocol) -> None:
        attempts.append(clock.seconds())
        raise OSError("no such device")

    reader, events = make_twisted_reader(connect, clock)
    reader.start()
    clock.pump([0.5, 1.0, 2.0])
    reader.stop()
    clock.advance(100)

    assert [0.0, 0.5, 1.5, 3.5] == attempts
    assert ["DeviceLost"] == kinds(events)
    assert "no such device" in events[0].reason  # type: ignore[union-attr]


class ScannerOverTcp(protocol.Protocol):
    """A network scanner (serial-to-TCP converter) that sends two codes and hangs up."""

    def connectionMade(self) -> None:
        self.transport.write(b"30005\r30006\r")
        self.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_twisted_reader_over_real_tcp_reports_codes_then_the_loss() -> None:
    """Over a real loopback TCP connection the reader reports both codes, then
    DeviceLost when the converter hangs up."""
    factory = protocol.Factory.forProtocol(ScannerOverTcp)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    lost: defer.Deferred[None] = defer.Deferred()
    events: list[DeviceEvent] = []

    def on_event(event: DeviceEvent) -> None:
        events.append(event)
        if isinstance(event, DeviceLost):
            reader.stop()
            lost.callback(None)

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    reader = TwistedStreamReader(
        device="net-scanner",
        connect=lambda proto: connectProtocol(endpoint, proto),
        parser_factory=LineParser,
        on_event=on_event,
        clock=reactor,
    )
    try:
        reader.start()
        await lost
    finally:
        await port.stopListening()

    assert ["30005", "30006"] == barcodes(events)
    assert isinstance(events[-1], DeviceLost)


def test_socket_stream_is_a_stream_reader_source(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    """A wrapped socket works with the pull-mode reader like a serial port, and
    the device hanging up is a loss."""
    ours, theirs = tcp_pair
    events: list[DeviceEvent] = []
    reader = StreamReader(
        device="test",
        open_stream=lambda: SocketStream(ours, timeout=0.5),
        parser_factory=LineParser,
        on_event=events.append,
        wait=lambda seconds: False,
    )
    reader.step()
    theirs.sendall(b"30007\r")
    reader.step()
    theirs.close()
    reader.step()

    assert ["30007"] == barcodes(events)
    assert ["BarcodeScanned", "DeviceLost"] == kinds(events)
