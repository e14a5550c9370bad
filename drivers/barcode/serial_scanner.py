"""Serial (RS-232, USB-CDC) barcode scanners: framing, then the site pipeline.

Layer: `drivers`. Imports the standard library, pyserial (through
`drivers.stream`), Twisted (the push-mode runner) and `drivers.events`.

A serial scanner sends each code as configured with its programming
barcodes: an optional prefix (often STX, 0x02), an optional AIM identifier,
the data, and a suffix (CR, CR LF, or ETX). `ScanFramer` cuts the byte stream
into codes; `SerialScanParser` runs each through the site's
`BarcodePipeline` and gives domain events. `SerialScanner` ties them to a
port that is reopened after an unplug.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twisted.internet import serialport

from drivers.barcode.pipeline import BarcodePipeline, ScannerConfigError
from drivers.events import DeviceEvent
from drivers.stream import (
    Backoff,
    ByteStream,
    EventSink,
    StreamReader,
    TwistedStreamReader,
    open_stream,
    utc_now,
)

__all__ = [
    "ETX",
    "STX",
    "ScanFramer",
    "SerialFraming",
    "SerialScanParser",
    "SerialScanner",
]

STX = b"\x02"
ETX = b"\x03"

_SERIAL_KEYS = (
    "name",
    "kind",
    "url",
    "baudrate",
    "prefix",
    "suffix",
    "stx_etx",
    "max_length",
    "pipeline",
)


def _decode_escapes(text: str) -> bytes:
    r"""A prefix or suffix as written in a config file ("\r\n", "\x02") as bytes."""
    return (
        text.encode("latin-1", "backslashreplace")
        .decode("unicode_escape")
        .encode("latin-1")
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialFraming:
    """How one scanner frames its codes.

    `stx_etx`: each code is sent between STX and ETX; bytes outside are
    ignored and `prefix`/`suffix` are not used. Otherwise a code ends with
    `suffix` and starts with `prefix` (if set). `max_length` bounds a code, so
    line noise cannot grow the buffer for ever.
    """

    prefix: bytes = b""
    suffix: bytes = b"\r"
    stx_etx: bool = False
    max_length: int = 256

    def __post_init__(self) -> None:
        if not self.stx_etx and not self.suffix:
            raise ValueError("a scanner without STX/ETX needs a suffix to end codes")
        if self.max_length < 1:
            raise ValueError("max_length must be at least 1")


class ScanFramer:
    """Sans-I/O: bytes from the scanner in, whole codes (prefix/suffix gone) out."""

    def __init__(self, framing: SerialFraming) -> None:
        self.framing = framing
        self._buffer = bytearray()
        self._in_frame = False

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes; return the codes they complete."""
        if self.framing.stx_etx:
            return self._feed_stx_etx(data)
        return self._feed_suffix(data)

    def _feed_stx_etx(self, data: bytes) -> list[bytes]:
        codes = []
        for byte in data:
            if byte == STX[0]:
                # A new STX starts again, whatever came before it.
                self._buffer.clear()
                self._in_frame = True
            elif byte == ETX[0]:
                if self._in_frame:
                    codes.append(bytes(self._buffer))
                self._buffer.clear()
                self._in_frame = False
            elif self._in_frame:
                self._buffer.append(byte)
                if len(self._buffer) > self.framing.max_length:
                    self._buffer.clear()
                    self._in_frame = False
        return codes

    def _feed_suffix(self, data: bytes) -> list[bytes]:
        suffix = self.framing.suffix
        self._buffer += data
        codes = []
        while True:
            end = self._buffer.find(suffix)
            if end < 0:
                break
            code = bytes(self._buffer[:end])
            del self._buffer[: end + len(suffix)]
            # A scanner set to CR LF read with a CR suffix leaves the LF at the
            # start of the next code.
            if suffix == b"\r":
                code = code.lstrip(b"\n")
            if self.framing.prefix and code.startswith(self.framing.prefix):
                code = code[len(self.framing.prefix) :]
            if len(code) <= self.framing.max_length:
                codes.append(code)
        if len(self._buffer) > self.framing.max_length + len(self.framing.prefix):
            # No suffix in sight: noise, or a scanner framed differently.
            self._buffer.clear()
        return codes


