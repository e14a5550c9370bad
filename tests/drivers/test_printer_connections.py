"""ReceiptPrinter over real connections: a network printer on loopback and a
serial printer on a pty, each a stand-in that answers ESC/POS real-time status
(DLE EOT n) with the bytes a printer sends; a file; and config errors."""

from __future__ import annotations

import socket
import threading
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import serial

from drivers.printer import (
    PaperOutError,
    PrinterConfigError,
    PrinterOfflineError,
    PrinterStatus,
    ReceiptData,
    ReceiptItem,
    ReceiptPrinter,
    render_checkout,
)
from tests.conftest import REPO_ROOT

DLE_EOT = b"\x10\x04"
# Status bytes as a printer sends them (bits 1 and 4 always set = 0x12):
ONLINE = 0x12
OFFLINE = 0x12 | 0x08  # DLE EOT 1, bit 3: offline
PAPER_OK = 0x12
PAPER_LOW = 0x12 | 0x0C  # DLE EOT 4, bits 2-3: near end
PAPER_OUT = 0x12 | 0x60  # DLE EOT 4, bits 5-6: paper end

DATA = ReceiptData(
    library_name="City Library",
    card_number="21234000567890",
    printed_at=datetime(2026, 12, 4, 10, 30, tzinfo=UTC),
    items=[ReceiptItem(title="Dune", due=datetime(2026, 12, 18, tzinfo=UTC))],
)


class EscposPeer:
    """The printer's side of the bytes: answers DLE EOT 1 and DLE EOT 4 with the
    configured status and keeps everything else as printed."""

    def __init__(self, printer_status: int, paper_status: int) -> None:
        self.replies = {1: bytes([printer_status]), 4: bytes([paper_status])}
        self.queries: list[int] = []
        self.printed = bytearray()
        self._pending = bytearray()

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the host; return the printer's answer, if any."""
        self._pending += data
        answer = bytearray()
        while True:
            at = self._pending.find(DLE_EOT)
            if at < 0 or len(self._pending) < at + 3:
                keep = at if at >= 0 else len(self._pending)
                self.printed += self._pending[:keep]
                del self._pending[:keep]
                return bytes(answer)
            self.printed += self._pending[:at]
            which = self._pending[at + 2]
            del self._pending[: at + 3]
            self.queries.append(which)
            answer += self.replies[which]


def serve_network_printer(peer: EscposPeer) -> tuple[int, threading.Thread]:
    """A loopback TCP printer on port 9100's protocol (raw bytes both ways)."""
    server = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        connection, _ = server.accept()
        server.close()
        with connection:
            while data := connection.recv(4096):
                answer = peer.feed(data)
                if answer:
                    connection.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


def network_printer(port: int) -> ReceiptPrinter:
    return ReceiptPrinter.from_config(
        {"connection": "network", "host": "127.0.0.1", "port": port, "width": 32}
    )


def test_network_printer_checks_status_then_prints_the_receipt_bytes() -> None:
    """A ready network printer is asked DLE EOT 1 and 4, then receives exactly
    the rendered receipt; the call reports READY."""
    peer = EscposPeer(ONLINE, PAPER_OK)
    port, thread = serve_network_printer(peer)
    printer = network_printer(port)

    status = printer.print_checkout_receipt(DATA)
    printer.close()
    thread.join(timeout=10)

    assert PrinterStatus.READY is status
    assert [1, 4] == peer.queries
    assert render_checkout(DATA, width=32) == bytes(peer.printed)


def test_paper_low_still_prints_and_says_so() -> None:
    """Paper near its end prints the receipt and returns PAPER_LOW, so the kiosk
    can tell staff."""
    peer = EscposPeer(ONLINE, PAPER_LOW)
    port, thread = serve_network_printer(peer)
    printer = network_printer(port)

    status = printer.print_return_receipt(DATA)
    printer.close()
    thread.join(timeout=10)

    assert PrinterStatus.PAPER_LOW is status
    assert peer.printed.endswith(b"\x1dV\x00")


