"""Protocol vectors: request bytes to reply bytes, for each reader protocol.

Frames are laid out by hand from the frame formats in `drivers/rfid/feig.py`
and `drivers/rfid/three_m.py`; every LEN byte is counted by hand in the
comment above it. CRCs are either the published values of the kiosk-drivers
reference (section 4), or appended by the helpers below, which compute them
with binascii's CCITT CRC, a different implementation from the drivers' own.

The driver side runs against `ScriptedReader`, which stands in for reader
hardware: it checks each request frame byte for byte and answers the
scripted reply bytes; a short or empty reply is what a serial port returns
when its timeout passes.
"""

from __future__ import annotations

import binascii

import pytest

from drivers.rfid.crc import crc16_3m, crc16_feig
from drivers.rfid.emulation import (
    FeigEmulation,
    SimulatedTag,
    TagField,
    ThreeMEmulation,
)
from drivers.rfid.feig import FeigReader
from drivers.rfid.reader import (
    NotSupportedByTag,
    ReaderError,
    ReaderTimeout,
    TagLeftField,
)
from drivers.rfid.three_m import ThreeM810Reader

UID = "E004010000000001"
UID_B = "E0040100000000A2"


def _reflect(value: int, bits: int) -> int:
    return int(f"{value:0{bits}b}"[::-1], 2)


def feig(hex_frame: str) -> bytes:
    """The frame, then its Feig CRC (reflected CCITT, preset 0xFFFF), LSB first.

    Computed independently: the reflected CRC equals the plain CCITT CRC of the
    bit-reversed bytes, bit-reversed (binascii.crc_hqx is the plain one).
    """
    body = bytes.fromhex(hex_frame)
    plain = binascii.crc_hqx(bytes(_reflect(b, 8) for b in body), 0xFFFF)
    return body + _reflect(plain, 16).to_bytes(2, "little")


def m3(hex_frame: str) -> bytes:
    """The frame (D6, LEN, payload), then its 3M CRC over LEN and payload.

    Computed independently: binascii's CCITT-FALSE, XOR 0xFFFF, MSB first.
    """
    frame = bytes.fromhex(hex_frame)
    return frame + (binascii.crc_hqx(frame[1:], 0xFFFF) ^ 0xFFFF).to_bytes(2, "big")


class ScriptedReader:
    """A reader's wire, scripted: expected request bytes -> reply bytes."""

    def __init__(self, script: list[tuple[bytes, bytes]]) -> None:
        self.script = list(script)
        self.pending = bytearray()
        self.discards = 0

    def write(self, data: bytes, /) -> int:
        assert self.script, f"unexpected request {data.hex(' ')}"
        expected, reply = self.script.pop(0)
        assert expected.hex(" ") == data.hex(" ")
        self.pending += reply
        return len(data)

    def read(self, size: int = 1) -> bytes:
        chunk = bytes(self.pending[:size])
        del self.pending[:size]
        return chunk

    def reset_input_buffer(self) -> None:
        self.discards += 1
        self.pending.clear()


# --- CRC functions against the published values -------------------------------


def test_published_crcs() -> None:
    """The drivers' CRCs give the reference's published and captured values."""
    # Feig inventory request 07 FF B0 01 00 -> CRC 0x561C, sent "1C 56".
    assert 0x561C == crc16_feig(bytes.fromhex("07 FF B0 01 00"))
    # 3M captures: probe 00 05 04 00 11 -> 0x8C66; its reply -> 0x7250;
    # inventory 00 05 FE 00 05 -> 0xFA40.
    assert 0x8C66 == crc16_3m(bytes.fromhex("00 05 04 00 11"))
    assert 0x7250 == crc16_3m(bytes.fromhex("00 09 04 00 11 0A 05 00 02"))
    assert 0xFA40 == crc16_3m(bytes.fromhex("00 05 FE 00 05"))


def test_independent_crc_helpers_agree_with_the_published_frames() -> None:
    """The test's own CRC helpers reproduce the published frames."""
    assert bytes.fromhex("07 FF B0 01 00 1C 56") == feig("07 FF B0 01 00")
    assert bytes.fromhex("D6 00 05 FE 00 05 FA 40") == m3("D6 00 05 FE 00 05")


# --- Feig ISO host: the driver ---------------------------------------------------

