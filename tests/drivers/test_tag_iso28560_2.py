"""ISO 28560-2: the primary item id data set of the reference's worked example.

Section 3.5 of the kiosk-drivers reference gives, for item 39999000123453, the
octet-string data set `61 0E` + ASCII and the integer data set
`11 06 24 60 FE 31 98 3D`. Checked by hand: precursor 0x61 = compaction 6
(octet string) << 4 | OID 1, length 0x0E = 14 characters; precursor 0x11 =
compaction 1 (integer) << 4 | OID 1, and 39999000123453 = 0x2460FE31983D
(6 bytes: 0x2460 = 9312 and 0xFE31983D = 254*2**24 + 49*2**16 + 152*256 + 61
= 4264663101, so 9312 * 4294967296 + 4264663101 = 39994735460352 + 4264663101
= 39999000123453).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.rfid.iso28560_2 import Compaction, decode_item_id, encode_item_id
from drivers.rfid.tags import TagDataError, TagFormatNotSupported

OCTET_EXAMPLE = bytes.fromhex("61 0E 33 39 39 39 39 30 30 30 31 32 33 34 35 33 00")
INTEGER_EXAMPLE = bytes.fromhex("11 06 24 60 FE 31 98 3D 00")


def test_integer_of_the_example_is_the_stated_bytes() -> None:
    """The hand sum in the module docstring agrees with Python's integers."""
    assert 4264663101 == 254 * 2**24 + 49 * 2**16 + 152 * 256 + 61
    assert 39999000123453 == 9312 * 2**32 + 4264663101 == 0x2460FE31983D


def test_octet_string_example_encodes_and_decodes() -> None:
    """The octet-string data set (then the 0x00 end) matches the reference."""
    assert OCTET_EXAMPLE == encode_item_id("39999000123453")
    assert "39999000123453" == decode_item_id(OCTET_EXAMPLE)


def test_integer_example_encodes_and_decodes() -> None:
    """The integer-compacted data set matches the reference."""
    assert INTEGER_EXAMPLE == encode_item_id("39999000123453", Compaction.INTEGER)
    assert "39999000123453" == decode_item_id(INTEGER_EXAMPLE)


def test_integer_compaction_refuses_leading_zeros() -> None:
    """Integer compaction would lose a leading zero, so it is refused."""
    with pytest.raises(TagDataError, match="leading zeros"):
        encode_item_id("0123", Compaction.INTEGER)


@pytest.mark.parametrize(
    "compaction",
    [
        Compaction.NUMERIC,
        Compaction.FIVE_BIT,
        Compaction.SIX_BIT,
        Compaction.SEVEN_BIT,
        Compaction.UTF8,
        Compaction.APPLICATION_DEFINED,
    ],
)
def test_unverified_compactions_are_not_yet_supported(compaction: Compaction) -> None:
    """Compactions the reference could not verify raise TagFormatNotSupported."""
    with pytest.raises(TagFormatNotSupported, match="not yet supported"):
        encode_item_id("3999", compaction)
    with pytest.raises(TagFormatNotSupported, match="not yet supported"):
        decode_item_id(bytes([(compaction << 4) | 1, 1, 0x33, 0]))


def test_offset_byte_and_high_oids_are_not_yet_supported() -> None:
    """An offset flag or an OID over 14 is reported unsupported, not guessed."""
    with pytest.raises(TagFormatNotSupported, match="offset"):
        decode_item_id(bytes.fromhex("E1 00 02 33 33 00"))
    with pytest.raises(TagFormatNotSupported, match="above 14"):
        decode_item_id(bytes.fromhex("6F 00 01 33 00"))


def test_blank_wrong_first_oid_and_overrun_are_errors() -> None:
    """Blank memory, a first data set that is not OID 1, and a short set are errors."""
    with pytest.raises(TagDataError, match="blank"):
        decode_item_id(bytes(8))
    with pytest.raises(TagDataError, match="OID 3"):
        decode_item_id(bytes.fromhex("63 02 44 4B 00"))
    with pytest.raises(TagDataError, match="past the end"):
        decode_item_id(bytes.fromhex("61 0E 33 39"))


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1))
def test_octet_string_ids_round_trip(item_id: str) -> None:
    """Any printable ASCII id up to 255 bytes round-trips as an octet string."""
    if len(item_id) > 255:
        item_id = item_id[:255]
    assert item_id == decode_item_id(encode_item_id(item_id))


@given(st.integers(min_value=0, max_value=10**40))
def test_integer_ids_round_trip(number: int) -> None:
    """Any digit string without leading zeros round-trips through integer compaction."""
    item_id = str(number)

    assert item_id == decode_item_id(encode_item_id(item_id, Compaction.INTEGER))