def test_paper_out_raises_and_prints_nothing() -> None:
    """An offline printer whose paper sensor says "end" raises PaperOutError and
    is sent no receipt."""
    peer = EscposPeer(OFFLINE, PAPER_OUT)
    port, thread = serve_network_printer(peer)
    printer = network_printer(port)

    with pytest.raises(PaperOutError):
        printer.print_checkout_receipt(DATA)
    printer.close()
    thread.join(timeout=10)

    assert b"" == bytes(peer.printed)


def test_offline_with_paper_raises_offline_not_paper_out() -> None:
    """Offline for another reason (cover open) is PrinterOfflineError."""
    peer = EscposPeer(OFFLINE, PAPER_OK)
    port, thread = serve_network_printer(peer)
    printer = network_printer(port)

    with pytest.raises(PrinterOfflineError):
        printer.print_account_slip(DATA)
    printer.close()
    thread.join(timeout=10)

    assert b"" == bytes(peer.printed)


def test_an_unreachable_printer_is_offline_and_the_next_try_reconnects() -> None:
    """Nothing listening is PrinterOfflineError (no traceback, no card number);
    once the printer is there the same object prints."""
    placeholder = socket.create_server(("127.0.0.1", 0))
    port = placeholder.getsockname()[1]
    placeholder.close()
    printer = network_printer(port)

    with pytest.raises(PrinterOfflineError) as caught:
        printer.print_checkout_receipt(DATA)
    assert "21234000567890" not in str(caught.value)

    peer = EscposPeer(ONLINE, PAPER_OK)
    # The printer comes up (on a port of its own: the old one may not be free).
    printer.connection.port, thread = serve_network_printer(peer)
    assert PrinterStatus.READY is printer.print_checkout_receipt(DATA)
    printer.close()
    thread.join(timeout=10)


def test_serial_printer_on_a_pty_answers_status_and_prints(
    pty_pair: tuple[str, str],
) -> None:
    """Over a pty (pyserial's POSIX path), the status queries are answered a
    byte at a time and the receipt arrives whole."""
    kiosk_end, printer_end = pty_pair
    peer = EscposPeer(ONLINE, PAPER_OK)
    ready, done = threading.Event(), threading.Event()
    expected = render_checkout(DATA)

    def run() -> None:
        # Opening a port empties its input, so the printer end opens first.
        with serial.Serial(printer_end, 9600, timeout=0.1) as port:
            ready.set()
            while len(peer.printed) < len(expected):
                data = port.read(4096)
                answer = peer.feed(data)
                if answer:
                    port.write(answer)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(timeout=10)
    printer = ReceiptPrinter.from_config({"connection": "serial", "device": kiosk_end})

    status = printer.print_checkout_receipt(DATA)
    assert done.wait(timeout=10)
    printer.close()

    assert PrinterStatus.READY is status
    assert [1, 4] == peer.queries
    assert expected == bytes(peer.printed)


def test_file_printer_writes_the_receipt_and_cannot_report_status(
    tmp_path: Path,
) -> None:
    """A file (a parallel port or spool file) gets the receipt bytes; its status
    is UNKNOWN because a file cannot answer."""
    path = tmp_path / "receipt.bin"
    printer = ReceiptPrinter.from_config(
        {"connection": "file", "path": str(path), "check_status": True}
    )

    status = printer.print_checkout_receipt(DATA)
    printer.close()

    assert PrinterStatus.UNKNOWN is status
    assert render_checkout(DATA) == path.read_bytes()


def test_file_printer_in_a_missing_folder_is_offline(tmp_path: Path) -> None:
    """A file that cannot be opened is PrinterOfflineError, not a crash."""
    printer = ReceiptPrinter.from_config(
        {"connection": "file", "path": str(tmp_path / "no" / "such" / "lp0")}
    )

    with pytest.raises(PrinterOfflineError):
        printer.print_checkout_receipt(DATA)


