"""Frames the decoder refuses: each with the precise error and the reply to send."""

from __future__ import annotations

import pytest

from sip2server.protocol import (
    ChecksumMismatch,
    FrameTooLong,
    InvalidFieldValue,
    MalformedMessage,
    ProtocolError,
    RemoteProtocolError,
    Reply,
    UnknownCode,
    UnknownCommand,
    decode,
)


def test_bad_checksum_is_answered_with_resend() -> None:
    """FOLIO's deliberately wrong F595 raises ChecksumMismatch with reply 96."""
    with pytest.raises(ChecksumMismatch) as caught:
        decode(b"9300CNuser_id|COpassw0rd|AY1AZF595")
    assert Reply.RESEND == caught.value.reply
    assert "93" == caught.value.command
    assert "F594" in caught.value.reason


def test_checksum_is_checked_before_the_fixed_part() -> None:
    """A damaged frame with a wrong checksum is reported as a checksum error."""
    with pytest.raises(ChecksumMismatch):
        decode(b"9900401.00AY1AZAAAA")


def test_unknown_command_is_answered_with_resend() -> None:
    """A command SIP2 2.00 does not define raises UnknownCommand, reply 96."""
    with pytest.raises(UnknownCommand) as caught:
        decode(b"XS20261204    150751")
    assert Reply.RESEND == caught.value.reply


def test_short_fixed_part_is_malformed_and_answered_with_resend() -> None:
    """FOLIO's `990231.23` is three characters short of a 99's fixed part."""
    with pytest.raises(MalformedMessage) as caught:
        decode(b"990231.23")
    assert Reply.RESEND == caught.value.reply
    assert "99" == caught.value.command


def test_frame_shorter_than_a_command_is_malformed() -> None:
    """One byte is not even a command code."""
    with pytest.raises(MalformedMessage):
        decode(b"9")


def test_unparseable_date_is_a_precise_field_error() -> None:
    """A date of 17 characters and a `|` names the field and the value."""
    frame = b"29NN20201013    09315820201013    09315|AOinst|AApatron|"
    with pytest.raises(InvalidFieldValue) as caught:
        decode(frame)
    assert "nb_due_date" == caught.value.field
    assert "20201013    09315|" == caught.value.value
    assert Reply.NEGATIVE == caught.value.reply
    assert "29" == caught.value.command


@pytest.mark.parametrize(
    "date",
    [
        b"20261304    150751",
        b"20261204  X 150751",
        b"20261204   J150751",
        b"2026120     1507510",
    ],
)
def test_impossible_dates_are_refused(date: bytes) -> None:
    """Month 13, a zone that is no zone letter (J is unused), digits out of place."""
    with pytest.raises(InvalidFieldValue) as caught:
        decode(b"35" + date + b"AOX|AAY|")
    assert "transaction_date" == caught.value.field


def test_unknown_code_in_a_fixed_enum_field_is_a_precise_error() -> None:
    """A hold mode of `?` raises UnknownCode naming the field; a negative reply."""
    with pytest.raises(UnknownCode) as caught:
        decode(b"15?20060415    110158AOUWOLS|AAtpatron01|")
    assert "hold_mode" == caught.value.field
    assert "?" == caught.value.value
    assert Reply.NEGATIVE == caught.value.reply


def test_unknown_code_in_a_variable_enum_field_is_a_precise_error() -> None:
    """A media type of 999 in CK raises UnknownCode for field CK."""
    with pytest.raises(UnknownCode) as caught:
        decode(b"1803020120261204    151000ABx|AJt|CK999|")
    assert "CK" == caught.value.field


def test_flag_that_is_not_yes_or_no_is_refused() -> None:
    """A Y/N field holding `X` is an invalid value, not silently false."""
    with pytest.raises(InvalidFieldValue) as caught:
        decode(b"11XN20261204    150751" + b" " * 18 + b"AOX|")
    assert "sc_renewal_policy" == caught.value.field


def test_field_without_two_character_code_is_malformed() -> None:
    """A one-character segment between delimiters cannot be a field."""
    with pytest.raises(MalformedMessage):
        decode(b"9300CNu|X|COp|")


def test_trailer_in_the_middle_of_a_frame_is_malformed() -> None:
    """AY followed by more fields is not a trailer the codec can trust."""
    with pytest.raises(MalformedMessage):
        decode(b"9300CNu|AY1|COp|")


def test_non_numeric_count_is_refused() -> None:
    """BP must be digits."""
    with pytest.raises(InvalidFieldValue) as caught:
        decode(b"63000" + b"20261204    150751" + b"          AOX|AAY|BPone|")
    assert "BP" == caught.value.field


def test_every_codec_error_is_a_value_error() -> None:
    """Callers that already catch ValueError catch the codec's errors too."""
    for error_type in (
        ChecksumMismatch,
        UnknownCommand,
        MalformedMessage,
        FrameTooLong,
    ):
        assert issubclass(error_type, RemoteProtocolError)
        assert issubclass(error_type, ProtocolError)
        assert issubclass(error_type, ValueError)


def test_frame_too_long_asks_for_resend() -> None:
    """FrameTooLong, raised by a server for an oversize frame, replies 96."""
    assert Reply.RESEND == FrameTooLong("frame over 8192 bytes").reply


@pytest.mark.parametrize("digits", [19, 5000])
def test_a_count_with_too_many_digits_is_a_precise_field_error(digits: int) -> None:
    """A BP of 19 or 5,000 digits is an InvalidFieldValue naming BP, never
    Python's own ValueError for an int too long to read."""
    frame = (
        b"63001" + b"20261204    120000" + b"Y         "
        b"AOinst|AApatron|BP" + b"9" * digits + b"|BQ5|"
    )
    with pytest.raises(InvalidFieldValue) as caught:
        decode(frame)
    assert "BP" in str(caught.value)
    assert isinstance(caught.value, ProtocolError)
