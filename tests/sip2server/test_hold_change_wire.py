"""Hold change (15 with hold mode `*`): a new last day (BW), a new pickup branch
(BS) or both in one transaction, and the refusals, over real TCP with raw
frames, the PyPI `sip2` client and pysip2's strict codec, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pysip2
import pytest_twisted

from ils.circulation import Circulation
from ils.holds import EXPIRY_OF_TRAPPED, EXPIRY_PASSED
from ils.results import HoldView
from tests.sip2server.conftest import (
    ADA,
    BEN,
    INSTITUTION,
    ITEMS,
    LOGIN,
    PASSWORD,
    PIN,
    SipTarget,
)
from tests.sip2server.test_mapping_checkin import (
    FIXED_16,
    all_fields,
    checkin_frame,
    hold_frame,
    in_thread,
    one,
    talk,
)
from tests.sip2server.test_third_party_clients import (
    _now18,
    _PysipConnection,
    _sip2_client,
)

# Last days (BW) are set in next year: ahead of today, and within the three
# years a hold's last day may be ahead (ils.holds.LONGEST_EXPIRY_DAYS).
NEXT_YEAR = date.today().year + 1
YEAR = str(NEXT_YEAR).encode("ascii")
UNKNOWN_PICKUP = b"That pickup branch is not known; please choose another."


def pending_holds(target: SipTarget, patron: str) -> list[tuple[str, date | None]]:
    """A patron's pending holds as stored: (pickup branch, last day)."""
    holds = Circulation(target.library.database).holds_of(patron)
    views: tuple[HoldView, ...] = holds.pending
    return [(view.pickup_branch_code, view.expires_on) for view in views]


@pytest_twisted.inlineCallbacks
def test_change_sets_bw_and_bs_together_or_alone_and_refuses_whole(
    sip_target: SipTarget,
) -> Any:
    """15* with BW and BS changes both; BW alone keeps BS and BS alone keeps BW;
    an unknown BS with a good BW, or a good BS with a past BW, changes nothing;
    a BW in UTC (`   Z`) is read as the branch's date."""
    item = ITEMS[0]
    frames = [
        hold_frame(
            b"+", BEN, item=item, pickup=b"NORTH", expires=YEAR + b"1231    235959"
        ),
        hold_frame(
            b"*", BEN, item=item, pickup=b"WEST", expires=YEAR + b"0630    120000"
        ),
        hold_frame(b"*", BEN, item=item, expires=YEAR + b"0701    000000"),
        hold_frame(b"*", BEN, item=item, pickup=b"NORTH"),
        hold_frame(
            b"*", BEN, item=item, pickup=b"MOON", expires=YEAR + b"1001    120000"
        ),
        hold_frame(b"*", BEN, item=item, pickup=b"WEST", expires=b"20200101    120000"),
        # 23:59:59 UTC on 1 August is 00:59:59 on the 2nd in London (summer time).
        hold_frame(b"*", BEN, item=item, expires=YEAR + b"0801   Z235959"),
    ]
    replies = yield in_thread(talk, sip_target, frames)
    placed, both, bw_only, bs_only, moon, past, utc = replies

    assert placed.startswith(b"161N")
    # 16: ok 1, available N; BW is the end of the stored last day, local time.
    assert both.startswith(b"161N")
    assert YEAR + b"0630    235959" == one(both, FIXED_16, b"BW")
    assert b"WEST" == one(both, FIXED_16, b"BS")
    assert [
        b"Reservation to be collected at WEST, wanted until 30 June " + YEAR + b"."
    ] == (all_fields(both, FIXED_16)[b"AF"])
    assert bw_only.startswith(b"161N")
    assert YEAR + b"0701    235959" == one(bw_only, FIXED_16, b"BW")
    assert b"WEST" == one(bw_only, FIXED_16, b"BS")
    assert bs_only.startswith(b"161N")
    assert YEAR + b"0701    235959" == one(bs_only, FIXED_16, b"BW")
    assert b"NORTH" == one(bs_only, FIXED_16, b"BS")
    assert moon.startswith(b"160N")
    assert [UNKNOWN_PICKUP] == all_fields(moon, FIXED_16)[b"AF"]
    assert past.startswith(b"160N")
    assert [EXPIRY_PASSED.encode()] == all_fields(past, FIXED_16)[b"AF"]
    assert utc.startswith(b"161N")
    assert YEAR + b"0802    235959" == one(utc, FIXED_16, b"BW")
    assert b"NORTH" == one(utc, FIXED_16, b"BS")
    assert [("NORTH", date(NEXT_YEAR, 8, 2))] == pending_holds(sip_target, BEN)


