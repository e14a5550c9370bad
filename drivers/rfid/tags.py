"""ISO 28560-3 (the Danish data model) tag data: the basic block, as values.

Layer: `drivers`. Sans-I/O: imports only the standard library and
`drivers.rfid.crc`; never a reader, a stream or a log.
Never imports `ils` or `kiosk`.

The basic block (ISO 28560-3; DS/INF 163 "RFID Data Model for Libraries") is a
fixed 34-byte record at the start of user memory (32 bytes on small tags, which
then hold only 9 characters of the owner library):

====== =====================================================================
Bytes  Field
====== =====================================================================
0      high nibble: version (1); low nibble: type of usage
1      number of parts in the set (1-255)
2      ordinal number of this part (1-255)
3-18   primary item identifier, ASCII, NUL-padded
19-20  CRC-16/CCITT-FALSE over bytes 0-18 and 21-33, stored LSB first
21-22  country of the owner library (ISO 3166-1 alpha-2)
23-33  owner library (the rest of its ISIL), ASCII, NUL-padded
====== =====================================================================

The CRC always covers 32 bytes (bytes 32-33 count as zero on 32-byte tags).
Some readers and vendors write every 4-byte block with its bytes reversed; the
decoder accepts either order and reports the one whose CRC matched, so a writer
can keep it.
"""

from __future__ import annotations

import enum
import string
from dataclasses import dataclass

from drivers.rfid.crc import crc16_ccitt_false

BLOCK_SIZE = 4
FULL_SIZE = 34
SHORT_SIZE = 32
_ID_SIZE = 16
_LIBRARY_SIZE = 11
_SHORT_LIBRARY_SIZE = 9
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


class TagDataError(ValueError):
    """Tag memory that is not valid tag data, or values that cannot be encoded."""


class TagFormatNotSupported(TagDataError):  # noqa: N818 - reads as a sentence
    """Valid-looking tag data using a part of ISO 28560 this codec does not do yet."""


class TypeOfUsage(enum.IntEnum):
    """The low nibble of byte 0 (ISO 28560-3 / DDM "type of usage")."""

    ACQUISITION = 0
    CIRCULATING = 1
    NOT_CIRCULATING = 2
    LOCAL_3 = 3
    LOCAL_4 = 4
    RESERVED_5 = 5
    NO_INFORMATION = 6
    DISCARDED = 7
    PATRON_CARD = 8
    LIBRARY_EQUIPMENT = 9


class BlockOrder(enum.Enum):
    """How the tag's 4-byte blocks hold the basic block's bytes."""

    NATURAL = "natural"
    """Byte 0 of the basic block is byte 0 of block 0."""

    REVERSED = "reversed"
    """Each 4-byte block holds its four bytes in reverse (block 0 is 33 01 02 11)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicBlock:
    """The ISO 28560-3 basic block of one tag.

    `country` and `library` are the owner library's ISIL split at its hyphen
    (`DK-999999` is country `DK`, library `999999`), as the DDM stores them;
    both may be empty when the tag names no owner.

    Raises:
        TagDataError: a value the basic block cannot hold.
    """

    item_id: str
    parts: int = 1
    part: int = 1
    usage: TypeOfUsage = TypeOfUsage.CIRCULATING
    country: str = ""
    library: str = ""
    version: int = 1

    def __post_init__(self) -> None:
        if self.version != 1:
            raise TagFormatNotSupported(
                f"basic block version {self.version}: only version 1 is supported"
            )
        if not isinstance(self.usage, TypeOfUsage):
            raise TagDataError(f"type of usage must be a TypeOfUsage: {self.usage!r}")
        for name in ("parts", "part"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TagDataError(f"{name} must be a whole number, not {value!r}")
        if not 1 <= self.parts <= 255:
            raise TagDataError(f"parts in set must be 1-255, not {self.parts}")
        if not 1 <= self.part <= self.parts:
            raise TagDataError(f"part number must be 1-{self.parts}, not {self.part}")
        _check_text("primary item id", self.item_id, 1, _ID_SIZE)
        if not self.item_id.strip():
            raise TagDataError(f"primary item id must not be blank: {self.item_id!r}")
        if len(self.item_id) > _ID_SIZE:
            raise TagFormatNotSupported(
                "item ids over 16 characters need an ISO 28560-3 extension block"
            )
        if self.country and not (
            len(self.country) == 2
            and self.country.isascii()
            and self.country.isalpha()
            and self.country.isupper()
        ):
            raise TagDataError(
                f"country must be two capital letters (ISO 3166-1): {self.country!r}"
            )
        _check_text("owner library", self.library, 0, _LIBRARY_SIZE)
        if self.library and not self.library.strip():
            raise TagDataError(f"owner library must not be blank: {self.library!r}")

    @property
    def owner_library(self) -> str | None:
        """The owner's ISIL (`DK-999999`), the library alone, or None if absent."""
        if self.country:
            return f"{self.country}-{self.library}"
        return self.library or None


def _check_text(what: str, value: str, shortest: int, longest: int) -> None:
    if not shortest <= len(value) <= longest:
        raise TagDataError(
            f"{what} must be {shortest}-{longest} characters, not {len(value)}: "
            f"{value!r}"
        )
    if not set(value) <= _PRINTABLE:
        raise TagDataError(f"{what} must be printable ASCII: {value!r}")


