"""ISO 28560-2 tag data (ISO/IEC 15962 object encoding): the primary item id only.

Layer: `drivers`. Sans-I/O: imports only the standard library and
`drivers.rfid.tags` (for its errors).
Never imports `ils` or `kiosk`.

Only what the reference's worked example shows is implemented: one data set
holding the primary item identifier (relative OID 1), first on the tag, with
no offset byte, compacted as an octet string (compaction 6, ASCII) or as an
integer (compaction 1, big-endian), ended by a 0x00 precursor. A data set's
precursor byte is compaction << 4 | OID, followed by a length byte and the
data. Every other compaction (numeric, 5/6/7-bit, UTF-8), the offset byte,
OIDs above 14, the content parameter and the other data elements raise
TagFormatNotSupported: their bit layout could not be checked against the ISO
text or a vendor's sample tag (see docs/drivers.md, "RFID").
"""

from __future__ import annotations

import enum

from drivers.rfid.tags import TagDataError, TagFormatNotSupported

DSFID = 0x06
"""The DSFID the reference gives ISO 28560-2 tags [unverified]."""

OID_PRIMARY_ITEM_ID = 1
_OFFSET_FLAG = 0x80
_LAST_OID_IN_PRECURSOR = 14


class Compaction(enum.IntEnum):
    """The compaction codes of ISO/IEC 15962 (bits 6-4 of the precursor)."""

    APPLICATION_DEFINED = 0
    INTEGER = 1
    NUMERIC = 2
    FIVE_BIT = 3
    SIX_BIT = 4
    SEVEN_BIT = 5
    OCTET_STRING = 6
    UTF8 = 7


def encode_item_id(
    item_id: str, compaction: Compaction = Compaction.OCTET_STRING
) -> bytes:
    """Return the tag memory for `item_id` alone: one data set, then 0x00.

    Raises:
        TagDataError: an id that is not ASCII, empty, too long for one length
            byte, or (for integer compaction) not digits without leading zeros.
        TagFormatNotSupported: any compaction but octet string or integer.
    """
    if not item_id or not item_id.isascii() or not item_id.isprintable():
        raise TagDataError(f"item id must be printable ASCII: {item_id!r}")
    if compaction is Compaction.OCTET_STRING:
        data = item_id.encode("ascii")
    elif compaction is Compaction.INTEGER:
        if not item_id.isdigit() or (item_id.startswith("0") and item_id != "0"):
            # Integer compaction loses leading zeros, so such ids cannot use it.
            raise TagDataError(
                f"integer compaction needs digits without leading zeros: {item_id!r}"
            )
        number = int(item_id)
        data = number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")
    else:
        raise TagFormatNotSupported(
            f"ISO 28560-2 {compaction.name.lower()} compaction is not yet supported"
        )
    if len(data) > 255:
        raise TagDataError(f"item id is {len(data)} bytes; one data set holds 255")
    precursor = (compaction << 4) | OID_PRIMARY_ITEM_ID
    return bytes([precursor, len(data)]) + data + b"\x00"


def decode_item_id(memory: bytes) -> str:
    """Return the primary item identifier from the first data set of `memory`.

    Raises:
        TagDataError: blank memory, no primary item id first, or a data set
            running past the end.
        TagFormatNotSupported: an offset byte, an unsupported compaction, or an
            OID above 14 in the first data set.
    """
    if not memory or memory[0] == 0:
        raise TagDataError("no ISO 28560-2 data set (blank memory)")
    precursor = memory[0]
    # TODO(#7): the rest of ISO 28560-2 waits for sample tags to check it against.
    if precursor & _OFFSET_FLAG:
        raise TagFormatNotSupported("ISO 28560-2 offset bytes are not yet supported")
    compaction = Compaction((precursor >> 4) & 0x07)
    oid = precursor & 0x0F
    if oid > _LAST_OID_IN_PRECURSOR:
        raise TagFormatNotSupported("ISO 28560-2 OIDs above 14 are not yet supported")
    if oid != OID_PRIMARY_ITEM_ID:
        raise TagDataError(
            f"the first ISO 28560-2 data set is OID {oid}, not the primary item id"
        )
    if len(memory) < 2 or len(memory) < 2 + memory[1]:
        raise TagDataError("the ISO 28560-2 data set runs past the end of memory")
    data = memory[2 : 2 + memory[1]]
    if compaction is Compaction.OCTET_STRING:
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            raise TagDataError(
                f"octet-string item id is not ASCII: {data.hex(' ')}"
            ) from None
    if compaction is Compaction.INTEGER:
        if not data:
            raise TagDataError("integer-compacted item id is empty")
        return str(int.from_bytes(data, "big"))
    raise TagFormatNotSupported(
        f"ISO 28560-2 {compaction.name.lower()} compaction is not yet supported"
    )