def test_dummy_printer_keeps_the_bytes_with_translated_labels() -> None:
    """The dummy connection (demo mode) collects the bytes; labels from config
    are used."""
    printer = ReceiptPrinter.from_config(
        {"connection": "dummy", "width": 32, "labels": {"due": "Retour"}}
    )

    printer.print_checkout_receipt(DATA)

    assert b"  Retour: 2026-12-18\n" in printer.connection.output


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"connection": "parallel"}, "printer.connection: must be one of"),
        ({"connection": "network"}, "printer.host: is required"),
        ({"connection": "serial", "device": "/dev/x", "baudrate": 0}, "baudrate"),
        ({"connection": "dummy", "colour": "red"}, "printer.colour: unknown key"),
        ({"connection": "dummy", "labels": {"du": "x"}}, "labels.du: unknown label"),
        ({"connection": "dummy", "check_status": "yes"}, "check_status: must be"),
    ],
)
def test_config_errors_name_file_and_key(
    table: dict[str, object], message: str
) -> None:
    """Each wrong setting is refused with the file name and the key."""
    with pytest.raises(PrinterConfigError) as caught:
        ReceiptPrinter.from_config(table, source="kiosk.toml")

    assert str(caught.value).startswith("kiosk.toml: printer.")
    assert message in str(caught.value)


def test_usb_ids_may_be_written_in_hex_and_a_missing_usb_stack_is_offline() -> None:
    """vendor_id "0x04b8" is read as hex; without the USB library (or the device)
    printing is PrinterOfflineError rather than a crash at start-up."""
    printer = ReceiptPrinter.from_config(
        {"connection": "usb", "vendor_id": "0x04b8", "product_id": "0x0202"}
    )

    assert 0x04B8 == printer.connection.vendor
    with pytest.raises(PrinterOfflineError):
        printer.print_checkout_receipt(DATA)


def test_file_printer_appends_receipts_of_every_printer_object(
    tmp_path: Path,
) -> None:
    """Two printer objects on one spool file (a kiosk restart between receipts)
    leave both receipts in it: the file is appended to, never truncated."""
    path = tmp_path / "spool.bin"
    path.write_bytes(b"earlier\n")
    for _ in range(2):
        printer = ReceiptPrinter.from_config({"connection": "file", "path": str(path)})
        printer.print_checkout_receipt(DATA)
        printer.close()

    assert b"earlier\n" + render_checkout(DATA) * 2 == path.read_bytes()


def test_serial_printer_on_a_missing_device_names_it_and_the_reason() -> None:
    """A serial printer whose device is not there is PrinterOfflineError saying
    which device and why, on one line."""
    printer = ReceiptPrinter.from_config(
        {"connection": "serial", "device": "/dev/nx-receipt-printer"}
    )

    with pytest.raises(PrinterOfflineError) as caught:
        printer.print_checkout_receipt(DATA)

    message = str(caught.value)
    assert message.startswith("the receipt printer is offline or unreachable: ")
    assert "/dev/nx-receipt-printer" in message
    assert "No such file or directory" in message
    assert "\n" not in message


def test_shipped_example_printer_file_is_valid() -> None:
    """config/printer.toml's [printer] table builds a network printer of 42
    characters that checks its status."""
    table = tomllib.loads((REPO_ROOT / "config" / "printer.toml").read_text())

    printer = ReceiptPrinter.from_config(table["printer"], source="printer.toml")

    assert ("192.0.2.40", 9100) == (printer.connection.host, printer.connection.port)
    assert 42 == printer.width
    assert printer.check_status


@pytest.mark.parametrize("width", [1, 2, 19])
def test_a_width_too_narrow_for_a_receipt_is_refused(width: int) -> None:
    """A width under 20 characters is refused with its key when the printer is
    configured, not with a ValueError at the first receipt."""
    with pytest.raises(PrinterConfigError, match=r"printer\.width: must be .* >= 20"):
        ReceiptPrinter.from_config({"connection": "dummy", "width": width})
