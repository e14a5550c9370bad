"""Taps that arrive while the server is still answering: Finish waits for the
item on its way, and a second tap on Renew does not hide the first renewal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from ils.db import Database
from ils.models import Item, Loan
from kiosk.model import Receipt, Screen
from kiosk.transactions import Action, Result
from tests.kiosk.conftest import ITEMS, LiveServer
from tests.kiosk.test_session import Kiosk, kiosk, sign_in

__all__ = ["kiosk"]


def open_loans(url: str, barcode: str) -> list[tuple[datetime, int]]:
    """(due date, renewals) of the item's open loans, read from the database."""
    database = Database(url)
    try:
        with database.read() as session:
            rows = session.execute(
                sa.select(Loan.due_at, Loan.renewals)
                .join(Item, Item.id == Loan.item_id)
                .where(Item.barcode == barcode, Loan.returned_at.is_(None))
            ).all()
    finally:
        database.dispose()
    return [(due, renewals) for due, renewals in rows]


def make_renewable(url: str, barcode: str) -> None:
    """Lent three weeks ago and due tomorrow, so that a renewal moves the date."""
    database = Database(url)
    now = datetime.now(UTC)
    try:
        with database.transaction() as session:
            loan = session.scalars(
                sa.select(Loan)
                .join(Item, Item.id == Loan.item_id)
                .where(Item.barcode == barcode, Loan.returned_at.is_(None))
            ).one()
            loan.checked_out_at = now - timedelta(days=21)
            loan.due_at = now + timedelta(days=1)
    finally:
        database.dispose()


@pytest_twisted.ensureDeferred
async def test_finish_tapped_while_an_item_is_lent_waits_for_it(
    kiosk: Kiosk, live_server: LiveServer
) -> None:
    """Finish during a checkout: the item is shown, then the receipt is offered."""
    check = kiosk.check
    await sign_in(check)
    check.choose(Action.BORROW)

    lending = check.run(check.scan(ITEMS[1]))
    check.finish()
    assert check.screen is Screen.ITEMS
    await lending

    assert check.screen is Screen.FINISH
    assert [(row.barcode, row.result) for row in check.rows] == [
        (ITEMS[1], Result.DONE)
    ]
    assert len(open_loans(live_server.library.url, ITEMS[1])) == 1


@pytest_twisted.ensureDeferred
async def test_a_second_tap_on_renew_keeps_the_renewal_shown(
    kiosk: Kiosk, live_server: LiveServer
) -> None:
    """Two taps on Renew: one renewal, shown as done on screen and receipt."""
    check = kiosk.check
    await sign_in(check)
    check.choose(Action.BORROW)
    await check.scan(ITEMS[0])
    check.finish()
    check.receipt(Receipt.NONE)
    make_renewable(live_server.library.url, ITEMS[0])
    [(due_before, _)] = open_loans(live_server.library.url, ITEMS[0])

    await sign_in(check)
    await check.open_account()
    await defer.gatherResults(
        [check.run(check.renew(ITEMS[0])), check.run(check.renew(ITEMS[0]))]
    )

    [(due_after, renewals)] = open_loans(live_server.library.url, ITEMS[0])
    assert renewals == 1
    assert due_after > due_before
    assert [(row.barcode, row.result) for row in check.account_rows] == [
        (ITEMS[0], Result.DONE)
    ]
    assert [row.result for row in check.rows if row.barcode == ITEMS[0]] == [
        Result.DONE
    ]
