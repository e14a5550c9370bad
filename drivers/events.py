"""The domain events every device driver emits, whatever the hardware.

Layer: `drivers`. Imports only the standard library. The kiosk and the gate
react to these values; they never see a driver's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class BarcodeScanned:
    """A scanner read one barcode, already normalised by the site's pipeline.

    `kind` is "patron", "item" or "unknown", as the site's patterns classify
    the barcode; `raw` is what the scanner sent before normalisation.
    `symbology` is the AIM identifier the scanner sent (such as "]F0" for
    Codabar), or None when it sent none.
    """

    device: str
    barcode: str
    kind: str
    raw: str
    at: datetime
    symbology: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BarcodeRejected:
    """A scanner read something the site's pipeline refused (a bad check digit).

    The kiosk should ask the patron to scan again; `reason` says why, for
    operators, and `raw` is what the scanner sent.
    """

    device: str
    raw: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TagSeen:
    """One RFID tag in a reader's field, with what could be read of it.

    `item_id` is None when the tag's data could not be read or decoded;
    `secured` is the tag's security state (AFI or EAS, as the site chose), or
    None when it could not be read.
    """

    uid: str
    item_id: str | None = None
    owner_library: str | None = None
    part: int = 1
    parts: int = 1
    secured: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TagsPresent:
    """Tags arrived in a reader's field (only the new ones are listed)."""

    device: str
    tags: tuple[TagSeen, ...]
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TagsGone:
    """Tags left a reader's field, by UID."""

    device: str
    uids: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceLost:
    """A device stopped answering or was unplugged; `reason` says what was seen."""

    device: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceBack:
    """A device that was lost answers again."""

    device: str
    at: datetime


DeviceEvent = (
    BarcodeScanned | BarcodeRejected | TagsPresent | TagsGone | DeviceLost | DeviceBack
)
