"""TagReader and FieldPoller: tags in a simulated reader's field as domain events.

The readers are the real drivers, wired to the reader simulator through its
in-process stream (the same bytes as over a port, without threads); the
events carry the fixed clock's time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import pytest

from drivers.events import (
    DeviceBack,
    DeviceEvent,
    DeviceLost,
    TagSeen,
    TagsGone,
    TagsPresent,
)
from drivers.rfid.emulation import SimulatedTag, TagField
from drivers.rfid.feig import FeigReader
from drivers.rfid.reader import RfidReader
from drivers.rfid.security import SecurityMethod, SecurityNotSet, SecurityPolicy
from drivers.rfid.simulator import ReaderSimulator
from drivers.rfid.tag_reader import FieldPoller, TagReader
from drivers.rfid.tags import BasicBlock, BlockOrder
from drivers.rfid.three_m import ThreeM810Reader

PART_1 = "E004010000000001"
PART_2 = "E004010000000002"
LOANED = "E004010000000003"
BLANK = "E004010000000004"
SET_PART_1 = BasicBlock(
    item_id="39999000123453", parts=2, part=1, country="DK", library="999999"
)
SET_PART_2 = BasicBlock(
    item_id="39999000123453", parts=2, part=2, country="DK", library="999999"
)
SINGLE = BasicBlock(item_id="39999000012346", country="DK", library="999999")


def tags() -> dict[str, SimulatedTag]:
    return {
        PART_1: SimulatedTag.with_data(PART_1, SET_PART_1, afi=0x07, eas=True),
        PART_2: SimulatedTag.with_data(
            PART_2, SET_PART_2, afi=0x07, eas=True, order=BlockOrder.REVERSED
        ),
        LOANED: SimulatedTag.with_data(LOANED, SINGLE, afi=0xC2, eas=None, size=32),
        BLANK: SimulatedTag(uid=BLANK, afi=0x00),
    }


def feig_over(simulator: ReaderSimulator) -> FeigReader:
    return FeigReader(simulator.open_stream(), retries=0)


def test_scan_reads_item_set_owner_and_security() -> None:
    """Each tag becomes a TagSeen with its item, set, owner and AFI security."""
    known = tags()
    simulator = ReaderSimulator(TagField([known[PART_1], known[LOANED]]))

    seen = TagReader(feig_over(simulator)).scan()

    assert [
        TagSeen(
            uid=PART_1,
            item_id="39999000123453",
            owner_library="DK-999999",
            part=1,
            parts=2,
            secured=True,
        ),
        TagSeen(
            uid=LOANED,
            item_id="39999000012346",
            owner_library="DK-999999",
            secured=False,
        ),
    ] == seen


def test_reversed_block_tags_read_the_same() -> None:
    """A tag written with reversed blocks gives the same item as a natural one."""
    simulator = ReaderSimulator(TagField([tags()[PART_2]]))

    (seen,) = TagReader(feig_over(simulator)).scan()

    assert ("39999000123453", 2, 2) == (seen.item_id, seen.part, seen.parts)


def test_blank_tag_has_no_item_and_is_not_secured() -> None:
    """A blank tag (AFI 0x00) is seen with no item id and counts as not secured."""
    simulator = ReaderSimulator(TagField([tags()[BLANK]]))

    assert [TagSeen(uid=BLANK, secured=False)] == TagReader(feig_over(simulator)).scan()


def test_eas_sites_read_the_eas_bit() -> None:
    """With EAS security, the EAS bit decides; a tag without EAS gives None."""
    known = tags()
    simulator = ReaderSimulator(TagField([known[PART_1], known[LOANED]]))
    reader = TagReader(
        feig_over(simulator), security=SecurityPolicy(method=SecurityMethod.EAS)
    )

    assert [True, None] == [seen.secured for seen in reader.scan()]


def test_eas_through_a_3m_reader_is_unknown_not_an_error() -> None:
    """The 3M 810 has no EAS command, so EAS security reads as None."""
    simulator = ReaderSimulator(TagField([tags()[PART_1]]), "3m")
    reader = TagReader(
        ThreeM810Reader(simulator.open_stream(), retries=0),
        security=SecurityPolicy(method=SecurityMethod.EAS),
    )

    (seen,) = reader.scan()

    assert seen.secured is None
    assert "39999000123453" == seen.item_id


@pytest.mark.parametrize("protocol", ["feig", "3m"])
def test_checkout_and_checkin_change_the_afi(protocol: str) -> None:
    """Unsecure writes 0xC2 and secure writes 0x07, each read back."""
    simulator = ReaderSimulator(TagField([tags()[PART_1]]), protocol)
    stream = simulator.open_stream()
    driver: RfidReader = (
        FeigReader(stream) if protocol == "feig" else ThreeM810Reader(stream)
    )
    reader = TagReader(driver)

    reader.unsecure(PART_1)
    assert (0xC2, False) == (driver.read_afi(PART_1), reader.is_secured(PART_1))

    reader.secure(PART_1)
    assert (0x07, True) == (driver.read_afi(PART_1), reader.is_secured(PART_1))


def test_legacy_afi_values_are_configurable() -> None:
    """A site with 3M's legacy 0xD7/0xDA pair writes those values instead."""
    simulator = ReaderSimulator(TagField([tags()[PART_1]]))
    driver = feig_over(simulator)
    policy = SecurityPolicy(afi_on_shelf=0xD7, afi_on_loan=0xDA)

    policy.unsecure(driver, PART_1)
    assert 0xDA == driver.read_afi(PART_1)
    policy.secure(driver, PART_1)
    assert 0xD7 == driver.read_afi(PART_1)
    assert policy.is_secured(driver, PART_1)


