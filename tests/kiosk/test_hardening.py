"""The kiosk's view model under misuse: staff lock-outs, guessing, failing parts.

Each test here stands for a finding of the adversarial test of issue #6. They
run against the real SIP2 server with the demo library (or, where the finding
needs a misbehaving server, a small fake one on loopback speaking real SIP2).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, protocol, task
from twisted.internet.task import Clock

from ils.models import Item, Loan
from kiosk.config import hash_staff_code
from kiosk.devices import PadTag
from kiosk.journal import EntryState
from kiosk.model import Receipt, Screen
from kiosk.sipclient import LinkState, SipLinkError
from kiosk.transactions import Action, Result
from kiosk.wording import Refusal
from sip2server.protocol import (
    CirculationStatus,
    FeeType,
    ItemInformationRequest,
    ItemInformationResponse,
    SecurityMarker,
    decode,
    encode,
)
from tests.kiosk.conftest import ITEMS, PATRON, PIN, UNKNOWN_ITEM, LiveServer
from tests.kiosk.test_session import sign_in, start_kiosk
from tests.kiosk.test_sipclient import (
    _reactor,
    _SilentAfterLogin,
    make_link,
    reached,
)

STAFF_CARD = "29999000000001"


def _type(check: object, code: str) -> None:
    for key in code:
        check.press_key(key)  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_staff_card_and_code_work_on_the_out_of_order_screen(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Once out of service, the staff card and the staff code still open staff mode."""
    kiosk = await start_kiosk(
        live_server,
        tmp_path,
        kiosk={"staff_cards": [STAFF_CARD], "staff_code_hash": hash_staff_code("4711")},
    )
    try:
        check = kiosk.check
        await check.scan(STAFF_CARD)
        check.set_out_of_service(True)
        check.close_staff()
        assert Screen.OUT_OF_ORDER is check.screen

        await check.scan(STAFF_CARD)
        assert Screen.STAFF is check.screen
        check.close_staff()
        assert Screen.OUT_OF_ORDER is check.screen

        _type(check, "4711")
        await check.submit()
        assert Screen.STAFF is check.screen
        check.close_staff()

        # A patron's card does nothing there.
        await check.scan("21234000000018")
        assert Screen.OUT_OF_ORDER is check.screen
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_wrong_staff_codes_lock_staff_code_entry_for_a_growing_time(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """After three wrong staff codes even the right one fails until the lock
    ends; a code typed during the lock does not lengthen it; a wrong code after
    it locks for twice as long."""
    kiosk = await start_kiosk(
        live_server, tmp_path, kiosk={"staff_code_hash": hash_staff_code("0917")}
    )
    try:
        check = kiosk.check
        check.start()
        for wrong in ("0001", "0002", "0003"):
            _type(check, wrong)
            await check.submit()
            assert Screen.IDENTIFY is check.screen
        # Locked for 30 s; a try while locked is not checked, nor counted.
        _type(check, "0917")
        await check.submit()
        assert Screen.IDENTIFY is check.screen
        assert check.notice is not None
        assert Refusal.NOT_A_CARD is check.notice.refusal

        kiosk.clock.advance(29)
        check.end_session()
        check.start()
        _type(check, "0917")
        await check.submit()
        assert Screen.IDENTIFY is check.screen

        # The lock is over; one more wrong code locks for 60 s.
        kiosk.clock.advance(2)
        _type(check, "0004")
        await check.submit()
        kiosk.clock.advance(59)
        _type(check, "0917")
        await check.submit()
        assert Screen.IDENTIFY is check.screen

        kiosk.clock.advance(2)
        check.end_session()
        check.start()
        _type(check, "0917")
        await check.submit()
        assert Screen.STAFF is check.screen
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_the_staff_code_is_checked_off_the_event_loop(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Submitting a code returns to the loop at once; scrypt runs in a thread."""
    kiosk = await start_kiosk(
        live_server, tmp_path, kiosk={"staff_code_hash": hash_staff_code("0917")}
    )
    try:
        check = kiosk.check
        check.start()
        _type(check, "0917")
        pending = check.run(check.submit())
        assert not pending.called
        await pending
        assert Screen.STAFF is check.screen
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_a_journal_that_cannot_be_written_is_told_and_puts_the_kiosk_out_of_order(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A return the locked journal refuses says "see staff"; then out of order."""
    kiosk = await start_kiosk(live_server, tmp_path)
    blocker = sqlite3.connect(kiosk.journal.path, isolation_level=None)
    try:
        check = kiosk.check
        await live_server.stop()
        await reached(kiosk.link, LinkState.OUT_OF_ORDER)
        kiosk.link.stop()
        assert Screen.ATTRACT is check.screen

        blocker.execute("BEGIN EXCLUSIVE")
        await check.scan(ITEMS[0])
        assert Screen.ITEMS is check.screen
        assert not check.busy
        [row] = check.rows
        assert (ITEMS[0], Result.REFUSED, Refusal.NOT_RECORDED) == (
            row.barcode,
            row.result,
            row.refusal,
        )
        assert "locked" in check.staff_status()["offline journal"]

        check.finish()
        check.receipt(Receipt.NONE)
        assert Screen.OUT_OF_ORDER is check.screen
        blocker.execute("ROLLBACK")
        assert [] == kiosk.journal.pending()
    finally:
        blocker.close()
        kiosk.journal.close()


def _open_loans(url: str, barcode: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count())
                    .select_from(Loan)
                    .join(Item, Item.id == Loan.item_id)
                    .where(Item.barcode == barcode, Loan.returned_at.is_(None))
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest_twisted.ensureDeferred
async def test_an_online_return_waits_for_the_offline_journal_to_be_replayed(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A book lent offline and returned the moment the server is back ends returned."""
    kiosk = await start_kiosk(
        live_server,
        tmp_path,
        offline={"checkouts": True, "max_checkouts_per_patron": 5},
    )
    check = kiosk.check
    try:
        await live_server.stop()
        await reached(kiosk.link, LinkState.OUT_OF_ORDER)
        for _ in range(5):
            await check.scan(UNKNOWN_ITEM)  # a backlog of offline returns
        check.end_session()
        await check.scan(PATRON)
        check.choose(Action.BORROW)
        await check.scan(ITEMS[0])
        assert Result.QUEUED is check.rows[0].result
        check.end_session()

        returned: list[Any] = []

        def back(state: LinkState) -> None:
            # The patron returns the book as soon as the kiosk is online.
            if state is LinkState.ONLINE and not returned:
                returned.append(check.run(check.scan(ITEMS[0])))

        kiosk.link.on_state(back)
        await live_server.restart()
        await reached(kiosk.link, LinkState.ONLINE)
        await returned[0]
        while kiosk.journal.pending() or check.desk._replaying:
            await task.deferLater(live_server.reactor, 0, lambda: None)

        assert (ITEMS[0], Result.DONE) == (check.rows[0].barcode, check.rows[0].result)
        lent = kiosk.journal.results(1)[0]
        assert (ITEMS[0], EntryState.DONE) == (lent.item, lent.state)
        assert 0 == _open_loans(live_server.library.url, ITEMS[0])
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_a_set_with_bogus_part_numbers_is_not_lent(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Tags claiming part 3 of 2, disagreeing counts, or "1 of 0" are refused unsent."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.tags_placed(
            [PadTag("U1", ITEMS[0], 1, 2), PadTag("U3", ITEMS[0], 3, 2)]
        )
        await check.tags_placed(
            [PadTag("U4", ITEMS[1], 1, 2), PadTag("U5", ITEMS[1], 2, 3)]
        )
        await check.tags_placed([PadTag("U9", ITEMS[2], 1, 0)])
        assert {
            (ITEMS[0], Result.REFUSED, Refusal.SET_INCOMPLETE),
            (ITEMS[1], Result.REFUSED, Refusal.SET_INCOMPLETE),
            (ITEMS[2], Result.REFUSED, Refusal.SET_INCOMPLETE),
        } == {(row.barcode, row.result, row.refusal) for row in check.rows}
        for item in ITEMS[:3]:
            assert 0 == _open_loans(live_server.library.url, item)

        # A proper set of two goes through.
        check.tags_lifted(["U1", "U3"])
        await check.tags_placed(
            [PadTag("U1", ITEMS[0], 1, 2), PadTag("U2", ITEMS[0], 2, 2)]
        )
        assert (ITEMS[0], Result.DONE) == (check.rows[0].barcode, check.rows[0].result)
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_items_left_on_the_pad_are_ignored_in_the_next_session(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A book the last patron borrowed and left on the pad is neither shown nor
    returned for the next one until it is lifted and placed again."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.tags_placed([PadTag("U1", ITEMS[3])])
        assert Result.DONE is check.rows[0].result
        check.finish()
        check.receipt(Receipt.NONE)

        # The next patron chooses "return" with the book still lying there.
        check.start_returns()
        await check.tags_placed([PadTag("U1", ITEMS[3])])  # the reader reports it again
        # Let any item the view model started finish before looking.
        await check._lock.acquire()
        check._lock.release()
        assert [] == check.rows
        assert check.notice is None
        assert 1 == _open_loans(live_server.library.url, ITEMS[3])

        # Lifted and put back, it is an item of this session.
        check.tags_lifted(["U1"])
        await check.tags_placed([PadTag("U1", ITEMS[3])])
        assert (ITEMS[3], Result.DONE) == (check.rows[0].barcode, check.rows[0].result)
        assert 0 == _open_loans(live_server.library.url, ITEMS[3])
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_a_scan_at_the_pin_prompt_is_not_taken_for_a_pin(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A card scanned again (by a scanner or a keyboard wedge) at the PIN prompt
    is refused with a hint and costs no PIN try; the typed PIN then works."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await check.scan(PATRON)
        assert Screen.PIN is check.screen
        for _ in range(4):
            await check.scan(PATRON)  # a scanner
            assert check.notice is not None
            assert Refusal.PIN_NOT_SCANNED is check.notice.refusal
            _type(check, PATRON)  # a keyboard-wedge scanner types, then Enter
            await check.submit()
            assert check.notice is not None
            assert Refusal.PIN_NOT_SCANNED is check.notice.refusal
        assert (0, False) == (check.pin_tries, check.pin_locked)

        _type(check, PIN)
        await check.submit()
        assert Screen.MENU is check.screen
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


class _OutOfStep(_SilentAfterLogin):
    """A SIP2 server that logs in, then answers 17s out of step: always about
    the first item asked about (a duplicated reply), or, when `wrong_sequence`,
    from the second on about the right item but under the next sequence."""

    heard: ClassVar[list[bytes]] = []
    first_item: ClassVar[list[str]] = []
    wrong_sequence: ClassVar[bool] = False

    def other(self) -> None:
        decoded = decode(self.heard[-1])
        request = decoded.message
        assert isinstance(request, ItemInformationRequest)
        self.first_item.append(request.item_identifier)
        item = request.item_identifier if self.wrong_sequence else self.first_item[0]
        sequence = decoded.sequence
        if self.wrong_sequence and sequence is not None and len(self.first_item) > 1:
            sequence = (sequence + 1) % 10
        reply = ItemInformationResponse(
            circulation_status=CirculationStatus.OTHER,
            security_marker=SecurityMarker.OTHER,
            fee_type=FeeType.OTHER,
            transaction_date=None,
            item_identifier=item,
            title_identifier=f"Title of {item}",
        )
        self.transport.write(
            encode(reply, sequence=sequence, error_detection=sequence is not None)
        )


class _WrongSequence(_OutOfStep):
    heard: ClassVar[list[bytes]] = []
    first_item: ClassVar[list[str]] = []
    wrong_sequence: ClassVar[bool] = True


async def _ask_two_items(server: type[_OutOfStep], tmp_path: Path) -> Any:
    """Ask the fake server about two items; return the second request's error."""
    reactor = _reactor()
    factory = protocol.Factory.forProtocol(server)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    clock = Clock()
    link = make_link(port.getHost().port, tmp_path, clock)
    try:
        link.start()
        clock.advance(0)
        await reached(link, LinkState.ONLINE)
        first = await link.request(
            ItemInformationRequest(
                transaction_date=None, institution_id="DEMO", item_identifier=ITEMS[0]
            )
        )
        assert isinstance(first, ItemInformationResponse)
        assert ITEMS[0] == first.item_identifier
        with pytest.raises(SipLinkError) as raised:
            await link.request(
                ItemInformationRequest(
                    transaction_date=None,
                    institution_id="DEMO",
                    item_identifier=ITEMS[1],
                )
            )
        await reached(link, LinkState.OUT_OF_ORDER)
        return raised.value, link.problem
    finally:
        link.stop()
        await defer.maybeDeferred(port.stopListening)


@pytest_twisted.ensureDeferred
async def test_a_reply_about_another_item_is_not_taken_for_the_answer(
    tmp_path: Path,
) -> None:
    """A duplicated reply naming the first item fails the second request as
    sent (outcome unknown) and drops the connection."""
    error, problem = await _ask_two_items(_OutOfStep, tmp_path)
    assert error.sent is True
    assert "the reply to 17 names another item" == problem


@pytest_twisted.ensureDeferred
async def test_a_reply_with_another_sequence_number_is_not_taken(
    tmp_path: Path,
) -> None:
    """With error detection, a reply whose AY is not the request's is refused."""
    error, problem = await _ask_two_items(_WrongSequence, tmp_path)
    assert error.sent is True
    assert problem.startswith("reply sequence ")


@pytest_twisted.ensureDeferred
async def test_a_double_read_of_a_lent_item_keeps_it_lent_on_screen_and_receipt(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Two reads of one item at once: one loan, its row stays "lent", receipt "ok"."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await defer.gatherResults(
            [check.run(check.scan(ITEMS[0])), check.run(check.scan(ITEMS[0]))]
        )
        assert [(ITEMS[0], Action.BORROW, Result.DONE)] == [
            (row.barcode, row.action, row.result) for row in check.rows
        ]
        assert check.receipt_lines()[-1].endswith("(ok)")
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


@pytest_twisted.ensureDeferred
async def test_a_late_card_lookup_does_not_turn_the_staff_screen_into_a_menu(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Staff mode opened while a card is being looked up stays staff mode."""
    kiosk = await start_kiosk(
        live_server,
        tmp_path,
        patron={"pin_required": False},
    )
    check = kiosk.check
    try:
        await check.scan(PATRON)  # identified: the menu
        check.end_session()
        looking_up = check.run(check.scan(PATRON))
        check.open_staff()  # as the staff card or code would
        await looking_up
        assert Screen.STAFF is check.screen
        assert check.patron is None
    finally:
        kiosk.link.stop()
        kiosk.journal.close()


class _DropsAfterStatus(_SilentAfterLogin):
    """A SIP2 server that logs the kiosk in, answers its 99, then hangs up."""

    heard: ClassVar[list[bytes]] = []

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.heard and self.heard[-1].startswith(b"99"):
            self.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_the_back_off_keeps_growing_when_every_connection_drops_at_once(
    tmp_path: Path,
) -> None:
    """A server that hangs up right after each 99 is retried after 0.05, 0.1, 0.2 s."""
    factory = protocol.Factory.forProtocol(_DropsAfterStatus)
    port = _reactor().listenTCP(0, factory, interface="127.0.0.1")
    clock = Clock()
    link = make_link(
        port.getHost().port, tmp_path, clock, reconnect_min=0.05, reconnect_max=0.4
    )
    dropped: list[defer.Deferred[None]] = [defer.Deferred() for _ in range(3)]

    def changed(state: LinkState) -> None:
        if state is LinkState.OUT_OF_ORDER:
            next(d for d in dropped if not d.called).callback(None)

    link.on_state(changed)
    delays = []
    try:
        link.start()
        clock.advance(0)
        for drop in dropped:
            await drop
            (call,) = clock.getDelayedCalls()
            delays.append(round(call.getTime() - clock.seconds(), 3))
            if len(delays) < len(dropped):
                clock.advance(delays[-1])
    finally:
        link.stop()
        await defer.maybeDeferred(port.stopListening)
    assert [0.05, 0.1, 0.2] == delays


@pytest_twisted.ensureDeferred
async def test_an_item_scanned_just_after_a_timeout_is_not_returned(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """For five seconds after a timeout an item scan on the welcome screen does
    nothing (the patron's own loan stays lent); after that it is a return."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.scan(ITEMS[0])
        kiosk.clock.advance(check.config.timeouts.idle)
        assert Screen.ATTRACT is check.screen

        kiosk.clock.advance(4)
        await check.scan(ITEMS[0])
        assert (Screen.ATTRACT, []) == (check.screen, check.rows)
        assert 1 == _open_loans(live_server.library.url, ITEMS[0])

        kiosk.clock.advance(1)
        await check.scan(ITEMS[0])
        assert (Screen.ITEMS, Action.RETURN, Result.DONE) == (
            check.screen,
            check.rows[0].action,
            check.rows[0].result,
        )
    finally:
        kiosk.link.stop()
        kiosk.journal.close()
