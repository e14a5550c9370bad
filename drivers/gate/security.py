"""Reading a tag's security state, and deciding whether it alarms.

Layer: `drivers`. Imports the standard library, `drivers.events` and the RFID
reader interface; never `ils`. `read_tag` blocks on the reader (run it in the
reader's thread); `decide` is pure.

ISO 28560-1 lets a library keep the security state in the AFI (0x07 on the shelf,
0xC2 on loan, both registered under ISO/IEC 15961) or in the tag's EAS bit; a
site chooses one, and the values are configuration because sites in the field
use others (legacy 3M sites use 0xD7 and 0xDA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.events import TagSeen
from drivers.gate.config import SecurityMode, SecuritySection, UnknownTag
from drivers.rfid.reader import (
    NotSupportedByTag,
    ReaderError,
    ReaderTimeout,
    RfidReader,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TagContent:
    """What the gate needs from a tag's data: the item id and what kind of tag."""

    item_id: str | None
    patron_card: bool = False
    owner_library: str | None = None
    part: int = 1
    parts: int = 1


TagDecoder = Callable[[bytes], TagContent]
"""Turns a tag's data blocks into its content; raises ValueError if it cannot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GateReading:
    """One tag as the gate read it, and what it read its state from.

    `evidence` is a short phrase for the log: "AFI 0x07", "EAS set", or why the
    state could not be read.
    """

    tag: TagSeen
    evidence: str
    patron_card: bool = False


class ReadingCutShort(ReaderTimeout):
    """The reader stopped answering after a tag's security state was read.

    `reading` holds what was read (without the item id), so the gate can still
    alarm for a secured tag before it goes looking for the reader.
    """

    def __init__(self, message: str, reading: GateReading) -> None:
        super().__init__(message)
        self.reading = reading


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Whether a tag alarms, and why in words staff understand."""

    alarm: bool
    reason: str


def afi_state(afi: int, security: SecuritySection) -> bool | None:
    """True for the secured AFI, False for the unsecured one, None for any other."""
    if afi == security.secured_afi:
        return True
    if afi == security.unsecured_afi:
        return False
    return None


def decide(reading: GateReading, security: SecuritySection) -> Verdict:
    """Whether this tag passing the gate sounds the alarm.

    A patron card (ISO 28560-3 type of usage 8) never alarms: it is not an
    item, whatever its AFI says.
    """
    if reading.patron_card:
        return Verdict(alarm=False, reason="a patron card, not an item")
    secured = reading.tag.secured
    if secured is True:
        return Verdict(alarm=True, reason=f"secured ({reading.evidence})")
    if secured is False:
        return Verdict(alarm=False, reason=f"not secured ({reading.evidence})")
    alarm = security.unknown is UnknownTag.ALARM
    return Verdict(alarm=alarm, reason=f"security state unknown ({reading.evidence})")


# TODO(#7): real gates find secured tags with one AFI-masked inventory or the NXP
# EAS ALARM command; RfidReader offers neither, so each new tag is read in turn.
def read_tag(
    reader: RfidReader,
    uid: str,
    security: SecuritySection,
    *,
    decode_tag: TagDecoder | None = None,
    first_block: int = 0,
    block_count: int = 8,
) -> GateReading:
    """Read one tag's security state and, when a decoder is given, its content.

    The security state is read first, so that a tag leaving the field while its
    data is read still alarms if it was secured.

    Raises:
        ReadingCutShort: the reader stopped answering while the data was read;
            it carries the security state already read.
        ReaderTimeout: the reader stopped answering (the caller reconnects).
    """
    secured: bool | None
    try:
        if security.mode is SecurityMode.AFI:
            afi = reader.read_afi(uid)
            secured = afi_state(afi, security)
            evidence = f"AFI 0x{afi:02X}"
        else:
            secured = reader.read_eas(uid)
            evidence = "EAS set" if secured else "EAS clear"
    except ReaderTimeout:
        raise
    except NotSupportedByTag:
        secured, evidence = None, "the tag has no EAS"
    except ReaderError as error:
        secured, evidence = None, f"unreadable: {error}"

    content = TagContent(item_id=None)
    if decode_tag is not None:
        try:
            content = decode_tag(reader.read_blocks(uid, first_block, block_count))
        except ReaderTimeout as error:
            tag = TagSeen(uid=uid, secured=secured)
            raise ReadingCutShort(
                str(error), GateReading(tag=tag, evidence=evidence)
            ) from error
        except (ReaderError, ValueError):
            # No id is fine: the alarm rests on the security state alone.
            content = TagContent(item_id=None)

    # A patron card's number is patron data: it is dropped here, never logged.
    item_id = None if content.patron_card else content.item_id
    tag = TagSeen(
        uid=uid,
        item_id=item_id,
        owner_library=content.owner_library,
        part=content.part,
        parts=content.parts,
        secured=secured,
    )
    return GateReading(tag=tag, evidence=evidence, patron_card=content.patron_card)
