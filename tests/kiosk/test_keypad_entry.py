"""What is typed or scanned reaches only where it belongs: keypad digits stay
on their screen, and a code SIP2 cannot carry as it is never leaves the kiosk."""

from __future__ import annotations

from pathlib import Path

import pytest_twisted

from kiosk.config import hash_staff_code
from kiosk.model import Screen
from kiosk.sipclient import LinkState
from kiosk.transactions import Action, Result
from kiosk.wording import Refusal
from tests.kiosk.conftest import ITEMS, PATRON, PIN, LiveServer
from tests.kiosk.test_session import Kiosk, kiosk, sign_in, start_kiosk
from tests.kiosk.test_sipclient import reached

__all__ = ["kiosk"]


@pytest_twisted.ensureDeferred
async def test_a_half_typed_staff_code_is_gone_when_the_kiosk_serves_again(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Digits of a staff code typed while out of order are not on the next
    patron's card keypad once the server is back."""
    started = await start_kiosk(
        live_server,
        tmp_path,
        offline={"enabled": False},
        kiosk={"staff_code_hash": hash_staff_code("4711")},
    )
    check = started.check
    try:
        await live_server.stop()
        await reached(started.link, LinkState.OUT_OF_ORDER)
        assert check.screen is Screen.OUT_OF_ORDER
        for digit in "471":
            check.press_key(digit)
        assert check.entry == "471"

        await live_server.restart()
        await reached(started.link, LinkState.ONLINE)
        check.start()

        assert check.screen is Screen.IDENTIFY
        assert check.entry == ""
    finally:
        started.link.stop()
        started.journal.close()


@pytest_twisted.ensureDeferred
async def test_digits_typed_before_a_card_is_scanned_do_not_reach_the_pin(
    kiosk: Kiosk,
) -> None:
    """Half a card number typed, then the card scanned: the PIN keypad starts
    empty and the right PIN is accepted at the first try."""
    check = kiosk.check
    check.start()
    for digit in "55":
        check.press_key(digit)

    await check.scan(PATRON)
    assert check.screen is Screen.PIN
    assert check.entry == ""
    for digit in PIN:
        check.press_key(digit)
    await check.submit()

    assert check.screen is Screen.MENU
    assert check.patron is not None


@pytest_twisted.ensureDeferred
async def test_codes_sip2_would_change_are_refused_before_sending(
    kiosk: Kiosk,
) -> None:
    """A `|`, a control byte or an overlong code is asked to be scanned again;
    the link stays up and the next good item is lent."""
    check = kiosk.check
    await sign_in(check)
    check.choose(Action.BORROW)
    for code in (ITEMS[2] + "|AA21234000000026", "3123400\x000000016", "3" * 300):
        await check.scan(code)
        assert check.notice is not None
        assert check.notice.refusal is Refusal.SCAN_UNREADABLE
        assert check.rows == []
        assert kiosk.link.state is LinkState.ONLINE

    await check.scan(ITEMS[2])
    assert [(row.barcode, row.result) for row in check.rows] == [
        (ITEMS[2], Result.DONE)
    ]
