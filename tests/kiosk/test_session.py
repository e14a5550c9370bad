"""The patron's way through the kiosk's view model, against the real server.

The view model is plain Python; here it talks over a real SIP2 link to the real
server with the demo library. Its idle timer runs on a `Clock`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from kiosk.journal import EntryState, Journal
from kiosk.model import Cue, Receipt, Screen, mask
from kiosk.session import SelfCheck
from kiosk.sipclient import LinkState, SipLink
from kiosk.transactions import Action, Result, SipDesk
from kiosk.wording import Refusal, Wording
from tests.kiosk.conftest import (
    BLOCKED_PATRON,
    EXPIRED_PATRON,
    ITEMS,
    PATRON,
    PIN,
    UNKNOWN_ITEM,
    LiveServer,
    branch_today,
    kiosk_config,
)
from tests.kiosk.test_sipclient import reached


@dataclass
class Kiosk:
    """A view model wired to a live link, with its clock and the cues it played."""

    check: SelfCheck
    link: SipLink
    clock: Clock
    cues: list[Cue]
    journal: Journal


async def start_kiosk(
    live_server: LiveServer, tmp_path: Path, **sections: dict[str, Any]
) -> Kiosk:
    """Build the kiosk's parts as `kiosk.app` does, and wait until it is online."""
    from twisted.internet import reactor  # noqa: PLC0415

    config = kiosk_config(live_server.port, tmp_path, **sections)
    link = SipLink(
        config.server, config.account, location=config.kiosk.branch, reactor=reactor
    )
    journal = Journal(config.offline.journal)
    desk = SipDesk(config, link, Wording.load(), journal)
    clock = Clock()
    check = SelfCheck(config, desk, link, clock)
    link.on_state(check.link_changed)
    cues: list[Cue] = []
    check.on_cue(cues.append)
    link.start()
    await reached(link, LinkState.ONLINE)
    return Kiosk(check=check, link=link, clock=clock, cues=cues, journal=journal)


