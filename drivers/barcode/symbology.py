"""AIM symbology identifiers and Codabar start/stop characters.

Layer: `drivers`. Imports only the standard library. Sans-I/O: strings in,
strings out; used by the serial and the keyboard-wedge scanners alike.
"""

from __future__ import annotations

import re

__all__ = ["CODABAR_AIM", "split_aim", "strip_codabar"]

# ISO/IEC 15424: a symbology identifier is "]", a code character (the
# symbology, a letter) and one modifier character.
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")

CODABAR_AIM = "F"
"""The AIM code character for Codabar (`]F0`, `]F1`...)."""

_CODABAR_ENDS = frozenset("ABCDabcd")
_CODABAR_DATA = re.compile(r"[0-9\-$:/.+]+")
_LIBRARY_CODABAR = re.compile(r"[A-Da-d][0-9]{14}[A-Da-d]")


def split_aim(code: str) -> tuple[str | None, str]:
    """Split a leading AIM identifier from a code: `"]F0A123B"` -> `("]F0", "A123B")`.

    Returns `(None, code)` when the code does not start with one.
    """
    if _AIM.match(code):
        return code[:3], code[3:]
    return None, code


def strip_codabar(data: str, symbology: str | None) -> str:
    """Remove Codabar's start and stop characters (A-D at both ends, either case).

    When the scanner said the code is Codabar (`]F`), any data between two of
    A-D has them removed. Without an identifier only the common library form is
    touched: 14 digits between two of A-D (16 characters), so an item barcode
    that happens to start with "A" and end with "B" is left alone.
    """
    if symbology is not None and symbology[1] == CODABAR_AIM:
        if (
            len(data) >= 3
            and data[0] in _CODABAR_ENDS
            and data[-1] in _CODABAR_ENDS
            and _CODABAR_DATA.fullmatch(data[1:-1])
        ):
            return data[1:-1]
        return data
    if symbology is None and _LIBRARY_CODABAR.fullmatch(data):
        return data[1:-1]
    return data
