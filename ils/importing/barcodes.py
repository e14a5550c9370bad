"""Fourteen-digit library barcodes with a Luhn check digit.

Layer: `ils` (the core). Imports only the standard library.

The layout is the one many integrated library systems print on Codabar labels:
one type digit ("2" for a patron card, "3" for an item), a four-digit library
code, an eight-digit serial and a check digit. The check digit is the
"modulus 10, type 1" digit of the Dynix and JerseyCat barcode documents, which
over fourteen digits is exactly the Luhn algorithm.
"""

from __future__ import annotations

import enum

SERIAL_DIGITS = 8
LIBRARY_CODE_DIGITS = 4
BARCODE_LENGTH = 1 + LIBRARY_CODE_DIGITS + SERIAL_DIGITS + 1


class BarcodeKind(enum.Enum):
    """The type digit that opens a barcode."""

    PATRON = "2"
    ITEM = "3"


def luhn_check_digit(digits: str) -> str:
    """The Luhn check digit to append to `digits`.

    Counting from the right of the finished number (check digit included), every
    second digit is doubled and has 9 taken off when it passes 9.

    Raises:
        ValueError: when `digits` is empty or holds anything but ASCII digits.
    """
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"a check digit needs ASCII digits, not {digits!r}")

    total = 0
    for place, character in enumerate(reversed(digits)):
        value = int(character)
        # The rightmost payload digit sits next to the check digit, so it is doubled.
        if place % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_luhn_valid(number: str) -> bool:
    """Whether `number` (digits only) ends with its own Luhn check digit."""
    if len(number) < 2 or not (number.isascii() and number.isdigit()):
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def make_barcode(kind: BarcodeKind, library_code: str, serial: int) -> str:
    """A fourteen-digit barcode: type digit, library code, serial, check digit.

    Raises:
        ValueError: when the library code is not four digits or the serial does
            not fit in eight digits.
    """
    if len(library_code) != LIBRARY_CODE_DIGITS or not (
        library_code.isascii() and library_code.isdigit()
    ):
        raise ValueError(f"a library code is four digits, not {library_code!r}")
    if not 0 < serial < 10**SERIAL_DIGITS:
        raise ValueError(f"a barcode serial runs from 1 to 99999999, not {serial}")

    payload = f"{kind.value}{library_code}{serial:0{SERIAL_DIGITS}d}"
    return payload + luhn_check_digit(payload)


def barcode_serial(kind: BarcodeKind, library_code: str, barcode: str) -> int | None:
    """The serial inside `barcode` when it is a valid barcode of this kind and code."""
    prefix = kind.value + library_code
    if len(barcode) != BARCODE_LENGTH or not barcode.startswith(prefix):
        return None
    if not is_luhn_valid(barcode):
        return None
    return int(barcode[len(prefix) : -1])
