"""The byte-stream contract every serial driver is written against.

Layer: `drivers`. Imports the standard library, pyserial, Twisted and
`drivers.events`; never `ils`, the server or the kiosk.

A driver never opens a port by name. It is given a way to open a stream: a
pyserial `Serial`, whatever `serial.serial_for_url()` returns for `loop://`,
`socket://127.0.0.1:N` or a pty path, or a socket wrapped in `SocketStream`.
All of them offer pyserial's surface: `read(n)` returns up to `n` bytes, or
fewer (perhaps none) when `timeout` runs out; `write(data)`; `close()`; and a
lost device raises `OSError` (pyserial's `SerialException` is one).

Input that arrives unasked (a scanner's codes) goes through a sans-I/O
`StreamParser`: bytes in, domain events out. Two thin runners feed it:

- `StreamReader` pulls from a blocking stream, in a thread of its own;
- `TwistedStreamReader` is pushed to by Twisted (a `SerialPort` or a TCP
  connection) on the event loop.

Both reopen a lost device with a growing delay (`Backoff`), report
`DeviceLost` once per loss and `DeviceBack` when it answers again, and never
spin on a dead port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import serial
from twisted.internet import defer
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from drivers.events import DeviceBack, DeviceEvent, DeviceLost

# Twisted's interfaces (IReactorTime, IDelayedCall, ITransport) are zope
# interfaces, which mypy cannot follow without a plugin: they are typed Any here.
Reactor = Any

__all__ = [
    "Backoff",
    "ByteStream",
    "EventSink",
    "SocketStream",
    "StreamClosedError",
    "StreamParser",
    "StreamReader",
    "TwistedStreamReader",
    "guarded_sink",
    "open_stream",
    "utc_now",
]


class ByteStream(Protocol):
    """What a driver needs of an open port: pyserial's read/write surface."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes:
        """Return up to `size` bytes; fewer (or none) once `timeout` passes."""
        ...

    def write(self, data: bytes, /) -> int | None:
        """Send all of `data`."""
        ...

    def close(self) -> None:
        """Release the port."""
        ...


class StreamParser(Protocol):
    """A sans-I/O parser: bytes in, whatever events they complete out."""

    def feed(self, data: bytes) -> Sequence[DeviceEvent]:
        """Take the next bytes; return the events they complete (often none)."""
        ...


EventSink = Callable[[DeviceEvent], None]
"""Where a driver sends its events (the kiosk's or the gate's callback)."""

_log = Logger(namespace="drivers")


def guarded_sink(on_event: EventSink, device: str) -> EventSink:
    """`on_event`, but an exception it raises is logged, not raised into the
    driver: a fault in the kiosk's handler must not stop the scanner."""

    def deliver(event: DeviceEvent) -> None:
        try:
            on_event(event)
        except Exception:
            _log.failure(
                "the handler of {device}'s {event_type} failed",
                device=device,
                event_type=type(event).__name__,
            )

    return deliver


def utc_now() -> datetime:
    """The current time, timezone-aware, for stamping events."""
    return datetime.now(UTC)


class StreamClosedError(OSError):
    """The far end closed the stream: the device went away."""


class SocketStream:
    """A connected socket with pyserial's `read(n)`/`write`/`timeout` surface.

    `read` returns b"" when `timeout` passes with nothing to read, as pyserial
    does, and raises `StreamClosedError` when the peer has closed the connection.
    """

    def __init__(self, sock: socket.socket, timeout: float | None = 1.0) -> None:
        self._sock = sock
        self.timeout = timeout

    @classmethod
    def connect(cls, host: str, port: int, timeout: float | None = 1.0) -> SocketStream:
        """Open a TCP connection (a serial-to-network converter, a simulator)."""
        return cls(socket.create_connection((host, port), timeout=timeout), timeout)

    @property
    def timeout(self) -> float | None:
        """Seconds a read waits for data; None waits for ever."""
        return self._sock.gettimeout()

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    @property
    def in_waiting(self) -> int:
        """How many bytes can be read now without waiting (as pyserial's)."""
        try:
            return len(self._sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return 0

    def read(self, size: int = 1) -> bytes:
        """Return up to `size` bytes, b"" on timeout; StreamClosedError at the end."""
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            return b""
        if not data and size > 0:
            raise StreamClosedError("the peer closed the connection")
        return data

    def write(self, data: bytes, /) -> int:
        """Send all of `data`; return its length."""
        self._sock.sendall(data)
        return len(data)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


def open_stream(url: str, *, baudrate: int = 9600, timeout: float = 0.2) -> Any:
    """Open a pyserial stream by device path or URL (`loop://`, `socket://`...).

    Raises:
        OSError: the port cannot be opened (pyserial's SerialException is one).
    """
    return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)


