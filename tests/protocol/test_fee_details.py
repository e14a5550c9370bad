"""The Gossip fee details (FA to FG) of 64: how runs are written, read and kept."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip2server.protocol import (
    FeeDetail,
    FeePaidResponse,
    FieldOrder,
    InvalidFieldValue,
    LocalProtocolError,
    PatronInformationResponse,
    RemoteProtocolError,
    decode,
    encode,
    redact,
    redact_frame,
)
from sip2server.protocol._layouts import BY_TYPE

from .golden import GOLDEN, WHEN18
from .helpers import decode_as
from .test_roundtrip import SAFE_CHARACTERS, message_strategy

WITH_FEES, WITH_FEES_WIRE = GOLDEN["64 patron information response with fee details"]
assert isinstance(WITH_FEES, PatronInformationResponse)

# A 64 up to its last standard field: blank status, 001, date, six zero counts,
# AO AA AE. Tests append fee fields to it.
HEAD = "64              001" + WHEN18 + "0" * 24 + "AOLIB|AA21234000000018|AEWren|"
ITEM_16 = "31234000000016"


def _fees(wire: str) -> tuple[FeeDetail, ...]:
    return decode_as(wire.encode(), PatronInformationResponse).fee_details


def test_a_64_without_fee_fields_has_no_fee_details() -> None:
    """The plain golden 64 decodes with an empty fee_details and writes no FA."""
    message, wire = GOLDEN["64 patron information response"]
    assert isinstance(message, PatronInformationResponse)
    assert () == message.fee_details
    assert b"FA" not in encode(message)
    assert () == _fees(wire)


def test_fee_without_remaining_amount_is_written_with_an_empty_fa() -> None:
    """FA opens every run, so a fee without it is written `FA|` and reads back."""
    message = dataclasses.replace(
        WITH_FEES, screen_message=(), fee_details=(FeeDetail(fee_identifier="f9"),)
    )
    expected_tail = b"BHEUR|BV4.50|FA|FEf9|\r"
    frame = encode(message)
    assert frame.endswith(expected_tail)
    assert message == decode(frame[:-1]).message


def test_runs_without_fa_split_where_a_field_repeats() -> None:
    """FB, FC, FB reads as two fees; writing them back adds an empty FA to each."""
    wire = HEAD + "FB31234000000016|FC20.11.2026|FB31234000000024|"
    expected = (
        FeeDetail(item_barcode="31234000000016", creation_date=dt.date(2026, 11, 20)),
        FeeDetail(item_barcode="31234000000024"),
    )
    assert expected == _fees(wire)

    rewritten = HEAD + "FA|FB31234000000016|FC20.11.2026|FA|FB31234000000024|\r"
    first = encode(decode(wire.encode()).message)
    assert rewritten.encode() == first
    assert first == encode(decode(first[:-1]).message)


def test_fields_of_one_fee_in_another_order_read_as_one_fee() -> None:
    """FE before FA is still one fee, written back in code order."""
    wire = HEAD + "FEfee-7|FFLost item|FA12.00|"
    assert (
        FeeDetail(fee_remaining="12.00", fee_identifier="fee-7", fee_type="Lost item"),
    ) == _fees(wire)
    expected = HEAD + "FA12.00|FEfee-7|FFLost item|\r"
    assert expected.encode() == encode(decode(wire.encode()).message)


def test_other_fields_between_fee_fields_do_not_end_a_fee() -> None:
    """An AF between FA and FB leaves one fee; the rewrite puts AF before the fee."""
    wire = HEAD + "FA2.00|AFPay soon|FB31234000000016|"
    message = decode_as(wire.encode(), PatronInformationResponse)
    assert ("Pay soon",) == message.screen_message
    assert (FeeDetail(fee_remaining="2.00", item_barcode=ITEM_16),) == (
        message.fee_details
    )
    expected = HEAD + "AFPay soon|FA2.00|FB31234000000016|\r"
    assert expected.encode() == encode(message)


def test_creation_date_with_single_digit_day_and_month_is_read() -> None:
    """FC1.2.2027 reads as 1 February 2027 and is written back as 01.02.2027."""
    wire = HEAD + "FA1.00|FC1.2.2027|"
    assert (FeeDetail(fee_remaining="1.00", creation_date=dt.date(2027, 2, 1)),) == (
        _fees(wire)
    )
    expected = HEAD + "FA1.00|FC01.02.2027|\r"
    assert expected.encode() == encode(decode(wire.encode()).message)


@pytest.mark.parametrize(
    "value", ["2026-11-20", "20.11.26", "31.02.2026", "xx.11.2026"]
)
def test_creation_date_that_is_not_a_day_is_refused(value: str) -> None:
    """An FC that is not a real dd.MM.yyyy day raises InvalidFieldValue naming FC."""
    with pytest.raises(InvalidFieldValue) as caught:
        decode((HEAD + f"FA1.00|FC{value}|").encode())
    assert "FC" == caught.value.field
    assert value == caught.value.value


def test_empty_creation_date_reads_as_none() -> None:
    """An empty FC means no date, as an empty CJ or CM does."""
    assert (FeeDetail(fee_remaining="1.00"),) == _fees(HEAD + "FA1.00|FC|")


def test_fee_fields_in_another_message_stay_in_extra_fields() -> None:
    """FOLIO's FA..FG in a 38 are kept as extra fields and written back unchanged."""
    wire = "38Y" + WHEN18 + "AOLIB|AA21234000000018|FA3.33|FC13.11.2026|FEfee-1|"
    message = decode_as(wire.encode(), FeePaidResponse)
    assert (("FA", "3.33"), ("FC", "13.11.2026"), ("FE", "fee-1")) == (
        message.extra_fields
    )
    assert (wire + "\r").encode() == encode(message)


