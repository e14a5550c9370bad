"""Hold (15/16) place, change and cancel, and the holds of patron information
(63/64: AS available, CD unavailable), on the wire, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest_twisted

from ils.circulation import Circulation
from tests.sip2server.conftest import ADA, BEN, ITEMS, PIN, SipTarget
from tests.sip2server.test_mapping_checkin import (
    FIXED_16,
    FIXED_64,
    all_fields,
    checkin_frame,
    hold_frame,
    in_thread,
    one,
    talk,
)
from tests.sip2server.test_wire_behaviour import sip_now

# Last days (BW) are set in next year: ahead of today, and within the three
# years a hold's last day may be ahead (ils.holds.LONGEST_EXPIRY_DAYS).
NEXT_YEAR = date.today().year + 1
YEAR = str(NEXT_YEAR).encode("ascii")


def info_frame(patron: str, summary: bytes, *, start: int = 1, end: int = 5) -> bytes:
    """63: language 001, date, summary (10), then AO AA AC AD BP BQ."""
    assert 10 == len(summary)
    return (
        b"63001"
        + sip_now()
        + summary
        + b"AOCITY|AA"
        + patron.encode()
        + b"|AC|AD"
        + PIN.encode()
        + b"|BP%d|BQ%d|\r" % (start, end)
    )


@pytest_twisted.inlineCallbacks
def test_place_change_and_cancel_holds(sip_target: SipTarget) -> Any:
    """15+ by item with BS and BW places a hold (16 ok 1, BR 1, BW and BS back);
    by title (AJ) too; 15* moves it to WEST; 15- cancels it; a second 15- finds
    nothing; an unknown title, a second hold and an unknown pickup branch are
    refused."""
    frames = [
        hold_frame(
            b"+", BEN, item=ITEMS[0], pickup=b"NORTH", expires=YEAR + b"1231    235959"
        ),
        hold_frame(b"+", BEN, title="tide tables, VOLUME 02"),
        hold_frame(b"*", BEN, item=ITEMS[0], pickup=b"WEST"),
        hold_frame(b"-", BEN, item=ITEMS[0]),
        hold_frame(b"-", BEN, item=ITEMS[0]),
        hold_frame(b"+", BEN, title="No Such Title"),
        hold_frame(b"+", BEN, item=ITEMS[1]),
        hold_frame(b"+", BEN, item=ITEMS[2], pickup=b"MOON"),
    ]
    replies = yield in_thread(talk, sip_target, frames)
    placed, by_title, moved, cancelled, again, unknown, twice, nowhere = replies

    # 16: ok 1, available N, date; BW (an 18-character date), BR, BS, AO, AA.
    assert placed.startswith(b"161N")
    assert YEAR + b"1231    235959" == one(placed, FIXED_16, b"BW")
    assert b"1" == one(placed, FIXED_16, b"BR")
    assert b"NORTH" == one(placed, FIXED_16, b"BS")
    assert b"Tide Tables, volume 01" == one(placed, FIXED_16, b"AJ")
    assert by_title.startswith(b"161N")
    assert b"Tide Tables, volume 02" == one(by_title, FIXED_16, b"AJ")
    assert moved.startswith(b"161N")
    assert b"WEST" == one(moved, FIXED_16, b"BS")
    assert cancelled.startswith(b"161N")
    assert [b"Reservation cancelled."] == all_fields(cancelled, FIXED_16)[b"AF"]
    assert again.startswith(b"160N")
    assert [b"That reservation was not found on this card."] == all_fields(
        again, FIXED_16
    )[b"AF"]
    assert unknown.startswith(b"160N")
    assert twice.startswith(b"160N")
    assert [b"You have already reserved this title."] == all_fields(twice, FIXED_16)[
        b"AF"
    ]
    assert nowhere.startswith(b"160N")
    assert [b"That pickup branch is not known; please choose another."] == (
        all_fields(nowhere, FIXED_16)[b"AF"]
    )


@pytest_twisted.inlineCallbacks
def test_patron_information_lists_available_and_unavailable_holds(
    sip_target: SipTarget,
) -> Any:
    """A trapped hold counts as available (AS, the item) and a queued one as
    unavailable (CD, the title); every summary position set to Y is answered."""
    frames = [
        hold_frame(b"+", BEN, item=ITEMS[4]),
        hold_frame(b"+", BEN, item=ITEMS[5]),
        checkin_frame(ITEMS[5]),
        info_frame(BEN, b"Y    Y    "),
        info_frame(BEN, b"          "),
    ]
    replies = yield in_thread(talk, sip_target, frames)
    info, bare = replies[3], replies[4]

    # 64: status (14 blanks: nothing denied), language 001, date, then counts:
    # holds 0001, overdue 0000, charged 0000, fines 0000, recalls 0000,
    # unavailable holds 0001.
    assert info.startswith(b"64" + b" " * 14 + b"001")
    assert b"000100000000000000000001" == info[2 + 14 + 3 + 18 : FIXED_64]
    fields = all_fields(info, FIXED_64)
    assert [ITEMS[5].encode()] == fields[b"AS"]
    assert [b"Tide Tables, volume 05"] == fields[b"CD"]
    assert b"Y" == one(info, FIXED_64, b"BL")
    assert b"Y" == one(info, FIXED_64, b"CQ")
    # Counts are always sent; lists only when asked for.
    assert b"000100000000000000000001" == bare[2 + 14 + 3 + 18 : FIXED_64]
    assert b"AS" not in all_fields(bare, FIXED_64)


@pytest_twisted.inlineCallbacks
def test_patron_information_lists_overdue_charged_and_recalled_items(
    sip_target: SipTarget,
) -> Any:
    """An overdue loan another patron waits for is in AT, AU and BU; the 14-
    character status has only "recall overdue" (position 12) set."""
    circulation = Circulation(sip_target.library.database)
    ago = datetime.now(UTC) - timedelta(days=30)
    circulation.checkout(ADA, ITEMS[6], branch_code="NORTH", at=ago)
    circulation.checkout(ADA, ITEMS[7], branch_code="NORTH")
    frames = [
        hold_frame(b"+", BEN, item=ITEMS[6]),
        info_frame(ADA, b" YY Y     "),
    ]
    _held, info = yield in_thread(talk, sip_target, frames)

    assert info.startswith(b"64" + b" " * 12 + b"Y " + b"001")
    # holds 0000, overdue 0001, charged 0002, fines 0000, recalls 0001, 0000.
    assert b"000000010002000000010000" == info[2 + 14 + 3 + 18 : FIXED_64]
    fields = all_fields(info, FIXED_64)
    assert [ITEMS[6].encode()] == fields[b"AT"]
    assert [ITEMS[6].encode(), ITEMS[7].encode()] == fields[b"AU"]
    assert [ITEMS[6].encode()] == fields[b"BU"]