@pytest_twisted.inlineCallbacks
def test_change_of_bw_is_refused_once_a_copy_waits_but_bs_still_moves_it(
    sip_target: SipTarget,
) -> Any:
    """A hold whose copy waits on the North hold shelf refuses a new BW (with BS
    too, nothing moves), and BS alone sends the copy in transit to West."""
    item = ITEMS[1]
    frames = [
        hold_frame(b"+", BEN, item=item, expires=YEAR + b"1231    120000"),
        checkin_frame(item),
        hold_frame(b"*", BEN, item=item, expires=YEAR + b"0315    120000"),
        hold_frame(
            b"*", BEN, item=item, pickup=b"WEST", expires=YEAR + b"0315    120000"
        ),
    ]
    replies = yield in_thread(talk, sip_target, frames)
    _placed, _trapped, bw, bw_and_bs = replies
    waiting = Circulation(sip_target.library.database).holds_of(BEN).available
    (bs,) = yield in_thread(
        talk, sip_target, [hold_frame(b"*", BEN, item=item, pickup=b"WEST")]
    )

    assert bw.startswith(b"160N")
    assert [EXPIRY_OF_TRAPPED.encode()] == all_fields(bw, FIXED_16)[b"AF"]
    assert bw_and_bs.startswith(b"160N")
    assert [EXPIRY_OF_TRAPPED.encode()] == all_fields(bw_and_bs, FIXED_16)[b"AF"]
    assert [("NORTH", date(NEXT_YEAR, 12, 31), item)] == [
        (view.pickup_branch_code, view.expires_on, view.trapped_item_barcode)
        for view in waiting
    ]
    # In transit to West now: no longer available (N), last day as it was.
    assert bs.startswith(b"161N")
    assert b"WEST" == one(bs, FIXED_16, b"BS")
    assert YEAR + b"1231    235959" == one(bs, FIXED_16, b"BW")
    assert [("WEST", date(NEXT_YEAR, 12, 31))] == pending_holds(sip_target, BEN)


@pytest_twisted.inlineCallbacks
def test_pypi_sip2_client_changes_a_holds_last_day_and_pickup(
    sip_target: SipTarget, tmp_path: Path
) -> Any:
    """The PyPI `sip2` client places a hold, then changes it with BW (its own
    local-time stamp for noon on 15 March next year) and BS WEST: 16 ok 1 with both."""
    noon = datetime(NEXT_YEAR, 3, 15, 12, 0).timestamp()

    def session() -> list[str]:
        client = _sip2_client(sip_target, tmp_path, checksums=True)
        try:
            client.sip_login_response(
                client.get_response(client.sip_login_request(LOGIN, PASSWORD))
            )
            client.patron, client.patronpwd = ADA, PIN
            return [
                client.get_response(
                    client.sip_hold_request("+", itemIdentifier=ITEMS[2])
                ),
                client.get_response(
                    client.sip_hold_request(
                        "*",
                        expirationDate=noon,
                        itemIdentifier=ITEMS[2],
                        pickupLocation="WEST",
                    )
                ),
            ]
        finally:
            client.disconnect()

    placed, changed = yield in_thread(session)
    reply = changed.encode()

    assert placed.startswith("161N")
    assert b"BW" not in placed.encode()[FIXED_16:]
    assert reply.startswith(b"161N")
    assert YEAR + b"0315    235959" == one(reply, FIXED_16, b"BW")
    assert b"WEST" == one(reply, FIXED_16, b"BS")
    assert [("WEST", date(NEXT_YEAR, 3, 15))] == pending_holds(sip_target, ADA)


@pytest_twisted.inlineCallbacks
def test_pysip2_strict_codec_accepts_the_reply_to_a_change(
    sip_target: SipTarget,
) -> Any:
    """A pysip2-built 15* with BW and BS gets a 16 that decodes under pysip2's
    strict rules with the new BW, BS and queue position 1."""

    def session() -> list[Any]:
        connection = _PysipConnection(sip_target)
        who = {
            "institution_id": INSTITUTION,
            "patron_identifier": BEN,
            "patron_password": PIN,
            "terminal_password": "",
            "item_identifier": ITEMS[3],
        }
        try:
            connection.exchange(
                pysip2.LoginRequest(
                    uid_algorithm="0",
                    pwd_algorithm="0",
                    login_user_id=LOGIN,
                    login_password=PASSWORD,
                    location_code="NORTH",
                )
            )
            return [
                connection.exchange(
                    pysip2.HoldRequest(hold_mode="+", transaction_date=_now18(), **who)
                ),
                connection.exchange(
                    pysip2.HoldRequest(
                        hold_mode="*",
                        transaction_date=_now18(),
                        expiration_date=f"{NEXT_YEAR}0410    090000",
                        pickup_location="WEST",
                        **who,
                    )
                ),
            ]
        finally:
            connection.close()

    placed, changed = yield in_thread(session)

    assert "1" == placed.message.ok
    assert ("1", "N") == (changed.message.ok, changed.message.available)
    assert f"{NEXT_YEAR}0410    235959" == changed.message.expiration_date
    assert ("WEST", "1") == (
        changed.message.pickup_location,
        changed.message.queue_position,
    )
