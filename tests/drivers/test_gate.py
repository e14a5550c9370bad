"""The gate's logic on a Twisted `Clock`, with an in-test stand-in for the reader.

The stand-in implements the `RfidReader` interface (tags in a field, AFI and EAS
per tag, unplugging); the byte protocols are tested with the real drivers and
the simulator in `test_gate_end_to_end.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from drivers.events import DeviceBack, DeviceLost
from drivers.gate.alarm import SilentAlarm
from drivers.gate.config import GateConfig, parse_gate_config
from drivers.gate.gate import Gate, GateEvent, ItemExplained, TagPassed, mask_item_id
from drivers.gate.lookup import ItemFacts, SipLookupError
from drivers.gate.readers import decode_tag
from drivers.gate.security import TagContent
from drivers.rfid.reader import (
    IncompleteInventory,
    NotSupportedByTag,
    ReaderTimeout,
    TagLeftField,
)
from sip2server.protocol import CirculationStatus

SHELF_UID = "E004010000000001"
LOAN_UID = "E004010000000002"
ODD_UID = "E004010000000003"


@dataclass
class FakeTag:
    """A tag as the stand-in reader holds it."""

    afi: int
    eas: bool | None = None
    item_id: str | None = None
    leaves_mid_read: bool = False
    patron_card: bool = False
    silences_reader_on: str | None = None
    """"afi" or "blocks": the reader stops answering when this is read."""


class FakeReader:
    """Tags in a field; `unplugged` makes every call time out, as a dead port does."""

    def __init__(self) -> None:
        self.field: dict[str, FakeTag] = {}
        self.unplugged = False
        self.closed = False
        self.inventory_cut_after: int | None = None
        self.on_read: Callable[[str], None] = lambda uid: None

    def _check(self) -> None:
        if self.unplugged:
            raise ReaderTimeout("no answer from the reader within 1 s")

    def _silence_if(self, uid: str, what: str) -> None:
        if self.field[uid].silences_reader_on == what:
            self.unplugged = True
            self._check()

    def inventory(self) -> list[str]:
        self._check()
        uids = list(self.field)
        if self.inventory_cut_after is not None:
            cut = self.inventory_cut_after
            raise IncompleteInventory(f"inventory cut short after {cut}", uids[:cut])
        return uids

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        self._check()
        self._silence_if(uid, "blocks")
        tag = self.field[uid]
        kind = b"P" if tag.patron_card else b"I"
        return (kind + (tag.item_id or "").encode()).ljust(count * 4, b"\0")

    def write_blocks(self, uid: str, first: int, data: bytes) -> None:
        raise NotImplementedError

    def read_afi(self, uid: str) -> int:
        self._check()
        self.on_read(uid)
        self._silence_if(uid, "afi")
        tag = self.field[uid]
        if tag.leaves_mid_read:
            raise TagLeftField(f"tag {uid} stopped answering")
        return tag.afi

    def write_afi(self, uid: str, afi: int) -> None:
        raise NotImplementedError

    def read_eas(self, uid: str) -> bool:
        self._check()
        eas = self.field[uid].eas
        if eas is None:
            raise NotSupportedByTag("this tag has no EAS")
        return eas

    def write_eas(self, uid: str, on: bool) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


class CountingAlarm(SilentAlarm):
    """An alarm output that remembers how often it sounded."""

    def __init__(self) -> None:
        self.sounded = 0

    def sound(self) -> Any:
        self.sounded += 1
        return defer.succeed(None)


def decode_ascii(blocks: bytes) -> TagContent:
    """The stand-in's tag data: I (item) or P (patron card), then the id in ASCII."""
    text = blocks.rstrip(b"\0").decode()
    return TagContent(item_id=text[1:] or None, patron_card=text[:1] == "P")


def run_now(call: Callable[[], Any]) -> defer.Deferred[Any]:
    """Run a 'blocking' call at once: the stand-in reader never blocks."""
    return defer.maybeDeferred(call)


