"""Reader drivers against fields and links that misbehave: many tags, late replies,
replies about the wrong tag, and a reader that dribbles one byte at a time.

Timing runs on a fake clock that the stand-in streams advance as a real port's
timeout would, so nothing here sleeps or depends on the machine's speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import serial

from drivers.rfid import feig, three_m
from drivers.rfid.crc import crc16_feig
from drivers.rfid.emulation import Emulation, SimulatedTag, TagField
from drivers.rfid.feig import FeigReader
from drivers.rfid.reader import IncompleteInventory, ReaderTimeout, RfidReader
from drivers.rfid.simulator import ReaderSimulator
from drivers.rfid.tags import BasicBlock
from drivers.rfid.three_m import ThreeM810Reader

ON_LOAN = "E004010000000AAA"
ON_SHELF = "E004010000000BBB"


def uid_number(number: int) -> str:
    return f"E0040100{number:08X}"


def many_tags(count: int) -> TagField:
    return TagField(SimulatedTag(uid=uid_number(n)) for n in range(count))


class FakeClock:
    """Seconds that pass only when a stand-in stream says they do."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class _InFlight:
    due: float
    data: bytes


class LateReader:
    """A simulated reader whose every reply arrives `delay` seconds after the
    request, on a link whose read timeout is `timeout` (as pyserial reads)."""

    def __init__(
        self, emulation: Emulation, clock: FakeClock, *, delay: float, timeout: float
    ) -> None:
        self._emulation = emulation
        self._clock = clock
        self._delay = delay
        self.timeout = timeout
        self._in_flight: list[_InFlight] = []
        self._arrived = bytearray()

    def write(self, data: bytes, /) -> int:
        due = self._clock.now + self._delay
        for reply in self._emulation.receive(bytes(data)):
            self._in_flight.append(_InFlight(due, reply))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        until = self._clock.now + self.timeout
        # A reply due exactly when the read times out misses it, as on a real
        # port it may.
        while not self._arrived and self._in_flight and self._in_flight[0].due < until:
            reply = self._in_flight.pop(0)
            self._clock.now = max(self._clock.now, reply.due)
            self._arrived += reply.data
        if not self._arrived:
            self._clock.now = until
            return b""
        chunk = bytes(self._arrived[:size])
        del self._arrived[:size]
        return chunk

    def reset_input_buffer(self) -> None:
        self._arrived.clear()