def test_eas_security_sets_and_clears_the_bit() -> None:
    """EAS security sets the bit on checkin and clears it on checkout."""
    simulator = ReaderSimulator(TagField([tags()[PART_1]]))
    driver = feig_over(simulator)
    policy = SecurityPolicy(method=SecurityMethod.EAS)

    policy.unsecure(driver, PART_1)
    assert driver.read_eas(PART_1) is False
    policy.secure(driver, PART_1)
    assert driver.read_eas(PART_1) is True


def test_policy_refuses_impossible_afi_settings() -> None:
    """AFI values outside a byte, or equal for both states, are refused."""
    with pytest.raises(ValueError, match="afi_on_loan must be 0x00-0xFF"):
        SecurityPolicy(afi_on_loan=0x100)
    with pytest.raises(ValueError, match="could not tell"):
        SecurityPolicy(afi_on_shelf=0x07, afi_on_loan=0x07)


def test_write_data_keeps_the_order_it_is_given() -> None:
    """Data written in reversed order reads back as the same block, reversed."""
    simulator = ReaderSimulator(TagField([tags()[BLANK]]))
    reader = TagReader(feig_over(simulator))

    reader.write_data(BLANK, SINGLE, order=BlockOrder.REVERSED)

    assert (SINGLE, BlockOrder.REVERSED) == reader.read_data(BLANK)


# --- FieldPoller ---------------------------------------------------------------


def test_poller_reports_arrivals_and_departures(
    fixed_clock: Callable[[], datetime],
) -> None:
    """New tags give TagsPresent (only the new ones), departed tags TagsGone."""
    known = tags()
    field = TagField([known[PART_1], known[PART_2]])
    simulator = ReaderSimulator(field)
    poller = FieldPoller(TagReader(feig_over(simulator)), device="pad", now=fixed_clock)
    at = fixed_clock()

    first = poller.poll()
    field.take(PART_1)
    field.put(known[LOANED])
    second = poller.poll()
    third = poller.poll()

    assert [TagsPresent] == [type(event) for event in first]
    assert isinstance(first[0], TagsPresent)
    assert [PART_1, PART_2] == [tag.uid for tag in first[0].tags]
    assert TagsGone(device="pad", uids=(PART_1,), at=at) == second[0]
    assert isinstance(second[1], TagsPresent)
    assert (LOANED,) == tuple(tag.uid for tag in second[1].tags)
    assert [] == third


