"""What is typed on the keypad stays on its screen: never shown to the next
patron, never carried into the PIN."""

from __future__ import annotations

from pathlib import Path

import pytest_twisted

from kiosk.config import hash_staff_code
from kiosk.model import Screen
from kiosk.sipclient import LinkState
from tests.kiosk.conftest import PATRON, PIN, LiveServer
from tests.kiosk.test_session import Kiosk, kiosk, start_kiosk
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
