"""The kiosk's receipt printer: a python-escpos connection, status, and errors.

Layer: `drivers`. Imports the standard library, python-escpos, pyserial and
`drivers.printer.receipt`; never `ils`, the server or the kiosk.

`ReceiptPrinter.from_config(table)` builds one from a config table;
`print_checkout_receipt(data)` (and the return and account forms) render the
receipt, ask the printer for its status where the connection can answer,
send the bytes, and return the status. A printer that cannot print raises
`PrinterOfflineError` or `PaperOutError`, which the kiosk turns into "no
receipt, sorry" (and an email offer) without losing the patron's session.

Status comes from ESC/POS real-time status, `DLE EOT n` (10 04 n), which
answers one byte at once, even while the printer is busy:

- n = 1, printer status: bit 3 set means offline (cover open, paper out,
  error); bits 1 and 4 are always 1 and bits 0 and 7 always 0, which tells a
  real status byte from noise;
- n = 4, roll paper sensor: bits 2 and 3 set mean the paper is near its end,
  bits 5 and 6 set mean it has run out.

Serial, network and USB printers answer these; a file (a parallel port
device, a spool file) and the `dummy` connection cannot, so their status is
`UNKNOWN` and they never raise `PaperOutError`.
"""

from __future__ import annotations

import contextlib
import enum
import socket
from collections.abc import Callable, Mapping
from typing import IO, Any

from escpos import exceptions as escpos_errors
from escpos import printer as escpos_printer

from drivers.printer.receipt import (
    ReceiptData,
    ReceiptLabels,
    render_account_slip,
    render_checkout,
    render_return,
)

__all__ = [
    "PaperOutError",
    "PrinterConfigError",
    "PrinterError",
    "PrinterOfflineError",
    "PrinterStatus",
    "ReceiptPrinter",
]

DLE_EOT = b"\x10\x04"
_STATUS_PRINTER = 1
_STATUS_PAPER = 4
_FIXED_MASK, _FIXED_BITS = 0x93, 0x12
_OFFLINE = 0x08
_PAPER_NEAR_END = 0x0C
_PAPER_END = 0x60

_CONNECTIONS = ("serial", "network", "usb", "file", "dummy")
_KEYS = {
    "connection",
    "device",
    "baudrate",
    "host",
    "port",
    "timeout",
    "vendor_id",
    "product_id",
    "path",
    "width",
    "profile",
    "check_status",
    "mask_visible",
    "labels",
}


class PrinterError(OSError):
    """The receipt was not printed; the message says why (no patron data)."""


class PrinterOfflineError(PrinterError):
    """The printer cannot be reached, or says it is offline (cover, error)."""


class PaperOutError(PrinterError):
    """The printer says its paper has run out."""


class PrinterConfigError(ValueError):
    """A printer setting is wrong; the message names the key and the problem."""


class PrinterStatus(enum.Enum):
    """What the printer said about itself before printing."""

    READY = "ready"
    PAPER_LOW = "paper_low"
    PAPER_OUT = "paper_out"
    OFFLINE = "offline"
    UNKNOWN = "unknown"
    """The connection cannot report status (a file, the dummy)."""


def _status_byte(reply: bytes) -> int | None:
    if len(reply) != 1 or reply[0] & _FIXED_MASK != _FIXED_BITS:
        return None
    return reply[0]


