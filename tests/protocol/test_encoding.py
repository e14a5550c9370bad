"""What the encoder writes: safe values, the 255 limit, dates and the trailer."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from sip2server.protocol import (
    EndSessionResponse,
    LocalProtocolError,
    LoginResponse,
    PatronInformationResponse,
    PatronStatus,
    checksum,
    decode,
    encode,
)

from .golden import GOLDEN, WHEN


def end_session(*, screen_message: tuple[str, ...] = (), name: str = "P") -> bytes:
    message = EndSessionResponse(
        end_session=True,
        transaction_date=WHEN,
        institution_id="LIB",
        patron_identifier=name,
        screen_message=screen_message,
    )
    return encode(message)


def test_delimiter_inside_a_value_becomes_a_space() -> None:
    """A `|` in a value would end the field; it is written as a space."""
    assert b"AAa b|" in end_session(name="a|b")


@pytest.mark.parametrize("control", ["\r", "\n", "\x00", "\x1b", "\x7f", "\x85"])
def test_control_characters_inside_a_value_become_spaces(control: str) -> None:
    """CR, LF and other control characters never reach the wire inside a field."""
    frame = end_session(screen_message=(f"one{control}two",))
    assert b"AFone two|" in frame
    assert frame.count(b"\r") == 1


def test_long_value_is_cut_to_255_characters() -> None:
    """An ordinary field longer than 255 characters is truncated."""
    frame = end_session(name="x" * 300)
    assert b"AA" + b"x" * 255 + b"|" in frame
    assert b"x" * 256 not in frame


def test_long_screen_message_is_split_into_repeated_fields() -> None:
    """A 600-character AF becomes three AF fields of 255, 255 and 90 characters."""
    frame = end_session(screen_message=("m" * 600,))
    expected = b"AF" + b"m" * 255 + b"|AF" + b"m" * 255 + b"|AF" + b"m" * 90 + b"|"
    assert frame.endswith(expected + b"\r")


def test_empty_screen_message_is_written_as_an_empty_field() -> None:
    """An empty string in screen_message still gives one `AF|`."""
    assert end_session(screen_message=("",)).endswith(b"AF|\r")


def test_aware_datetime_is_written_in_utc_with_z() -> None:
    """16:10 at UTC+1 is written as 15:10 with zone `   Z`."""
    zone = dt.timezone(dt.timedelta(hours=1))
    message = EndSessionResponse(
        end_session=False,
        transaction_date=dt.datetime(2026, 12, 4, 16, 10, 0, tzinfo=zone),
        institution_id="LIB",
        patron_identifier="P",
    )
    assert encode(message).startswith(b"36N20261204   Z151000")


def test_none_date_is_written_as_18_blanks() -> None:
    """A transaction date of None is 18 blanks on the wire."""
    message = EndSessionResponse(
        end_session=True,
        transaction_date=None,
        institution_id="L",
        patron_identifier="P",
    )
    assert b"36Y" + b" " * 18 + b"AOL|AAP|\r" == encode(message)


def test_checksum_is_computed_over_the_encoded_bytes() -> None:
    """With a non-ASCII name, AZ covers the UTF-8 bytes actually sent."""
    frame = end_session(name="\u00e9")[:-1]
    with_trailer = encode(
        decode(frame).message, sequence=7, error_detection=True
    ).rstrip(b"\r")
    covered = with_trailer[:-4]
    assert covered.endswith(b"AY7AZ")
    assert checksum(covered).encode() == with_trailer[-4:]
    assert b"AA\xc3\xa9|" in with_trailer


def test_characters_the_encoding_cannot_hold_become_question_marks() -> None:
    """A CJK title in cp850 is written as `?`, not an exception."""
    message, _ = GOLDEN["10 checkin response"]
    frame = encode(
        dataclasses.replace(message, title_identifier="\u6f22"), encoding="cp850"
    )
    assert b"AJ?|" in frame


def test_sequence_without_error_detection_is_refused() -> None:
    """AY belongs to error detection; asking for one without it is our bug."""
    with pytest.raises(LocalProtocolError):
        encode(LoginResponse(ok=True), sequence=3)


@pytest.mark.parametrize("sequence", [-1, 10])
def test_sequence_must_be_one_digit(sequence: int) -> None:
    """AY carries one digit, 0 to 9."""
    with pytest.raises(LocalProtocolError):
        encode(LoginResponse(ok=True), sequence=sequence, error_detection=True)


def test_terminator_must_be_a_line_ending() -> None:
    """Only CR, CRLF and LF can end a frame."""
    with pytest.raises(LocalProtocolError):
        encode(LoginResponse(ok=True), terminator=b"|")


def test_count_too_large_for_its_field_is_refused() -> None:
    """10000 items do not fit in a four-digit count."""
    message, _ = GOLDEN["64 patron information response"]
    assert isinstance(message, PatronInformationResponse)
    too_many = dataclasses.replace(message, charged_items_count=10_000)
    with pytest.raises(LocalProtocolError):
        encode(too_many)


def test_wrong_type_in_a_flag_field_is_refused() -> None:
    """ok must be a bool; the string "1" is a programming error."""
    with pytest.raises(LocalProtocolError):
        encode(LoginResponse(ok="1"))  # type: ignore[arg-type]


def test_patron_status_with_a_non_bool_flag_is_refused() -> None:
    """A PatronStatus flag of 1 instead of True is refused."""
    message, _ = GOLDEN["24 patron status response"]
    status = PatronStatus(card_reported_lost=1)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode(dataclasses.replace(message, patron_status=status))


def test_required_field_left_none_is_written_empty() -> None:
    """A 23 with no terminal password still carries `AC|` for strict ACSs."""
    message, _ = GOLDEN["23 patron status"]
    frame = encode(dataclasses.replace(message, terminal_password=None))
    assert b"|AC|AD1234|" in frame


def test_extra_fields_are_made_safe_too() -> None:
    """An extra field value with `|` is written with a space instead."""
    frame = encode(LoginResponse(ok=True, extra_fields=(("ZZ", "a|b"),)))
    assert b"941ZZa b|\r" == frame
