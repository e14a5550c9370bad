"""Item security on RFID tags: by AFI or by the EAS bit, as each site chooses.

Layer: `drivers`. Imports the standard library and `drivers.rfid.reader`; it
works through any `RfidReader` and never opens a stream itself.
Never imports `ils` or `kiosk`.

AFI (ISO 28560-1, values registered under ISO/IEC 15961): 0x07 while the item
is on the shelf, so gates that inventory with that AFI see it and alarm; 0xC2
once it is on loan. Legacy 3M sites use 0xD7/0xDA, and some software has the
pair inverted, so both values are settings. EAS is NXP's custom bit, which
only some tags carry. The AFI is never locked (ISO 28560-1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.rfid.reader import ReaderError, RfidReader

AFI_ON_SHELF = 0x07
AFI_ON_LOAN = 0xC2


class SecurityMethod(enum.Enum):
    """How a site marks an item as not to leave the building."""

    AFI = "afi"
    EAS = "eas"


class SecurityNotSet(ReaderError):  # noqa: N818 - names what happened
    """The tag accepted the write but reads back another security state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityPolicy:
    """One site's security method and AFI values.

    `verify` reads the state back after each change (recommended: a tag in a
    weak field can acknowledge a write it did not keep).

    Raises:
        ValueError: an AFI outside 0-255, or the same value for both states.
    """

    method: SecurityMethod = SecurityMethod.AFI
    afi_on_shelf: int = AFI_ON_SHELF
    afi_on_loan: int = AFI_ON_LOAN
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("afi_on_shelf", "afi_on_loan"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be 0x00-0xFF, not {value!r}")
        if self.afi_on_shelf == self.afi_on_loan:
            raise ValueError(
                f"afi_on_shelf and afi_on_loan are both 0x{self.afi_on_loan:02X}; "
                "a gate could not tell a loaned item from a shelved one"
            )

    def secure(self, reader: RfidReader, uid: str) -> None:
        """Mark the item as on the shelf, so gates alarm (on checkin).

        Raises:
            TagLeftField: the tag left the field.
            NotSupportedByTag, NotSupportedByReader: EAS on a tag or reader without it.
            SecurityNotSet: the tag reads back unsecured.
            ReaderError: any other reader failure.
        """
        self._set(reader, uid, secured=True)

    def unsecure(self, reader: RfidReader, uid: str) -> None:
        """Mark the item as on loan, so gates stay quiet (on checkout).

        Raises:
            TagLeftField: the tag left the field.
            NotSupportedByTag, NotSupportedByReader: EAS on a tag or reader without it.
            SecurityNotSet: the tag reads back secured.
            ReaderError: any other reader failure.
        """
        self._set(reader, uid, secured=False)

    def is_secured(self, reader: RfidReader, uid: str) -> bool:
        """Whether a gate should alarm for this tag.

        With AFI, only the on-shelf value counts as secured (that is what a
        gate's AFI inventory finds); a blank 0x00 is not.

        Raises:
            TagLeftField, NotSupportedByTag, NotSupportedByReader, ReaderError.
        """
        if self.method is SecurityMethod.EAS:
            return reader.read_eas(uid)
        return reader.read_afi(uid) == self.afi_on_shelf

    def _set(self, reader: RfidReader, uid: str, *, secured: bool) -> None:
        state = "secured" if secured else "unsecured"
        if self.method is SecurityMethod.EAS:
            reader.write_eas(uid, secured)
            if self.verify and reader.read_eas(uid) != secured:
                raise SecurityNotSet(f"tag {uid} did not read back {state} (EAS)")
            return
        afi = self.afi_on_shelf if secured else self.afi_on_loan
        reader.write_afi(uid, afi)
        if self.verify:
            found = reader.read_afi(uid)
            if found != afi:
                raise SecurityNotSet(
                    f"tag {uid} did not read back {state}: AFI 0x{found:02X}, "
                    f"wrote 0x{afi:02X}"
                )