class ReceiptPrinter:
    """One receipt printer behind a python-escpos connection.

    `connection` is a python-escpos printer object (`Serial`, `Network`,
    `Usb`, `File`, `Dummy`), opened on first use and reopened after a
    failure. `check_status` asks the printer for its status before each
    receipt; turn it off for connections that cannot answer. Every call
    blocks on the device: the kiosk runs them in a thread (`deferToThread`).
    """

    def __init__(
        self,
        connection: Any,
        *,
        width: int = 42,
        labels: ReceiptLabels | None = None,
        profile: str | None = None,
        check_status: bool = True,
        mask_visible: int = 4,
    ) -> None:
        self.connection = connection
        self.width = width
        self.labels = labels or ReceiptLabels()
        self.profile = profile
        self.check_status = check_status
        self.mask_visible = mask_visible
        self._problem: str | None = None

    @classmethod
    def from_config(
        cls, table: Mapping[str, object], *, source: str | None = None
    ) -> ReceiptPrinter:
        """Build a printer from a config table (`[printer]` of the kiosk's file).

        Keys: `connection` ("serial", "network", "usb", "file" or "dummy");
        for serial `device` and `baudrate` (9600); for network `host` and
        `port` (9100); for usb `vendor_id` and `product_id`; for file `path`;
        `timeout` (seconds, 2); `width` (characters per line, 42); `profile`
        (a python-escpos printer profile name); `check_status` (true, but
        always false for file and dummy); `mask_visible` (card characters
        shown, 4); `labels` (a table of `ReceiptLabels` names to translations).

        Raises:
            PrinterConfigError: a key is missing, unknown or has a wrong value.
        """
        config = _Config(table, source)
        kind = config.choice("connection", _CONNECTIONS)
        timeout = config.number("timeout", 2.0)
        connection: Any
        if kind == "serial":
            connection = escpos_printer.Serial(
                devfile=config.text("device"),
                baudrate=config.whole("baudrate", 9600),
                timeout=timeout,
                profile=config.optional_text("profile"),
            )
        elif kind == "network":
            connection = escpos_printer.Network(
                host=config.text("host"),
                port=config.whole("port", 9100),
                timeout=timeout,
                profile=config.optional_text("profile"),
            )
        elif kind == "usb":
            connection = _LazyUsb(
                config.whole("vendor_id", None),
                config.whole("product_id", None),
                timeout,
                config.optional_text("profile"),
            )
        elif kind == "file":
            connection = _AppendingFile(
                devfile=config.text("path"), profile=config.optional_text("profile")
            )
        else:
            connection = escpos_printer.Dummy(profile=config.optional_text("profile"))

        labels_table = table.get("labels", {})
        if not isinstance(labels_table, Mapping):
            raise config.error("labels", "must be a table")
        try:
            labels = ReceiptLabels.from_mapping(labels_table)
        except ValueError as problem:
            raise PrinterConfigError(config.where(str(problem))) from None

        reports_status = kind in ("serial", "network", "usb")
        check_status = config.flag("check_status", reports_status)
        return cls(
            connection,
            # Narrower than 20 leaves no room for a date or a masked card.
            width=config.whole("width", 42, minimum=20),
            labels=labels,
            profile=config.optional_text("profile"),
            check_status=check_status and reports_status,
            mask_visible=config.whole("mask_visible", 4, minimum=0),
        )

    def status(self) -> PrinterStatus:
        """Ask the printer how it is (DLE EOT 1, then DLE EOT 4).

        Returns UNKNOWN when status checks are off or the reply is not a
        status byte, OFFLINE when the printer cannot be reached or says so.
        """
        self._problem = None
        if not self.check_status:
            return PrinterStatus.UNKNOWN
        try:
            printer = _status_byte(self._query(_STATUS_PRINTER))
            if printer is None:
                return PrinterStatus.UNKNOWN
            if printer & _OFFLINE:
                # Paper out also takes the printer offline: say which it is.
                paper = _status_byte(self._query(_STATUS_PAPER))
                if paper is not None and paper & _PAPER_END == _PAPER_END:
                    return PrinterStatus.PAPER_OUT
                return PrinterStatus.OFFLINE
            paper = _status_byte(self._query(_STATUS_PAPER))
        except (OSError, escpos_errors.Error, RuntimeError) as error:
            self._reset()
            self._problem = _one_line(error)
            return PrinterStatus.OFFLINE
        if paper is None:
            return PrinterStatus.READY
        if paper & _PAPER_END == _PAPER_END:
            return PrinterStatus.PAPER_OUT
        if paper & _PAPER_NEAR_END == _PAPER_NEAR_END:
            return PrinterStatus.PAPER_LOW
        return PrinterStatus.READY

    def print_checkout_receipt(self, data: ReceiptData) -> PrinterStatus:
        """Print a checkout receipt; return the status seen before printing.

        Raises:
            PaperOutError: the printer says it has no paper; nothing was sent.
            PrinterOfflineError: the printer is unreachable or offline.
        """
        return self._print(render_checkout(data, **self._render_options()))

    def print_return_receipt(self, data: ReceiptData) -> PrinterStatus:
        """Print a return receipt (see `print_checkout_receipt`)."""
        return self._print(render_return(data, **self._render_options()))

    def print_account_slip(self, data: ReceiptData) -> PrinterStatus:
        """Print an account slip (see `print_checkout_receipt`)."""
        return self._print(render_account_slip(data, **self._render_options()))

    def close(self) -> None:
        """Release the connection (it reopens on the next receipt)."""
        self._reset()

    def _render_options(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "labels": self.labels,
            "profile": self.profile,
            "mask_visible": self.mask_visible,
        }

    def _print(self, receipt: bytes) -> PrinterStatus:
        status = self.status()
        if status is PrinterStatus.PAPER_OUT:
            raise PaperOutError("the receipt printer is out of paper")
        if status is PrinterStatus.OFFLINE:
            why = f": {self._problem}" if self._problem else " (it says so itself)"
            raise PrinterOfflineError(
                f"the receipt printer is offline or unreachable{why}"
            )
        try:
            # Private in python-escpos, but the one call every connection
            # implements for sending bytes as they are.
            self.connection._raw(receipt)
            flush: Callable[[], None] | None = getattr(self.connection, "flush", None)
            if flush is not None:
                flush()
        except (OSError, escpos_errors.Error, RuntimeError) as error:
            self._reset()
            raise PrinterOfflineError(
                f"the receipt printer could not be written to: {_one_line(error)}"
            ) from error
        return status

    def _query(self, which: int) -> bytes:
        self.connection._raw(DLE_EOT + bytes([which]))
        device = self.connection.device
        if isinstance(device, socket.socket):
            return device.recv(1)
        if hasattr(device, "in_waiting"):  # pyserial: one byte, not a 16-byte wait
            data: bytes = device.read(1)
            return data
        reply: bytes = self.connection._read()
        return reply[:1]

    def _reset(self) -> None:
        with contextlib.suppress(OSError, escpos_errors.Error, RuntimeError):
            self.connection.close()
        if hasattr(self.connection, "_device"):
            # After a failed open python-escpos keeps None ("not connected") and
            # never tries again; False makes its next use open the device anew.
            self.connection._device = False


