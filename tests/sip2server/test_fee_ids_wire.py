"""Fee ids (CG of 37) and item ranges (BP/BQ of 63) that no database key can
be, on the wire, on SQLite and PostgreSQL (second adversarial trial, F6)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import ILogObserver, globalLogPublisher
from zope.interface import provider

from ils.fees import FeeService
from ils.models import FeeKind
from sip2server.answers.fees import fee_number
from tests.sip2server.conftest import ADA, PIN, SipTarget
from tests.sip2server.test_mapping_checkin import (
    FIXED_38,
    FIXED_64,
    all_fields,
    in_thread,
    talk,
)
from tests.sip2server.test_wire_behaviour import sip_now

NOT_FOUND = b"That charge was not found on this card."


def pay_naming(fee_text: bytes, amount: bytes = b"0.10") -> bytes:
    """37 for ADA in GBP (fee type 01, cash) with CG exactly as given."""
    return (
        b"37"
        + sip_now()
        + b"0100GBPBV"
        + amount
        + b"|AOCITY|AA"
        + ADA.encode()
        + b"|AC|AD"
        + PIN.encode()
        + b"|CG"
        + fee_text
        + b"|\r"
    )


def fees_owed(start: bytes = b"", end: bytes = b"") -> bytes:
    """63 for ADA asking for fee details (summary position 4), with BP/BQ if given."""
    frame = (
        b"63001"
        + sip_now()
        + b"   Y      AOCITY|AA"
        + ADA.encode()
        + b"|AC|AD"
        + PIN.encode()
        + b"|"
    )
    if start:
        frame += b"BP" + start + b"|"
    if end:
        frame += b"BQ" + end + b"|"
    return frame + b"\r"


@pytest.fixture
def faults() -> Iterator[list[dict[str, Any]]]:
    """The server's "fault while answering" log events while the test runs."""
    seen: list[dict[str, Any]] = []

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        if "fault" in str(event.get("log_format", "")):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observe)


def test_fee_number_takes_only_ascii_ids_from_1_to_the_largest_key() -> None:
    """CG names a fee only as ASCII digits from 1 to 2**31 - 1 (PostgreSQL's
    largest INTEGER, the fee table's key)."""
    assert 7 == fee_number(" 7 ")
    assert 2147483647 == fee_number("2147483647")
    assert fee_number("2147483648") is None
    assert fee_number("0002147483647") is None
    assert fee_number("9223372036854775808") is None
    assert fee_number("99999999999999999999999") is None
    assert fee_number("9" * 5000) is None
    assert fee_number("0") is None
    assert fee_number("-1") is None
    assert fee_number("\uff11") is None  # FULLWIDTH DIGIT ONE
    assert fee_number("\u00b2") is None  # SUPERSCRIPT TWO


@pytest_twisted.inlineCallbacks
def test_fee_ids_past_any_key_are_not_found_and_pay_nothing(
    sip_target: SipTarget, faults: list[dict[str, Any]]
) -> Any:
    """37 with CG past 2**31 or 2**63, of 5,000 digits, 0 or a fullwidth digit gets
    38 N "not found" (not 96, no fault logged) and pays nothing; the fee's own
    id then still pays it."""
    fee = FeeService(sip_target.library.database).charge(
        ADA, kind=FeeKind.DAMAGE, amount_minor=250, description="torn", by="desk"
    )
    bad_ids = [
        b"99999999999999999999999",
        b"9223372036854775808",
        b"9223372036854775807",
        b"2147483648",
        b"2147483647",
        b"9" * 5000,
        b"0",
        "\uff11".encode(),
    ]
    frames = [pay_naming(text) for text in bad_ids]
    frames += [fees_owed(), pay_naming(b"%d" % fee.id, b"2.50")]

    replies = yield in_thread(talk, sip_target, frames)

    *refused, owed, paid = replies
    for text, reply in zip(bad_ids, refused, strict=True):
        assert reply.startswith(b"38N"), (text[:30], reply)
        assert [NOT_FOUND] == all_fields(reply, FIXED_38)[b"AF"], text[:30]
    assert [b"2.50"] == all_fields(owed, FIXED_64)[b"BV"]
    assert paid.startswith(b"38Y")
    assert [] == faults


@pytest_twisted.inlineCallbacks
def test_item_ranges_past_any_count_are_answered_not_faulted(
    sip_target: SipTarget, faults: list[dict[str, Any]]
) -> Any:
    """63 with BP/BQ of 25 or 5,000 digits gets a 64 (the request could not be
    read), never 96 or a fault; the connection then still answers 63."""
    FeeService(sip_target.library.database).charge(
        ADA, kind=FeeKind.MANUAL, amount_minor=100, description="card", by="desk"
    )
    frames = [
        fees_owed(b"9" * 25, b"9" * 25),
        fees_owed(b"1", b"9" * 5000),
        fees_owed(b"1", b"1"),
    ]

    replies = yield in_thread(talk, sip_target, frames)

    huge, longest, first = replies
    assert huge.startswith(b"64")
    assert longest.startswith(b"64")
    assert [b"1.00"] == all_fields(first, FIXED_64)[b"BV"]
    assert [] == faults
