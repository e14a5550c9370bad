"""Which texts from a terminal the core can look up or store: barcodes, branch
codes, terminal names and transaction ids.

Layer: `ils`, the bottom. Imports only the standard library; never SIP2, Twisted
or Kivy, and no other `ils` module, so that every core module may use it.

PostgreSQL keeps no NUL character in text, and no encoding carries a lone
surrogate: a code holding one would come back as a database error on one
engine and as "not found" on the other. The core checks codes with `is_code`
before they reach the database, and answers for them as for any unknown code.
"""

from __future__ import annotations

import unicodedata

# Unicode categories no code holds: control characters (NUL, tab, line breaks)
# and lone surrogates.
_NOT_IN_CODES = frozenset({"Cc", "Cs"})


def is_code(text: str | None) -> bool:
    """Whether `text` can be a barcode, branch code or id: a string with no
    control characters and no lone surrogates, as every scanner sends."""
    return isinstance(text, str) and not any(
        unicodedata.category(character) in _NOT_IN_CODES for character in text
    )


def printable(text: str | None) -> str | None:
    """`text` with its control characters and lone surrogates replaced by "?",
    for a name that only goes into the log (a terminal's)."""
    if text is None or is_code(text):
        return text
    return "".join(
        "?" if unicodedata.category(character) in _NOT_IN_CODES else character
        for character in text
    )
