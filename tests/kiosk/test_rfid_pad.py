"""The RFID pad through drivers.rfid and its reader simulator (Feig ISO host on
loopback TCP): several items at once, multi-part sets only when complete, tag
security written only after the server agreed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest_twisted
from twisted.internet.task import Clock, deferLater

from drivers.rfid.simulator import ReaderSimulator, SimulatedTag, TagField
from drivers.rfid.tags import BasicBlock
from kiosk.model import Screen
from kiosk.runtime import Kiosk, assemble
from kiosk.sipclient import LinkState
from kiosk.transactions import Action, Result
from kiosk.wording import Refusal
from tests.kiosk.conftest import ITEMS, PATRON, PIN, LiveServer, kiosk_config
from tests.kiosk.test_sipclient import reached

BOOK_UID = "E004010000000101"
SET_UIDS = ("E004010000000201", "E004010000000202")
AFI_ON_SHELF, AFI_ON_LOAN = 0x07, 0xC2


def library_tag(uid: str, item_id: str, part: int = 1, parts: int = 1) -> SimulatedTag:
    """A shelved library tag (AFI 0x07) with an ISO 28560-3 basic block."""
    block = BasicBlock(item_id=item_id, part=part, parts=parts, country="US")
    return SimulatedTag.with_data(uid, block, afi=AFI_ON_SHELF)


async def until(condition: Callable[[], bool], patience: float = 20.0) -> None:
    """Wait on the reactor until `condition()` holds (the pad polls every 0.2 s)."""
    from twisted.internet import reactor  # noqa: PLC0415

    waited = 0.0
    while not condition():
        assert waited < patience, "the pad never got there"
        await deferLater(reactor, 0.05, lambda: None)
        waited += 0.05


async def start(live_server: LiveServer, tmp_path: Path, url: str) -> Kiosk:
    from twisted.internet import reactor  # noqa: PLC0415

    config = kiosk_config(live_server.port, tmp_path, devices={"rfid": f"feig:{url}"})
    kiosk = assemble(config, reactor, clock=Clock())
    kiosk.link.start()
    await reached(kiosk.link, LinkState.ONLINE)
    kiosk.start_devices(reactor)
    # Tags found by the first inventory count as left from before the start.
    await until(lambda: "feig ready" == kiosk.devices.status()["rfid"])
    return kiosk


@pytest_twisted.ensureDeferred
async def test_items_on_the_pad_are_lent_and_unsecured_sets_only_when_whole(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A book and half a two-part set on the pad: the book is lent and its tag
    unsecured; the set is refused with no request sent and stays secured until
    its second part arrives."""
    pad = TagField()
    with ReaderSimulator(pad, "feig") as simulator:
        kiosk = await start(live_server, tmp_path, simulator.serve_tcp())
        check = kiosk.check
        try:
            await check.scan(PATRON)
            for digit in PIN:
                check.press_key(digit)
            await check.submit()
            check.choose(Action.BORROW)
            assert Screen.ITEMS is check.screen

            pad.put(library_tag(BOOK_UID, ITEMS[0]))
            pad.put(library_tag(SET_UIDS[0], ITEMS[1], part=1, parts=2))
            await until(lambda: len(check.rows) == 2 and not check.busy)
            rows = {row.barcode: row for row in check.rows}
            assert Result.DONE is rows[ITEMS[0]].result
            assert Refusal.SET_INCOMPLETE is rows[ITEMS[1]].refusal
            assert AFI_ON_LOAN == pad.snapshot(BOOK_UID).afi  # type: ignore[union-attr]
            assert AFI_ON_SHELF == pad.snapshot(SET_UIDS[0]).afi  # type: ignore[union-attr]

            pad.put(library_tag(SET_UIDS[1], ITEMS[1], part=2, parts=2))
            await until(
                lambda: (
                    check.rows[0].barcode == ITEMS[1]
                    and check.rows[0].result is Result.DONE
                    and not check.busy
                )
            )
            for uid in SET_UIDS:
                assert AFI_ON_LOAN == pad.snapshot(uid).afi  # type: ignore[union-attr]
            assert "feig ready" == kiosk.devices.status()["rfid"]
        finally:
            kiosk.close()