FEIG_INVENTORY = bytes.fromhex("07 FF B0 01 00 1C 56")
# LEN 0x1B = 27: LEN, ADR, CMD, STATUS (4) + count (1) + 2 x 10-byte records + CRC (2).
FEIG_INVENTORY_TWO = feig(
    "1B FF B0 00 02 03 3E E004010000000001 03 00 E0040100000000A2"
)
# LEN 0x11 = 17: LEN, ADR, CMD (3) + 23 01 + UID (8) + first, count (2) + CRC (2).
FEIG_READ_TWO = feig("11 FF B0 23 01 E004010000000001 00 02")
# LEN 0x12 = 18: 4 + count, size (2) + 2 x (security byte + 4 data bytes) + CRC.
FEIG_READ_TWO_REPLY = feig("12 FF B0 00 02 04 00 11020133 00 39393939")
FEIG_NO_TRANSPONDER = feig("06 FF B0 01")


def test_feig_inventory_request_and_reply() -> None:
    """Inventory is 07 FF B0 01 00 1C 56; the reply's records give the UIDs."""
    wire = ScriptedReader([(FEIG_INVENTORY, FEIG_INVENTORY_TWO)])

    assert [UID, UID_B] == FeigReader(wire).inventory()


def test_feig_empty_field_is_status_no_transponder() -> None:
    """Status 0x01 to an inventory means an empty field, not an error."""
    wire = ScriptedReader([(FEIG_INVENTORY, FEIG_NO_TRANSPONDER)])

    assert [] == FeigReader(wire).inventory()


def test_feig_read_multiple_blocks() -> None:
    """Read multiple (B0 23) strips each block's security byte."""
    wire = ScriptedReader([(FEIG_READ_TWO, FEIG_READ_TWO_REPLY)])

    assert bytes.fromhex("11020133 39393939") == FeigReader(wire).read_blocks(UID, 0, 2)


def test_feig_write_multiple_blocks() -> None:
    """Write multiple (B0 24) sends first block, count, block size and data."""
    # LEN 0x16 = 22: 3 + 24 01 + UID (8) + 02 01 04 + 4 data bytes + CRC (2).
    request = feig("16 FF B0 24 01 E004010000000001 02 01 04 41424344")
    wire = ScriptedReader([(request, feig("06 FF B0 00"))])

    FeigReader(wire).write_blocks(UID, 2, b"ABCD")

    assert [] == wire.script


def test_feig_write_and_read_afi() -> None:
    """Write AFI is B0 27; the AFI is read from system information (B0 2B)."""
    # LEN 0x10 = 16: 3 + 27 01 + UID (8) + AFI + CRC (2).
    write = feig("10 FF B0 27 01 E004010000000001 C2")
    # LEN 0x0F = 15: 3 + 2B 01 + UID (8) + CRC (2).
    info = feig("0F FF B0 2B 01 E004010000000001")
    # LEN 0x13 = 19: 4 + DSFID + UID (8) + AFI + MEM-SIZE (2) + IC-REF + CRC (2).
    info_reply = feig("13 FF B0 00 3E E004010000000001 C2 03 1B 01")
    wire = ScriptedReader([(write, feig("06 FF B0 00")), (info, info_reply)])
    reader = FeigReader(wire)

    reader.write_afi(UID, 0xC2)

    assert 0xC2 == reader.read_afi(UID)


def test_feig_status_no_transponder_to_a_tag_command_is_tag_left_field() -> None:
    """Status 0x01 to a read addressed to a tag raises TagLeftField."""
    wire = ScriptedReader([(FEIG_READ_TWO, FEIG_NO_TRANSPONDER)])

    with pytest.raises(TagLeftField):
        FeigReader(wire).read_blocks(UID, 0, 2)


def test_feig_eas_on_a_tag_without_eas_is_not_supported() -> None:
    """Status 0x95 with ISO error 0x01 to an NXP EAS command is NotSupportedByTag."""
    # LEN 0x10 = 16: 3 + 04 (NXP) A5 (EAS alarm) 01 (addressed) + UID (8) + CRC.
    request = feig("10 FF B1 04 A5 01 E004010000000001")
    wire = ScriptedReader([(request, feig("07 FF B1 95 01"))])

    with pytest.raises(NotSupportedByTag):
        FeigReader(wire).read_eas(UID)


def test_feig_error_status_is_named_and_not_retried() -> None:
    """An RF warning (0x84) is raised at once, naming the status."""
    wire = ScriptedReader([(FEIG_READ_TWO, feig("06 FF B0 84"))])

    with pytest.raises(ReaderError, match="0x84 rf warning"):
        FeigReader(wire).read_blocks(UID, 0, 2)


