"""Log renderings: passwords never in clear, patron data masked by default."""

from __future__ import annotations

from sip2server.protocol import decode, redact, redact_frame

from .golden import GOLDEN

CHECKOUT = (
    b"11NN20261204    150751                  AOTESTLIB|AA21234000000019"
    b"|AB31234000000017|ACtermpw|AD1234|BON|BIN|AY3AZE571"
)
LOGIN = b"9300CNsipuser|COsippass|CPMAIN|AY0AZF372"


def test_redacted_frame_masks_passwords_and_keeps_barcode_tail() -> None:
    """AC and AD become ***, AA keeps its last four digits, the rest is as sent."""
    expected = (
        "11NN20261204    150751                  AOTESTLIB|AA...0019"
        "|AB31234000000017|AC***|AD***|BON|BIN|AY3AZE571"
    )
    assert expected == redact_frame(CHECKOUT)


def test_redacted_login_frame_hides_the_login_password() -> None:
    """CO is masked; the login user id and location stay readable."""
    assert "9300CNsipuser|CO***|CPMAIN|AY0AZF372" == redact_frame(LOGIN)


def test_password_mask_does_not_reveal_length() -> None:
    """A one-character and a forty-character password look the same in a log."""
    short = redact_frame(b"9300CNu|COx|")
    long = redact_frame(b"9300CNu|CO" + b"x" * 40 + b"|")
    assert short == long == "9300CNu|CO***|"


def test_patron_data_is_shown_when_masking_is_turned_off() -> None:
    """mask_patron=False shows barcodes and names but still hides passwords."""
    text = redact_frame(CHECKOUT, mask_patron=False)
    assert "AA21234000000019" in text
    assert "AC***" in text
    assert "AD***" in text


def test_short_identifier_is_hidden_whole() -> None:
    """A four-digit barcode would be fully revealed by its last four: hide it."""
    assert "2300020261204    150751AOX|AA***|AC***|AD***|" == redact_frame(
        b"2300020261204    150751AOX|AA2642|ACt|AD1234|"
    )


def test_redacted_message_masks_names_and_hold_patron() -> None:
    """In a 10, CY keeps its tail and DA (a name) is hidden."""
    message, _ = GOLDEN["10 checkin response"]
    text = redact(message)
    assert "hold_patron_id='...0018'" in text
    assert "hold_patron_name='***'" in text
    assert "Wren" not in text
    assert text.startswith("CheckinResponse(")


def test_redacted_message_hides_passwords_even_unmasked() -> None:
    """terminal and patron passwords are *** whatever mask_patron says."""
    message = decode(CHECKOUT).message
    text = redact(message, mask_patron=False)
    assert "terminal_password='***'" in text
    assert "patron_password='***'" in text
    assert "termpw" not in text
    assert "1234'" not in text
    assert "patron_identifier='21234000000019'" in text


def test_redacted_message_masks_personal_name_and_contact_data() -> None:
    """AE and BE in a 64 never appear in clear by default."""
    message, _ = GOLDEN["64 patron information response"]
    text = redact(message)
    assert "Maple" not in text
    assert "maple@example.org" not in text
    assert "personal_name='***'" in text


def test_redacted_frame_of_binary_garbage_is_printable() -> None:
    """Control bytes are escaped so that a log line stays one line."""
    assert "\\x16\\x03\\x01\\x0d\\x00" == redact_frame(b"\x16\x03\x01\r\x00")


def test_unknown_fields_that_carry_passwords_by_code_are_masked() -> None:
    """A CO that turns up as an extra field is still masked in redact()."""
    message = decode(b"941|COsecret|").message
    assert "secret" not in redact(message)