def config(**sections: dict[str, Any]) -> GateConfig:
    """A gate configuration as an operator would write it, with overrides."""
    data: dict[str, Any] = {
        "gate": {"name": "east", "poll_interval": 0.25, "pass_gap": 2.0},
        "reader": {"driver": "feig", "port": "loop://"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_gate_config(data, "<test>")


@dataclass
class Rig:
    """A gate on a clock with its stand-in reader, alarm and events."""

    gate: Gate
    clock: Clock
    reader: FakeReader
    alarm: CountingAlarm
    events: list[GateEvent]
    opened: list[float]

    def passes(self) -> list[TagPassed]:
        return [e for e in self.events if isinstance(e, TagPassed)]


def rig(
    gate_config: GateConfig | None = None,
    lookup: Callable[[str], ItemFacts] | None = None,
    run_lookup: Callable[[Callable[[], Any]], defer.Deferred[Any]] | None = None,
    people: Callable[[], int] | None = None,
) -> Rig:
    clock = Clock()
    reader = FakeReader()
    alarm = CountingAlarm()
    opened: list[float] = []

    def open_reader() -> FakeReader:
        opened.append(clock.seconds())
        reader._check()
        reader.closed = False
        return reader

    gate = Gate(
        gate_config or config(),
        open_reader=open_reader,
        alarm=alarm,
        clock=clock,
        run_on_reader=run_now,
        lookup=lookup,
        run_lookup=run_lookup,
        decode_tag=decode_ascii,
        people=people,
    )
    events: list[GateEvent] = []
    gate.subscribe(events.append)
    gate.start()
    return Rig(gate, clock, reader, alarm, events, opened)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every line the gate logs while the test runs, formatted."""
    lines: list[str] = []

    def observer(event: LogEvent) -> None:
        if str(event.get("log_namespace", "")).startswith("ils.gate"):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def test_secured_item_alarms_once_while_it_stays_in_the_field() -> None:
    """A tag with the on-shelf AFI 0x07 sounds the alarm once, not on every poll."""
    r = rig()
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07, item_id="39999000123453")

    r.clock.pump([0.25] * 8)

    assert 1 == r.alarm.sounded
    assert 1 == r.gate.counts.alarms
    assert 1 == r.gate.counts.passes
    [passed] = r.passes()
    assert passed.verdict.alarm
    assert "secured (AFI 0x07)" == passed.verdict.reason
    assert "39999000123453" == passed.tag.item_id


def test_item_on_loan_passes_silently() -> None:
    """A tag with the on-loan AFI 0xC2 is counted as a pass and does not alarm."""
    r = rig()
    r.reader.field[LOAN_UID] = FakeTag(afi=0xC2, item_id="39999000123461")

    r.clock.pump([0.25] * 4)

    assert 0 == r.alarm.sounded
    assert 1 == r.gate.counts.passes
    assert "not secured (AFI 0xC2)" == r.passes()[0].verdict.reason


def test_site_afi_values_are_configuration() -> None:
    """A legacy 3M site's 0xD7 alarms and 0xDA passes once they are configured."""
    r = rig(config(security={"secured_afi": 0xD7, "unsecured_afi": 0xDA}))
    r.reader.field[SHELF_UID] = FakeTag(afi=0xD7)
    r.reader.field[LOAN_UID] = FakeTag(afi=0xDA)
    r.reader.field[ODD_UID] = FakeTag(afi=0x07)

    r.clock.pump([0.25] * 2)

    verdicts = {p.tag.uid: p.verdict.alarm for p in r.passes()}
    assert {SHELF_UID: True, LOAN_UID: False, ODD_UID: True} == verdicts


def test_unknown_afi_alarms_by_default_and_passes_when_configured() -> None:
    """An AFI that is neither value, or a tag that left mid-read, alarms unless told."""
    default = rig()
    lenient = rig(config(security={"unknown": "pass"}))
    for r in (default, lenient):
        r.reader.field[ODD_UID] = FakeTag(afi=0x00)
        r.reader.field[SHELF_UID] = FakeTag(afi=0x07, leaves_mid_read=True)
        r.clock.pump([0.25] * 2)

    assert 2 == default.alarm.sounded
    assert 2 == default.gate.counts.unknown
    assert 0 == lenient.alarm.sounded
    reasons = sorted(p.verdict.reason for p in default.passes())
    assert [
        "security state unknown (AFI 0x00)",
        f"security state unknown (unreadable: tag {SHELF_UID} stopped answering)",
    ] == reasons


def test_eas_site_alarms_on_the_eas_bit_and_on_tags_without_one() -> None:
    """In EAS mode the AFI is ignored: EAS set alarms, clear passes, none alarms."""
    r = rig(config(security={"mode": "eas"}))
    r.reader.field[SHELF_UID] = FakeTag(afi=0xC2, eas=True)
    r.reader.field[LOAN_UID] = FakeTag(afi=0x07, eas=False)
    r.reader.field[ODD_UID] = FakeTag(afi=0x07, eas=None)

    r.clock.pump([0.25] * 2)

    reasons = {p.tag.uid: (p.verdict.alarm, p.verdict.reason) for p in r.passes()}
    assert {
        SHELF_UID: (True, "secured (EAS set)"),
        LOAN_UID: (False, "not secured (EAS clear)"),
        ODD_UID: (True, "security state unknown (the tag has no EAS)"),
    } == reasons


def test_a_tag_counts_again_only_after_the_pass_gap() -> None:
    """Out of the field for less than pass_gap is the same pass; longer is a new one."""
    r = rig()
    tag = FakeTag(afi=0x07)
    r.reader.field[SHELF_UID] = tag
    r.clock.pump([0.25] * 2)

    del r.reader.field[SHELF_UID]
    r.clock.pump([0.25] * 4)  # 1 s out of the field: within the 2 s gap
    r.reader.field[SHELF_UID] = tag
    r.clock.pump([0.25] * 2)
    assert 1 == r.alarm.sounded

    del r.reader.field[SHELF_UID]
    r.clock.pump([0.25] * 12)  # 3 s out
    r.reader.field[SHELF_UID] = tag
    r.clock.pump([0.25] * 2)
    assert 2 == r.alarm.sounded
    assert 2 == r.gate.counts.passes


def test_lost_reader_is_reopened_with_growing_delays_and_reported() -> None:
    """An unplugged reader is retried after 1, 2, 4 ... s up to the limit, then back."""
    r = rig(config(reader={"reconnect_min": 1.0, "reconnect_max": 4.0}))
    r.clock.advance(0)
    assert [0.0] == r.opened

    r.reader.unplugged = True
    r.clock.advance(0.25)  # this poll fails: the reader is lost
    r.clock.pump([0.5] * 30)  # 15 s of retries
    assert r.reader.closed
    assert 1.25 == r.opened[1]  # lost at 0.25, first retry 1 s later
    retries = [
        round(b - a, 2) for a, b in zip(r.opened[1:], r.opened[2:], strict=False)
    ]
    assert [2.0, 4.0, 4.0] == retries[:3]

    r.reader.unplugged = False
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07)
    r.clock.pump([0.5] * 10)

    kinds = [type(e) for e in r.events]
    assert [DeviceLost, DeviceBack, TagPassed] == kinds
    lost = r.events[0]
    assert isinstance(lost, DeviceLost)
    assert "no answer from the reader within 1 s" == lost.reason
    assert 1 == r.alarm.sounded


def test_alarm_sounds_before_the_lookup_answers() -> None:
    """The alarm is already sounding while the SIP2 lookup has not answered."""
    answer: defer.Deferred[Any] = defer.Deferred()
    asked: list[str] = []
    facts = ItemFacts(
        item_id="39999000123453",
        title="Tide Tables",
        status=CirculationStatus.AVAILABLE,
        known=True,
    )

    def slow_lookup(call: Callable[[], Any]) -> defer.Deferred[Any]:
        asked.append("asked")
        return answer

    r = rig(lookup=lambda item: facts, run_lookup=slow_lookup)
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07, item_id="39999000123453")
    r.clock.pump([0.25] * 2)

    assert 1 == r.alarm.sounded
    assert ["asked"] == asked
    assert [] == [e for e in r.events if isinstance(e, ItemExplained)]

    answer.callback(facts)
    [explained] = [e for e in r.events if isinstance(e, ItemExplained)]
    assert explained.facts is not None
    assert "Tide Tables" == explained.facts.title


