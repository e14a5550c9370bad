"""The kiosk's devices: keyboard-wedge scans, and the drivers behind an adapter.

Layer: `kiosk`. Uses `drivers` (never `ils`); the view model sees only
`KioskDevices.status()` and `print_receipt(...)`, and scans arrive through the
`on_scan` callback, so drivers never reach into the app. Scanners
(`drivers.barcode`, listed in the file `devices.scanner` names) and the
receipt printer (`drivers.printer`) and the RFID pad (`drivers.rfid`: several
tags at once, read in a thread; security written only after the server agreed)
are wired.

A keyboard-wedge scanner types its barcode and presses Enter; with
`devices.keyboard_wedge` on, such keystrokes on any screen are a scan
(`KeyboardWedge`). The receipt printer goes through `drivers.printer`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger

from .config import DevicesSection
from .i18n import DATE_FORMAT, Catalogues
from .transactions import Action, ItemOutcome, Result
from .wording import Wording

log = Logger()

# The receipt labels of `drivers.printer` the kiosk translates, with the
# English msgid of each (in kiosk/locale).
RECEIPT_LABELS = {
    "checkout_title": "Checkout receipt",
    "return_title": "Return receipt",
    "date": "Date",
    "card": "Card",
    "due": "Due",
    "returned": "Returned",
    "not_done": "Not done",
    "items_total": "Items",
}


class KeyboardWedge:
    """Keystrokes collected until Enter, which turns them into one scan."""

    def __init__(self, *, max_length: int = 64) -> None:
        self.max_length = max_length
        self._buffer: list[str] = []

    def key(self, character: str) -> None:
        """One printable character typed."""
        if len(self._buffer) < self.max_length:
            self._buffer.append(character)

    def enter(self) -> str | None:
        """Enter: the scan typed so far (None when nothing was typed)."""
        code = "".join(self._buffer).strip()
        self._buffer.clear()
        return code or None

    def clear(self) -> None:
        """Forget half-typed keys (the screen changed)."""
        self._buffer.clear()


def printer_table(spec: str) -> dict[str, object] | None:
    """The `drivers.printer` configuration for a `devices.printer` string.

    "file:PATH", "serial:DEVICE", "network:HOST[:PORT]", "dummy"; empty: None.

    Raises:
        ValueError: the string names no known kind of printer.
    """
    if not spec:
        return None
    kind, _, rest = spec.partition(":")
    if kind == "file" and rest:
        return {"connection": "file", "path": rest}
    if kind == "serial" and rest:
        return {"connection": "serial", "device": rest}
    if kind == "network" and rest:
        host, _, port = rest.partition(":")
        return {"connection": "network", "host": host, "port": int(port or 9100)}
    if kind == "dummy":
        return {"connection": "dummy"}
    raise ValueError(
        f"devices.printer: {spec!r} is not file:PATH, serial:DEVICE, "
        "network:HOST[:PORT] or dummy"
    )


class KioskDevices:
    """The adapter between the view model and `drivers`."""

    def __init__(
        self,
        settings: DevicesSection,
        *,
        library_name: str,
        catalogues: Catalogues | None = None,
        wording: Wording | None = None,
    ) -> None:
        self.settings = settings
        self.library_name = library_name
        #: Translations of the receipt's labels (English when None).
        self.catalogues = catalogues
        #: The site's wording of refusals, printed as the reason an item was
        #: not done (no reason when None).
        self.wording = wording
        self.printer = None
        table = printer_table(settings.printer)
        if table is not None:
            from drivers.printer import ReceiptPrinter  # noqa: PLC0415

            self.printer = ReceiptPrinter.from_config(table, source="devices.printer")
        #: Each scanner's state for staff: "ready", or why it is lost.
        self.scanners: dict[str, str] = {}
        self._readers: list[Any] = []
        self._tasks: list[asyncio.Future[None]] = []
        self.pad: RfidPad | None = None
        # A serial or network printer is spoken to in a thread, one exchange
        # at a time: a mute one must not stop the event loop (Kivy and the
        # SIP2 link with it). Its state for staff is the last one read.
        self._printer_lock = threading.Lock()
        self._printer_state = "unknown"
        self._printer_asking = False
        #: Called (on the event loop) when the printer's state has been read.
        self.on_printer_state: Callable[[], object] | None = None

    @property
    def _printer_spools(self) -> bool:
        """A spool file: written at once, never waited for."""
        return self.settings.printer.startswith("file:")

    def start_scanners(
        self,
        reactor: Any,
        on_scan: Callable[[str], object],
        on_rejected: Callable[[], object],
        *,
        connect: Callable[[Any], object] | None = None,
    ) -> None:
        """Read the scanners of the `devices.scanner` file (config/scanners.toml
        form) through `drivers.barcode`; each accepted barcode goes to `on_scan`.

        `connect(protocol)` replaces opening a serial scanner's port (tests).

        Raises:
            ScannerConfigError: the scanners file has a mistake (file, key, problem).
        """
        if not self.settings.scanner:
            return
        from drivers.barcode import (  # noqa: PLC0415
            HidScanner,
            HidScannerSettings,
            load_scanners,
        )
        from drivers.events import (  # noqa: PLC0415
            BarcodeRejected,
            BarcodeScanned,
            DeviceBack,
            DeviceLost,
        )

        def on_event(event: Any) -> None:
            if isinstance(event, BarcodeScanned):
                self.scanners[event.device] = "ready"
                on_scan(event.barcode)
            elif isinstance(event, BarcodeRejected):
                on_rejected()
            elif isinstance(event, DeviceLost):
                self.scanners[event.device] = f"lost ({event.reason})"
            elif isinstance(event, DeviceBack):
                self.scanners[event.device] = "ready"

        for scanner in load_scanners(self.settings.scanner):
            self.scanners[scanner.name] = "starting"
            if isinstance(scanner, HidScannerSettings):
                hid = HidScanner(scanner, on_event)
                self._readers.append(hid)
                self._tasks.append(asyncio.ensure_future(hid.run()))
            else:
                reader = scanner.twisted_reader(
                    on_event, reactor=reactor, connect=connect
                )
                self._readers.append(reader)
                reader.start()

    def start_rfid(
        self,
        reactor: Any,
        on_placed: Callable[[list[PadTag]], object],
        on_lifted: Callable[[list[str]], object],
        on_found: Callable[[list[PadTag]], object] | None = None,
    ) -> None:
        """Start the RFID pad of `devices.rfid`, if one is configured; `on_found`
        gets the tags already on the pad when it starts."""
        if self.settings.rfid:
            self.pad = RfidPad(
                self.settings.rfid,
                reactor,
                on_placed=on_placed,
                on_lifted=on_lifted,
                on_found=on_found,
            )
            self.pad.start()

    def set_security(self, uids: list[str], secured: bool) -> Any:
        """Write the tags' security through the pad; fires True when done."""
        from twisted.internet import defer  # noqa: PLC0415

        if self.pad is None:
            return defer.succeed(True)
        return self.pad.set_security(uids, secured)

    def stop(self) -> None:
        """Stop reading the scanners and the pad."""
        for reader in self._readers:
            reader.stop()
        self._readers.clear()
        if self.pad is not None:
            self.pad.stop()
            self.pad = None

    def status(self) -> dict[str, str]:
        """One line per device, for the staff screen."""
        scanners = ", ".join(f"{name} {state}" for name, state in self.scanners.items())
        lines = {
            "scanner": scanners
            or ("keyboard wedge" if self.settings.keyboard_wedge else "none"),
            "rfid": "none" if self.pad is None else f"{self.pad.kind} {self.pad.state}",
        }
        if self.printer is None:
            lines["printer"] = "none"
        else:
            from drivers.printer import PrinterStatus  # noqa: PLC0415

            if not self._printer_spools:
                self._ask_printer()
                lines["printer"] = self._printer_state
            elif self.printer.status() is PrinterStatus.UNKNOWN:
                # A spool file cannot report paper; it is there to be written.
                lines["printer"] = "spool file"
            else:
                lines["printer"] = self.printer.status().value.replace("_", " ")
        return lines

    def _ask_printer(self) -> None:
        """Ask the printer its state in a thread (one question at a time)."""
        if self._printer_asking or self.printer is None:
            return
        self._printer_asking = True
        printer = self.printer

        def ask() -> str:
            with self._printer_lock:
                return str(printer.status().value.replace("_", " "))

        def answered(state: object) -> None:
            self._printer_asking = False
            self._printer_state = state if isinstance(state, str) else "unknown"
            if self.on_printer_state is not None:
                self.on_printer_state()

        threads.deferToThread(ask).addBoth(answered)

    def _reason(self, row: ItemOutcome, language: str) -> str | None:
        """Why an item was not done, in the patron's words (None when it was)."""
        if row.refusal is None or self.wording is None:
            return None
        return self.wording.text(row.refusal, language, row.screen_message)

    def print_receipt_later(
        self, card: str | None, rows: list[ItemOutcome], language: str = "en"
    ) -> defer.Deferred[bool]:
        """Print the receipt without holding up the event loop: a spool file at
        once, a serial or network printer in a thread. Fires with whether it
        was printed."""
        if self._printer_spools or self.printer is None:
            return defer.succeed(self.print_receipt(card, rows, language))
        rows = list(rows)

        def printing() -> bool:
            with self._printer_lock:
                return self.print_receipt(card, rows, language)

        return threads.deferToThread(printing)

    def print_receipt(
        self, card: str | None, rows: list[ItemOutcome], language: str = "en"
    ) -> bool:
        """Print the session's receipt (card masked by the driver); False on failure."""
        if self.printer is None:
            return False
        from drivers.printer import (  # noqa: PLC0415
            PrinterError,
            ReceiptData,
            ReceiptItem,
            ReceiptLabels,
        )

        items = [
            ReceiptItem(
                # An item the server does not know has no title: its barcode
                # stands in, printed once.
                title=row.title or row.barcode,
                barcode=row.barcode if row.title else None,
                due=row.due,
                ok=row.result in {Result.DONE, Result.QUEUED},
                note=self._reason(row, language),
            )
            for row in reversed(rows)
        ]
        if self.catalogues is not None:
            self.printer.labels = ReceiptLabels.from_mapping(
                {
                    name: self.catalogues.gettext(language, words)
                    for name, words in RECEIPT_LABELS.items()
                }
                | {"date_format": self.catalogues.gettext(language, DATE_FORMAT)}
            )
        data = ReceiptData(
            library_name=self.library_name,
            card_number=card or "",
            printed_at=datetime.now(),
            items=items,
        )
        try:
            if rows and all(row.action is Action.RETURN for row in rows):
                self.printer.print_return_receipt(data)
            else:
                self.printer.print_checkout_receipt(data)
        except PrinterError as error:
            log.warn("receipt not printed: {error}", error=str(error))
            return False
        return True


