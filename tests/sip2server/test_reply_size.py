"""How long a 64 with lists may be (issue #5): `Desk.reply_bytes`, measured in
the account's encoding, not a fixed 8192 bytes of UTF-8.

Layer: tests of `sip2server.answers.patrons` on a real SQLite library, and of
the server on real TCP on loopback. Ben's fees are written straight into the
table, one per entry, each 1p with the description the test gives.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest_twisted
import sqlalchemy as sa
from twisted.internet import reactor

from ils.circulation import Circulation
from ils.models import Fee, FeeKind, Patron
from sip2server.answers.common import Desk, Services, policy_of
from sip2server.answers.patrons import patron_information
from sip2server.app import start_server
from sip2server.protocol import PatronInformationRequest, decode, encode
from tests.ils.factories import Library
from tests.sip2server.conftest import (
    BEN,
    SipTarget,
    server_config,
    stock_library,
)
from tests.sip2server.test_list_pages_wire import FEES, TRAILER, info
from tests.sip2server.test_queue_places_wire import as_account
from tests.sip2server.test_wire_behaviour import in_thread

WHEN = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SMALL = 2048


def add_fees(library: Library, count: int, description: str) -> None:
    """`count` open 1p damage fees on Ben, each with `description`."""
    with library.database.transaction() as session:
        patron_id = session.scalars(
            sa.select(Patron.id).where(Patron.barcode == BEN)
        ).one()
        session.add_all(
            Fee(
                patron_id=patron_id,
                kind=FeeKind.DAMAGE,
                amount_minor=1,
                balance_minor=1,
                currency="GBP",
                description=description,
                created_at=WHEN,
            )
            for _ in range(count)
        )


def answer_64(library: Library, url: str, reply_bytes: int, **account: Any) -> bytes:
    """Ben's 64 (fine items, BP1 BQ60) as sent to an account with these
    settings, with this reply size, encoded in the account's encoding."""
    settings = server_config(url, **account).accounts[0]
    desk = Desk(
        account=settings,
        policy=policy_of(settings),
        now=WHEN.replace(tzinfo=None),
        moment=WHEN,
        zone=ZoneInfo("UTC"),
        reply_bytes=reply_bytes,
    )
    services = Services(
        circulation=Circulation(library.database),
        terminal_requests=None,
        fees=None,
        database=library.database,
        clock=lambda: WHEN,
    )
    request = decode(info(FEES, 1, 60)[:-1]).message
    assert isinstance(request, PatronInformationRequest)
    reply = patron_information(services, desk, request)
    return encode(reply, sequence=0, error_detection=True, encoding=settings.encoding)


def fine_items(frame: bytes) -> int:
    """How many AV fields a 64 carries."""
    return frame.count(b"|AV")


def test_a_smaller_reply_size_cuts_the_lists_to_fit(sqlite_url: str) -> None:
    """With 60 fees of 200-character descriptions and reply_bytes 2048, the 64
    is at most 2048 bytes, carries some entries, and one more (AV, id, ' 0.01 ',
    200 characters, |: at least 209 bytes) would not have fit."""
    library = stock_library(sqlite_url)
    try:
        add_fees(library, 60, "x" * 200)
        frame = answer_64(library, sqlite_url, SMALL)
    finally:
        library.database.dispose()

    assert len(frame) <= SMALL
    assert 0 < fine_items(frame) < 60
    assert len(frame) + 2 + 1 + 6 + 200 + 1 > SMALL


def test_the_reply_size_is_measured_in_the_accounts_encoding(sqlite_url: str) -> None:
    """With descriptions of 100 'é' (200 bytes in UTF-8, 100 in Latin-1), a
    Latin-1 account gets more entries in 2048 bytes than a UTF-8 one, and its
    frame in Latin-1 is still at most 2048 bytes."""
    library = stock_library(sqlite_url)
    try:
        add_fees(library, 60, "é" * 100)
        utf8 = answer_64(library, sqlite_url, SMALL)
        latin1 = answer_64(library, sqlite_url, SMALL, encoding="latin-1")
    finally:
        library.database.dispose()

    assert len(utf8) <= SMALL
    assert len(latin1) <= SMALL
    assert fine_items(utf8) < fine_items(latin1)


@pytest_twisted.inlineCallbacks
def test_a_server_with_a_smaller_max_frame_sends_a_64_that_fits_it(
    sqlite_url: str,
) -> Any:
    """With [server] max_frame_bytes = 2048, a 64 over TCP with 60 long fees is
    at most 2048 bytes (trailer and CR counted)."""
    library = stock_library(sqlite_url)
    add_fees(library, 60, "x" * 200)
    config = server_config(sqlite_url)
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"max_frame_bytes": SMALL})}
    )
    server = yield start_server(config, reactor)
    host, port = server.addresses()[0]
    target = SipTarget(host=host, port=port, library=library, server=server)
    try:
        (reply,) = yield in_thread(as_account, target, "kiosk1", [info(FEES)])
    finally:
        yield server.stop()
        library.database.dispose()

    assert len(reply) + TRAILER + 1 <= SMALL
