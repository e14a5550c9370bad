"""Every message type, both ways, against wire strings written by hand."""

from __future__ import annotations

import pytest

from sip2server.protocol import Message, decode, encode

from .golden import GOLDEN

COMMANDS = {
    "01", "09", "10", "11", "12", "15", "16", "17", "18", "19", "20", "23", "24",
    "25", "26", "29", "30", "35", "36", "37", "38", "63", "64", "65", "66", "93",
    "94", "96", "97", "98", "99",
}  # fmt: skip


def test_golden_strings_cover_every_message_type() -> None:
    """The golden table has one entry for each of the 31 SIP2 2.00 messages."""
    assert COMMANDS == {message.command for message, _ in GOLDEN.values()}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_message_encodes_to_its_golden_wire_string(name: str) -> None:
    """Encoding the message gives exactly the hand-written frame plus CR."""
    message, wire = GOLDEN[name]
    assert (wire + "\r").encode() == encode(message)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_wire_string_decodes_to_the_message(name: str) -> None:
    """Decoding the hand-written frame gives back the same message value."""
    message, wire = GOLDEN[name]
    decoded = decode(wire.encode())
    assert message == decoded.message
    assert decoded.sequence is None
    assert not decoded.error_detection


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_command_attribute_starts_the_golden_frame(name: str) -> None:
    """Each class's `command` is the two characters its frame starts with."""
    message, wire = GOLDEN[name]
    assert wire[:2] == type(message).command
    assert isinstance(message, Message)


def test_login_with_error_detection_matches_the_sip2_client_frame() -> None:
    """Sequence 0 and error detection add exactly the sip2 client's trailer."""
    message, _ = GOLDEN["93 login"]
    expected = b"9300CNsipuser|COsippass|CPMAIN|AY0AZF372\r"
    assert expected == encode(message, sequence=0, error_detection=True)


def test_login_response_with_error_detection_matches_sip2_ruby() -> None:
    """941 with sequence 1 carries AZFDFC, as sip2-ruby's spec asserts."""
    message, _ = GOLDEN["94 login response"]
    assert b"941AY1AZFDFC\r" == encode(message, sequence=1, error_detection=True)


def test_resend_request_with_error_detection_is_koha_constant() -> None:
    """96 with error detection and no sequence is Koha's constant 96AZFEF6."""
    message, _ = GOLDEN["96 request sc resend"]
    assert b"96AZFEF6\r" == encode(message, error_detection=True)


@pytest.mark.parametrize("terminator", [b"\r", b"\r\n", b"\n"])
def test_encode_ends_with_the_terminator_asked_for(terminator: bytes) -> None:
    """The reply can mirror the client's line ending."""
    message, _ = GOLDEN["94 login response"]
    assert b"941" + terminator == encode(message, terminator=terminator)
