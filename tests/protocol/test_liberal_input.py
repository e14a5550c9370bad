"""Each habit of real SIP2 clients that the decoder accepts, one test per habit."""

from __future__ import annotations

import datetime as dt

import pytest

from sip2server.protocol import (
    CheckinRequest,
    CheckoutRequest,
    EndPatronSessionRequest,
    HoldRequest,
    Language,
    LoginRequest,
    PatronInformationRequest,
    PatronStatusRequest,
    RenewAllRequest,
    ScStatusRequest,
    checksum,
    decode,
    encode,
)

from .helpers import decode_as


def test_missing_final_delimiter_is_accepted() -> None:
    """invenio's 23 ends with `ADpatron_pwd` and no `|`; AD is still read whole."""
    decoded = decode(
        b"2300220201124    162421AOinstitution_id|AApatron_identifier|ADpatron_pwd"
    )
    message = decoded.message
    assert isinstance(message, PatronStatusRequest)
    assert "patron_pwd" == message.patron_password
    assert Language.FRENCH == message.language


def test_delimiter_right_after_fixed_part_is_accepted() -> None:
    """invenio's 15 has `|` straight after the date; the empty field is skipped."""
    message = decode_as(
        b"15+20201013    093158|AOinstitution_id|AApatron_id|ABitem_id|ACtpw|",
        HoldRequest,
    )
    assert "institution_id" == message.institution_id
    assert () == message.extra_fields


def test_delimiter_before_trailer_is_accepted() -> None:
    """node-sip2 sends `9900802.00|AY1AZFC24`: the `|` before AY is harmless."""
    decoded = decode(b"9900802.00|AY1AZFC24")
    assert ScStatusRequest(max_print_width=80) == decoded.message
    assert 1 == decoded.sequence


def test_trailer_without_delimiter_after_last_field_is_accepted() -> None:
    """A client that drops the last `|` but sends AY/AZ still gets CP read cleanly."""
    data = b"9300CNsipuser|COsippass|CPMAINAY0AZ"
    message = decode_as(data + checksum(data).encode(), LoginRequest)
    assert "MAIN" == message.location_code


def test_fields_in_alphabetical_order_are_accepted() -> None:
    """SIP2Mediator sorts fields; each is still read by its code."""
    message = decode_as(
        b"11NN20261204    15122520261204    151225AA21234000000019"
        b"|AB31234000000017|AD1234|AOTESTLIB|",
        CheckoutRequest,
    )
    assert ("TESTLIB", "21234000000019", "31234000000017", "1234") == (
        message.institution_id,
        message.patron_identifier,
        message.item_identifier,
        message.patron_password,
    )


def test_missing_terminal_password_is_accepted() -> None:
    """berick/pysip2 omits AC on 11; the request decodes with AC None."""
    message = decode(
        b"11NN20261204    15101120261204    151011AOTESTLIB|AA21234000000019"
        b"|AB31234000000017|"
    ).message
    assert isinstance(message, CheckoutRequest)
    assert message.terminal_password is None


def test_empty_terminal_password_is_accepted() -> None:
    """Evergreen's test 11 sends `AC|`; an empty AC reads as None, like no AC."""
    message = decode_as(
        b"11YN20060329    203000                  AOUWOLS|AAtpatron01|AB1565921879|AC|",
        CheckoutRequest,
    )
    assert message.terminal_password is None


def test_missing_current_location_on_checkin_is_accepted() -> None:
    """The Rust sip2 CLI omits AP on 09; current_location is None."""
    message = decode(
        b"09N20261204    15190420261204    151904AB31234000000016|AOTESTLIB|"
    ).message
    assert isinstance(message, CheckinRequest)
    assert message.current_location is None
    assert "31234000000016" == message.item_identifier


def test_missing_patron_password_is_accepted() -> None:
    """A 23 without AD decodes with patron_password None."""
    message = decode_as(
        b"2300020060101    084235AOUWOLS|AAtpatron01|", PatronStatusRequest
    )
    assert message.patron_password is None


def test_blank_nb_due_date_reads_as_none() -> None:
    """The PyPI sip2 client sends 18 blanks as nb due date: None, not an error."""
    message = decode_as(
        b"11NN20261204    150751                  AOTESTLIB|AA2123|AB3123|ACtpw|",
        CheckoutRequest,
    )
    assert message.nb_due_date is None


def test_blank_return_date_reads_as_none() -> None:
    """node-sip2 defaults the checkin return date to 18 blanks: None."""
    message = decode_as(
        b"09N19980821    085721                  APLoc|AOInst|ABCheckInBook|ACTPWord|",
        CheckinRequest,
    )
    assert message.return_date is None


