"""Fee paid (37/38), fees in patron information (63/64: AV, BV, FA..FG), the
fourteen status flags and the PIN lock, on the wire, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from ils.fees import FeeService
from ils.models import FeeKind
from tests.sip2server.conftest import ADA, BEN, ITEMS, PIN, SipTarget
from tests.sip2server.test_holds_wire import info_frame
from tests.sip2server.test_mapping_checkin import (
    FIXED_12,
    FIXED_24,
    FIXED_38,
    FIXED_64,
    all_fields,
    in_thread,
    one,
    talk,
)
from tests.sip2server.test_wire_behaviour import checkout_body, sip_now


def pay_frame(
    patron: str,
    amount: bytes,
    *,
    currency: bytes = b"GBP",
    fee_id: int | None = None,
    payment_type: bytes = b"00",
    transaction: bytes = b"till-7",
) -> bytes:
    """37: date, fee type 01, payment type, currency, then BV AO AA AC AD CG BK."""
    frame = (
        b"37"
        + sip_now()
        + b"01"
        + payment_type
        + currency
        + b"BV"
        + amount
        + b"|AOCITY|AA"
        + patron.encode()
        + b"|AC|AD"
        + PIN.encode()
        + b"|"
    )
    if fee_id is not None:
        frame += b"CG%d|" % fee_id
    return frame + b"BK" + transaction + b"|\r"


def status_frame(patron: str, pin: str) -> bytes:
    """23: language 001, date, then AO AA AC AD."""
    return (
        b"23001"
        + sip_now()
        + b"AOCITY|AA"
        + patron.encode()
        + b"|AC|AD"
        + pin.encode()
        + b"|\r"
    )


@pytest_twisted.inlineCallbacks
def test_fees_are_listed_and_paid_by_id_or_oldest_first(sip_target: SipTarget) -> Any:
    """64 lists both fees (AV "id amount description", BV 3.50, FA..FG when
    position 6 is Y), and one page of them for BP/BQ; 37 pays one by CG,
    refuses another currency, pays the rest oldest first (a repeated BK gets
    the same receipt, not a second payment), and then finds nothing owed."""
    fees = FeeService(sip_target.library.database)
    torn = fees.charge(
        ADA, kind=FeeKind.DAMAGE, amount_minor=250, description="torn cover", by="desk"
    )
    card = fees.charge(
        ADA, kind=FeeKind.MANUAL, amount_minor=100, description="new card", by="desk"
    )
    frames = [
        info_frame(ADA, b"   Y  Y   "),
        info_frame(ADA, b"   Y      ", start=2, end=2),
        pay_frame(ADA, b"1.00", fee_id=card.id, payment_type=b"02"),
        pay_frame(ADA, b"2.50", currency=b"USD", transaction=b"till-8"),
        pay_frame(ADA, b"2.50", transaction=b"till-9"),
        pay_frame(ADA, b"2.50", transaction=b"till-9"),
        pay_frame(ADA, b"0.50", transaction=b"till-10"),
    ]
    replies = yield in_thread(talk, sip_target, frames)
    info, second, by_id, dollars, oldest, repeated, nothing = replies

    # Counts: holds 0000, overdue 0000, charged 0000, fine items 0002, ...
    assert b"000000000000000200000000" == info[2 + 14 + 3 + 18 : FIXED_64]
    fields = all_fields(info, FIXED_64)
    assert [b"3.50"] == fields[b"BV"]
    assert [b"GBP"] == fields[b"BH"]
    assert [
        b"%d 2.50 torn cover" % torn.id,
        b"%d 1.00 new card" % card.id,
    ] == fields[b"AV"]
    assert [b"2.50", b"1.00"] == fields[b"FA"]
    assert [b"%d" % torn.id, b"%d" % card.id] == fields[b"FE"]
    # BP2 BQ2: the second fee only; the count is still of the whole list.
    assert b"0002" == second[2 + 14 + 3 + 18 + 12 : 2 + 14 + 3 + 18 + 16]
    assert [b"%d 1.00 new card" % card.id] == all_fields(second, FIXED_64)[b"AV"]
    assert b"FA" not in all_fields(second, FIXED_64)

    # 38: payment accepted Y, date, AO, AA, BK echoed.
    assert by_id.startswith(b"38Y")
    assert b"till-7" == one(by_id, FIXED_38, b"BK")
    assert [b"Paid 1.00 GBP; 2.50 GBP still owed."] == all_fields(by_id, FIXED_38)[
        b"AF"
    ]
    assert dollars.startswith(b"38N")
    assert [b"That currency is not accepted here."] == all_fields(dollars, FIXED_38)[
        b"AF"
    ]
    assert oldest.startswith(b"38Y")
    assert [b"Paid 2.50 GBP; 0.00 GBP still owed."] == all_fields(oldest, FIXED_38)[
        b"AF"
    ]
    # The same terminal and BK again is the same payment: its receipt, once.
    # (compared without the transaction date, which may have ticked on).
    assert (oldest[:3], oldest[FIXED_38:]) == (repeated[:3], repeated[FIXED_38:])
    assert nothing.startswith(b"38N")
    assert [b"Nothing is owed on this card."] == all_fields(nothing, FIXED_38)[b"AF"]


@pytest_twisted.inlineCallbacks
def test_pin_lock_is_answered_with_cq_n_and_a_clear_message(
    sip_target: SipTarget,
) -> Any:
    """After five wrong PINs the card's PIN is locked: even the right PIN gets
    24 with CQ N and a screen message saying so, and checkout is refused."""
    frames = [status_frame(BEN, "0000") for _ in range(5)]
    frames += [
        status_frame(BEN, PIN),
        checkout_body(BEN, ITEMS[0]) + b"AD" + PIN.encode() + b"|\r",
        status_frame(ADA, PIN),
    ]
    replies = yield in_thread(talk, sip_target, frames)
    locked, refused, fine = replies[5], replies[6], replies[7]

    assert b"N" == one(replies[0], FIXED_24, b"CQ")
    assert b"N" == one(locked, FIXED_24, b"CQ")
    assert b"Y" == one(locked, FIXED_24, b"BL")
    assert [
        b"Too many wrong PINs: this card's PIN is locked for now; please ask staff."
    ] == all_fields(locked, FIXED_24)[b"AF"]
    assert refused.startswith(b"120")
    assert b"N" == one(refused, FIXED_12, b"CQ")
    # 24 for a card in good standing: 14 blanks, CQ Y.
    assert fine.startswith(b"24" + b" " * 14 + b"001")
    assert b"Y" == one(fine, FIXED_24, b"CQ")