def test_server_down_still_alarms_and_says_why_there_is_no_title(
    log_lines: list[str],
) -> None:
    """A failing lookup leaves the alarm sounded and logs the reason after it."""

    def down(item_id: str) -> ItemFacts:
        raise SipLookupError("cannot connect to 127.0.0.1:6001: refused")

    r = rig(lookup=down)
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07, item_id="39999000123453")
    r.clock.pump([0.25] * 2)

    assert 1 == r.alarm.sounded
    [explained] = [e for e in r.events if isinstance(e, ItemExplained)]
    assert "cannot connect to 127.0.0.1:6001: refused" == explained.problem
    alarm_at = next(i for i, line in enumerate(log_lines) if "ALARM" in line)
    why_at = next(i for i, line in enumerate(log_lines) if "no title" in line)
    assert alarm_at < why_at


def test_on_loan_alarm_is_explained_in_the_log(log_lines: list[str]) -> None:
    """An item secured on its tag but on loan in the system gets a hint for staff."""
    facts = ItemFacts(
        item_id="39999000123453",
        title="Tide Tables",
        status=CirculationStatus.CHARGED,
        known=True,
    )
    r = rig(lookup=lambda item: facts)
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07, item_id="39999000123453")
    r.clock.pump([0.25] * 2)

    assert (
        "alarm gate east: item 39999000123453 is 'Tide Tables', on loan; "
        "the tag was not unsecured at checkout"
    ) in log_lines


