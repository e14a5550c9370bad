"""The ISO 28560-3 (Danish data model) basic block codec.

The worked example is the made-up item of the kiosk-drivers reference, section
3.4: barcode 39999000123453, part 1 of 2, owner DK-999999. Its bytes below
were laid out by hand from the field table in `drivers/rfid/tags.py`.
"""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.rfid.crc import crc16_ccitt_false
from drivers.rfid.tags import (
    BasicBlock,
    BlockOrder,
    TagDataError,
    TagFormatNotSupported,
    TypeOfUsage,
    decode_basic_block,
    encode_basic_block,
    reverse_blocks,
    split_isil,
)

# Byte 0: version 1, type of usage 1 (circulating); byte 1: 2 parts; byte 2: part
# 1; bytes 3-18: "39999000123453" and two NULs; bytes 19-20: the CRC; bytes
# 21-22: "DK"; bytes 23-33: "999999" and five NULs.
#
# The CRC, checked by hand (CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF) over
# bytes 0-18 and 21-33: binascii.crc_hqx, an independent implementation of the
# same CRC, gives 0xB650 for those 32 bytes (asserted below), stored LSB first
# as "50 B6". The same 32 bytes serve the 32-byte form, whose missing bytes
# 32-33 count as zeros.
WORKED_EXAMPLE_34 = bytes.fromhex(
    "11 02 01 33 39 39 39 39 30 30 30 31 32 33 34 35"
    "33 00 00 50 b6 44 4b 39 39 39 39 39 39 00 00 00"
    "00 00"
)
WORKED_EXAMPLE_32_BLOCKS = bytes.fromhex(
    "11020133 39393939 30303031 32333435 33000050 b6444b39 39393939 39000000"
)
WORKED_EXAMPLE = BasicBlock(
    item_id="39999000123453",
    parts=2,
    part=1,
    usage=TypeOfUsage.CIRCULATING,
    country="DK",
    library="999999",
)


def test_worked_example_crc_is_0xb650_by_an_independent_crc() -> None:
    """binascii's CCITT CRC over bytes 0-18 and 21-33 is 0xB650, the stored value."""
    covered = WORKED_EXAMPLE_34[0:19] + WORKED_EXAMPLE_34[21:34]

    assert 0xB650 == binascii.crc_hqx(covered, 0xFFFF)
    assert bytes([0x50, 0xB6]) == WORKED_EXAMPLE_34[19:21]


def test_danish_data_model_crc_vector() -> None:
    """The DDM's own CRC test vector: "RFID tag data model" gives 0x1AEE."""
    assert 0x1AEE == crc16_ccitt_false(b"RFID tag data model")


def test_worked_example_decodes() -> None:
    """The 34-byte worked example decodes to its item, set and owner."""
    block, order = decode_basic_block(WORKED_EXAMPLE_34)

    assert WORKED_EXAMPLE == block
    assert BlockOrder.NATURAL == order
    assert "DK-999999" == block.owner_library


def test_worked_example_encodes_exactly() -> None:
    """Encoding the worked example gives its 34 bytes exactly."""
    assert WORKED_EXAMPLE_34 == encode_basic_block(WORKED_EXAMPLE)


def test_worked_example_32_byte_form_encodes_and_decodes() -> None:
    """The 32-byte form is blocks 0-7 of the example, with the same CRC."""
    assert WORKED_EXAMPLE_32_BLOCKS == encode_basic_block(WORKED_EXAMPLE, size=32)
    assert (WORKED_EXAMPLE, BlockOrder.NATURAL) == decode_basic_block(
        WORKED_EXAMPLE_32_BLOCKS
    )


def test_reversed_blocks_are_recognised() -> None:
    """Tags written with each block reversed (block 0 = 33 01 02 11) decode."""
    reversed_memory = encode_basic_block(WORKED_EXAMPLE, order=BlockOrder.REVERSED)

    assert bytes.fromhex("33 01 02 11") == reversed_memory[:4]
    assert 36 == len(reversed_memory)
    assert (WORKED_EXAMPLE, BlockOrder.REVERSED) == decode_basic_block(reversed_memory)


def test_data_after_the_basic_block_is_ignored() -> None:
    """A 32-byte block followed by other data in blocks 8+ still decodes."""
    memory = WORKED_EXAMPLE_32_BLOCKS + bytes.fromhex("12345678") + bytes(76)

    assert WORKED_EXAMPLE == decode_basic_block(memory)[0]


def test_part_two_of_the_set() -> None:
    """Part 2 carries the same id and set size, with byte 2 = 0x02."""
    part_two = encode_basic_block(
        BasicBlock(
            item_id="39999000123453", parts=2, part=2, country="DK", library="999999"
        )
    )

    assert 0x02 == part_two[2]
    assert WORKED_EXAMPLE_34[3:19] == part_two[3:19]


def test_bad_crc_is_refused_naming_both_values() -> None:
    """A block whose CRC matches in neither order is refused with both CRCs."""
    damaged = bytearray(WORKED_EXAMPLE_34)
    damaged[5] = ord("8")

    with pytest.raises(TagDataError, match="stored 0xB650"):
        decode_basic_block(bytes(damaged))


def test_blank_and_short_memory_are_refused() -> None:
    """A blank tag and fewer than 32 bytes are clear errors, not empty values."""
    with pytest.raises(TagDataError, match="blank"):
        decode_basic_block(bytes(36))
    with pytest.raises(TagDataError, match="at least 32"):
        decode_basic_block(WORKED_EXAMPLE_34[:20])


