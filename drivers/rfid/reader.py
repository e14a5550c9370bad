"""What every RFID reader driver offers, whatever protocol it speaks.

Layer: `drivers`. Imports only the standard library.
Never imports `ils` or `kiosk`.

A reader driver works on an open byte stream (a `serial.Serial`, the object
`serial.serial_for_url("loop://" or "socket://...")` returns, or anything with
the same `read(n)`, `write(data)` and `timeout`), and blocks while it waits for
the reader. Callers on the event loop run it in a thread. UIDs are the tag's
8-byte ISO 15693 UID as 16 upper-case hex digits, most significant byte first.
"""

from __future__ import annotations

from typing import Protocol


class ReaderError(OSError):
    """The reader could not do what was asked; the message says what it answered."""


class ReaderTimeout(ReaderError):  # noqa: N818 - names what happened
    """The reader did not answer in time (unplugged, powered off, wrong port)."""


class TagLeftField(ReaderError):  # noqa: N818 - names what happened
    """The tag stopped answering part-way, most likely taken out of the field."""


class NotSupportedByTag(ReaderError):  # noqa: N818 - names what happened
    """The tag does not have the feature asked for (EAS on a tag without it)."""


class RfidReader(Protocol):
    """The operations the kiosk and the gate need from a reader."""

    def inventory(self) -> list[str]:
        """Return the UIDs of the tags now in the field."""
        ...

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        """Return `count` blocks from block `first` of one tag, joined."""
        ...

    def write_blocks(self, uid: str, first: int, data: bytes) -> None:
        """Write whole blocks, from block `first`, to one tag."""
        ...

    def read_afi(self, uid: str) -> int:
        """Return the tag's Application Family Identifier."""
        ...

    def write_afi(self, uid: str, afi: int) -> None:
        """Set the tag's Application Family Identifier."""
        ...

    def read_eas(self, uid: str) -> bool:
        """Return whether the tag's EAS bit is set (NotSupportedByTag if none)."""
        ...

    def write_eas(self, uid: str, on: bool) -> None:
        """Set or clear the tag's EAS bit (NotSupportedByTag if it has none)."""
        ...


class NotSupportedByReader(ReaderError):  # noqa: N818 - names what happened
    """The reader's protocol has no command for what was asked (EAS on a 3M 810)."""


class IncompleteInventory(ReaderError):  # noqa: N818 - names what happened
    """An inventory that failed part-way; `uids` holds the tags it did find."""

    def __init__(self, message: str, uids: list[str]) -> None:
        super().__init__(message)
        self.uids = uids
