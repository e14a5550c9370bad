"""Serial scanners: framing by prefix/suffix and STX/ETX, then the pipeline, on
`loop://`, on a socat pty pair (pull and Twisted push), and through an unplug."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import pytest_twisted
import serial
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor

from drivers.barcode.pipeline import BarcodePipeline
from drivers.barcode.serial_scanner import ScanFramer, SerialFraming, SerialScanner
from drivers.events import BarcodeScanned, DeviceBack, DeviceEvent, DeviceLost
from drivers.stream import Backoff

STX, ETX = b"\x02", b"\x03"


def scanner(**framing: object) -> SerialScanner:
    return SerialScanner.from_config(
        {"name": "desk", "url": "loop://", **framing, "pipeline": {"luhn": True}}
    )


def barcodes(events: list[DeviceEvent]) -> list[str]:
    return [e.barcode for e in events if isinstance(e, BarcodeScanned)]


def test_framer_splits_on_the_suffix_one_byte_at_a_time() -> None:
    """Codes ending in CR come out whole even when fed a byte at a time."""
    framer = ScanFramer(SerialFraming(suffix=b"\r"))
    codes: list[bytes] = []
    for byte in b"123\r4567\r89":
        codes += framer.feed(bytes([byte]))

    assert [b"123", b"4567"] == codes


@given(
    codes=st.lists(st.text(alphabet="0123456789ABCD]-", min_size=1, max_size=20)),
    cuts=st.lists(st.integers(min_value=0, max_value=400)),
)
def test_framer_gives_the_same_codes_however_the_bytes_are_split(
    codes: list[str], cuts: list[int]
) -> None:
    """Whatever chunks the bytes arrive in, STX/ETX framing gives the codes sent."""
    stream = b"".join(STX + code.encode() + ETX + b"\r\n" for code in codes)
    framer = ScanFramer(SerialFraming(stx_etx=True, suffix=b""))
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})

    out: list[bytes] = []
    for start, end in itertools.pairwise(bounds):
        out += framer.feed(stream[start:end])

    assert [code.encode() for code in codes] == out


def test_framer_drops_the_lf_a_crlf_scanner_leaves_and_strips_the_prefix() -> None:
    """With a CR suffix, the LF of CR LF is not glued to the next code; a
    configured prefix is removed; several codes in one chunk all come out."""
    framer = ScanFramer(SerialFraming(prefix=b"#", suffix=b"\r"))

    assert [b"123", b"456"] == framer.feed(b"#123\r\n#456\r\n")


def test_framer_with_stx_etx_ignores_bytes_outside_frames() -> None:
    """Between STX and ETX is the code; a CR after ETX and noise before STX are
    ignored, and a second STX restarts a frame."""
    framer = ScanFramer(SerialFraming(stx_etx=True, suffix=b""))

    assert [b"123", b"456"] == framer.feed(b"zz\x02123\x03\r\x0299\x02456\x03")


def test_framer_throws_away_noise_longer_than_max_length() -> None:
    """Bytes with no suffix in sight are dropped past max_length, so the next
    real code is not glued to them."""
    framer = ScanFramer(SerialFraming(suffix=b"\r", max_length=8))
    assert [] == framer.feed(b"x" * 20)

    assert [b"123"] == framer.feed(b"123\r")


def test_config_decodes_escapes_and_refuses_an_empty_suffix() -> None:
    """A prefix written "\\x02" is the STX byte; an empty suffix without STX/ETX
    is refused naming the key."""
    assert STX == scanner(prefix="\\x02").framing.prefix
    with pytest.raises(ValueError, match=r"scanner\.suffix: must not be empty"):
        scanner(suffix="")
    with pytest.raises(ValueError, match=r"scanner\.baudrate: must be a positive"):
        scanner(baudrate="fast")


def test_parser_reports_aim_symbology_and_strips_codabar_on_loop() -> None:
    """On `loop://`, an STX/ETX-framed Codabar scan with its AIM identifier comes
    out as the bare barcode with "]F0" reported; a bad Luhn digit is rejected."""
    settings = scanner(stx_etx=True, suffix="")
    port = serial.serial_for_url("loop://", timeout=0.05)
    events: list[DeviceEvent] = []
    reader = settings.reader(events.append, open_stream=lambda: port)
    reader.step()

    port.write(STX + b"]F0A30234000517861B" + ETX + b"\r\n")
    port.write(STX + b"30234000517862" + ETX)
    reader.step()
    port.close()

    scanned, rejected = events
    assert isinstance(scanned, BarcodeScanned)
    assert ("30234000517861", "]F0") == (scanned.barcode, scanned.symbology)
    assert "BarcodeRejected" == type(rejected).__name__


def test_reader_on_a_pty_pair_reads_what_the_scanner_end_writes(
    pty_pair: tuple[str, str],
) -> None:
    """Over a real pty (pyserial's POSIX code path), CR LF-terminated scans
    written at the scanner's end come out at the kiosk's end."""
    kiosk_end, scanner_end = pty_pair
    settings = SerialScanner.from_config(
        {"name": "desk", "url": kiosk_end, "suffix": "\\r\\n"}
    )
    events: list[DeviceEvent] = []
    reader = settings.reader(events.append)
    reader.step()
    with serial.Serial(scanner_end, 9600, timeout=1) as device:
        device.write(b"]A0ITEM-0001\r\n]A0ITEM-0002\r\n")
        device.flush()
        while len(events) < 2:
            reader.step()
    reader.stop()

    assert ["ITEM-0001", "ITEM-0002"] == barcodes(events)


def start_socat(a: Path, b: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        ["socat", "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "starting data transfer loop" in line:
            # Nothing more is read from stderr; socat logs little at -d -d.
            return process
    pytest.fail("socat did not link the ptys")


def test_unplugging_the_pty_is_a_loss_and_replugging_brings_it_back(
    tmp_path: Path,
) -> None:
    """When the pty pair goes away (socat stops, as a USB adapter unplugged) the
    reader reports DeviceLost and waits longer each time; when it is back,
    DeviceBack, and scans flow again."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    plugged = start_socat(a, b)
    settings = SerialScanner.from_config({"name": "desk", "url": str(a)})
    events: list[DeviceEvent] = []
    delays: list[float] = []
    reader = settings.reader(
        events.append, wait=lambda seconds: delays.append(seconds) or False
    )
    reader.step()
    assert reader.connected

    plugged.terminate()
    plugged.wait(timeout=10)
    while not delays:
        reader.step()
    reader.step()  # the port is gone: opening fails and the wait grows

    assert [0.5, 1.0] == delays
    assert ["DeviceLost"] == [type(e).__name__ for e in events]

    replugged = start_socat(a, b)
    try:
        reader.step()
        with serial.Serial(str(b), 9600, timeout=1) as device:
            device.write(b"30234000517861\r")
            device.flush()
            while not barcodes(events):
                reader.step()
    finally:
        reader.stop()
        replugged.terminate()
        replugged.wait(timeout=10)

    assert ["DeviceLost", "DeviceBack", "BarcodeScanned"] == [
        type(e).__name__ for e in events
    ]


@pytest_twisted.ensureDeferred
async def test_twisted_serial_port_on_a_pty_delivers_scans_on_the_loop(
    pty_pair: tuple[str, str],
) -> None:
    """Twisted's SerialPort on the asyncio reactor feeds the parser: a scan
    written at the other end arrives as an event on the event loop."""
    kiosk_end, scanner_end = pty_pair
    settings = SerialScanner.from_config({"name": "desk", "url": kiosk_end})
    arrived: defer.Deferred[DeviceEvent] = defer.Deferred()
    reader = settings.twisted_reader(arrived.callback, reactor=reactor)
    reader.start()
    try:
        with serial.Serial(scanner_end, 9600, timeout=1) as device:
            device.write(b"ITEM-0003\r")
            device.flush()
            event = await arrived
    finally:
        reader.stop()

    assert isinstance(event, BarcodeScanned)
    assert "ITEM-0003" == event.barcode


def test_pipeline_of_a_scanner_is_its_own(fixed_clock: Callable[[], datetime]) -> None:
    """A scanner's parser stamps events with the given clock and its name."""
    settings = SerialScanner.from_config(
        {"name": "returns", "url": "loop://", "pipeline": {"item_pattern": "^3"}}
    )
    parser = settings.parser(clock=fixed_clock)

    (event,) = parser.feed(b"31\r")

    assert (
        BarcodeScanned(
            device="returns", barcode="31", kind="item", raw="31", at=fixed_clock()
        )
        == event
    )
    assert isinstance(settings.pipeline, BarcodePipeline)


@pytest_twisted.ensureDeferred
async def test_twisted_reader_survives_the_pty_going_away_and_coming_back(
    tmp_path: Path,
) -> None:
    """On the event loop, Twisted's SerialPort sees the pty vanish (socat
    stopped): DeviceLost; the port is reopened once socat is back: DeviceBack,
    and scans arrive again."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    plugged = start_socat(a, b)
    settings = SerialScanner.from_config({"name": "desk", "url": str(a)})
    events: list[DeviceEvent] = []
    waiting: list[tuple[type, defer.Deferred[None]]] = []

    def on_event(event: DeviceEvent) -> None:
        events.append(event)
        for kind, arrived in list(waiting):
            if isinstance(event, kind):
                waiting.remove((kind, arrived))
                arrived.callback(None)

    def next_event(kind: type) -> defer.Deferred[None]:
        arrived: defer.Deferred[None] = defer.Deferred()
        waiting.append((kind, arrived))
        return arrived.addTimeout(10, reactor)

    # Short delays keep the test quick; the waits are for events, not for time.
    reader = settings.twisted_reader(
        on_event, reactor=reactor, backoff=Backoff(initial=0.01, maximum=0.05)
    )
    reader.start()
    replugged = None
    try:
        scanned = next_event(BarcodeScanned)
        with serial.Serial(str(b), 9600, timeout=1) as device:
            device.write(b"ITEM-1\r")
        await scanned

        lost = next_event(DeviceLost)
        plugged.terminate()
        plugged.wait(timeout=10)
        await lost

        back = next_event(DeviceBack)
        replugged = start_socat(a, b)
        await back
        scanned = next_event(BarcodeScanned)
        with serial.Serial(str(b), 9600, timeout=1) as device:
            device.write(b"ITEM-2\r")
        await scanned
    finally:
        reader.stop()
        for process in (plugged, replugged):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)

    assert ["ITEM-1", "ITEM-2"] == barcodes(events)
    assert ["BarcodeScanned", "DeviceLost", "DeviceBack", "BarcodeScanned"] == [
        type(e).__name__ for e in events
    ]


def test_a_lone_line_end_is_no_scan_at_all() -> None:
    """A CR (or CR LF) with nothing before it is ignored: neither a scan nor a
    rejected one."""
    settings = scanner(suffix="\\r")
    port = serial.serial_for_url("loop://", timeout=0.05)
    events: list[DeviceEvent] = []
    reader = settings.reader(events.append, open_stream=lambda: port)
    reader.step()

    port.write(b"\r\r\n \r31234000000016\r")
    reader.step()
    port.close()

    assert ["31234000000016"] == barcodes(events)
    assert 1 == len(events)