def test_feig_rf_communication_error_is_retried() -> None:
    """A disturbed air link (0x83) is asked again and the good reply used."""
    wire = ScriptedReader(
        [(FEIG_READ_TWO, feig("06 FF B0 83")), (FEIG_READ_TWO, FEIG_READ_TWO_REPLY)]
    )

    assert 8 == len(FeigReader(wire).read_blocks(UID, 0, 2))


def test_feig_bad_crc_is_discarded_and_asked_again() -> None:
    """A reply with a bad CRC is thrown away and the request sent again."""
    damaged = FEIG_READ_TWO_REPLY[:-1] + bytes([FEIG_READ_TWO_REPLY[-1] ^ 0x01])
    wire = ScriptedReader(
        [(FEIG_READ_TWO, damaged), (FEIG_READ_TWO, FEIG_READ_TWO_REPLY)]
    )

    assert 8 == len(FeigReader(wire).read_blocks(UID, 0, 2))
    assert 2 == wire.discards  # input flushed before each of the two attempts


def test_feig_truncated_reply_is_asked_again() -> None:
    """A reply cut off before its LEN is reached is abandoned and asked again."""
    wire = ScriptedReader(
        [
            (FEIG_READ_TWO, FEIG_READ_TWO_REPLY[:7]),
            (FEIG_READ_TWO, FEIG_READ_TWO_REPLY),
        ]
    )

    assert 8 == len(FeigReader(wire).read_blocks(UID, 0, 2))


def test_feig_impossible_length_byte_resyncs() -> None:
    """A length byte under 6 cannot start a reply: the input is flushed, asked again."""
    wire = ScriptedReader(
        [
            (FEIG_INVENTORY, b"\x03" + FEIG_INVENTORY_TWO),
            (FEIG_INVENTORY, FEIG_INVENTORY_TWO),
        ]
    )

    assert [UID, UID_B] == FeigReader(wire).inventory()
    assert 2 == wire.discards  # the rest of the bad chunk went before attempt 2


def test_feig_stale_reply_to_another_command_is_skipped() -> None:
    """A late reply to another command (0x65) before ours is skipped."""
    wire = ScriptedReader([(FEIG_INVENTORY, feig("06 FF 65 00") + FEIG_INVENTORY_TWO)])

    assert [UID, UID_B] == FeigReader(wire).inventory()


def test_feig_late_reply_waiting_before_a_request_is_flushed() -> None:
    """A late reply already waiting is dropped, not taken as the next answer."""
    wire = ScriptedReader([(FEIG_INVENTORY, FEIG_NO_TRANSPONDER)])
    wire.pending += FEIG_INVENTORY_TWO

    assert [] == FeigReader(wire).inventory()


def test_feig_retries_are_limited() -> None:
    """Bad CRCs on all 1 + 2 attempts end in a ReaderError, not a hang."""
    damaged = FEIG_INVENTORY_TWO[:-2] + b"\x00\x00"
    wire = ScriptedReader([(FEIG_INVENTORY, damaged)] * 3)

    with pytest.raises(ReaderError, match="after 3 attempts: bad CRC"):
        FeigReader(wire, retries=2).inventory()


def test_feig_silence_is_reader_timeout() -> None:
    """No reply to any attempt raises ReaderTimeout."""
    wire = ScriptedReader([(FEIG_INVENTORY, b"")] * 3)

    with pytest.raises(ReaderTimeout):
        FeigReader(wire, retries=2).inventory()


# --- 3M 810: the driver ------------------------------------------------------------

M3_INVENTORY = bytes.fromhex("D6 00 05 FE 00 05 FA 40")
# LEN 0x0F = 15: payload FE 00 00 05 + count (5) + UID (8), + CRC (2).
M3_INVENTORY_ONE = m3("D6 00 0F FE 00 00 05 01 E004010000000001")
# LEN 0x07 = 7: payload FE 00 00 05 00 (5) + CRC (2).
M3_INVENTORY_NONE = m3("D6 00 07 FE 00 00 05 00")
# LEN 0x0D = 13: payload 02 + UID (8) + first, count (2) = 11, + CRC (2).
M3_READ_TWO = m3("D6 00 0D 02 E004010000000001 00 02")
# LEN 0x19 = 25: 02 00 + UID (8) + count + 2 x (block number LE (2) + 4 bytes), + 2.
M3_READ_TWO_REPLY = m3("D6 00 19 02 00 E004010000000001 02 0000 11020133 0100 39393939")
# LEN 0x0C = 12: payload 09 + UID (8) + AFI = 10, + CRC (2).
M3_WRITE_AFI = m3("D6 00 0C 09 E004010000000001 C2")