@pytest_twisted.async_yield_fixture
async def kiosk(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[Kiosk]:
    """The kiosk online against the demo library."""
    started = await start_kiosk(live_server, tmp_path)
    try:
        yield started
    finally:
        started.link.stop()
        started.journal.close()


async def sign_in(check: SelfCheck, card: str = PATRON, pin: str = PIN) -> None:
    """Scan a card on the attract screen and type the PIN on the keypad."""
    await check.scan(card)
    for digit in pin:
        check.press_key(digit)
    await check.submit()


@pytest_twisted.ensureDeferred
async def test_borrowing_three_items_with_one_refused(
    kiosk: Kiosk, live_server: LiveServer
) -> None:
    """Two books are lent with titles and due dates; the reference book is refused."""
    check = kiosk.check
    await sign_in(check)
    assert Screen.MENU is check.screen
    assert {Action.BORROW, Action.RETURN, Action.RENEW} == check.services()

    check.choose(Action.BORROW)
    for barcode in (ITEMS[0], live_server.library.reference_item, ITEMS[1]):
        await check.scan(barcode)

    by_item = {row.barcode: row for row in check.rows}
    lent = by_item[ITEMS[0]]
    refused = by_item[live_server.library.reference_item]
    assert Result.DONE is lent.result
    assert "Pride and prejudice" == lent.title
    # The demo's rule for books: 21 days.
    assert branch_today() + timedelta(days=21) == lent.due
    assert Result.DONE is by_item[ITEMS[1]].result
    assert Result.REFUSED is refused.result
    assert Refusal.ITEM_NOT_FOR_LOAN is refused.refusal
    assert [Cue.SUCCESS, Cue.SUCCESS, Cue.FAILURE, Cue.SUCCESS] == kiosk.cues


@pytest_twisted.ensureDeferred
async def test_an_item_already_on_loan_to_the_patron_offers_renewal(
    kiosk: Kiosk,
) -> None:
    """Scanning one's own loan (from an earlier visit) offers renewal; renewing it
    at once sends 29, which the server refuses as too soon, in plain words."""
    check = kiosk.check
    await sign_in(check)
    check.choose(Action.BORROW)
    await check.scan(ITEMS[0])
    check.end_session()
    await sign_in(check)
    check.choose(Action.BORROW)
    await check.scan(ITEMS[0])

    assert Result.OFFER_RENEW is check.rows[0].result
    await check.renew(ITEMS[0])

    assert 1 == len(check.rows)
    assert Result.REFUSED is check.rows[0].result
    assert Refusal.RENEWAL_TOO_SOON is check.rows[0].refusal
    assert Cue.WARNING is kiosk.cues[-2]


@pytest_twisted.ensureDeferred
async def test_wrong_pins_end_in_please_see_staff(kiosk: Kiosk) -> None:
    """Two wrong PINs say "try again"; the third locks the keypad for this session."""
    check = kiosk.check
    await sign_in(check, pin="0000")
    assert Refusal.PIN_WRONG is check.notice.refusal  # type: ignore[union-attr]
    for digit in "1111":
        check.press_key(digit)
    await check.submit()
    for digit in "2222":
        check.press_key(digit)
    await check.submit()

    assert Screen.PIN is check.screen
    assert check.pin_locked
    assert Refusal.PIN_TRIES_EXHAUSTED is check.notice.refusal  # type: ignore[union-attr]
    check.press_key("1")
    assert "" == check.entry
    assert check.patron is None


@pytest_twisted.ensureDeferred
async def test_unknown_card_expired_and_blocked_patrons(kiosk: Kiosk) -> None:
    """An unknown card is not let in; expired and blocked cards may not borrow."""
    check = kiosk.check
    await sign_in(check, card="21234000099996")
    assert Screen.IDENTIFY is check.screen
    assert Refusal.CARD_NOT_RECOGNISED is check.notice.refusal  # type: ignore[union-attr]
    check.end_session()

    await sign_in(check, card=EXPIRED_PATRON)
    assert Screen.MENU is check.screen
    assert Refusal.CARD_EXPIRED is check.notice.refusal  # type: ignore[union-attr]
    assert {Action.RETURN} == check.services()
    check.end_session()

    await sign_in(check, card=BLOCKED_PATRON)
    assert Refusal.CARD_BLOCKED is check.notice.refusal  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_an_item_scanned_at_the_card_prompt_is_refused_there(
    kiosk: Kiosk,
) -> None:
    """On the identify screen an item barcode is not taken for a card."""
    check = kiosk.check
    check.start()
    await check.scan(ITEMS[0])

    assert Screen.IDENTIFY is check.screen
    assert Refusal.NOT_A_CARD is check.notice.refusal  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_returns_work_without_identifying(kiosk: Kiosk) -> None:
    """An item scanned on the attract screen is returned with no card."""
    check = kiosk.check
    await sign_in(check)
    check.choose(Action.BORROW)
    await check.scan(ITEMS[2])
    check.finish()
    check.receipt(Receipt.NONE)
    assert Screen.ATTRACT is check.screen

    await check.scan(ITEMS[2])

    assert Screen.ITEMS is check.screen
    assert check.patron is None
    assert Action.RETURN is check.rows[0].action
    assert Result.DONE is check.rows[0].result
    assert "Frankenstein, or, The modern Prometheus" == check.rows[0].title


@pytest_twisted.ensureDeferred
async def test_the_account_lists_loans_and_renews_from_there(kiosk: Kiosk) -> None:
    """My account shows each loan's title and due date; renew answers plainly."""
    check = kiosk.check
    await sign_in(check)
    check.choose(Action.BORROW)
    await check.scan(ITEMS[0])
    check.back_to_menu()
    await check.open_account()

    assert Screen.ACCOUNT is check.screen
    assert check.account is not None
    (loan,) = check.account.loans
    assert ITEMS[0] == loan.barcode
    assert "Pride and prejudice" == loan.title
    assert branch_today() + timedelta(days=21) == loan.due
    assert "0.00" == check.account.fee_total
    assert () == check.account.holds_ready

    await check.renew(ITEMS[0])
    assert Refusal.RENEWAL_TOO_SOON is check.account_rows[0].refusal


@pytest_twisted.ensureDeferred
async def test_an_idle_session_warns_then_ends_and_forgets_the_patron(
    kiosk: Kiosk,
) -> None:
    """After idle-warning seconds a countdown shows; a touch resets it; silence
    ends the session, wipes its data and plays the warning cue once."""
    check = kiosk.check
    await sign_in(check)
    check.choose(Action.BORROW)
    await check.scan(ITEMS[0])
    check.choose_language("de")
    idle, warning = check.config.timeouts.idle, check.config.timeouts.warning

    kiosk.clock.advance(idle - warning)
    assert int(warning) == check.countdown
    assert Cue.WARNING is kiosk.cues[-1]
    kiosk.clock.advance(3)
    assert int(warning) - 3 == check.countdown
    check.touch()
    assert None is check.countdown

    kiosk.clock.advance(idle)

    assert Screen.ATTRACT is check.screen
    assert None is check.patron
    assert [] == check.rows
    assert "en" == check.language
    assert not kiosk.clock.getDelayedCalls()


@pytest_twisted.ensureDeferred
async def test_no_session_outlives_its_maximum(kiosk: Kiosk) -> None:
    """A patron kept busy is still signed out at timeouts.session_max."""
    check = kiosk.check
    await sign_in(check)
    for _ in range(int(check.config.timeouts.session_max // 30)):
        kiosk.clock.advance(30)
        check.touch()

    assert Screen.ATTRACT is check.screen
    assert None is check.patron


@pytest_twisted.ensureDeferred
async def test_offline_returns_are_journaled_and_replayed_in_order(
    kiosk: Kiosk, live_server: LiveServer
) -> None:
    """With the server stopped, returns are journaled at once; when it is back they
    are sent as 09 in order and each result is kept for staff."""
    check = kiosk.check
    await sign_in(check)
    check.choose(Action.BORROW)
    await check.scan(ITEMS[0])
    await check.scan(ITEMS[1])
    check.end_session()

    await live_server.stop()
    await reached(kiosk.link, LinkState.OUT_OF_ORDER)
    assert Screen.ATTRACT is check.screen
    for barcode in (ITEMS[0], ITEMS[1], UNKNOWN_ITEM):
        await check.scan(barcode)
    assert [Result.QUEUED] * 3 == [row.result for row in check.rows]
    assert 3 == len(kiosk.journal.pending())
    check.end_session()

    await live_server.restart()
    await reached(kiosk.link, LinkState.ONLINE)
    while kiosk.journal.pending() or check.desk._replaying:
        await _turn()

    results = list(reversed(kiosk.journal.results()))
    assert [ITEMS[0], ITEMS[1], UNKNOWN_ITEM] == [entry.item for entry in results]
    assert [EntryState.DONE, EntryState.DONE, EntryState.REFUSED] == [
        entry.state for entry in results
    ]
    assert "This item is not recognised." == results[2].result


@pytest_twisted.ensureDeferred
async def test_out_of_order_without_an_offline_policy(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """With offline mode off, a lost server shows the out-of-order screen."""
    kiosk = await start_kiosk(live_server, tmp_path, offline={"enabled": False})
    try:
        await live_server.stop()
        await reached(kiosk.link, LinkState.OUT_OF_ORDER)
        assert Screen.OUT_OF_ORDER is kiosk.check.screen

        await live_server.restart()
        await reached(kiosk.link, LinkState.ONLINE)
        assert Screen.ATTRACT is kiosk.check.screen
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_staff_card_opens_status_and_can_take_the_kiosk_out_of_service(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A staff card shows the server and queue status; out of service sticks."""
    kiosk = await start_kiosk(
        live_server, tmp_path, kiosk={"staff_cards": ["29999000000001"]}
    )
    try:
        check = kiosk.check
        await check.scan("29999000000001")
        assert Screen.STAFF is check.screen
        assert {"server": "online", "offline queue": "empty"} == check.staff_status()

        check.set_out_of_service(True)
        check.close_staff()
        assert Screen.OUT_OF_ORDER is check.screen
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


def test_receipts_mask_the_card_number() -> None:
    """Only the last four digits of a card are printed."""
    assert "**********0018" == mask(PATRON)


async def _turn() -> None:
    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.internet.task import deferLater  # noqa: PLC0415

    await deferLater(reactor, 0, lambda: None)


@pytest_twisted.ensureDeferred
async def test_renewal_at_a_server_without_29_is_refused_plainly(
    tmp_path: Path,
) -> None:
    """A server answering 29 with 96 (one that does not renew) gives the patron
    "renewing is not available here", not an error."""
    from twisted.internet import protocol, reactor  # noqa: PLC0415

    from kiosk.transactions import Patron  # noqa: PLC0415
    from tests.kiosk.test_sipclient import _ResendAsker  # noqa: PLC0415

    port = reactor.listenTCP(
        0, protocol.Factory.forProtocol(_ResendAsker), interface="127.0.0.1"
    )
    config = kiosk_config(port.getHost().port, tmp_path)
    link = SipLink(config.server, config.account, location="MAIN", reactor=reactor)
    desk = SipDesk(config, link, Wording.load(), None)
    patron = Patron(
        barcode=PATRON,
        pin=PIN,
        name="",
        borrow_refusal=None,
        screen_message="",
        email=None,
        loans=frozenset({ITEMS[0]}),
    )
    try:
        link.start()
        await reached(link, LinkState.ONLINE)
        outcome = await desk.renew(patron, ITEMS[0])
    finally:
        link.stop()
        await port.stopListening()

    assert Result.REFUSED is outcome.result
    assert Refusal.RENEWAL_UNAVAILABLE is outcome.refusal


@pytest_twisted.ensureDeferred
async def test_offline_checkouts_by_policy_within_a_limit_then_replayed(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """With offline checkouts allowed (two per card), the third is refused; when
    the server is back both are sent as 11 with their real time and lent."""
    kiosk = await start_kiosk(
        live_server,
        tmp_path,
        offline={"checkouts": True, "max_checkouts_per_patron": 2},
    )
    check = kiosk.check
    try:
        await live_server.stop()
        await reached(kiosk.link, LinkState.OUT_OF_ORDER)
        await check.scan(PATRON)
        assert Screen.MENU is check.screen
        assert {Action.BORROW, Action.RETURN} == check.services()
        check.choose(Action.BORROW)
        for barcode in ITEMS[:3]:
            await check.scan(barcode)
        assert [Result.REFUSED, Result.QUEUED, Result.QUEUED] == [
            row.result for row in check.rows
        ]
        assert Refusal.OFFLINE_LIMIT is check.rows[0].refusal
        check.end_session()

        await live_server.restart()
        await reached(kiosk.link, LinkState.ONLINE)
        while kiosk.journal.pending() or check.desk._replaying:
            await _turn()
        results = list(reversed(kiosk.journal.results()))

        assert [ITEMS[0], ITEMS[1]] == [entry.item for entry in results]
        assert [EntryState.DONE, EntryState.DONE] == [e.state for e in results]
        assert all(PATRON == entry.patron for entry in results)
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_an_unknown_card_is_not_told_apart_before_its_pin(kiosk: Kiosk) -> None:
    """With a PIN required, an unknown card number leads to the PIN prompt like
    a real one (no card enumeration); it is refused only after a PIN."""
    check = kiosk.check
    check.start()
    await check.scan("21234000099996")
    assert Screen.PIN is check.screen
    assert check.notice is None
    for digit in "1234":
        check.press_key(digit)
    await check.submit()
    assert Screen.IDENTIFY is check.screen
    assert Refusal.CARD_NOT_RECOGNISED is check.notice.refusal  # type: ignore[union-attr]