def test_poller_reports_a_lost_reader_once_and_its_return(
    fixed_clock: Callable[[], datetime],
) -> None:
    """A silent reader gives one DeviceLost; answering again gives DeviceBack."""
    field = TagField([tags()[PART_1]])
    simulator = ReaderSimulator(field)
    poller = FieldPoller(TagReader(feig_over(simulator)), device="pad", now=fixed_clock)
    poller.poll()

    simulator.silent = True
    lost = poller.poll()
    still_lost = poller.poll()
    simulator.silent = False
    field.take(PART_1)
    back = poller.poll()

    assert 1 == len(lost)
    assert isinstance(lost[0], DeviceLost)
    assert "did not answer" in lost[0].reason
    assert [] == still_lost
    assert [
        DeviceBack(device="pad", at=fixed_clock()),
        TagsGone(device="pad", uids=(PART_1,), at=fixed_clock()),
    ] == back


def test_poller_reopens_a_lost_reader(fixed_clock: Callable[[], datetime]) -> None:
    """While lost, each poll asks `reopen` for a fresh reader and uses it."""
    dead = ReaderSimulator(TagField())
    dead.silent = True
    alive = ReaderSimulator(TagField([tags()[PART_1]]))
    opened: list[RfidReader] = []

    def reopen() -> RfidReader:
        opened.append(feig_over(alive))
        return opened[-1]

    poller = FieldPoller(
        TagReader(feig_over(dead)), device="pad", now=fixed_clock, reopen=reopen
    )

    assert isinstance(poller.poll()[0], DeviceLost)
    events = poller.poll()

    assert 1 == len(opened)
    assert [DeviceBack, TagsPresent] == [type(event) for event in events]


class LeavesAfterInventory:
    """A reader whose inventory still lists a tag that leaves right after."""

    def __init__(self, reader: RfidReader, field: TagField, uid: str) -> None:
        self.reader = reader
        self.field = field
        self.uid = uid

    def inventory(self) -> list[str]:
        uids = self.reader.inventory()
        self.field.take(self.uid)
        return uids

    def __getattr__(self, name: str) -> object:
        return getattr(self.reader, name)


def test_tag_leaving_while_read_is_not_reported(
    fixed_clock: Callable[[], datetime],
) -> None:
    """A tag that leaves between inventory and read is left out, not half-read."""
    known = tags()
    field = TagField([known[PART_1], known[PART_2]])
    driver = LeavesAfterInventory(feig_over(ReaderSimulator(field)), field, PART_1)
    poller = FieldPoller(
        TagReader(driver),  # type: ignore[arg-type]
        device="pad",
        now=fixed_clock,
    )

    (event,) = poller.poll()

    assert isinstance(event, TagsPresent)
    assert [PART_2] == [tag.uid for tag in event.tags]
    assert [PART_2] == list(poller.present)


def test_run_emits_events_until_stopped(fixed_clock: Callable[[], datetime]) -> None:
    """run() polls in its thread and hands each event to `emit` until stopped."""
    simulator = ReaderSimulator(TagField([tags()[PART_1]]))
    poller = FieldPoller(TagReader(feig_over(simulator)), device="pad", now=fixed_clock)
    stop = threading.Event()
    events: list[DeviceEvent] = []

    def emit(event: DeviceEvent) -> None:
        events.append(event)
        stop.set()

    worker = threading.Thread(target=poller.run, args=(emit,), kwargs={"stop": stop})
    worker.start()
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert [TagsPresent] == [type(event) for event in events]


class ForgetsAfiWrites:
    """A reader whose tag acknowledges AFI writes but keeps its old AFI."""

    def __init__(self, reader: RfidReader) -> None:
        self.reader = reader

    def write_afi(self, uid: str, afi: int) -> None:
        """Acknowledge and do nothing."""

    def __getattr__(self, name: str) -> object:
        return getattr(self.reader, name)


def test_security_write_that_does_not_stick_is_reported() -> None:
    """An AFI that reads back unchanged raises SecurityNotSet naming both values."""
    simulator = ReaderSimulator(TagField([tags()[PART_1]]))
    driver = ForgetsAfiWrites(feig_over(simulator))

    with pytest.raises(SecurityNotSet, match="AFI 0x07, wrote 0xC2"):
        SecurityPolicy().unsecure(driver, PART_1)  # type: ignore[arg-type]
