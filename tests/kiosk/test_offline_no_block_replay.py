"""A kiosk's offline checkouts replayed over the server's loan limit: the server
takes 11 with no block Y as a loan already made, records it and names the limit
it went over, and the kiosk keeps the result for staff.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_twisted
import sqlalchemy as sa

from ils.models import CirculationLog, Item, Loan, LoanEvent, LoanRule, Patron
from kiosk.journal import EntryState
from kiosk.model import Screen
from kiosk.sipclient import LinkState
from kiosk.transactions import Action, Result
from tests.kiosk.conftest import ITEMS, PATRON, LiveServer
from tests.kiosk.test_session import _turn, start_kiosk
from tests.kiosk.test_sipclient import reached


@pytest_twisted.ensureDeferred
async def test_offline_checkouts_over_the_servers_limit_are_recorded(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Two items lent offline, then every loan rule's limit set to none at all:
    the replayed 11s are both lent, each log row names max_loans_reached."""
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
        check.choose(Action.BORROW)
        for barcode in ITEMS[1:3]:
            await check.scan(barcode)
        assert [Result.QUEUED, Result.QUEUED] == [row.result for row in check.rows]
        check.end_session()

        # The loans were made two hours ago (the journal says so), and while
        # the kiosk was offline the library allowed no loans at all.
        made = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        journal = sqlite3.connect(str(tmp_path / "journal.sqlite3"))
        with journal:
            journal.execute("UPDATE journal SET happened_at = ?", (made.isoformat(),))
        journal.close()
        engine = sa.create_engine(live_server.library.url)
        with engine.begin() as connection:
            connection.execute(sa.update(LoanRule).values(max_loans=0))

        await live_server.restart()
        await reached(kiosk.link, LinkState.ONLINE)
        while kiosk.journal.pending() or check.desk._replaying:
            await _turn()
        results = list(reversed(kiosk.journal.results()))

        assert [EntryState.DONE, EntryState.DONE] == [e.state for e in results]
        assert all("recorded from offline" in (e.result or "") for e in results)
        with engine.connect() as connection:
            lent = connection.execute(
                sa.select(Item.barcode)
                .join(Loan, Loan.item_id == Item.id)
                .join(Patron, Patron.id == Loan.patron_id)
                .where(Patron.barcode == PATRON, Loan.returned_at.is_(None))
            ).scalars()
            assert set(ITEMS[1:3]) <= set(lent)
            # Dated when they were made, whatever the kiosk machine's zone.
            started = connection.execute(
                sa.select(Loan.checked_out_at)
                .join(Item, Item.id == Loan.item_id)
                .where(Item.barcode.in_(ITEMS[1:3]), Loan.returned_at.is_(None))
            ).scalars()
            assert [made.replace(tzinfo=None)] * 2 == [
                moment.replace(tzinfo=None) for moment in started
            ]
            details = connection.execute(
                sa.select(CirculationLog.detail)
                .join(Item, Item.id == CirculationLog.item_id)
                .where(
                    Item.barcode.in_(ITEMS[1:3]),
                    CirculationLog.event == LoanEvent.CHECKOUT,
                )
            ).scalars()
            assert 2 == sum(
                "offline, recorded over: max_loans_reached" in (detail or "")
                for detail in details
            )
        engine.dispose()
    finally:
        kiosk.link.stop()
        kiosk.journal.close()
