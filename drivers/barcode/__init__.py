"""Barcode scanners: USB keyboard-wedge (python-evdev) and serial, and the
site's normalisation pipeline that turns a scan into a patron or item barcode.

Layer: `drivers`. Imports the standard library, python-evdev, pyserial,
Twisted and `drivers.events`/`drivers.stream`; never `ils`, the server or the
kiosk.
"""

from drivers.barcode.config import ScannerSettings, load_scanners, parse_scanners
from drivers.barcode.hid import (
    HidScanner,
    HidScannerSettings,
    KeyboardWedgeDecoder,
    find_input_device,
)
from drivers.barcode.pipeline import (
    AcceptedScan,
    BarcodePipeline,
    RefusedScan,
    ScannerConfigError,
    luhn_valid,
)
from drivers.barcode.serial_scanner import SerialFraming, SerialScanner

__all__ = [
    "AcceptedScan",
    "BarcodePipeline",
    "HidScanner",
    "HidScannerSettings",
    "KeyboardWedgeDecoder",
    "RefusedScan",
    "ScannerConfigError",
    "ScannerSettings",
    "SerialFraming",
    "SerialScanner",
    "find_input_device",
    "load_scanners",
    "luhn_valid",
    "parse_scanners",
]
