"""Hold (15) with a last day (BW) far ahead (issue #5, trial 3: BW 9999-12-31
was accepted): a BW more than three years on is refused, when placing and when
changing, with a screen message; today and a day within the three years still
work. On a real server on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest_twisted

from ils.holds import EXPIRY_TOO_FAR
from tests.sip2server.conftest import BEN, ITEMS, SipTarget
from tests.sip2server.test_hold_change_wire import pending_holds
from tests.sip2server.test_mapping_checkin import (
    FIXED_16,
    all_fields,
    hold_frame,
    in_thread,
    one,
    talk,
)


def bw(day: date) -> bytes:
    """A SIP2 local date and time (noon) on `day`, as a terminal sends BW."""
    return day.strftime("%Y%m%d    120000").encode("ascii")


@pytest_twisted.inlineCallbacks
def test_a_last_day_years_ahead_is_refused_and_nothing_is_held(
    sip_target: SipTarget,
) -> Any:
    """15+ with BW 9999-12-31 is answered 16 ok 0 with the "too far ahead"
    message, and the patron has no hold afterwards."""
    (reply,) = yield in_thread(
        talk,
        sip_target,
        [hold_frame(b"+", BEN, item=ITEMS[0], expires=b"99991231    120000")],
    )

    assert reply.startswith(b"160N")
    assert [EXPIRY_TOO_FAR.encode()] == all_fields(reply, FIXED_16)[b"AF"]
    assert [] == pending_holds(sip_target, BEN)


@pytest_twisted.inlineCallbacks
def test_today_and_a_date_within_three_years_still_work(
    sip_target: SipTarget,
) -> Any:
    """15+ with today's BW is placed; 15* to 1,000 days on (under three years)
    is applied; 15* to 1,200 days on (over three years) is refused and leaves
    the 1,000-day last day as it was."""
    # The pickup branch's today (NORTH keeps London time), as BW is read.
    today = datetime.now(ZoneInfo("Europe/London")).date()
    near, far = today + timedelta(days=1000), today + timedelta(days=1200)
    frames = [
        hold_frame(b"+", BEN, item=ITEMS[1], expires=bw(today)),
        hold_frame(b"*", BEN, item=ITEMS[1], expires=bw(near)),
        hold_frame(b"*", BEN, item=ITEMS[1], expires=bw(far)),
    ]
    placed, changed, refused = yield in_thread(talk, sip_target, frames)

    assert placed.startswith(b"161N")
    assert changed.startswith(b"161N")
    assert near.strftime("%Y%m%d    235959").encode() == one(changed, FIXED_16, b"BW")
    assert refused.startswith(b"160N")
    assert [EXPIRY_TOO_FAR.encode()] == all_fields(refused, FIXED_16)[b"AF"]
    assert [("NORTH", near)] == pending_holds(sip_target, BEN)
