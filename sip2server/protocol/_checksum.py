"""The SIP2 error-detection checksum (field AZ).

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

SIP2 2.00, "error detection": add up the bytes of the frame as sent, from the
command code up to and including the letters `AZ`, keep 16 bits, and send the
two's complement as four uppercase hex digits.
"""

from __future__ import annotations

import string

_HEX_DIGITS = frozenset(string.hexdigits)


def checksum(data: bytes) -> str:
    """The AZ value for `data`, the encoded bytes up to and including `AZ`.

    Returns:
        Four uppercase hex digits.
    """
    return f"{-sum(data) & 0xFFFF:04X}"


def checksum_matches(data: bytes, sent: str) -> bool:
    """Whether `sent` is a correct AZ value for `data`.

    Liberal as real clients need: lowercase hex is accepted, and so are one to
    three digits, because the PyPI `sip2` client drops leading zeros.
    """
    # Deviation D7 (docs/sip2-conformance.md): the spec says four uppercase hex
    # digits; the PyPI sip2 client sends fewer. Remove when it is fixed upstream.
    if not 1 <= len(sent) <= 4 or not set(sent) <= _HEX_DIGITS:
        return False
    return (sum(data) + int(sent, 16)) & 0xFFFF == 0
