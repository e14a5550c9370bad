"""Opening the configured RFID reader, and reading item ids from tag data.

Layer: `drivers`. Imports pyserial and `drivers.rfid`; never `ils`. Everything
here blocks: it runs on the gate's reader thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import serial

from drivers.gate.config import ReaderDriver, ReaderSection
from drivers.gate.security import TagContent
from drivers.rfid.feig import FeigReader
from drivers.rfid.reader import ReaderError, RfidReader
from drivers.rfid.tags import TypeOfUsage, decode_basic_block
from drivers.rfid.three_m import ThreeM810Reader

DEFAULT_BAUDRATE = {ReaderDriver.FEIG: 38400, ReaderDriver.M810: 19200}
"""The readers' factory settings: Feig ISO host 38400 8E1 is common, 3M 19200."""


class PortReader:
    """A reader driver together with the port it owns, so both close together."""

    def __init__(self, reader: RfidReader, port: Any) -> None:
        self._reader = reader
        self._port = port

    def inventory(self) -> list[str]:
        """Return the UIDs of the tags now in the field."""
        return self._reader.inventory()

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        """Return `count` blocks from block `first` of one tag, joined."""
        return self._reader.read_blocks(uid, first, count)

    def write_blocks(self, uid: str, first: int, data: bytes) -> None:
        """Write whole blocks, from block `first`, to one tag."""
        self._reader.write_blocks(uid, first, data)

    def read_afi(self, uid: str) -> int:
        """Return the tag's Application Family Identifier."""
        return self._reader.read_afi(uid)

    def write_afi(self, uid: str, afi: int) -> None:
        """Set the tag's Application Family Identifier."""
        self._reader.write_afi(uid, afi)

    def read_eas(self, uid: str) -> bool:
        """Return whether the tag's EAS bit is set."""
        return self._reader.read_eas(uid)

    def write_eas(self, uid: str, on: bool) -> None:
        """Set or clear the tag's EAS bit."""
        self._reader.write_eas(uid, on)

    def close(self) -> None:
        """Close the port."""
        self._port.close()


def open_reader(section: ReaderSection) -> PortReader:
    """Open the reader's port (a device or a pyserial URL) and its driver.

    Raises:
        ReaderError: the port cannot be opened (unplugged, wrong name, busy).
    """
    baudrate = section.baudrate or DEFAULT_BAUDRATE[section.driver]
    try:
        port = serial.serial_for_url(
            section.port, baudrate=baudrate, timeout=section.timeout
        )
    except (OSError, serial.SerialException, ValueError) as problem:
        raise ReaderError(
            f"cannot open reader port {section.port}: {problem}"
        ) from None
    driver: RfidReader
    if section.driver is ReaderDriver.FEIG:
        driver = FeigReader(port)
    else:
        driver = ThreeM810Reader(port)
    return PortReader(driver, port)


def reader_opener(section: ReaderSection) -> Callable[[], RfidReader]:
    """A function that opens the configured reader each time it is called."""

    def opener() -> RfidReader:
        return open_reader(section)

    return opener


def decode_tag(memory: bytes) -> TagContent:
    """The item id, set and owner from a tag's ISO 28560-3 basic block.

    Raises:
        TagDataError: (a ValueError) the blocks hold no valid basic block.
    """
    block, _ = decode_basic_block(memory)
    return TagContent(
        item_id=block.item_id or None,
        patron_card=block.usage is TypeOfUsage.PATRON_CARD,
        owner_library=block.owner_library,
        part=block.part,
        parts=block.parts,
    )
