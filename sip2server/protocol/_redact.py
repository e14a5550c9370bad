"""Renderings of messages and frames that are safe to write to a log.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

Passwords (AC terminal, AD patron, CO login) are always replaced by `***`, which
says nothing about their length. Patron data (AA barcode, AE name, CY/DA hold
patron, BD address, BE e-mail, BF phone, PB birth date) is masked unless
`mask_patron=False`: identifiers keep their last four characters so that an
operator can still tell two patrons apart, names and contact data become `***`.
The fee details of 64 (FA to FG) are shown in clear: an item's barcode and title
and a fee's amounts say nothing about who the patron is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping

from ._layouts import BY_COMMAND, BY_TYPE
from ._messages_patron import FeeDetail, Message

_HIDDEN = "***"

# Values that never reach a log in clear.
_SECRET_CODES = frozenset({"AC", "AD", "CO"})
# Identifiers: the last four characters are kept for correlation.
_IDENTIFIER_CODES = frozenset({"AA", "CY"})
# Personal data with nothing worth keeping for correlation.
_PERSONAL_CODES = frozenset({"AE", "DA", "BD", "BE", "BF", "PB"})

_KEEP_LAST = 4
_SHORTEST_PARTLY_SHOWN = 8


def mask_identifier(value: str) -> str:
    """Keep the last four characters of a long identifier; hide a short one whole."""
    if len(value) < _SHORTEST_PARTLY_SHOWN:
        return _HIDDEN
    return "..." + value[-_KEEP_LAST:]


def _masked(code: str, value: str, *, mask_patron: bool) -> str:
    if code in _SECRET_CODES:
        return _HIDDEN
    if mask_patron and code in _IDENTIFIER_CODES:
        return mask_identifier(value)
    if mask_patron and code in _PERSONAL_CODES:
        return _HIDDEN
    return value


def redact(message: Message, *, mask_patron: bool = True) -> str:
    """The message as `ClassName(field=value, ...)` with secrets masked.

    Fields that are None or empty tuples are left out to keep log lines short.
    """
    layout = BY_TYPE[type(message)]
    code_of: Mapping[str, str] = {field.name: field.code for field in layout.variable}

    parts: list[str] = []
    for attribute in dataclasses.fields(message):
        value = getattr(message, attribute.name)
        if value is None or value == ():
            continue
        code = code_of.get(attribute.name, "")
        parts.append(f"{attribute.name}={_render(code, value, mask_patron)}")
    return f"{type(message).__name__}({', '.join(parts)})"


def _render(code: str, value: object, mask_patron: bool) -> str:
    if isinstance(value, str):
        return repr(_masked(code, value, mask_patron=mask_patron))
    if isinstance(value, tuple):
        if value and isinstance(value[0], FeeDetail):
            # fee_details: each FeeDetail with its given values, none masked.
            return "(" + ", ".join(_render_fee(item) for item in value) + ")"
        if value and isinstance(value[0], tuple):
            # extra_fields: (code, value) pairs, masked by their own codes.
            pairs = [
                f"{pair[0]}={_masked(pair[0], pair[1], mask_patron=mask_patron)!r}"
                for pair in value
            ]
            return "(" + ", ".join(pairs) + ")"
        items = [repr(_masked(code, item, mask_patron=mask_patron)) for item in value]
        return "(" + ", ".join(items) + ")"
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "to_wire"):
        return repr(value.to_wire())
    return repr(value)


def _render_fee(fee: FeeDetail) -> str:
    parts = [
        f"{attribute.name}={_render('', getattr(fee, attribute.name), False)}"
        for attribute in dataclasses.fields(fee)
        if getattr(fee, attribute.name) is not None
    ]
    return f"FeeDetail({', '.join(parts)})"


def redact_frame(payload: bytes, *, mask_patron: bool = True) -> str:
    """A raw frame as text, with the values of sensitive fields masked.

    Works on frames that do not decode (that is when an operator needs the log
    most): bytes that are not ASCII are shown as latin-1, control bytes as
    `\\xNN`, and the fixed part of a known command is skipped by its width.
    """
    text = payload.decode("latin-1")
    layout = BY_COMMAND.get(text[:2])
    start = min(2 + layout.fixed_width, len(text)) if layout is not None else 0
    head, fields = text[:start], text[start:]

    masked = []
    for segment in fields.split("|"):
        code, value = segment[:2], segment[2:]
        if value:
            value = _masked(code, value, mask_patron=mask_patron)
        masked.append(_printable(code + value))
    return _printable(head) + "|".join(masked)


def _printable(text: str) -> str:
    return "".join(
        char if char.isprintable() else f"\\x{ord(char):02x}" for char in text
    )
