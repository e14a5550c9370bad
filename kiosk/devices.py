"""The kiosk's devices: keyboard-wedge scans, and the drivers behind an adapter.

Layer: `kiosk`. Uses `drivers` (never `ils`); the view model sees only
`KioskDevices.status()` and `print_receipt(...)`, and scans arrive through the
`on_scan` callback, so drivers never reach into the app. Scanners
(`drivers.barcode`, listed in the file `devices.scanner` names) and the
receipt printer (`drivers.printer`) are wired; the RFID pad is not yet.

A keyboard-wedge scanner types its barcode and presses Enter; with
`devices.keyboard_wedge` on, such keystrokes on any screen are a scan
(`KeyboardWedge`). The receipt printer goes through `drivers.printer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.logger import Logger

from .config import DevicesSection
from .transactions import Action, ItemOutcome, Result

log = Logger()


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

    def __init__(self, settings: DevicesSection, *, library_name: str) -> None:
        self.settings = settings
        self.library_name = library_name
        self.printer = None
        table = printer_table(settings.printer)
        if table is not None:
            from drivers.printer import ReceiptPrinter  # noqa: PLC0415

            self.printer = ReceiptPrinter.from_config(table, source="devices.printer")
        #: Each scanner's state for staff: "ready", or why it is lost.
        self.scanners: dict[str, str] = {}
        self._readers: list[Any] = []
        self._tasks: list[asyncio.Future[None]] = []

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

    def stop(self) -> None:
        """Stop reading the scanners."""
        for reader in self._readers:
            reader.stop()
        self._readers.clear()

    def status(self) -> dict[str, str]:
        """One line per device, for the staff screen."""
        scanners = ", ".join(f"{name} {state}" for name, state in self.scanners.items())
        lines = {
            "scanner": scanners
            or ("keyboard wedge" if self.settings.keyboard_wedge else "none"),
            # TODO(#6): drive the RFID pad through drivers.rfid (several items
            # at once, sets complete, security only after the server agrees).
            "rfid": self.settings.rfid or "none",
        }
        if self.printer is None:
            lines["printer"] = "none"
        else:
            lines["printer"] = self.printer.status().value.replace("_", " ")
        return lines

    def print_receipt(self, card: str | None, rows: list[ItemOutcome]) -> bool:
        """Print the session's receipt (card masked by the driver); False on failure."""
        if self.printer is None:
            return False
        from drivers.printer import (  # noqa: PLC0415
            PrinterError,
            ReceiptData,
            ReceiptItem,
        )

        items = [
            ReceiptItem(
                title=row.title or row.barcode,
                barcode=row.barcode,
                due=row.due,
                ok=row.result in {Result.DONE, Result.QUEUED},
            )
            for row in reversed(rows)
        ]
        # TODO(#6): pass the session's language as ReceiptLabels (English now).
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