class SerialScanParser:
    """A `StreamParser`: scanner bytes in, `BarcodeScanned`/`BarcodeRejected` out."""

    def __init__(
        self,
        *,
        device: str,
        framing: SerialFraming,
        pipeline: BarcodePipeline,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.device = device
        self.pipeline = pipeline
        self.clock = clock
        self._framer = ScanFramer(framing)

    def feed(self, data: bytes) -> list[DeviceEvent]:
        """Take the next bytes; return an event for each code they complete."""
        events: list[DeviceEvent] = []
        for code in self._framer.feed(data):
            if not code.strip(b" \t\r\n"):
                # A lone line end (a trigger pulled on nothing, a doubled CR):
                # no scan at all, not a refused one.
                continue
            # Scanners send ASCII; latin-1 keeps any odd byte visible, never fails.
            raw = code.decode("latin-1")
            events.append(self.pipeline.event(raw, device=self.device, at=self.clock()))
        return events


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialScanner:
    """A serial scanner's settings, and the runners that read it.

    Config keys (a `[[scanner]]` table with `kind = "serial"`):
    `name` (device name in events), `url` (a device path such as
    `/dev/serial/by-id/...`, or `socket://127.0.0.1:N`, `loop://`),
    `baudrate` (9600), `prefix` and `suffix` (strings with escapes such as
    "\\r\\n"; suffix defaults to "\\r"), `stx_etx` (false), `max_length` (256)
    and a `pipeline` table (see `BarcodePipeline.from_config`).
    """

    name: str
    url: str
    framing: SerialFraming
    pipeline: BarcodePipeline
    baudrate: int = 9600

    @classmethod
    def from_config(
        cls,
        table: Mapping[str, object],
        *,
        key: str = "scanner",
        source: str | None = None,
    ) -> SerialScanner:
        """Build the settings from a config table.

        Raises:
            ScannerConfigError: a key is missing, unknown or has a wrong value.
        """

        def error(name: str, problem: str) -> ScannerConfigError:
            return ScannerConfigError(f"{key}.{name}", problem, source=source)

        for name in table:
            if name not in _SERIAL_KEYS:
                raise error(name, f"unknown key; known keys: {', '.join(_SERIAL_KEYS)}")

        def text(name: str, default: str | None) -> str:
            value = table.get(name, default)
            if value is None:
                raise error(name, "is required")
            if not isinstance(value, str):
                raise error(name, f"must be a string, not {value!r}")
            return value

        def number(name: str, default: int) -> int:
            value = table.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise error(name, f"must be a positive whole number, not {value!r}")
            return value

        def escapes(name: str, default: str) -> bytes:
            value = text(name, default)
            try:
                return _decode_escapes(value)
            except (UnicodeError, ValueError) as problem:
                raise error(
                    name, f"bad escape or non-byte character: {problem}"
                ) from None

        stx_etx = table.get("stx_etx", False)
        if not isinstance(stx_etx, bool):
            raise error("stx_etx", f"must be true or false, not {stx_etx!r}")
        suffix = escapes("suffix", "\\r")
        if not stx_etx and not suffix:
            raise error("suffix", "must not be empty unless stx_etx = true")

        pipeline_table = table.get("pipeline", {})
        if not isinstance(pipeline_table, Mapping):
            raise error("pipeline", "must be a table")

        return cls(
            name=text("name", None),
            url=text("url", None),
            baudrate=number("baudrate", 9600),
            framing=SerialFraming(
                prefix=escapes("prefix", ""),
                suffix=suffix,
                stx_etx=stx_etx,
                max_length=number("max_length", 256),
            ),
            pipeline=BarcodePipeline.from_config(
                pipeline_table, key=f"{key}.pipeline", source=source
            ),
        )

    def parser(self, clock: Callable[[], datetime] = utc_now) -> SerialScanParser:
        """A fresh sans-I/O parser for this scanner."""
        return SerialScanParser(
            device=self.name, framing=self.framing, pipeline=self.pipeline, clock=clock
        )

    def open(self, timeout: float = 0.2) -> Any:
        """Open the port (a pyserial stream).

        Raises:
            OSError: the port is not there (unplugged, wrong path).
        """
        return open_stream(self.url, baudrate=self.baudrate, timeout=timeout)

    def reader(
        self,
        on_event: EventSink,
        *,
        open_stream: Callable[[], ByteStream] | None = None,
        backoff: Backoff | None = None,
        wait: Callable[[float], bool] | None = None,
    ) -> StreamReader:
        """A pull-mode reader for a thread: `threading.Thread(target=r.run)`.

        `open_stream` replaces opening `url` (tests; an already wrapped socket).
        """
        return StreamReader(
            device=self.name,
            open_stream=open_stream or self.open,
            parser_factory=self.parser,
            on_event=on_event,
            backoff=backoff,
            wait=wait,
        )

    def twisted_reader(
        self,
        on_event: EventSink,
        *,
        reactor: Any,
        connect: Callable[[Any], object] | None = None,
        backoff: Backoff | None = None,
    ) -> TwistedStreamReader:
        """A push-mode reader on the event loop, through Twisted's `SerialPort`.

        `connect(protocol)` replaces opening `url` with `SerialPort` (tests,
        TCP); call `start()` on the result.
        """

        def serial_port(protocol: Any) -> object:
            port: object = serialport.SerialPort(  # type: ignore[no-untyped-call]
                protocol, self.url, reactor, baudrate=self.baudrate
            )
            return port

        return TwistedStreamReader(
            device=self.name,
            connect=connect or serial_port,
            parser_factory=self.parser,
            on_event=on_event,
            clock=reactor,
            backoff=backoff,
        )
