"""The AZ checksum: vectors from real clients and the liberal verification rules."""

from __future__ import annotations

import pytest

from sip2server.protocol import checksum, checksum_matches

# Frames the PyPI `sip2` client sent on loopback, and constants of Koha and
# Evergreen; each ends with a checksum that other implementations accept.
CLIENT_FRAMES = [
    b"9300CNsipuser|COsippass|CPMAIN|AY0AZF372",
    b"9900802.00AY1AZFCA0",
    b"6300020261204    150751  Y       AOTESTLIB|AA21234000000019|ACtermpw|AD1234"
    b"|BP1|BQ5|AY2AZEA1F",
    b"11NN20261204    150751                  AOTESTLIB|AA21234000000019"
    b"|AB31234000000017|ACtermpw|AD1234|BON|BIN|AY3AZE571",
    b"09N20261204    15075120261204    150751APMAIN|AOTESTLIB|AB31234000000017"
    b"|ACtermpw|AY4AZEAB0",
    b"96AZFEF6",
    b"97AZFEF5",
    b"941AY0AZFDFD",
]


@pytest.mark.parametrize("frame", CLIENT_FRAMES)
def test_checksum_reproduces_real_client_frames(frame: bytes) -> None:
    """The checksum of the bytes up to AZ equals the four digits the client sent."""
    covered, sent = frame[: frame.rindex(b"AZ") + 2], frame[-4:].decode()
    assert sent == checksum(covered)


def test_checksum_of_the_login_frame_by_hand() -> None:
    """F372 is the two's complement of the byte sum of the sip2 client's login."""
    data = b"9300CNsipuser|COsippass|CPMAIN|AY0AZ"
    assert 0x10000 - (sum(data) & 0xFFFF) == 0xF372
    assert "F372" == checksum(data)


def test_checksum_is_four_uppercase_hex_digits_even_when_small() -> None:
    """A checksum below 0x1000 keeps its leading zeros."""
    # 0xFF bytes summing to 0xFF00 leave a complement of 0x0100.
    data = b"\xff" * 256
    assert "0100" == checksum(data)


def test_checksum_over_utf8_bytes_matches_evergreen_vector() -> None:
    """Evergreen's 18 reply with NFD accents verifies over its UTF-8 bytes."""
    frame = (
        "1804020120110630    110249AB30007008503046|AJLe Pie\u0300ge de Bogota|CK001"
        "|AQOSUL|APOSUL|BGOSUL|AH2011-10-28 23:59:59|CSPB LP DAL|AY7AZDCF8"
    ).encode()
    assert "DCF8" == checksum(frame[:-4])


def test_verification_accepts_lowercase_hex() -> None:
    """A checksum written in lowercase hex still verifies."""
    assert checksum_matches(b"9300CNsipuser|COsippass|CPMAIN|AY0AZ", "f372")


def test_verification_accepts_a_checksum_without_leading_zeros() -> None:
    """The PyPI sip2 client writes 0x00C4 as 'C4'; that still verifies."""
    data = b"\xff" * 256
    assert checksum_matches(data, "100")
    assert checksum_matches(data, "0100")


def test_verification_rejects_a_wrong_checksum() -> None:
    """FOLIO's deliberately wrong F595 does not verify (F594 does)."""
    data = b"9300CNuser_id|COpassw0rd|AY1AZ"
    assert not checksum_matches(data, "F595")
    assert checksum_matches(data, "F594")


@pytest.mark.parametrize("sent", ["", "12345", "XYZ0", " F37"])
def test_verification_rejects_text_that_is_not_one_to_four_hex_digits(
    sent: str,
) -> None:
    """Only one to four hex digits can be a checksum."""
    assert not checksum_matches(b"9300CNsipuser|COsippass|CPMAIN|AY0AZ", sent)