def test_extra_fields_follow_the_fee_details() -> None:
    """Unknown fields are written after the last fee run, in their own order."""
    message = dataclasses.replace(
        WITH_FEES, fee_details=WITH_FEES.fee_details[1:], extra_fields=(("ZZ", "z"),)
    )
    assert encode(message).endswith(
        b"FA1.50|FC01.12.2026|FEfee-0002|FFReplacement card|ZZz|\r"
    )


def test_alphabetical_field_order_keeps_fee_runs_whole_and_last() -> None:
    """Sorting the known fields by code leaves each FA..FG run intact at the end."""
    frame = encode(WITH_FEES, field_order=FieldOrder.ALPHABETICAL)
    tail = (
        "AFPlease pay at the desk|AOTESTLIB|BHEUR|BV4.50|"
        "FA3.00|FB31234000000016|FC20.11.2026|FDA Field Guide to Moss|FEfee-0001|"
        "FFOverdue fine|FG0.00|"
        "FA1.50|FC01.12.2026|FEfee-0002|FFReplacement card|\r"
    )
    assert frame.endswith(tail.encode())
    assert WITH_FEES == decode(frame[:-1]).message


def test_a_delimiter_in_a_fee_title_follows_the_delimiter_policy() -> None:
    """A `|` in FD becomes a space by default, so it cannot split the run."""
    fee = FeeDetail(fee_remaining="1.00", title="Moss | Lichen")
    message = dataclasses.replace(WITH_FEES, screen_message=(), fee_details=(fee,))
    assert encode(message).endswith(b"BV4.50|FA1.00|FDMoss   Lichen|\r")


def test_encoding_refuses_a_datetime_as_creation_date() -> None:
    """FC holds a day; a datetime would lose its time, so encoding refuses it."""
    fee = FeeDetail(creation_date=dt.datetime(2026, 11, 20, 10, 0))
    with pytest.raises(LocalProtocolError, match="creation_date"):
        encode(dataclasses.replace(WITH_FEES, fee_details=(fee,)))


def test_encoding_refuses_fee_details_that_are_not_fee_details() -> None:
    """fee_details must be a tuple of FeeDetail; a list or a bare string is refused."""
    with pytest.raises(LocalProtocolError, match="fee_details"):
        encode(dataclasses.replace(WITH_FEES, fee_details=[FeeDetail()]))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="fee_details"):
        encode(dataclasses.replace(WITH_FEES, fee_details=("FA1.00",)))  # type: ignore[arg-type]


def test_redacted_64_shows_fee_barcodes_and_titles_but_masks_the_patron() -> None:
    """A fee's item barcode and title are not patron data; AA and AE still are."""
    text = redact(WITH_FEES)
    assert "patron_identifier='...0018'" in text
    assert "Wren" not in text
    assert "item_barcode='31234000000016'" in text
    assert "title='A Field Guide to Moss'" in text
    assert "creation_date=2026-11-20" in text
    assert "FeeDetail(fee_remaining='1.50', creation_date=2026-12-01" in text


def test_redacted_frame_keeps_fee_fields_in_clear() -> None:
    """In a raw 64, FB and FD stay readable while AA keeps only its tail."""
    text = redact_frame(WITH_FEES_WIRE.encode())
    assert "AA...0018" in text
    assert "FB31234000000016|" in text
    assert "FDA Field Guide to Moss|" in text


# --- Hypothesis ---------------------------------------------------------------------

PATRON_INFORMATION = BY_TYPE[PatronInformationResponse]
FEE_TEXT = st.text(SAFE_CHARACTERS, max_size=20)
FEE_SEGMENTS = st.one_of(
    st.tuples(st.sampled_from(["FA", "FB", "FD", "FE", "FF", "FG"]), FEE_TEXT),
    st.tuples(
        st.just("FC"),
        st.dates(dt.date(1000, 1, 1)).map(lambda day: day.strftime("%d.%m.%Y")),
    ),
    st.tuples(st.sampled_from(["AF", "AG", "ZZ"]), FEE_TEXT),
)


@settings(max_examples=200, deadline=None)
@given(message=message_strategy(PATRON_INFORMATION))
def test_64_with_fee_details_survives_the_wire(
    message: PatronInformationResponse,
) -> None:
    """Any 64, fee details included, decodes back to itself after encoding."""
    assert message == decode(encode(message)[:-1]).message


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(FEE_SEGMENTS, max_size=12))
def test_fee_fields_in_any_order_rewrite_stably(
    segments: list[tuple[str, str]],
) -> None:
    """Fee fields in any order, mixed with others, re-encode to a fixed point."""
    wire = HEAD + "".join(f"{code}{value}|" for code, value in segments)
    try:
        first = encode(decode(wire.encode()).message)
    except RemoteProtocolError:
        return
    assert first == encode(decode(first[:-1]).message)