@pytest_twisted.ensureDeferred
async def test_a_refused_item_keeps_its_tag_secured_and_a_return_secures(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A reference book put on the pad before choosing "borrow" is refused once
    chosen, and its tag left secured; a returned book's tag is secured again."""
    pad = TagField()
    with ReaderSimulator(pad, "feig") as simulator:
        kiosk = await start(live_server, tmp_path, simulator.serve_tcp())
        check = kiosk.check
        try:
            await check.scan(PATRON)
            for digit in PIN:
                check.press_key(digit)
            await check.submit()
            # Put on the pad before choosing "borrow": handled once chosen.
            reference = live_server.library.reference_item
            pad.put(library_tag(BOOK_UID, reference))
            await until(lambda: BOOK_UID in check.pad)
            assert [] == check.rows
            check.choose(Action.BORROW)
            await until(lambda: bool(check.rows) and not check.busy)
            assert Result.REFUSED is check.rows[0].result
            assert AFI_ON_SHELF == pad.snapshot(BOOK_UID).afi  # type: ignore[union-attr]
            check.end_session()

            loaned = library_tag(SET_UIDS[0], ITEMS[2])
            loaned.afi = AFI_ON_LOAN
            pad.put(loaned)
            await until(lambda: SET_UIDS[0] in check.pad)
            check.start_returns()
            await until(lambda: bool(check.rows) and not check.busy)
            assert Action.RETURN is check.rows[0].action
            assert AFI_ON_SHELF == pad.snapshot(SET_UIDS[0]).afi  # type: ignore[union-attr]
        finally:
            kiosk.close()


@pytest_twisted.ensureDeferred
async def test_items_on_the_pad_at_start_up_are_ignored_until_lifted(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A book lying on the pad when the kiosk starts is neither returned (online
    or offline) nor shown; lifted and placed again, it waits for the patron."""
    from twisted.internet import reactor  # noqa: PLC0415

    pad = TagField()
    pad.put(library_tag(BOOK_UID, ITEMS[0]))
    with ReaderSimulator(pad, "feig") as simulator:
        url = simulator.serve_tcp()
        config = kiosk_config(
            live_server.port, tmp_path, devices={"rfid": f"feig:{url}"}
        )
        kiosk = assemble(config, reactor, clock=Clock())
        check = kiosk.check
        try:
            kiosk.start(reactor)
            await until(lambda: BOOK_UID in check.pad)
            assert LinkState.ONLINE is kiosk.link.state
            assert Screen.ATTRACT is check.screen
            assert [] == check.rows
            assert kiosk.journal is not None
            assert [] == kiosk.journal.results()

            pad.take(BOOK_UID)
            await until(lambda: BOOK_UID not in check.pad)
            pad.put(library_tag(BOOK_UID, ITEMS[0]))
            await until(lambda: BOOK_UID in check.pad)
            assert Screen.ATTRACT is check.screen
            assert [] == check.rows
        finally:
            kiosk.close()


@pytest_twisted.ensureDeferred
async def test_items_on_the_pad_at_the_welcome_screen_wait_for_a_choice(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Items placed on the welcome screen start nothing: "start" still leads
    to the card prompt, and after the patron identifies and chooses "renew"
    the items go through as renewals, not returns."""
    pad = TagField()
    with ReaderSimulator(pad, "feig") as simulator:
        kiosk = await start(live_server, tmp_path, simulator.serve_tcp())
        check = kiosk.check
        try:
            pad.put(library_tag(BOOK_UID, ITEMS[0]))
            await until(lambda: BOOK_UID in check.pad)
            assert Screen.ATTRACT is check.screen
            assert [] == check.rows
            check.start()
            assert Screen.IDENTIFY is check.screen
            await check.scan(PATRON)
            for digit in PIN:
                check.press_key(digit)
            await check.submit()
            assert Screen.MENU is check.screen
            check.choose(Action.RENEW)
            await until(lambda: bool(check.rows) and not check.busy)
            assert [Action.RENEW] == [row.action for row in check.rows]
        finally:
            kiosk.close()
