"""Lists of patron information (63/64) in pages of a sane size (issue #5, trial 2
F16): without BP/BQ a list gets the account's `default_list_items` entries (50
by default); BP/BQ are honoured; no 64 is longer than `REPLY_BYTES`; the counts
stay whole. On a real server on loopback, on SQLite and on PostgreSQL.

Ben's fees are written straight into the table, all at one moment, so they are
listed by id; fee n (from 1) of a test is n pence unless the test says
otherwise, so the AV amounts and BV can be checked by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from ils.models import Fee, FeeKind, Patron
from sip2server.answers.patrons import MOST_LIST_ITEMS, REPLY_BYTES, list_range
from tests.sip2server.conftest import (
    BEN,
    LOGIN,
    PASSWORD,
    PIN,
    SipTarget,
    accounts_config,
    serving,
    stock_library,
)
from tests.sip2server.test_mapping_checkin import FIXED_64, all_fields, in_thread
from tests.sip2server.test_queue_places_wire import as_account
from tests.sip2server.test_wire_behaviour import sip_now

# An account whose policy sends 5 entries a list when BP/BQ are not given.
SHORT = "short"
# The summary with a Y at (0-based) position 3, fine items (AV); and also at
# 6, the fee details (FA..FG).
FEES = b"   Y      "
FEES_AND_DETAILS = b"   Y  Y   "
# Where the fine items count sits in 64: after command, status, language, date
# and the counts of hold, overdue and charged items.
FINE_COUNT = slice(2 + 14 + 3 + 18 + 3 * 4, 2 + 14 + 3 + 18 + 4 * 4)
WHEN = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# AY, a sequence digit, AZ and four hex digits; and the CR that ends a frame.
TRAILER = 9
TERMINATOR = 1


@pytest_twisted.async_yield_fixture
async def list_target(database_url: str) -> AsyncIterator[SipTarget]:
    """The stock library served to the test kiosk and to the `short` account."""
    library = stock_library(database_url)
    accounts: list[dict[str, Any]] = [
        {"login": LOGIN, "password": PASSWORD},
        {
            "login": SHORT,
            "password": PASSWORD,
            "policy": {"default_list_items": 5},
        },
    ]
    config = accounts_config(database_url, accounts)
    async with serving(library, config) as running:
        yield running


def add_fees(
    target: SipTarget, amounts: list[int], description: str = "fee"
) -> list[int]:
    """Open damage fees on Ben, one per amount (pence), in order; their ids."""
    with target.library.database.transaction() as session:
        patron_id = session.scalars(
            sa.select(Patron.id).where(Patron.barcode == BEN)
        ).one()
        fees = [
            Fee(
                patron_id=patron_id,
                kind=FeeKind.DAMAGE,
                amount_minor=amount,
                balance_minor=amount,
                currency="GBP",
                description=description,
                created_at=WHEN,
            )
            for amount in amounts
        ]
        session.add_all(fees)
        session.flush()
        return [fee.id for fee in fees]


def info(summary: bytes, start: int | None = None, end: int | None = None) -> bytes:
    """63 for Ben with his PIN, and BP and BQ only when given."""
    frame = b"63001" + sip_now() + summary + b"AOCITY|AA" + BEN.encode()
    frame += b"|AC|AD" + PIN.encode() + b"|"
    if start is not None:
        frame += b"BP%d|" % start
    if end is not None:
        frame += b"BQ%d|" % end
    return frame + b"\r"


def amounts(reply: bytes) -> list[str]:
    """The amount of each AV entry ("FEE-ID AMOUNT DESCRIPTION"), in order."""
    return [
        entry.split(b" ")[1].decode()
        for entry in all_fields(reply, FIXED_64).get(b"AV", [])
    ]


def pence(first: int, last: int) -> list[str]:
    """The amounts first..last pence as SIP2 writes them in GBP."""
    return [f"{n // 100}.{n % 100:02d}" for n in range(first, last + 1)]


@pytest_twisted.inlineCallbacks
def test_without_bp_bq_a_list_is_a_default_page(list_target: SipTarget) -> Any:
    """With 120 fees of 1..120p: no BP/BQ gives the first 50 (0.01..0.50); BP51
    alone the next 50; BP101 BQ130 the last 20; BQ3 alone the first 3; the
    `short` account gets 5; the count is 0120 and BV 72.60 (1+...+120 = 7260p)
    every time."""
    add_fees(list_target, list(range(1, 121)))
    frames = [info(FEES), info(FEES, 51), info(FEES, 101, 130), info(FEES, None, 3)]
    default, second, last, first_three = yield in_thread(
        as_account, list_target, LOGIN, frames
    )
    (short,) = yield in_thread(as_account, list_target, SHORT, [info(FEES)])

    assert pence(1, 50) == amounts(default)
    assert pence(51, 100) == amounts(second)
    assert pence(101, 120) == amounts(last)
    assert pence(1, 3) == amounts(first_three)
    assert pence(1, 5) == amounts(short)
    for reply in (default, second, last, first_three, short):
        assert b"0120" == reply[FINE_COUNT]
        assert [b"72.60"] == all_fields(reply, FIXED_64)[b"BV"]


@pytest_twisted.inlineCallbacks
def test_3001_fees_without_bp_bq_send_50_and_a_huge_range_fits_a_frame(
    list_target: SipTarget,
) -> Any:
    """The trial's repro, 3,001 fees of 1p: a 63 without BP/BQ gets 50 entries
    (not 3,001); BP1 BQ3001 gets the oldest fees in order, as many as fit in
    REPLY_BYTES (trailer and CR counted) and more than the default page; with
    the fee details asked for too, both lists are cut alike; the count is 3001
    and BV 30.01 throughout."""
    ids = add_fees(list_target, [1] * 3001, description="")
    frames = [info(FEES), info(FEES, 1, 3001), info(FEES_AND_DETAILS, 1, 3001)]
    default, ranged, detailed = yield in_thread(as_account, list_target, LOGIN, frames)

    assert 50 == len(amounts(default))
    listed = all_fields(ranged, FIXED_64)[b"AV"]
    assert 50 < len(listed) < 3001
    assert [str(fee_id).encode() for fee_id in ids[: len(listed)]] == [
        entry.split(b" ")[0] for entry in listed
    ]
    assert len(ranged) + TRAILER + TERMINATOR <= REPLY_BYTES
    fields = all_fields(detailed, FIXED_64)
    assert len(fields[b"AV"]) == len(fields[b"FE"]) < len(listed)
    assert len(detailed) + TRAILER + TERMINATOR <= REPLY_BYTES
    for reply in (default, ranged, detailed):
        assert b"3001" == reply[FINE_COUNT]
        assert [b"30.01"] == all_fields(reply, FIXED_64)[b"BV"]


@pytest_twisted.inlineCallbacks
def test_a_page_too_long_for_a_frame_carries_as_many_entries_as_fit(
    list_target: SipTarget,
) -> Any:
    """60 fees with 200-character descriptions: the default page of 50 (about
    10.5 KB) is cut to the first entries that fit in REPLY_BYTES, and one more
    entry (AV + id + " 0.01 " + 200 characters + |) would not have fit."""
    ids = add_fees(list_target, [1] * 60, description="x" * 200)
    (reply,) = yield in_thread(as_account, list_target, LOGIN, [info(FEES)])

    listed = all_fields(reply, FIXED_64)[b"AV"]
    sent = len(reply) + TRAILER + TERMINATOR
    assert sent <= REPLY_BYTES
    following = ids[len(listed)]
    next_entry = 2 + len(str(following)) + len(" 0.01 ") + 200 + 1
    assert sent + next_entry > REPLY_BYTES
    assert 0 < len(listed) < 50
    assert b"0060" == reply[FINE_COUNT]


@pytest.mark.parametrize(
    ("default", "start", "end", "expected"),
    [
        (50, None, None, (1, 50)),
        (50, 0, None, (1, 50)),
        (50, 7, None, (7, 56)),
        (5, None, 3, (1, 3)),
        (50, 10, 12, (10, 12)),
        (50, 1, 100_000, (1, MOST_LIST_ITEMS)),
        (50, 200, 5000, (200, 200 + MOST_LIST_ITEMS - 1)),
        (50, 9, 4, (9, 4)),
    ],
)
def test_list_range_fills_in_and_caps_bp_bq(
    default: int, start: int | None, end: int | None, expected: tuple[int, int]
) -> None:
    """BP/BQ as given up to MOST_LIST_ITEMS (1000) entries; the default page from
    BP (or 1) without BQ; BQ before BP stays empty."""
    assert 1000 == MOST_LIST_ITEMS
    assert expected == list_range(default, start, end)