def test_3m_inventory_request_and_reply() -> None:
    """Inventory is D6 00 05 FE 00 05 FA 40; the reply lists 8-byte UIDs."""
    wire = ScriptedReader([(M3_INVENTORY, M3_INVENTORY_ONE)])

    assert [UID] == ThreeM810Reader(wire).inventory()


def test_3m_read_blocks_checks_block_numbers() -> None:
    """Read blocks (02) returns the data without the block numbers."""
    wire = ScriptedReader([(M3_READ_TWO, M3_READ_TWO_REPLY)])

    assert bytes.fromhex("11020133 39393939") == ThreeM810Reader(wire).read_blocks(
        UID, 0, 2
    )


def test_3m_read_afi() -> None:
    """Read AFI (0A) answers 0A 00 UID AFI."""
    # LEN 0x0B = 11: payload 0A + UID (8) = 9, + CRC (2).
    request = m3("D6 00 0B 0A E004010000000001")
    # LEN 0x0D = 13: payload 0A 00 + UID (8) + AFI = 11, + CRC (2).
    wire = ScriptedReader([(request, m3("D6 00 0D 0A 00 E004010000000001 07"))])

    assert 0x07 == ThreeM810Reader(wire).read_afi(UID)


def test_3m_failed_afi_write_is_retried_while_the_tag_is_present() -> None:
    """After 09 06 the driver checks the tag is there, then writes again."""
    failed = m3("D6 00 0C 09 06 E004010000000001")
    done = m3("D6 00 0C 09 00 E004010000000001")
    wire = ScriptedReader(
        [
            (M3_WRITE_AFI, failed),
            (M3_INVENTORY, M3_INVENTORY_ONE),
            (M3_WRITE_AFI, done),
        ]
    )

    ThreeM810Reader(wire).write_afi(UID, 0xC2)

    assert [] == wire.script


def test_3m_failure_with_the_tag_gone_is_tag_left_field() -> None:
    """After 02 06, an inventory without the tag raises TagLeftField."""
    failed = m3("D6 00 0C 02 06 E004010000000001")
    wire = ScriptedReader([(M3_READ_TWO, failed), (M3_INVENTORY, M3_INVENTORY_NONE)])

    with pytest.raises(TagLeftField):
        ThreeM810Reader(wire).read_blocks(UID, 0, 2)


def test_3m_failures_are_limited() -> None:
    """A tag that stays but keeps failing gives a ReaderError after the retries."""
    failed = m3("D6 00 0C 09 06 E004010000000001")
    wire = ScriptedReader(
        [(M3_WRITE_AFI, failed), (M3_INVENTORY, M3_INVENTORY_ONE)] * 2
    )

    with pytest.raises(ReaderError, match="2 times"):
        ThreeM810Reader(wire, retries=1).write_afi(UID, 0xC2)


def test_3m_block_write_starts_at_block_0_and_reads_back() -> None:
    """Write blocks (04) is UID 00 count 00 data, then a read-back of the blocks."""
    # LEN 0x12 = 18: payload 04 + UID (8) + 00 01 00 + 4 bytes = 16, + CRC (2).
    write = m3("D6 00 12 04 E004010000000001 00 01 00 41424344")
    # LEN 0x0D = 13: payload 04 00 + UID (8) + count = 11, + CRC (2).
    written = m3("D6 00 0D 04 00 E004010000000001 01")
    read = m3("D6 00 0D 02 E004010000000001 00 01")
    # LEN 0x13 = 19: 02 00 + UID (8) + count + block 0000 + 4 bytes = 17, + 2.
    read_reply = m3("D6 00 13 02 00 E004010000000001 01 0000 41424344")
    wire = ScriptedReader([(write, written), (read, read_reply)])

    ThreeM810Reader(wire).write_blocks(UID, 0, b"ABCD")

    assert [] == wire.script


def test_3m_block_write_that_reads_back_wrong_is_written_again() -> None:
    """A write acknowledged but read back different is sent again, within limits."""
    write = m3("D6 00 12 04 E004010000000001 00 01 00 41424344")
    written = m3("D6 00 0D 04 00 E004010000000001 01")
    read = m3("D6 00 0D 02 E004010000000001 00 01")
    stale = m3("D6 00 13 02 00 E004010000000001 01 0000 00000000")
    good = m3("D6 00 13 02 00 E004010000000001 01 0000 41424344")
    wire = ScriptedReader(
        [(write, written), (read, stale), (write, written), (read, good)]
    )

    ThreeM810Reader(wire).write_blocks(UID, 0, b"ABCD")

    assert [] == wire.script
    endless = ScriptedReader([(write, written), (read, stale)] * 2)
    with pytest.raises(ReaderError, match="did not read back the same"):
        ThreeM810Reader(endless, retries=1).write_blocks(UID, 0, b"ABCD")


