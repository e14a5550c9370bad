"""What a hostile or broken server sends never reaches the patron as it is.

Each test stands for finding N-H of the second adversarial trial of issue #6:
control characters in the server's texts, replies cut short by an LF inside
them, loans whose due date cannot be read, and the account screen showing the
previous reading while it reloads. The misbehaving server is a small Twisted
server on loopback that writes real SIP2 frames, hostile bytes spliced in and
checksummed as a real server would; the account test runs against the real
server and the demo library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.task import Clock

from kiosk.i18n import Catalogues
from kiosk.model import Screen
from kiosk.present import Presenter
from kiosk.sipclient import LinkState, SipLinkError
from kiosk.transactions import Action, Result
from kiosk.wording import Refusal, Wording
from sip2server.protocol import (
    CheckoutResponse,
    CirculationStatus,
    EndSessionResponse,
    FeeDetail,
    FeeType,
    ItemInformationRequest,
    ItemInformationResponse,
    Message,
    PatronInformationResponse,
    PatronStatus,
    SecurityMarker,
    checksum,
    decode,
    encode,
)
from tests.kiosk.conftest import ITEMS, PATRON, LiveServer
from tests.kiosk.test_session import Kiosk, sign_in, start_kiosk
from tests.kiosk.test_sipclient import (
    _reactor,
    _SilentAfterLogin,
    make_link,
    reached,
)

# Stand-ins the fake server writes through the codec (which would make control
# characters safe), then swaps for the hostile bytes before the checksum.
HOSTILE = {
    b"@NAME@": b"Doe, Jane\x00\x1b[31mRED",
    b"@AF@": b"Welcome\x07back",
    b"@TITLE@": b"[i]T[/i]\x00Moby\xc2\x9b31mDick",
    b"@FEE@": b"Late\x1bfee",
}


def _frame(message: Message, sequence: int | None, swaps: dict[bytes, bytes]) -> bytes:
    """`message` as a frame with `swaps` made in its bytes, then AY and AZ."""
    body = encode(message)[:-1]
    for stand_in, hostile in swaps.items():
        body = body.replace(stand_in, hostile)
    if sequence is None:
        return body + b"\r"
    body += f"AY{sequence}AZ".encode()
    return body + checksum(body).encode() + b"\r"


class _HostileTexts(_SilentAfterLogin):
    """A SIP2 server whose names, titles, screen messages and fee descriptions
    hold control characters, and whose due dates cannot be read."""

    heard: ClassVar[list[bytes]] = []

    def other(self) -> None:
        request = decode(self.heard[-1]).message
        reply: Message
        if request.command == "63":
            reply = PatronInformationResponse(
                patron_status=PatronStatus(),
                transaction_date=None,
                hold_items_count=0,
                overdue_items_count=0,
                charged_items_count=0,
                fine_items_count=1,
                recall_items_count=0,
                unavailable_holds_count=0,
                institution_id="DEMO",
                patron_identifier=request.patron_identifier,  # type: ignore[attr-defined]
                personal_name="@NAME@",
                valid_patron=True,
                valid_patron_password=True,
                currency_type="USD",
                fee_amount="1.00",
                screen_message=("@AF@",),
                fee_details=(FeeDetail(fee_remaining="1.00", title="@FEE@"),),
            )
        elif request.command == "11":
            reply = CheckoutResponse(
                ok=True,
                renewal_ok=False,
                transaction_date=None,
                institution_id="DEMO",
                patron_identifier=request.patron_identifier,  # type: ignore[attr-defined]
                item_identifier=request.item_identifier,  # type: ignore[attr-defined]
                title_identifier="@TITLE@",
                due_date="99999999    999999",
                screen_message=("@AF@",),
            )
        else:
            reply = EndSessionResponse(
                end_session=True,
                transaction_date=None,
                institution_id="DEMO",
                patron_identifier=PATRON,
            )
        self.transport.write(_frame(reply, self.sequence, HOSTILE))


@dataclass
class _FakeServer:
    """Where a fake server listens (what `start_kiosk` needs of a live server)."""

    port: int


async def _kiosk_on(
    server: type[protocol.Protocol], tmp_path: Path, **sections: dict[str, Any]
) -> Any:
    """A kiosk view model online against `server`, listening on loopback."""
    listening = _reactor().listenTCP(
        0, protocol.Factory.forProtocol(server), interface="127.0.0.1"
    )
    kiosk = await start_kiosk(
        _FakeServer(listening.getHost().port),  # type: ignore[arg-type]
        tmp_path,
        **sections,
    )
    return kiosk, listening


async def _close(kiosk: Kiosk, listening: Any) -> None:
    kiosk.link.stop()
    kiosk.journal.close()
    await defer.maybeDeferred(listening.stopListening)


def _controls(text: str) -> list[str]:
    return [c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]


@pytest_twisted.ensureDeferred
async def test_control_characters_in_server_texts_never_reach_the_patron(
    tmp_path: Path,
) -> None:
    """NUL, ESC, BEL and C1 bytes in the name, screen message, title and fee
    description become a space each run, on screen and in the email receipt."""
    kiosk, listening = await _kiosk_on(_HostileTexts, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        assert Screen.MENU is check.screen
        check.choose(Action.BORROW)
        await check.scan(ITEMS[0])
        check.back_to_menu()
        account = await check.desk.account(check.patron)  # type: ignore[arg-type]
    finally:
        await _close(kiosk, listening)

    assert check.patron is not None
    assert "Doe, Jane [31mRED" == check.patron.name
    assert "Welcome back" == check.patron.screen_message
    (row,) = check.rows
    assert "[i]T[/i] Moby 31mDick" == row.title
    assert "Welcome back" == row.screen_message
    assert "Late fee" == account.fees[0].title

    words = Presenter(Catalogues(["en"]), Wording.load())
    shown = [
        words.greeting("en", check),
        words.row("en", row).title,
        words.row("en", row).detail,
        *check.receipt_lines(),
    ]
    assert [] == [text for text in shown if _controls(text)]


@pytest_twisted.ensureDeferred
async def test_a_loan_whose_due_date_cannot_be_read_says_so(tmp_path: Path) -> None:
    """A checkout done with an unreadable AH tells the patron, in their
    language, to ask at the desk for the due date, instead of a bare "Done."."""
    kiosk, listening = await _kiosk_on(_HostileTexts, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.scan(ITEMS[0])
    finally:
        await _close(kiosk, listening)

    (row,) = check.rows
    assert (Result.DONE, None) == (row.result, row.due)
    words = Presenter(Catalogues(["en", "fr", "de"]), Wording.load())
    assert (
        "Borrowed. We could not read the due date: please ask at the desk."
        == words.row("en", row).detail
    )
    assert words.row("fr", row).detail.startswith("Emprunté. Nous n'avons pas pu")
    assert words.row("de", row).detail.startswith("Ausgeliehen. Das Rückgabedatum")
    assert "borrow: [i]T[/i] Moby 31mDick due date not known (ok)" in (
        check.receipt_lines()
    )


class _CutReply(_SilentAfterLogin):
    """A SIP2 server answering 17 with a frame spoilt as `spoil` says: an LF in
    the title, no trailer, AY without AZ, or a wrong checksum."""

    heard: ClassVar[list[bytes]] = []
    spoil: ClassVar[str] = ""

    def other(self) -> None:
        request = decode(self.heard[-1]).message
        assert isinstance(request, ItemInformationRequest)
        reply = ItemInformationResponse(
            circulation_status=CirculationStatus.AVAILABLE,
            security_marker=SecurityMarker.OTHER,
            fee_type=FeeType.OTHER,
            transaction_date=None,
            item_identifier=request.item_identifier,
            title_identifier="@TITLE@",
        )
        frame = _frame(reply, self.sequence, {b"@TITLE@": b"First\nSecond"})
        if self.spoil == "no trailer":
            frame = _frame(reply, None, {})
        elif self.spoil == "no checksum":
            frame = _frame(reply, None, {})[:-1] + f"AY{self.sequence}".encode() + b"\r"
        elif self.spoil == "wrong checksum":
            good = _frame(reply, self.sequence, {})
            wrong = b"0000" if not good.endswith(b"0000\r") else b"1111"
            frame = good[:-5] + wrong + b"\r"
        self.transport.write(frame)


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        ("line feed", "18 without a checksum (AZ)"),
        ("no trailer", "18 without a checksum (AZ)"),
        ("no checksum", "unusable reply: AY appears before the end"),
        ("wrong checksum", "unusable reply"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_with_error_detection_a_reply_without_a_good_trailer_is_refused(
    spoil: str, problem: str, tmp_path: Path
) -> None:
    """With error detection on, a reply cut by an LF, without AY and AZ, without
    AZ or with a wrong checksum fails the request as sent and drops the link."""
    _CutReply.spoil = spoil
    listening = _reactor().listenTCP(
        0, protocol.Factory.forProtocol(_CutReply), interface="127.0.0.1"
    )
    clock = Clock()
    link = make_link(listening.getHost().port, tmp_path, clock)
    try:
        link.start()
        clock.advance(0)
        await reached(link, LinkState.ONLINE)
        with pytest.raises(SipLinkError) as raised:
            await link.request(
                ItemInformationRequest(
                    transaction_date=None,
                    institution_id="DEMO",
                    item_identifier=ITEMS[0],
                )
            )
        await reached(link, LinkState.OUT_OF_ORDER)
    finally:
        link.stop()
        await defer.maybeDeferred(listening.stopListening)

    assert raised.value.sent is True
    assert link.problem.startswith(problem)


class _CutCheckout(_SilentAfterLogin):
    """A SIP2 server that lets the patron in and answers 11 with an LF inside
    the title, so the frame ends before its trailer."""

    heard: ClassVar[list[bytes]] = []

    def other(self) -> None:
        request = decode(self.heard[-1]).message
        if request.command != "11":
            _HostileTexts.other(self)  # type: ignore[arg-type]
            return
        reply = CheckoutResponse(
            ok=True,
            renewal_ok=False,
            transaction_date=None,
            institution_id="DEMO",
            patron_identifier=PATRON,
            item_identifier=request.item_identifier,  # type: ignore[attr-defined]
            title_identifier="@TITLE@",
            due_date="20270101",
        )
        self.transport.write(_frame(reply, self.sequence, {b"@TITLE@": b"Cut\nhere"}))


@pytest_twisted.ensureDeferred
async def test_a_checkout_reply_cut_short_is_told_as_server_unreachable(
    tmp_path: Path,
) -> None:
    """The patron's row says the server could not be reached, not "Borrowed"
    with half a title."""
    kiosk, listening = await _kiosk_on(_CutCheckout, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.scan(ITEMS[0])
    finally:
        await _close(kiosk, listening)

    (row,) = check.rows
    assert (Result.REFUSED, Refusal.SERVER_UNREACHABLE) == (row.result, row.refusal)


@pytest_twisted.ensureDeferred
async def test_reopening_my_account_shows_nothing_old_while_it_reloads(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """The second "My account" starts empty; the new reading replaces it."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        await check.open_account()
        assert check.account is not None
        check.back_to_menu()
        reopening = defer.ensureDeferred(check.open_account())
        # The reply has not come yet: the screen waits, showing nothing old.
        assert (Screen.ACCOUNT, None, True) == (
            check.screen,
            check.account,
            check.busy,
        )
        await reopening
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    assert check.account is not None
    assert not check.busy
