"""Renew (29/30) and renew all (65/66) on the wire, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pysip2
import pytest_twisted

from ils.circulation import Circulation
from ils.fees import FeeService
from ils.models import FeeKind
from tests.sip2server.conftest import ADA, BEN, ITEMS, LOGIN, PASSWORD, PIN, SipTarget
from tests.sip2server.test_mapping_checkin import (
    FIXED_30,
    FIXED_66,
    all_fields,
    in_thread,
    one,
    talk,
)
from tests.sip2server.test_third_party_clients import (
    _now18,
    _PysipConnection,
    _sip2_client,
)
from tests.sip2server.test_wire_behaviour import sip_now


def renew_frame(
    patron: str, *, item: str = "", title: str = "", pin: str = PIN
) -> bytes:
    """29: third party N, no block N, date, blank nb due date, then AO AA AD AB
    (or AJ) AC."""
    frame = (
        b"29NN"
        + sip_now()
        + b" " * 18
        + b"AOCITY|AA"
        + patron.encode()
        + b"|AD"
        + pin.encode()
        + b"|"
    )
    if item:
        frame += b"AB" + item.encode() + b"|"
    if title:
        frame += b"AJ" + title.encode() + b"|"
    return frame + b"AC|\r"


def renew_all_frame(patron: str, pin: str = PIN) -> bytes:
    """65: date, then AO AA AD AC."""
    return (
        b"65"
        + sip_now()
        + b"AOCITY|AA"
        + patron.encode()
        + b"|AD"
        + pin.encode()
        + b"|AC|\r"
    )


def lend_ten_days_ago(target: SipTarget, patron: str, *items: str) -> None:
    """Loans made ten days ago, so that a renewal gives a later due date."""
    circulation = Circulation(target.library.database)
    ago = datetime.now(UTC) - timedelta(days=10)
    for item in items:
        circulation.checkout(patron, item, branch_code="NORTH", at=ago)


@pytest_twisted.inlineCallbacks
def test_renew_then_renew_all_lists_renewed_and_unrenewed(sip_target: SipTarget) -> Any:
    """29 renews a loan (30 ok 1, renewal Y, an 18-character AH), a second 29 is
    refused at the rule's limit of one renewal, 29 by title (AJ) renews the other
    loan, and 65 lists the loan at its limit in BN, none in BM."""
    lend_ten_days_ago(sip_target, ADA, ITEMS[0], ITEMS[1])
    frames = [
        renew_frame(ADA, item=ITEMS[0]),
        renew_frame(ADA, item=ITEMS[0]),
        renew_frame(ADA, title="Tide Tables, volume 02"),
        renew_frame(BEN, item=ITEMS[0]),
        renew_all_frame(ADA),
    ]
    renewed, again, by_title, not_his, everything = yield in_thread(
        talk, sip_target, frames
    )

    # 30: ok 1, renewal ok Y, magnetic media U, desensitize U.
    assert renewed.startswith(b"301YUU")
    assert ITEMS[0].encode() == one(renewed, FIXED_30, b"AB")
    assert 18 == len(one(renewed, FIXED_30, b"AH") or b"")
    assert again.startswith(b"300NUU")
    assert [b"This item cannot be renewed again."] == all_fields(again, FIXED_30)[b"AF"]
    assert b"" == one(again, FIXED_30, b"AH")
    assert by_title.startswith(b"301Y")
    assert ITEMS[1].encode() == one(by_title, FIXED_30, b"AB")
    assert not_his.startswith(b"300N")

    # 66: ok 1, renewed 0000, unrenewed 0002; both loans are at their limit.
    assert everything.startswith(b"6610000" + b"0002")
    fields = all_fields(everything, FIXED_66)
    assert b"BM" not in fields
    assert [ITEMS[0].encode(), ITEMS[1].encode()] == fields[b"BN"]
    assert b"Renewed 0 of 2 items." == fields[b"AF"][0]


@pytest_twisted.inlineCallbacks
def test_renew_all_renews_and_a_wrong_pin_renews_nothing(sip_target: SipTarget) -> Any:
    """65 renews both of BEN's loans (BM lists them, 0002 0000); with a wrong PIN
    it is refused (ok 0, counts 0) with the PIN's screen message."""
    lend_ten_days_ago(sip_target, BEN, ITEMS[2], ITEMS[3])
    frames = [renew_all_frame(BEN, pin="9999"), renew_all_frame(BEN)]
    wrong, right = yield in_thread(talk, sip_target, frames)

    assert wrong.startswith(b"66000000000")
    assert [b"The PIN does not match this library card."] == all_fields(
        wrong, FIXED_66
    )[b"AF"]
    assert right.startswith(b"66100020000")
    assert [ITEMS[2].encode(), ITEMS[3].encode()] == all_fields(right, FIXED_66)[b"BM"]


