"""A renewal tried on the account screen never hides a loan made in the session.

Finding A3 of the second fresh-user walk of issue #6: a book borrowed, then
"Renew" tapped for it on the account screen (refused: too soon), and the
finish screen and receipt said the book was not lent; and with two copies of
one title on loan, the refusal could not be told from which. Against the real
server and the demo library.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted

from kiosk.i18n import Catalogues
from kiosk.model import Screen
from kiosk.present import Presenter
from kiosk.transactions import Action, Result
from kiosk.wording import Refusal, Wording
from tests.kiosk.conftest import ITEMS, LiveServer
from tests.kiosk.test_session import sign_in, start_kiosk


@pytest_twisted.ensureDeferred
async def test_a_refused_renewal_leaves_the_loan_on_the_receipt(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Borrow, then Renew on the account screen (too soon): the account shows
    the refusal, and the finish screen and receipt still say the book was lent
    with its due date."""
    kiosk = await start_kiosk(live_server, tmp_path)
    check = kiosk.check
    try:
        await sign_in(check)
        check.choose(Action.BORROW)
        await check.scan(ITEMS[0])
        check.back_to_menu()
        await check.open_account()
        await check.renew(ITEMS[0])
        account_rows = [(r.action, r.result, r.refusal) for r in check.account_rows]
        check.back_to_menu()
        check.finish()
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    assert [(Action.RENEW, Result.REFUSED, Refusal.RENEWAL_TOO_SOON)] == account_rows
    assert Screen.FINISH is check.screen
    (row,) = check.rows
    assert (Action.BORROW, Result.DONE) == (row.action, row.result)
    assert row.due is not None
    words = Presenter(Catalogues(["en"]), Wording.load())
    assert "Done: 1. Not done: 0." == words.summary("en", check.rows)
    assert check.receipt_lines()[-1].endswith(f"due {row.due:%Y-%m-%d} (ok)")


def test_two_copies_of_one_title_on_an_account_are_told_apart() -> None:
    """A title held under two barcodes is shown with each barcode; a title
    under one barcode (a loan and the renewal tried for it) stays plain."""
    pairs = [
        ("Pride and prejudice", "31234000000016"),
        ("Pride and prejudice", "31234000000024"),
        ("Moby-Dick", "31234000000032"),
        ("Moby-Dick", "31234000000032"),
    ]

    assert [
        "Pride and prejudice (31234000000016)",
        "Pride and prejudice (31234000000024)",
        "Moby-Dick",
        "Moby-Dick",
    ] == Presenter.told_apart(pairs)
