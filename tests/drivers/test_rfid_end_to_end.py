"""Reader drivers against the reader simulator, over loopback TCP and ptys.

Every test runs for both protocols (Feig ISO host, 3M 810) on three byte
streams: `socket://` to the simulator's TCP port, a pty the simulator opens,
and one end of a socat pty pair with the simulator on the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import serial

from drivers.rfid.emulation import SimulatedTag, TagField
from drivers.rfid.feig import FeigReader
from drivers.rfid.reader import (
    NotSupportedByReader,
    NotSupportedByTag,
    ReaderError,
    ReaderTimeout,
    RfidReader,
    TagLeftField,
)
from drivers.rfid.simulator import ReaderSimulator
from drivers.rfid.tags import BasicBlock, BlockOrder, decode_basic_block
from drivers.rfid.three_m import ThreeM810Reader

UID = "E004010000000001"
OTHER_UID = "E004010000000002"
TIMEOUT = 1.0
SHORT_TIMEOUT = 0.25
WORKED_EXAMPLE = BasicBlock(
    item_id="39999000123453", parts=2, part=1, country="DK", library="999999"
)


def make_tag(uid: str = UID, *, eas: bool | None = True) -> SimulatedTag:
    return SimulatedTag.with_data(uid, WORKED_EXAMPLE, afi=0x07, eas=eas)


class Bench:
    """A simulator, its field, the open stream and the driver under test."""

    def __init__(self, simulator: ReaderSimulator, port: Any, reader: RfidReader):
        self.simulator = simulator
        self.field = simulator.tags
        self.port = port
        self.reader = reader


@pytest.fixture(params=["feig", "3m"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["tcp", "pty", "socat"])
def bench(request: pytest.FixtureRequest, protocol: str) -> Iterator[Bench]:
    simulator = ReaderSimulator(TagField([make_tag()]), protocol)
    if request.param == "tcp":
        port = serial.serial_for_url(simulator.serve_tcp(), timeout=TIMEOUT)
    elif request.param == "pty":
        port = serial.Serial(simulator.serve_pty(), timeout=TIMEOUT)
    else:
        ours, theirs = request.getfixturevalue("pty_pair")
        simulator.serve_device(ours)
        port = serial.Serial(theirs, timeout=TIMEOUT)
    reader: RfidReader = (
        FeigReader(port, retries=2) if protocol == "feig" else ThreeM810Reader(port)
    )
    try:
        yield Bench(simulator, port, reader)
    finally:
        port.close()
        simulator.close()


def test_inventory_follows_tags_into_and_out_of_the_field(bench: Bench) -> None:
    """Inventory lists the tags in the field as they are put in and taken out."""
    assert [UID] == bench.reader.inventory()

    bench.field.put(make_tag(OTHER_UID))
    assert [UID, OTHER_UID] == bench.reader.inventory()

    bench.field.take(UID)
    bench.field.take(OTHER_UID)
    assert [] == bench.reader.inventory()


def test_worked_example_is_read_through_the_reader(bench: Bench) -> None:
    """Nine blocks read from the tag decode to the worked example's basic block."""
    memory = bench.reader.read_blocks(UID, 0, 9)

    assert (WORKED_EXAMPLE, BlockOrder.NATURAL) == decode_basic_block(memory)


def test_written_blocks_and_afi_read_back(bench: Bench) -> None:
    """Blocks written from block 2 and a new AFI are what the tag then holds."""
    bench.reader.write_blocks(UID, 2, b"ABCDEFGH")
    bench.reader.write_afi(UID, 0xC2)

    assert b"ABCDEFGH" == bench.reader.read_blocks(UID, 2, 2)
    assert 0xC2 == bench.reader.read_afi(UID)
    tag = bench.field.snapshot(UID)
    assert tag is not None
    assert b"\x11\x02\x01" + b"3" + b"9999" + b"ABCDEFGH" == bytes(tag.memory[:16])


def test_tag_leaving_mid_write_is_reported(bench: Bench) -> None:
    """A tag that leaves after its first block is written raises TagLeftField."""
    bench.field.leave_during_next_write(UID)

    with pytest.raises(TagLeftField, match="left the field"):
        bench.reader.write_blocks(UID, 0, b"WXYZ" * 3)

    assert [] == bench.reader.inventory()