def test_masked_item_ids_in_alarm_lines(log_lines: list[str]) -> None:
    """With mask_item_ids the alarm line shows only the barcode's last four digits."""
    facts = ItemFacts(
        item_id="39999000123453",
        title="Tide Tables",
        status=CirculationStatus.AVAILABLE,
        known=True,
    )
    r = rig(config(gate={"mask_item_ids": True}), lookup=lambda item: facts)
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07, item_id="39999000123453")
    r.clock.pump([0.25] * 2)

    assert [
        f"ALARM gate east: item **********3453 (tag {SHELF_UID}) secured (AFI 0x07)",
        "alarm gate east: item **********3453 is 'Tide Tables', available (not on "
        "loan)",
    ] == [line for line in log_lines if "alarm" in line.lower()]


def test_item_ids_of_passing_items_are_not_logged(log_lines: list[str]) -> None:
    """A silent pass leaves no item barcode in the log, even at debug level."""
    r = rig()
    r.reader.field[LOAN_UID] = FakeTag(afi=0xC2, item_id="39999000123461")
    r.clock.pump([0.25] * 2)

    assert 1 == r.gate.counts.passes
    assert not any("39999000123461" in line for line in log_lines)


def test_counts_are_reported_periodically_and_on_stop(log_lines: list[str]) -> None:
    """Counts of passes and alarms appear every report_interval and when stopping."""
    r = rig(config(gate={"report_interval": 60}))
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07)
    r.reader.field[LOAN_UID] = FakeTag(afi=0xC2)
    r.clock.pump([0.25] * 240)

    stopped = r.gate.stop()
    assert stopped.called

    expected = "2 tag passes, 1 alarms, 0 unreadable tags"
    assert f"gate east counts since start: {expected}" in log_lines
    assert f"gate east stopped; counts since start: {expected}" == log_lines[-1]
    assert r.reader.closed


def test_people_counted_by_a_counter_are_reported(log_lines: list[str]) -> None:
    """With a people counter its count joins the counts in the report lines."""
    people = [0]
    r = rig(config(gate={"report_interval": 10}), people=lambda: people[0])
    people[0] = 7
    r.clock.advance(10)

    assert (
        "gate east counts since start: 0 tag passes, 0 alarms, 0 unreadable tags, "
        "7 people"
    ) in log_lines


def test_patron_card_never_alarms_and_its_number_goes_nowhere(
    log_lines: list[str],
) -> None:
    """A patron card in a bag passes, is not looked up, and its number is not kept."""
    asked: list[str] = []

    def lookup(item_id: str) -> ItemFacts:
        asked.append(item_id)
        raise SipLookupError("not expected")

    r = rig(lookup=lookup)
    r.reader.field[ODD_UID] = FakeTag(
        afi=0x00, item_id="21234000000018", patron_card=True
    )
    r.clock.pump([0.25] * 2)
    r.gate.stop()

    [passed] = r.passes()
    assert not passed.verdict.alarm
    assert "a patron card, not an item" == passed.verdict.reason
    assert passed.tag.item_id is None
    assert [] == asked
    assert 0 == r.alarm.sounded
    assert not any("21234000000018" in line for line in log_lines)


def test_worked_example_tag_gives_item_set_and_owner() -> None:
    """The ISO 28560-3 worked example decodes to its barcode, part 1 of 2, DK-999999."""
    memory = bytes.fromhex(
        "11020133 39393939 30303031 32333435 330000 50b6 444b 393939393939 0000000000"
    )

    content = decode_tag(memory + bytes(32))

    assert (
        TagContent(item_id="39999000123453", owner_library="DK-999999", part=1, parts=2)
        == content
    )