def _one_line(error: BaseException) -> str:
    # python-escpos puts the device and the system's reason on two lines.
    text = " ".join(str(error).split())
    return text or type(error).__name__


class _AppendingFile(escpos_printer.File):  # type: ignore[misc]
    """python-escpos's file connection, appending instead of truncating, so a
    spool file keeps every receipt and a new printer object loses none."""

    def open(self, raise_not_found: bool = True) -> None:
        """Open the file for appending.

        Raises:
            escpos.exceptions.DeviceNotFoundError: it cannot be opened.
        """
        if self._device:
            self.close()
        device: IO[bytes] | None = None
        problem = ""
        try:
            device = open(self.devfile, "ab")  # noqa: SIM115 - kept open
        except OSError as error:
            problem = str(error.strerror or error)
        self.device = device
        if device is None and raise_not_found:
            raise escpos_errors.DeviceNotFoundError(
                f"cannot open {self.devfile}: {problem}"
            )


class _LazyUsb:
    """A USB connection made on first use, so a kiosk without pyusb still starts."""

    def __init__(
        self,
        vendor: int | None,
        product: int | None,
        timeout: float,
        profile: str | None,
    ) -> None:
        self.vendor, self.product, self.timeout, self.profile = (
            vendor,
            product,
            timeout,
            profile,
        )
        self._printer: Any = None

    def _open(self) -> Any:
        if self._printer is None:
            if not escpos_printer.Usb.is_usable():
                # TODO(#7): USB needs pyusb (python-escpos[usb]), which is not a
                # dependency yet; without it every receipt is PrinterOfflineError.
                raise OSError("USB printing needs pyusb, which is not installed")
            self._printer = escpos_printer.Usb(
                self.vendor,
                self.product,
                timeout=int(self.timeout * 1000),
                profile=self.profile,
            )
        return self._printer

    @property
    def device(self) -> Any:
        return self._open().device

    def _raw(self, data: bytes) -> None:
        self._open()._raw(data)

    def _read(self) -> bytes:
        data: bytes = self._open()._read()
        return data

    def close(self) -> None:
        if self._printer is not None:
            self._printer.close()
            self._printer = None


class _Config:
    """Typed reads of a printer table, with errors naming the key."""

    def __init__(self, table: Mapping[str, object], source: str | None) -> None:
        self.table = table
        self.source = source
        for name in table:
            if name not in _KEYS:
                raise self.error(name, f"unknown key; known keys: {sorted(_KEYS)}")

    def where(self, message: str) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}printer.{message}"

    def error(self, name: str, problem: str) -> PrinterConfigError:
        return PrinterConfigError(self.where(f"{name}: {problem}"))

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        value = self.table.get(name)
        if value not in options:
            raise self.error(
                name, f"must be one of {', '.join(options)}, not {value!r}"
            )
        return str(value)

    def text(self, name: str) -> str:
        value = self.table.get(name)
        if not isinstance(value, str) or not value:
            raise self.error(name, f"is required (a non-empty string), not {value!r}")
        return value

    def optional_text(self, name: str) -> str | None:
        if name not in self.table:
            return None
        return self.text(name)

    def whole(self, name: str, default: int | None, minimum: int = 1) -> int:
        value = self.table.get(name, default)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value, 0)  # "0x04b8" for USB ids
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(
                name, f"must be a whole number >= {minimum}, not {value!r}"
            )
        return value

    def number(self, name: str, default: float) -> float:
        value = self.table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error(
                name, f"must be a positive number of seconds, not {value!r}"
            )
        return float(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self.table.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, not {value!r}")
        return value
