"""A patron is let in only on the server's word: card and PIN both said good.

Findings of the second adversarial trial of issue #6: a 64 without CQ (SIP2
makes it optional) was taken as a right PIN (finding 11), and a 63 whose reply
was lost or did not match made the card an unchecked offline patron while the
server was up (finding 4, escalation). The servers here are small ones on
loopback writing real SIP2 frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest_twisted

from kiosk.model import Screen
from kiosk.wording import Refusal
from sip2server.protocol import PatronInformationResponse, PatronStatus, decode
from tests.kiosk.conftest import PATRON
from tests.kiosk.test_server_texts import _close, _kiosk_on
from tests.kiosk.test_session import sign_in
from tests.kiosk.test_sipclient import _SilentAfterLogin


def _patron_reply(patron: str, valid_pin: bool | None) -> PatronInformationResponse:
    return PatronInformationResponse(
        patron_status=PatronStatus(),
        transaction_date=None,
        hold_items_count=0,
        overdue_items_count=0,
        charged_items_count=0,
        fine_items_count=0,
        recall_items_count=0,
        unavailable_holds_count=0,
        institution_id="DEMO",
        patron_identifier=patron,
        personal_name="Doe, Jane",
        valid_patron=True,
        valid_patron_password=valid_pin,
    )


class _SilentOnPin(_SilentAfterLogin):
    """A SIP2 server that knows every card and never says whether the PIN is
    right (no CQ in its 64)."""

    heard: ClassVar[list[bytes]] = []

    def other(self) -> None:
        request = decode(self.heard[-1]).message
        patron = getattr(request, "patron_identifier", PATRON)
        self.reply(_patron_reply(patron, None))


class _AnswersAboutAnother(_SilentAfterLogin):
    """A SIP2 server whose 64 names another patron (a reply out of step)."""

    heard: ClassVar[list[bytes]] = []

    def other(self) -> None:
        self.reply(_patron_reply("21234000000026", True))


@pytest_twisted.ensureDeferred
async def test_a_pin_the_server_does_not_confirm_is_a_wrong_pin(
    tmp_path: Path,
) -> None:
    """With a PIN required, a 64 without CQ does not let the patron in: the
    PIN counts as wrong and the patron stays at the PIN prompt."""
    kiosk, listening = await _kiosk_on(_SilentOnPin, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check, pin="0000")
    finally:
        await _close(kiosk, listening)

    assert (Screen.PIN, None, 1) == (check.screen, check.patron, check.pin_tries)
    assert check.notice is not None
    assert Refusal.PIN_WRONG is check.notice.refusal


@pytest_twisted.ensureDeferred
async def test_a_lost_answer_about_the_card_is_never_an_offline_patron(
    tmp_path: Path,
) -> None:
    """A 64 about another patron fails the check; with offline checkouts on,
    the card is still not let in unchecked: "server unreachable", card prompt."""
    kiosk, listening = await _kiosk_on(
        _AnswersAboutAnother,
        tmp_path,
        offline={"checkouts": True},
    )
    check = kiosk.check
    try:
        await sign_in(check)
    finally:
        await _close(kiosk, listening)

    assert (Screen.IDENTIFY, None) == (check.screen, check.patron)
    assert check.notice is not None
    assert Refusal.SERVER_UNREACHABLE is check.notice.refusal