@dataclass(slots=True)
class Backoff:
    """Delays between attempts to reopen a lost device: each one longer.

    The first retry waits `initial` seconds, each later one `factor` times the
    last, never more than `maximum`; `reset()` after a success.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError(
                "backoff needs initial > 0, factor >= 1 and maximum >= initial"
            )
        self._next = self.initial

    def next_delay(self) -> float:
        """The delay before the next attempt (and lengthen the one after)."""
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        """Start again from `initial`: the device answered."""
        self._next = self.initial


def _waiting(stream: object) -> int:
    """How many bytes a pyserial stream already holds (0 if it cannot say)."""
    try:
        waiting = getattr(stream, "in_waiting", 0)
    except OSError:
        return 0
    return waiting if isinstance(waiting, int) else 0


class _LossTracker:
    """Says DeviceLost once per loss and DeviceBack once it is over."""

    def __init__(
        self, device: str, on_event: EventSink, clock: Callable[[], datetime]
    ) -> None:
        self.device = device
        self.on_event = on_event
        self.clock = clock
        self.lost = False

    def lose(self, reason: str) -> None:
        if not self.lost:
            self.lost = True
            self.on_event(
                DeviceLost(device=self.device, reason=reason, at=self.clock())
            )

    def back(self) -> None:
        if self.lost:
            self.lost = False
            self.on_event(DeviceBack(device=self.device, at=self.clock()))


class StreamReader:
    """Pulls bytes from a blocking stream into a parser; for a thread of its own.

    `open_stream` opens the device afresh (it is called again after a loss);
    `parser_factory` makes a new parser for each opening, so half a frame from
    before an unplug is never joined to what follows. `wait(seconds)` pauses
    between attempts and returns True when the reader should stop; by default it
    waits on an internal `threading.Event` that `stop()` sets, and tests pass a
    function that only records the delay.

    Events go to `on_event` from the reader's thread: a caller on the event loop
    wraps its callback in `reactor.callFromThread`.
    """

    def __init__(
        self,
        *,
        device: str,
        open_stream: Callable[[], ByteStream],
        parser_factory: Callable[[], StreamParser],
        on_event: EventSink,
        backoff: Backoff | None = None,
        wait: Callable[[float], bool] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.device = device
        self._open = open_stream
        self._parser_factory = parser_factory
        self._on_event = on_event = guarded_sink(on_event, device)
        self._backoff = backoff or Backoff()
        self._stopping = threading.Event()
        self._wait = wait or self._stopping.wait
        self._loss = _LossTracker(device, on_event, clock)
        self._stream: ByteStream | None = None
        self._parser: StreamParser | None = None

    @property
    def connected(self) -> bool:
        """Whether a stream is open now."""
        return self._stream is not None

    def step(self) -> bool:
        """Open the stream or read from it once; return False when told to stop.

        Blocks for at most the stream's timeout or one backoff delay.
        """
        if self._stopping.is_set():
            return False
        if self._stream is None:
            return self._try_open()

        stream, parser = self._stream, self._parser
        assert parser is not None
        try:
            data = stream.read(1)
            if data:
                more = _waiting(stream)
                if more:
                    data += stream.read(more)
        except OSError as error:
            return self._drop(f"read failed: {error}")
        # Only a read that worked shows the device is really back: a port that
        # opens and fails at once keeps the delays growing.
        self._backoff.reset()
        if data:
            for event in parser.feed(data):
                self._on_event(event)
        return not self._stopping.is_set()

    def run(self) -> None:
        """Read until `stop()`; reopen the device whenever it is lost."""
        try:
            while self.step():
                pass
        finally:
            self._close()

    def stop(self) -> None:
        """Ask `run()` to return (within the stream's timeout)."""
        self._stopping.set()

    def _try_open(self) -> bool:
        try:
            self._stream = self._open()
        except OSError as error:
            self._loss.lose(f"cannot open: {error}")
            return not self._wait(self._backoff.next_delay())
        self._parser = self._parser_factory()
        self._loss.back()
        return True

    def _drop(self, reason: str) -> bool:
        self._close()
        self._loss.lose(reason)
        return not self._wait(self._backoff.next_delay())

    def _close(self) -> None:
        stream, self._stream, self._parser = self._stream, None, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _close_transport(protocol: TwistedProtocol) -> None:
    transport: Any = protocol.transport
    if transport is not None:
        transport.loseConnection()


class _ParserProtocol(TwistedProtocol):
    """Feeds what Twisted delivers to a parser; reports the end to its owner."""

    def __init__(
        self,
        parser: StreamParser,
        on_event: EventSink,
        on_lost: Callable[[_ParserProtocol, str], None],
    ) -> None:
        self.parser = parser
        self.on_event = on_event
        self.on_lost = on_lost
        self.received = False
        self.connected_at = 0.0

    def dataReceived(self, data: bytes) -> None:
        self.received = True
        for event in self.parser.feed(data):
            self.on_event(event)

    def connectionLost(self, reason: Failure | None = None) -> None:
        message = reason.getErrorMessage() if reason is not None else "closed"
        self.on_lost(self, message)


class TwistedStreamReader:
    """Push-mode runner: Twisted delivers bytes to a parser on the event loop.

    `connect(protocol)` attaches a fresh protocol to the device and may return a
    Deferred; for a serial port it is
    `lambda p: SerialPort(p, "/dev/ttyACM0", reactor, baudrate=9600)`, for TCP
    `lambda p: connectProtocol(endpoint, p)`. A failure to connect, or the
    connection ending, is a loss: the reader reports it and calls `connect`
    again after the backoff delay, on `clock` (the reactor, or a `Clock` in
    tests). The delays start again from the shortest only after a connection
    that delivered bytes or stayed up `stable_after` seconds, so a device that
    accepts and drops every connection is retried less and less often.
    """

    def __init__(
        self,
        *,
        device: str,
        connect: Callable[[TwistedProtocol], object],
        parser_factory: Callable[[], StreamParser],
        on_event: EventSink,
        clock: Reactor,
        backoff: Backoff | None = None,
        now: Callable[[], datetime] = utc_now,
        stable_after: float = 10.0,
    ) -> None:
        self.device = device
        self.stable_after = stable_after
        self._connect = connect
        self._parser_factory = parser_factory
        self._on_event = on_event = guarded_sink(on_event, device)
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._loss = _LossTracker(device, on_event, now)
        self._protocol: _ParserProtocol | None = None
        self._retry: Any = None
        self._running = False

    @property
    def protocol(self) -> TwistedProtocol | None:
        """The protocol of the connection (live or being made), or None while
        the device is away."""
        return self._protocol

    def start(self) -> None:
        """Connect now, and keep reconnecting until `stop()`."""
        self._running = True
        self._attempt()

    def stop(self) -> None:
        """Stop reconnecting and close the live connection, if any."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            _close_transport(protocol)

    def _attempt(self) -> None:
        self._retry = None
        if not self._running:
            return
        protocol = _ParserProtocol(self._parser_factory(), self._on_event, self._lost)
        protocol.connected_at = self._clock.seconds()
        # Current from the start: a serial port connects (and may even drop)
        # inside `connect`, before any Deferred fires.
        self._protocol = protocol
        result = defer.maybeDeferred(self._connect, protocol)
        result.addCallbacks(
            lambda _: self._connected(protocol),
            lambda failure: self._failed(protocol, failure),
        )

    def _connected(self, protocol: _ParserProtocol) -> None:
        if protocol is not self._protocol:
            # Already lost (and a retry scheduled), or stopped meanwhile.
            if not self._running:
                _close_transport(protocol)
            return
        self._loss.back()

    def _failed(self, protocol: _ParserProtocol, failure: Failure) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        self._loss.lose(f"cannot open: {failure.getErrorMessage()}")
        self._schedule()

    def _lost(self, protocol: _ParserProtocol, reason: str) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        # A connection that delivered bytes or lasted a while was healthy: start
        # the delays again. One that drops at once keeps them growing.
        uptime = self._clock.seconds() - protocol.connected_at
        if protocol.received or uptime >= self.stable_after:
            self._backoff.reset()
        self._loss.lose(f"connection lost: {reason}")
        self._schedule()

    def _schedule(self) -> None:
        if self._running:
            self._retry = self._clock.callLater(
                self._backoff.next_delay(), self._attempt
            )