def test_reading_a_tag_not_in_the_field_raises_tag_left_field(bench: Bench) -> None:
    """Reading a tag that is gone raises TagLeftField, not a generic error."""
    bench.field.take(UID)

    with pytest.raises(TagLeftField):
        bench.reader.read_afi(UID)


def test_bad_crc_reply_is_asked_for_again(bench: Bench) -> None:
    """A reply with a bad CRC is discarded and the request sent again."""
    bench.simulator.corrupt_next_replies(1)

    assert 0x07 == bench.reader.read_afi(UID)


def test_truncated_reply_is_asked_for_again(bench: Bench) -> None:
    """A reply cut short is abandoned after the timeout and the request sent again."""
    bench.port.timeout = SHORT_TIMEOUT
    bench.simulator.truncate_next_replies(1)

    assert [UID] == bench.reader.inventory()


def test_bad_crcs_on_every_attempt_end_in_a_reader_error(bench: Bench) -> None:
    """Retries are limited: endless bad CRCs give a ReaderError naming the CRC."""
    bench.simulator.corrupt_next_replies(20)

    with pytest.raises(ReaderError, match="bad CRC") as raised:
        bench.reader.inventory()

    assert not isinstance(raised.value, ReaderTimeout)


def test_silent_reader_raises_reader_timeout(protocol: str) -> None:
    """A reader that answers nothing over TCP gives ReaderTimeout, not a hang."""
    with ReaderSimulator(TagField([make_tag()]), protocol) as simulator:
        simulator.silent = True
        port = serial.serial_for_url(simulator.serve_tcp(), timeout=0.2)
        reader: RfidReader = (
            FeigReader(port, retries=1)
            if protocol == "feig"
            else ThreeM810Reader(port, retries=1)
        )
        with pytest.raises(ReaderTimeout):
            reader.inventory()
        port.close()


def test_silent_reader_is_asked_retries_plus_one_times(protocol: str) -> None:
    """The request is sent once plus `retries` times, then given up."""
    simulator = ReaderSimulator(TagField([make_tag()]), protocol)
    simulator.silent = True
    stream = simulator.open_stream()
    reader: RfidReader = (
        FeigReader(stream, retries=3)
        if protocol == "feig"
        else ThreeM810Reader(stream, retries=3)
    )

    with pytest.raises(ReaderTimeout):
        reader.inventory()

    assert 4 == simulator.requests


def test_eas_is_set_cleared_and_read_on_feig() -> None:
    """Over Feig, the EAS bit is set, read and cleared on a tag with EAS."""
    with ReaderSimulator(TagField([make_tag(eas=False)]), "feig") as simulator:
        port = serial.serial_for_url(simulator.serve_tcp(), timeout=TIMEOUT)
        reader = FeigReader(port)

        assert reader.read_eas(UID) is False
        reader.write_eas(UID, True)
        assert reader.read_eas(UID) is True
        reader.write_eas(UID, False)
        assert reader.read_eas(UID) is False
        port.close()


def test_eas_on_a_tag_without_it_is_not_supported_by_tag() -> None:
    """Over Feig, EAS commands to a tag without EAS raise NotSupportedByTag."""
    with ReaderSimulator(TagField([make_tag(eas=None)]), "feig") as simulator:
        port = serial.serial_for_url(simulator.serve_tcp(), timeout=TIMEOUT)
        reader = FeigReader(port)

        with pytest.raises(NotSupportedByTag):
            reader.read_eas(UID)
        with pytest.raises(NotSupportedByTag):
            reader.write_eas(UID, True)
        port.close()


def test_eas_read_of_a_departed_tag_is_tag_left_field() -> None:
    """Over Feig, silence to the EAS alarm from a tag that left is TagLeftField."""
    with ReaderSimulator(TagField([make_tag(eas=True)]), "feig") as simulator:
        port = serial.serial_for_url(simulator.serve_tcp(), timeout=TIMEOUT)
        simulator.tags.take(UID)

        with pytest.raises(TagLeftField):
            FeigReader(port).read_eas(UID)
        port.close()


def test_3m_810_has_no_eas() -> None:
    """The 3M 810 protocol has no EAS command, which the driver says plainly."""
    with ReaderSimulator(TagField([make_tag()]), "3m") as simulator:
        port = serial.serial_for_url(simulator.serve_tcp(), timeout=TIMEOUT)

        with pytest.raises(NotSupportedByReader, match="use AFI"):
            ThreeM810Reader(port).read_eas(UID)
        port.close()