def split_isil(isil: str) -> tuple[str, str]:
    """Split an ISIL into the basic block's country and library fields.

    Raises:
        TagDataError: not an ISIL (no hyphen, or nothing after it).
        TagFormatNotSupported: a prefix other than a two-letter country; the
            ISO 28560-3 rule for those could not be checked (see docs/drivers.md).
    """
    prefix, hyphen, library = isil.partition("-")
    if not hyphen or not prefix or not library.strip():
        raise TagDataError(f"an ISIL is PREFIX-LIBRARY, like DK-999999: {isil!r}")
    if not (len(prefix) == 2 and prefix.isascii() and prefix.isalpha()):
        # TODO(#7): ISO 28560-3's rule for non-country ISIL prefixes is unverified.
        raise TagFormatNotSupported(
            f"ISIL prefix {prefix!r} is not a two-letter country; not yet supported"
        )
    return prefix.upper(), library


def reverse_blocks(data: bytes) -> bytes:
    """Reverse the bytes inside each 4-byte block, padding the last with zeros."""
    padded = data + bytes(-len(data) % BLOCK_SIZE)
    return b"".join(
        padded[start : start + BLOCK_SIZE][::-1]
        for start in range(0, len(padded), BLOCK_SIZE)
    )


def _crc_input(block: bytes) -> bytes:
    return block[0:19] + block[21:34]


def encode_basic_block(
    block: BasicBlock, *, size: int = FULL_SIZE, order: BlockOrder = BlockOrder.NATURAL
) -> bytes:
    """Return the tag memory holding `block`.

    `size` is 34 (the full block) or 32 (small tags; the owner library must then
    fit in 9 characters). In REVERSED order the result is whole blocks (36 bytes
    for size 34, the last two zero).

    Raises:
        TagDataError: a bad size, or an owner library too long for 32 bytes.
    """
    if size not in (FULL_SIZE, SHORT_SIZE):
        raise TagDataError(f"basic block size must be 32 or 34 bytes, not {size}")
    if size == SHORT_SIZE and len(block.library) > _SHORT_LIBRARY_SIZE:
        raise TagDataError(
            f"owner library {block.library!r} is over 9 characters and needs the "
            "34-byte basic block"
        )

    memory = bytearray(FULL_SIZE)
    memory[0] = (block.version << 4) | block.usage.value
    memory[1] = block.parts
    memory[2] = block.part
    memory[3 : 3 + len(block.item_id)] = block.item_id.encode("ascii")
    memory[21 : 21 + len(block.country)] = block.country.encode("ascii")
    memory[23 : 23 + len(block.library)] = block.library.encode("ascii")

    # ISO 28560-3: the CRC is stored least significant byte first.
    memory[19:21] = crc16_ccitt_false(_crc_input(bytes(memory))).to_bytes(2, "little")

    encoded = bytes(memory[:size])
    if order is BlockOrder.REVERSED:
        return reverse_blocks(encoded)
    return encoded


def decode_basic_block(memory: bytes) -> tuple[BasicBlock, BlockOrder]:
    """Decode the basic block at the start of `memory`, in either block order.

    `memory` is what the tag's first blocks hold (at least 32 bytes; extra bytes
    after the basic block are ignored).

    Raises:
        TagDataError: too short, blank, a CRC that matches in neither order, or
            a field that breaks ISO 28560-3.
        TagFormatNotSupported: a long id in an extension block, or a version
            other than 1.
    """
    if len(memory) < SHORT_SIZE:
        raise TagDataError(
            f"a basic block needs at least {SHORT_SIZE} bytes, got {len(memory)}"
        )
    if not any(memory[:SHORT_SIZE]):
        raise TagDataError("the tag is blank (all zero)")

    natural = memory[: FULL_SIZE + 2]
    candidates = (
        (BlockOrder.NATURAL, natural),
        (BlockOrder.REVERSED, reverse_blocks(natural)),
    )
    for order, data in candidates:
        for size in (FULL_SIZE, SHORT_SIZE):
            block = data[:size] + bytes(FULL_SIZE - size)
            stored = int.from_bytes(block[19:21], "little")
            if stored == crc16_ccitt_false(_crc_input(block)):
                return _fields(block), order

    stored = int.from_bytes(natural[19:21], "little")
    computed = crc16_ccitt_false(
        _crc_input(natural[:FULL_SIZE].ljust(FULL_SIZE, b"\0"))
    )
    raise TagDataError(
        f"basic block CRC mismatch in both block orders (stored 0x{stored:04X}, "
        f"computed 0x{computed:04X} in natural order)"
    )


def _fields(block: bytes) -> BasicBlock:
    version, usage = block[0] >> 4, block[0] & 0x0F
    if block[3] == 0x01:
        # TODO(#7): ISO 28560-3 extension blocks (long item ids) are not decoded.
        raise TagFormatNotSupported(
            "the item id is in an ISO 28560-3 extension block; not yet supported"
        )
    try:
        usage_value = TypeOfUsage(usage)
    except ValueError:
        raise TagDataError(f"type of usage {usage} is not defined") from None
    return BasicBlock(
        version=version,
        usage=usage_value,
        parts=block[1],
        part=block[2],
        item_id=_text("primary item id", block[3:19]),
        country=_text("country", block[21:23]),
        library=_text("owner library", block[23:34]),
    )


def _text(what: str, field: bytes) -> str:
    value = field.rstrip(b"\0")
    if b"\0" in value:
        raise TagDataError(f"{what} has a NUL before its end: {field.hex(' ')}")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise TagDataError(f"{what} is not ASCII: {field.hex(' ')}") from None
