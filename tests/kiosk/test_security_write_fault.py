"""A reader driver that raises while writing tag security never strands a patron.

Finding 16 of the second adversarial trial of issue #6: an exception other
than the driver's ReaderError from the security write left the patron at
"One moment..." with the loan made and no row. The stand-in below is the RFID
hardware we lack, failing in a way the shipped driver does not (yet); the
server is the real one with the demo library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

from kiosk.devices import PadTag
from kiosk.transactions import Action, ItemOutcome, Result
from tests.kiosk.conftest import ITEMS, LiveServer
from tests.kiosk.test_session import sign_in, start_kiosk


class _FaultyPad:
    """Devices whose RFID security write raises an unexpected error."""

    def status(self) -> dict[str, str]:
        return {"rfid": "faulty"}

    def print_receipt(
        self, card: str | None, rows: list[ItemOutcome], language: str
    ) -> bool:
        return False

    def print_receipt_later(
        self, card: str | None, rows: list[ItemOutcome], language: str
    ) -> Any:
        return None

    async def set_security(self, uids: list[str], secured: bool) -> bool:
        raise RuntimeError("the reader's driver fell over")


@pytest_twisted.ensureDeferred
async def test_a_security_write_that_raises_shows_the_loan_and_sends_to_the_desk(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """The book lent from the pad gets its row (lent, tag not updated: see the
    desk) and the screen is not left busy."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    check.devices = _FaultyPad()  # type: ignore[assignment]
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.tags_placed([PadTag("U1", ITEMS[0])])
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    (row,) = check.rows
    assert (ITEMS[0], Result.DONE, True) == (
        row.barcode,
        row.result,
        row.security_failed,
    )
    assert not check.busy