@pytest_twisted.inlineCallbacks
def test_pypi_sip2_client_renews_reserves_and_pays(
    sip_target: SipTarget, tmp_path: Any
) -> Any:
    """The PyPI `sip2` client renews a loan (30 ok 1), places a hold (16 ok 1),
    pays a fee by its id (38 Y) and gets a negative 66 for its undated 65."""

    lend_ten_days_ago(sip_target, ADA, ITEMS[4])
    fee = FeeService(sip_target.library.database).charge(
        ADA, kind=FeeKind.DAMAGE, amount_minor=150, description="wet", by="desk"
    )

    def session() -> dict[str, Any]:
        client = _sip2_client(sip_target, tmp_path, checksums=True)
        seen: dict[str, Any] = {}
        try:
            client.sip_login_response(
                client.get_response(client.sip_login_request(LOGIN, PASSWORD))
            )
            client.patron, client.patronpwd = ADA, PIN
            seen["renew"] = client.sip_renew_response(
                client.get_response(client.sip_renew_request(itemIdentifier=ITEMS[4]))
            )
            seen["hold"] = client.sip_hold_response(
                client.get_response(
                    client.sip_hold_request("+", itemIdentifier=ITEMS[5])
                )
            )
            seen["paid"] = client.sip_fee_paid_response(
                client.get_response(
                    client.sip_fee_paid_request(
                        3, 0, "1.50", feeIdentifier=str(fee.id), currencyType="GBP"
                    )
                )
            )
            seen["all"] = client.get_response(client.sip_renew_all_request())
        finally:
            client.disconnect()
        return seen

    seen = yield in_thread(session)

    assert "1" == seen["renew"]["fixed"]["Ok"]
    assert [ITEMS[4]] == seen["renew"]["variable"]["AB"]
    assert "1" == seen["hold"]["fixed"]["Ok"]
    assert "Y" == seen["paid"]["fixed"]["PaymentAccepted"]
    assert ["Paid 1.50 GBP; 0.00 GBP still owed."] == seen["paid"]["variable"]["AF"]
    assert seen["all"].startswith("660")


@pytest_twisted.inlineCallbacks
def test_pysip2_strict_codec_accepts_renewal_hold_and_fee_replies(
    sip_target: SipTarget,
) -> Any:
    """30, 66, 16 and 38 decode under pysip2's strict rules (checksums, required
    fields, every field closed by `|`), with the values the server meant."""

    lend_ten_days_ago(sip_target, BEN, ITEMS[8], ITEMS[9])
    fee = FeeService(sip_target.library.database).charge(
        BEN, kind=FeeKind.DAMAGE, amount_minor=75, description="bent", by="desk"
    )

    def session() -> list[Any]:
        connection = _PysipConnection(sip_target)
        now = _now18()
        who = {
            "institution_id": "CITY",
            "patron_identifier": BEN,
            "patron_password": PIN,
            "terminal_password": "",
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
                    pysip2.RenewRequest(
                        third_party_allowed="N",
                        no_block="N",
                        transaction_date=now,
                        nb_due_date=now,
                        item_identifier=ITEMS[8],
                        **who,
                    )
                ),
                connection.exchange(
                    pysip2.RenewAllRequest(transaction_date=now, **who)
                ),
                connection.exchange(
                    pysip2.HoldRequest(
                        hold_mode="+",
                        transaction_date=now,
                        pickup_location="WEST",
                        item_identifier=ITEMS[10],
                        **who,
                    )
                ),
                connection.exchange(
                    pysip2.FeePaidRequest(
                        transaction_date=now,
                        fee_type="03",
                        payment_type="00",
                        currency_type="GBP",
                        fee_amount="0.75",
                        fee_identifier=str(fee.id),
                        transaction_id="T-1",
                        **who,
                    )
                ),
            ]
        finally:
            connection.close()

    renewed, everything, held, paid = yield in_thread(session)

    # pysip2 keeps fixed fields as the characters sent.
    assert ("1", "Y") == (renewed.message.ok, renewed.message.renewal_ok)
    assert ITEMS[8] == renewed.message.item_identifier
    # ITEMS[8] is now at its limit of one renewal; ITEMS[9] renews.
    assert ("0001", "0001") == (
        everything.message.renewed_count,
        everything.message.unrenewed_count,
    )
    assert [ITEMS[9]] == list(everything.message.renewed_items)
    assert [ITEMS[8]] == list(everything.message.unrenewed_items)
    assert ("1", "WEST") == (held.message.ok, held.message.pickup_location)
    assert ("Y", "T-1") == (paid.message.payment_accepted, paid.message.transaction_id)