def test_zero_padded_start_and_end_item_are_read_as_numbers() -> None:
    """node-sip2 pads BP/BQ to five digits: BP00001 is 1, BQ00005 is 5."""
    message = decode(
        b"6300119980723    091905Y         AOInstitutionID|AAPatronID|BP00001|BQ00005|"
    ).message
    assert isinstance(message, PatronInformationRequest)
    assert (1, 5) == (message.start_item, message.end_item)
    assert message.summary.hold_items


def test_lowercase_checksum_is_accepted() -> None:
    """AZf372 verifies like AZF372 and is reported as sent."""
    decoded = decode(b"9300CNsipuser|COsippass|CPMAIN|AY0AZf372")
    assert "f372" == decoded.checksum
    assert decoded.error_detection


def test_short_checksum_is_accepted() -> None:
    """A checksum without leading zeros (the PyPI sip2 client's habit) verifies."""
    # Pad the CP value until the checksum of the frame drops below 0x1000.
    for padding in range(4096):
        data = b"9300CNu|COp|CP" + b"\xff" * padding + b"|AY0AZ"
        value = checksum(data)
        if value.startswith("0"):
            break
    short = value.lstrip("0") or "0"
    decoded = decode(data + short.encode(), encoding="latin-1")
    assert short == decoded.checksum


def test_resend_without_sequence_is_accepted() -> None:
    """Palace's client resends a login with AZ but no AY: sequence None."""
    decoded = decode(b"9300CNuser_id|COpassword|AZF620")
    assert decoded.sequence is None
    assert decoded.error_detection
    assert isinstance(decoded.message, LoginRequest)
    assert "password" == decoded.message.login_password


def test_utc_zone_date_reads_as_aware_datetime() -> None:
    """A zone of three blanks and Z is UTC: an aware datetime."""
    message = decode_as(
        b"6520190501   Z103015AApatron_id|AC|AD1234|AOuniversity_id|BON|AY1AZEB3B",
        RenewAllRequest,
    )
    expected = dt.datetime(2019, 5, 1, 10, 30, 15, tzinfo=dt.UTC)
    assert expected == message.transaction_date


def test_blank_zone_date_reads_as_naive_local_datetime() -> None:
    """A zone of four blanks is local time: a naive datetime."""
    message = decode_as(
        b"3520060110    084237AOUWOLS|AAtpatron01|AD6789|", EndPatronSessionRequest
    )
    assert dt.datetime(2006, 1, 10, 8, 42, 37) == message.transaction_date


def test_bytes_invalid_in_utf8_fall_back_to_latin1() -> None:
    """A latin-1 name does not crash a UTF-8 session; the text is read as latin-1."""
    decoded = decode(b"9300CNm\xfcller|COpw|")
    assert "latin-1" == decoded.encoding
    assert isinstance(decoded.message, LoginRequest)
    assert "m\u00fcller" == decoded.message.login_user_id


def test_unknown_fields_are_kept_and_sent_back_in_order() -> None:
    """Extension codes the codec does not know survive a decode and encode."""
    frame = b"941|ZZone|XYtwo|ZZthree|"
    message = decode(frame).message
    assert (("ZZ", "one"), ("XY", "two"), ("ZZ", "three")) == message.extra_fields
    assert b"941ZZone|XYtwo|ZZthree|\r" == encode(message)


def test_unknown_language_reads_as_unknown() -> None:
    """A language code outside 000-027 reads as 000 instead of refusing the frame."""
    message = decode_as(b"23999" + b"20060101    084235AOX|AAY|", PatronStatusRequest)
    assert Language.UNKNOWN == message.language


@pytest.mark.parametrize("flag", [b"y", b"1", b"Y"])
def test_yes_flags_accept_lowercase_and_digit(flag: bytes) -> None:
    """`y` and `1` read as yes in a Y/N field."""
    frame = b"11" + flag + b"N20261204    150751" + b" " * 18 + b"AOX|"
    assert decode_as(frame, CheckoutRequest).sc_renewal_policy is True


def test_military_zone_letter_reads_as_its_offset() -> None:
    """The spec's own example: Q is Atlantic Standard Time, four hours behind UTC."""
    message = decode_as(
        b"3520060110   Q084237AOUWOLS|AAtpatron01|", EndPatronSessionRequest
    )
    expected = dt.datetime(2006, 1, 10, 12, 42, 37, tzinfo=dt.UTC)
    assert expected == message.transaction_date
    assert encode(message).startswith(b"3520060110   Z124237")