def test_stop_ends_polling() -> None:
    """After stop no poll runs and no call is left on the clock."""
    r = rig()
    r.clock.pump([0.25] * 2)
    r.gate.stop()

    assert [] == r.clock.getDelayedCalls()


def test_mask_item_id_keeps_the_last_four_characters() -> None:
    """Masking hides all but the last four characters, and short ids whole."""
    assert "**********3453" == mask_item_id("39999000123453")
    assert "***" == mask_item_id("123")


def test_secured_tag_read_before_the_reader_falls_silent_still_alarms() -> None:
    """The reader stops answering on the second tag of a poll: the first, already
    read as secured, alarms; then the reader is reported lost."""
    r = rig()
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07, item_id="39999000123453")
    r.reader.field[LOAN_UID] = FakeTag(afi=0xC2, silences_reader_on="afi")

    r.clock.pump([0.25] * 4)

    assert 1 == r.alarm.sounded
    assert [TagPassed, DeviceLost] == [type(e) for e in r.events]
    assert SHELF_UID == r.passes()[0].tag.uid


def test_secured_tag_whose_data_read_times_out_still_alarms() -> None:
    """The reader falls silent while a secured tag's data is read: it alarms on
    the AFI already read, without an item id, and the reader is reported lost."""
    r = rig()
    r.reader.field[SHELF_UID] = FakeTag(
        afi=0x07, item_id="39999000123453", silences_reader_on="blocks"
    )

    r.clock.pump([0.25] * 4)

    assert 1 == r.alarm.sounded
    [passed] = r.passes()
    assert passed.tag.item_id is None
    assert "secured (AFI 0x07)" == passed.verdict.reason
    assert isinstance(r.events[1], DeviceLost)


def test_each_tag_alarms_as_soon_as_it_is_read() -> None:
    """In a field of three secured tags, the first has alarmed before the reader
    is asked about the second."""
    r = rig()
    sounded_when_read: list[int] = []
    r.reader.on_read = lambda uid: sounded_when_read.append(r.alarm.sounded)
    for uid in (SHELF_UID, LOAN_UID, ODD_UID):
        r.reader.field[uid] = FakeTag(afi=0x07)

    r.clock.advance(0)

    assert [0, 1, 2] == sounded_when_read
    assert 3 == r.alarm.sounded


def test_inventory_cut_short_still_alarms_for_the_tags_it_found() -> None:
    """An inventory that fails part-way (IncompleteInventory) still reads and
    alarms for the tags it listed, then reports the reader lost."""
    r = rig()
    for uid in (SHELF_UID, LOAN_UID, ODD_UID):
        r.reader.field[uid] = FakeTag(afi=0x07)
    r.reader.inventory_cut_after = 2

    r.clock.advance(0)

    assert 2 == r.alarm.sounded
    assert [SHELF_UID, LOAN_UID] == [p.tag.uid for p in r.passes()]
    assert isinstance(r.events[-1], DeviceLost)


def test_a_two_part_set_is_looked_up_once() -> None:
    """Both parts of a set alarm, but the SIP2 server is asked about the item once."""
    asked: list[str] = []

    def lookup(item_id: str) -> ItemFacts:
        asked.append(item_id)
        return ItemFacts(
            item_id=item_id,
            title="Tide Tables",
            status=CirculationStatus.AVAILABLE,
            known=True,
        )

    r = rig(lookup=lookup)
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07, item_id="39999000123453")
    r.reader.field[ODD_UID] = FakeTag(afi=0x07, item_id="39999000123453")

    r.clock.pump([0.25] * 4)

    assert 2 == r.alarm.sounded
    assert ["39999000123453"] == asked


def test_stop_does_not_wait_forever_on_a_lookup() -> None:
    """A lookup that never answers holds stop() for at most a second (no [sip]
    section), then the gate stops anyway."""
    never: defer.Deferred[Any] = defer.Deferred()
    r = rig(
        lookup=lambda item: ItemFacts(
            item_id=item, title="", status=CirculationStatus.OTHER, known=False
        ),
        run_lookup=lambda call: never,
    )
    r.reader.field[SHELF_UID] = FakeTag(afi=0x07, item_id="39999000123453")
    r.clock.advance(0)

    stopped = r.gate.stop()
    assert not stopped.called
    r.clock.advance(1.0)

    assert stopped.called