def _with_crc(block: bytearray) -> bytes:
    block[19:21] = crc16_ccitt_false(bytes(block[0:19] + block[21:34])).to_bytes(
        2, "little"
    )
    return bytes(block)


def test_extension_block_id_is_not_yet_supported() -> None:
    """An id flagged 0x01 (kept in an extension block) is reported unsupported."""
    block = bytearray(WORKED_EXAMPLE_34)
    block[3] = 0x01

    with pytest.raises(TagFormatNotSupported, match="extension block"):
        decode_basic_block(_with_crc(block))


def test_other_versions_are_not_yet_supported() -> None:
    """A version nibble other than 1 is reported unsupported."""
    block = bytearray(WORKED_EXAMPLE_34)
    block[0] = 0x21

    with pytest.raises(TagFormatNotSupported, match="version 2"):
        decode_basic_block(_with_crc(block))


def test_undefined_type_of_usage_is_refused() -> None:
    """Type of usage 0xA is not defined by the DDM and is refused."""
    block = bytearray(WORKED_EXAMPLE_34)
    block[0] = 0x1A

    with pytest.raises(TagDataError, match="type of usage 10"):
        decode_basic_block(_with_crc(block))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item_id": ""}, "primary item id must be 1-16"),
        ({"item_id": "A" * 17}, "primary item id must be 1-16"),
        ({"item_id": "39999\n"}, "printable ASCII"),
        ({"item_id": "1", "parts": 0}, "parts in set"),
        ({"item_id": "1", "parts": 2, "part": 3}, "part number must be 1-2"),
        ({"item_id": "1", "country": "dk"}, "two capital letters"),
        ({"item_id": "1", "library": "123456789012"}, "owner library must be 0-11"),
        ({"item_id": "1", "parts": 1.5}, "parts must be a whole number"),
        ({"item_id": "1", "parts": 2, "part": True}, "part must be a whole number"),
        ({"item_id": "   "}, "primary item id must not be blank"),
        ({"item_id": "1", "country": "D!"}, "two capital letters"),
        ({"item_id": "1", "country": "DK", "library": " "}, "must not be blank"),
    ],
)
def test_values_the_block_cannot_hold_are_refused(
    fields: dict[str, object], message: str
) -> None:
    """Each field outside what the basic block holds is refused by name."""
    with pytest.raises(TagDataError, match=message):
        BasicBlock(**fields)  # type: ignore[arg-type]


def test_long_library_does_not_fit_32_bytes() -> None:
    """An owner library over 9 characters needs the 34-byte block."""
    block = BasicBlock(item_id="1", country="DK", library="1234567890")

    with pytest.raises(TagDataError, match="34-byte"):
        encode_basic_block(block, size=32)


def test_isil_is_split_at_its_hyphen() -> None:
    """DK-999999 is stored as country DK and library 999999, hyphen dropped."""
    assert ("DK", "999999") == split_isil("DK-999999")
    assert ("NO", "02030000") == split_isil("NO-02030000")


def test_isil_with_a_non_country_prefix_is_not_yet_supported() -> None:
    """Prefixes that are not two letters (like ZDB-1) are reported unsupported."""
    with pytest.raises(TagFormatNotSupported):
        split_isil("ZDB-1")
    with pytest.raises(TagDataError, match="PREFIX-LIBRARY"):
        split_isil("DK999999")
    with pytest.raises(TagDataError, match="PREFIX-LIBRARY"):
        split_isil("DK- ")


def test_reverse_blocks_pads_and_reverses_each_block() -> None:
    """Each 4-byte block is reversed, the last padded with zeros first."""
    assert bytes.fromhex("04030201 00000605") == reverse_blocks(
        bytes.fromhex("010203040506")
    )


_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@st.composite
def basic_blocks(draw: st.DrawFn) -> BasicBlock:
    parts = draw(st.integers(1, 255))
    has_country = draw(st.booleans())
    return BasicBlock(
        item_id=draw(st.text(_PRINTABLE, min_size=1, max_size=16).filter(str.strip)),
        parts=parts,
        part=draw(st.integers(1, parts)),
        usage=draw(st.sampled_from(TypeOfUsage)),
        country=draw(st.sampled_from(["DK", "NO", "DE", "GB"])) if has_country else "",
        library=draw(
            st.text(_PRINTABLE, max_size=11).filter(
                lambda text: not text or text.strip()
            )
        ),
    )


@given(basic_blocks(), st.sampled_from(BlockOrder))
def test_every_field_round_trips_in_both_orders(
    block: BasicBlock, order: BlockOrder
) -> None:
    """Any valid basic block decodes to itself from its 34-byte encoding."""
    memory = encode_basic_block(block, order=order)

    assert (block, order) == decode_basic_block(memory)


@given(basic_blocks(), st.sampled_from(BlockOrder))
def test_short_form_round_trips_when_the_library_fits(
    block: BasicBlock, order: BlockOrder
) -> None:
    """Any block whose library fits 9 characters round-trips through 32 bytes."""
    if len(block.library) > 9:
        block = BasicBlock(
            item_id=block.item_id,
            parts=block.parts,
            part=block.part,
            usage=block.usage,
            country=block.country,
            library=block.library[:9],
        )
    memory = encode_basic_block(block, size=32, order=order)

    assert 32 == len(memory)
    assert (block, order) == decode_basic_block(memory)


@given(st.binary(min_size=1, max_size=64))
def test_basic_block_crc_agrees_with_binascii(data: bytes) -> None:
    """Our CCITT-FALSE CRC equals binascii.crc_hqx with init 0xFFFF."""
    assert binascii.crc_hqx(data, 0xFFFF) == crc16_ccitt_false(data)