@dataclass(frozen=True, slots=True)
class PadTag:
    """A library tag on the kiosk's RFID pad, as the view model needs it."""

    uid: str
    item_id: str | None
    part: int = 1
    parts: int = 1


class RfidPad:
    """The RFID pad through `drivers.rfid`: tags placed and lifted, security set.

    `spec` is "feig:URL" or "3m810:URL", where URL is a serial device or a
    pyserial URL (`socket://127.0.0.1:N` for the reader simulator). The reader
    is polled in a thread; events come back on the reactor. Security writes run
    in a thread too, under the same lock as polling (the reader is not
    thread-safe), and are read back by the driver.
    """

    def __init__(
        self,
        spec: str,
        reactor: Any,
        *,
        on_placed: Callable[[list[PadTag]], object],
        on_lifted: Callable[[list[str]], object],
        on_found: Callable[[list[PadTag]], object] | None = None,
        interval: float = 0.2,
    ) -> None:
        kind, _, url = spec.partition(":")
        if kind not in {"feig", "3m810"} or not url:
            raise ValueError(f"devices.rfid: {spec!r} is not feig:URL or 3m810:URL")
        self.kind, self.url = kind, url
        self.state = "starting"
        self._reactor = reactor
        self._on_placed = on_placed
        self._on_lifted = on_lifted
        # Tags of the first good inventory were there before the kiosk started.
        self._on_found = on_found
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._port: Any = None
        self._tags: Any = None
        self._thread: threading.Thread | None = None

    def _open(self) -> Any:
        import serial  # noqa: PLC0415

        from drivers.rfid.feig import FeigReader  # noqa: PLC0415
        from drivers.rfid.three_m import ThreeM810Reader  # noqa: PLC0415

        if self._port is not None:
            self._port.close()
        baudrate = 38400 if self.kind == "feig" else 19200
        self._port = serial.serial_for_url(self.url, baudrate=baudrate, timeout=1.0)
        if self.kind == "feig":
            return FeigReader(self._port)
        return ThreeM810Reader(self._port)

    def start(self) -> None:
        """Open the reader and poll it in a thread until `stop`."""
        from drivers.rfid.tag_reader import FieldPoller, TagReader  # noqa: PLC0415

        self._tags = TagReader(self._open())

        def reopen() -> Any:
            reader = self._open()
            self._tags.reader = reader
            return reader

        poller = FieldPoller(self._tags, device="rfid-pad", reopen=reopen)

        def poll() -> None:
            first = True
            while not self._stop.is_set():
                with self._lock:
                    events = poller.poll()
                    found = first and not poller.lost
                first = first and not found
                for event in events:
                    self._reactor.callFromThread(self._deliver, event, found)
                if found:
                    self._reactor.callFromThread(self._first_inventory)
                self._stop.wait(self._interval)

        self._thread = threading.Thread(target=poll, name="rfid-pad", daemon=True)
        self._thread.start()

    def _first_inventory(self) -> None:
        if self.state == "starting":
            self.state = "ready"

    def _deliver(self, event: Any, found: bool = False) -> None:
        from drivers.events import (  # noqa: PLC0415
            DeviceBack,
            DeviceLost,
            TagsGone,
            TagsPresent,
        )

        if isinstance(event, TagsPresent):
            self.state = "ready"
            tags = [
                PadTag(tag.uid, tag.item_id, tag.part, tag.parts) for tag in event.tags
            ]
            if found and self._on_found is not None:
                self._on_found(tags)
            else:
                self._on_placed(tags)
        elif isinstance(event, TagsGone):
            self._on_lifted(list(event.uids))
        elif isinstance(event, DeviceLost):
            self.state = f"lost ({event.reason})"
        elif isinstance(event, DeviceBack):
            self.state = "ready"

    def set_security(self, uids: list[str], secured: bool) -> Any:
        """Secure (return) or unsecure (loan) these tags; fires True when all
        were written and read back, False otherwise."""
        from twisted.internet.threads import deferToThreadPool  # noqa: PLC0415

        from drivers.rfid.reader import ReaderError  # noqa: PLC0415

        def write() -> bool:
            with self._lock:
                try:
                    for uid in uids:
                        if secured:
                            self._tags.secure(uid)
                        else:
                            self._tags.unsecure(uid)
                except ReaderError as error:
                    log.warn("tag security not set: {error}", error=str(error))
                    return False
            return True

        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), write)

    def stop(self) -> None:
        """Stop polling and close the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._port is not None:
            self._port.close()