def test_3m_noise_before_the_start_byte_is_skipped() -> None:
    """Bytes before D6 are skipped; the frame after them is used."""
    wire = ScriptedReader([(M3_INVENTORY, b"\x00\xff\x13" + M3_INVENTORY_ONE)])

    assert [UID] == ThreeM810Reader(wire).inventory()


def test_3m_bad_crc_and_truncation_are_asked_again() -> None:
    """A bad CRC, then a truncated frame, then a good one: the good one is used."""
    damaged = M3_INVENTORY_ONE[:-1] + bytes([M3_INVENTORY_ONE[-1] ^ 0x80])
    wire = ScriptedReader(
        [
            (M3_INVENTORY, damaged),
            (M3_INVENTORY, M3_INVENTORY_ONE[:9]),
            (M3_INVENTORY, M3_INVENTORY_ONE),
        ]
    )

    assert [UID] == ThreeM810Reader(wire).inventory()
    assert 3 == wire.discards  # input flushed before each of the three attempts


def test_3m_silence_is_reader_timeout() -> None:
    """No reply to any attempt raises ReaderTimeout."""
    wire = ScriptedReader([(M3_INVENTORY, b"")] * 2)

    with pytest.raises(ReaderTimeout):
        ThreeM810Reader(wire, retries=1).inventory()


# --- The simulator's side: the same frames, answered --------------------------------


def _field() -> TagField:
    memory = bytearray(28 * 4)
    memory[:8] = bytes.fromhex("11020133 39393939")
    return TagField([SimulatedTag(uid=UID, memory=memory, afi=0x07, dsfid=0x3E)])


def test_feig_emulation_answers_inventory_and_reads() -> None:
    """The simulated Feig reader answers the request frames with the reply frames."""
    emulation = FeigEmulation(_field())
    # LEN 0x11 = 17: 4 + count + one 10-byte record + CRC (2).
    inventory_one = feig("11 FF B0 00 01 03 3E E004010000000001")

    assert [inventory_one] == emulation.receive(FEIG_INVENTORY)
    assert [FEIG_READ_TWO_REPLY] == emulation.receive(FEIG_READ_TWO)


def test_feig_emulation_frames_byte_by_byte_and_several_per_chunk() -> None:
    """Requests fed a byte at a time, or two in one chunk, are each answered once."""
    emulation = FeigEmulation(_field())

    replies = []
    for byte in FEIG_READ_TWO:
        replies += emulation.receive(bytes([byte]))

    assert [FEIG_READ_TWO_REPLY] == replies
    assert [FEIG_READ_TWO_REPLY] * 2 == emulation.receive(FEIG_READ_TWO * 2)


def test_feig_emulation_drops_bad_crc_and_answers_the_next_frame() -> None:
    """A request with a bad CRC gets no reply; the next good one does."""
    emulation = FeigEmulation(_field())
    damaged = FEIG_READ_TWO[:-1] + b"\x00"

    assert [] == emulation.receive(damaged)
    assert [FEIG_READ_TWO_REPLY] == emulation.receive(FEIG_READ_TWO)


def test_feig_emulation_reports_missing_tags_and_unknown_commands() -> None:
    """A tag not in the field gets 0x01; an unknown command 0x80."""
    emulation = FeigEmulation(TagField())

    assert [FEIG_NO_TRANSPONDER] == emulation.receive(FEIG_READ_TWO)
    assert [feig("06 FF 65 80")] == emulation.receive(feig("05 FF 65"))


def test_3m_emulation_answers_inventory_and_reads() -> None:
    """The simulated 3M reader answers the request frames with the reply frames."""
    emulation = ThreeMEmulation(_field())

    assert [M3_INVENTORY_ONE] == emulation.receive(M3_INVENTORY)
    assert [M3_READ_TWO_REPLY] == emulation.receive(b"\x00" + M3_READ_TWO)


def test_3m_emulation_drops_bad_crc_and_fails_missing_tags() -> None:
    """A bad-CRC request is dropped; a request for an absent tag gets `<cmd> 06`."""
    emulation = ThreeMEmulation(TagField())

    assert [] == emulation.receive(M3_READ_TWO[:-1] + b"\x00")
    assert [m3("D6 00 0C 02 06 E004010000000001")] == emulation.receive(M3_READ_TWO)
