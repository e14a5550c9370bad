"""Small wording for the command line's output: counts with the right plural.

Layer: `ils`. Imports only the standard library.
"""

from __future__ import annotations


def plural(count: int, one: str, many: str | None = None) -> str:
    """`count` with the noun in the form that fits it: "1 hold", "2 holds",
    "0 copies" (`many` defaults to `one` + "s")."""
    word = one if count == 1 else (many if many is not None else f"{one}s")
    return f"{count} {word}"
