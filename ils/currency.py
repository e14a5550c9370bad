"""Money as text and as integer minor units, by the ISO 4217 exponent of a currency.

Layer: `ils`, the bottom. Imports only the standard library and `ils.results`;
never SIP2, Twisted or Kivy. It never logs.

The core keeps every amount as an integer count of minor units (pence, cents,
fils); floats never hold money. A terminal or a file gives an amount as text
("2.50"); `parse_amount` turns it into minor units with the number of decimal
places the currency has (its ISO 4217 exponent: 2 for most, 0 for JPY, 3 for a
few such as KWD) and refuses anything else: a sign, a thousands separator, an
exponent, more decimal places than the currency has, or a currency whose
exponent this table does not know.
"""

from __future__ import annotations

import re

from ils.results import CirculationRefused, Refusal

# The largest amount the schema's 32-bit integer columns hold.
MAX_MINOR = 2**31 - 1


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# ISO 4217 currencies whose minor unit is not a hundredth.
_EXPONENT_0 = _codes(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
)
_EXPONENT_3 = _codes("BHD IQD JOD KWD LYD OMR TND")
_EXPONENT_4 = _codes("CLF UYW")
# Currencies with two decimal places that the core accepts; extend as needed.
_EXPONENT_2 = _codes(
    """
    AED ARS AUD BGN BRL CAD CHF CNY COP CZK DKK EGP EUR GBP GHS HKD HUF IDR ILS
    INR KES MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN QAR RON RSD RUB SAR SEK SGD
    THB TRY TWD UAH USD ZAR
    """
)

_AMOUNT = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<fraction>[0-9]+))?")


def exponent(currency: str) -> int:
    """The number of decimal places of `currency` (an ISO 4217 code).

    Raises:
        CirculationRefused: WRONG_CURRENCY for a code not in the table.
    """
    code = currency.upper()
    for places, codes in (
        (2, _EXPONENT_2),
        (0, _EXPONENT_0),
        (3, _EXPONENT_3),
        (4, _EXPONENT_4),
    ):
        if code in codes:
            return places
    raise CirculationRefused(
        Refusal.WRONG_CURRENCY, f"The currency {currency!r} is not known here."
    )


def parse_amount(text: str, currency: str) -> int:
    """An amount written as text ("2.50", "3", "0.5") in minor units of `currency`.

    Surrounding spaces are ignored; nothing else is forgiven.

    Raises:
        CirculationRefused: INVALID_AMOUNT for text that is not a plain,
            non-negative decimal with at most the currency's decimal places, or
            too large to store; WRONG_CURRENCY for an unknown currency.
    """
    places = exponent(currency)
    match = _AMOUNT.fullmatch(text.strip())
    fraction = "" if match is None else match.group("fraction") or ""
    if match is None or len(fraction) > places or (places == 0 and "." in text):
        raise CirculationRefused(
            Refusal.INVALID_AMOUNT,
            f"{text!r} is not an amount in {currency.upper()}"
            f" (at most {places} decimal places, no sign or separators).",
        )
    scale: int = 10**places
    minor = int(match.group("units")) * scale + int(fraction.ljust(places, "0") or 0)
    if minor > MAX_MINOR:
        raise CirculationRefused(
            Refusal.INVALID_AMOUNT, f"{text!r} is more than can be recorded."
        )
    return minor


def format_amount(minor: int, currency: str) -> str:
    """Minor units as text with the currency's decimal places: 250 GBP is "2.50".

    Raises:
        CirculationRefused: WRONG_CURRENCY for an unknown currency.
    """
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    scale: int = 10**places
    units, fraction = divmod(abs(minor), scale)
    if places == 0:
        return f"{sign}{units}"
    return f"{sign}{units}.{fraction:0{places}d}"