class ScriptedReader:
    """A stream that answers the n-th request with the n-th list of frames."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self._pending = bytearray()
        self.timeout = 0.0

    def write(self, data: bytes, /) -> int:
        self.requests.append(bytes(data))
        if self.answers:
            self._pending += b"".join(self.answers.pop(0))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        chunk = bytes(self._pending[:size])
        del self._pending[:size]
        return chunk

    def reset_input_buffer(self) -> None:
        self._pending.clear()


class DrippingReader:
    """A reader that answers each request with the head of a long frame, then
    zeros, one byte per read, each just inside the timeout."""

    def __init__(self, clock: FakeClock, head: bytes, *, gap: float = 0.25) -> None:
        self._clock = clock
        self._head = head
        self._sent = 0
        self._gap = gap
        self.timeout = 0.3

    def write(self, data: bytes, /) -> int:
        self._sent = 0
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self._clock.now += self._gap
        byte = self._head[self._sent : self._sent + 1] or b"\0"
        self._sent += 1
        return byte

    def reset_input_buffer(self) -> None:
        pass


def two_tags() -> TagField:
    return TagField(
        [
            SimulatedTag.with_data(ON_LOAN, BasicBlock(item_id="1111"), afi=0xC2),
            SimulatedTag.with_data(ON_SHELF, BasicBlock(item_id="2222"), afi=0x07),
        ]
    )


def driver(protocol: str, stream: object, clock: FakeClock) -> RfidReader:
    if protocol == "feig":
        return FeigReader(stream, now=clock)  # type: ignore[arg-type]
    return ThreeM810Reader(stream, now=clock)  # type: ignore[arg-type]


# -- many tags ----------------------------------------------------------------------


def test_feig_inventory_of_sixty_tags_follows_more_data() -> None:
    """Sixty tags come back in three frames (24, 24, 12) through status 0x94."""
    simulator = ReaderSimulator(many_tags(60), "feig")
    stream = simulator.open_stream()

    uids = FeigReader(stream).inventory()

    assert uids == [uid_number(n) for n in range(60)]
    assert simulator.requests == 3


def test_feig_more_data_follow_up_sets_the_more_mode_bit() -> None:
    """After a 0x94 reply the driver sends B0 01 80 (inventory, MORE) for the rest."""
    first = bytes([1, 3, 0]) + bytes.fromhex(uid_number(1))
    second = bytes([1, 3, 0]) + bytes.fromhex(uid_number(2))
    stream = ScriptedReader(
        [
            [feig.encode_reply(0xB0, 0x94, first)],
            [feig.encode_reply(0xB0, 0x00, second)],
        ]
    )

    uids = FeigReader(stream).inventory()

    assert uids == [uid_number(1), uid_number(2)]
    follow_up = stream.requests[1]
    assert follow_up[:5] == bytes([0x07, 0xFF, 0xB0, 0x01, 0x80])
    assert int.from_bytes(follow_up[5:], "little") == crc16_feig(follow_up[:5])


def test_feig_follow_up_that_fails_still_gives_the_tags_already_read() -> None:
    """A reader that falls silent after a 0x94 reply gives IncompleteInventory
    holding the 24 UIDs it did send."""
    records = b"".join(bytes([3, 0]) + bytes.fromhex(uid_number(n)) for n in range(24))
    stream = ScriptedReader([[feig.encode_reply(0xB0, 0x94, bytes([24]) + records)]])

    with pytest.raises(IncompleteInventory) as raised:
        FeigReader(stream, retries=0).inventory()

    assert raised.value.uids == [uid_number(n) for n in range(24)]


def test_simulator_serves_a_crowded_field_over_tcp_and_keeps_serving() -> None:
    """Forty tags over loopback TCP: the simulator's thread survives and answers
    the next inventory too."""
    with ReaderSimulator(many_tags(40), "feig") as simulator:
        port = serial.serial_for_url(simulator.serve_tcp(), timeout=1.0)
        try:
            reader = FeigReader(port)
            assert len(reader.inventory()) == 40
            simulator.tags.take(uid_number(0))
            assert len(reader.inventory()) == 39
        finally:
            port.close()


@pytest.mark.parametrize(("in_field", "listed"), [(200, 200), (300, 255)])
def test_3m_inventory_lists_up_to_255_tags(in_field: int, listed: int) -> None:
    """The 3M 810 inventory's count is one byte: 200 tags are all listed, and of
    300 the reader reports the first 255 (a documented limit), not an error."""
    simulator = ReaderSimulator(many_tags(in_field), "3m")

    uids = ThreeM810Reader(simulator.open_stream()).inventory()

    assert uids == [uid_number(n) for n in range(listed)]


# -- late replies and replies about another tag -------------------------------------


@pytest.mark.parametrize("protocol", ["feig", "3m"])
def test_late_replies_are_not_taken_for_another_tags_afi(protocol: str) -> None:
    """Replies arriving just after the timeout: the shelved tag still reads as
    0x07 and the loaned one as 0xC2, whatever order they are asked in."""
    clock = FakeClock()
    simulator = ReaderSimulator(two_tags(), protocol)
    stream = LateReader(simulator.emulation(), clock, delay=0.35, timeout=0.3)
    reader = driver(protocol, stream, clock)

    assert reader.read_afi(ON_LOAN) == 0xC2
    assert reader.read_afi(ON_SHELF) == 0x07
    assert reader.read_afi(ON_LOAN) == 0xC2


@pytest.mark.parametrize("protocol", ["feig", "3m"])
def test_late_replies_are_not_taken_for_another_tags_blocks(protocol: str) -> None:
    """Block reads (which carry no UID in Feig replies) stay with their tag after
    a late reply, because the driver throws away what arrives after a retry."""
    clock = FakeClock()
    simulator = ReaderSimulator(two_tags(), protocol)
    stream = LateReader(simulator.emulation(), clock, delay=0.35, timeout=0.3)
    reader = driver(protocol, stream, clock)

    first = reader.read_blocks(ON_LOAN, 0, 2)
    second = reader.read_blocks(ON_SHELF, 0, 2)

    assert first[3:7] == b"1111"
    assert second[3:7] == b"2222"


def test_feig_system_information_about_another_tag_is_skipped() -> None:
    """A stale system-information reply for tag A ahead of tag B's is skipped:
    B's AFI is read from the reply that names B."""
    reply_a = bytes([0x0F]) + bytes.fromhex(ON_LOAN) + bytes([0xC2, 3, 27, 1])
    reply_b = bytes([0x0F]) + bytes.fromhex(ON_SHELF) + bytes([0x07, 3, 27, 1])
    stream = ScriptedReader(
        [[feig.encode_reply(0xB0, 0, reply_a), feig.encode_reply(0xB0, 0, reply_b)]]
    )

    assert FeigReader(stream).read_afi(ON_SHELF) == 0x07


def test_3m_afi_reply_about_another_tag_is_skipped() -> None:
    """A stale AFI reply for tag A ahead of tag B's is skipped by its UID."""
    reply_a = bytes([three_m.CMD_READ_AFI, 0]) + bytes.fromhex(ON_LOAN) + b"\xc2"
    reply_b = bytes([three_m.CMD_READ_AFI, 0]) + bytes.fromhex(ON_SHELF) + b"\x07"
    stream = ScriptedReader(
        [[three_m.encode_frame(reply_a), three_m.encode_frame(reply_b)]]
    )

    assert ThreeM810Reader(stream).read_afi(ON_SHELF) == 0x07


# -- a reader that dribbles -----------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "head"), [("feig", b"\xff"), ("3m", b"\xd6\x07\xff")]
)
def test_dribbling_reader_times_out_within_the_deadline(
    protocol: str, head: bytes
) -> None:
    """One byte every 0.25 s (inside the 0.3 s timeout) ends in ReaderTimeout
    after the 5 s deadline, not after minutes of bytes."""
    clock = FakeClock()
    stream = DrippingReader(clock, head)
    reader = driver(protocol, stream, clock)

    with pytest.raises(ReaderTimeout, match="within 5 s"):
        reader.inventory()

    assert clock.now <= 5.25


def test_feig_reader_repeating_its_records_lists_each_tag_once() -> None:
    """A reader that answers 0x94 with the same records every time lists each
    tag once, and stops after MAX_FOLLOW_UPS with IncompleteInventory."""
    records = b"".join(bytes([3, 0]) + bytes.fromhex(uid_number(n)) for n in range(3))
    again = feig.encode_reply(0xB0, 0x94, bytes([3]) + records)
    stream = ScriptedReader([[again]] * (feig.MAX_FOLLOW_UPS + 1))

    with pytest.raises(IncompleteInventory) as raised:
        FeigReader(stream).inventory()

    assert [uid_number(n) for n in range(3)] == raised.value.uids
    assert feig.MAX_FOLLOW_UPS + 1 == len(stream.requests)
