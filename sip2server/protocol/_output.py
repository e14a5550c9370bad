"""The output settings a server may choose per account, and what they do to text.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

SIP2 2.00 fixes the frame but leaves room for habits: what becomes of a `|`
inside a value, the order of the variable fields, the shape of a due date and
the character set. Real ACSs differ on each (Koha, FOLIO, Evergreen), and some
terminals only work with one habit, so each is a setting here.
"""

from __future__ import annotations

import codecs
import datetime as dt
import enum
import re
import unicodedata

from ._fields import MAX_FIELD_LENGTH, write_date


class DelimiterPolicy(enum.Enum):
    """What a `|` inside a value becomes on the wire (the spec has no escape)."""

    #: One space, as FOLIO does.
    SPACE = "space"
    #: Nothing, as the Evergreen crate does.
    REMOVE = "remove"
    #: The HTML entity `&#124;`, as Koha does.
    ENTITY = "entity"


class FieldOrder(enum.Enum):
    """The order of the known variable fields in an encoded message."""

    #: The order of the spec's field tables.
    SPEC = "spec"
    #: Sorted by field code, as the Evergreen crate does.
    ALPHABETICAL = "alphabetical"


class DueDateStyle(enum.Enum):
    """How a due date (AH) is written; the spec leaves AH as free text."""

    #: `YYYYMMDDZZZZHHMMSS`, the 18-character SIP2 date.
    SIP = "sip"
    #: `YYYY-MM-DD HH:MM:SS`, as the Evergreen mediator sends by default.
    ISO = "iso"
    #: `YYYYMMDD`, the day only.
    DATE = "date"


_DELIMITER_TEXT = {
    DelimiterPolicy.SPACE: " ",
    DelimiterPolicy.REMOVE: "",
    DelimiterPolicy.ENTITY: "&#124;",
}
_ENTITY = _DELIMITER_TEXT[DelimiterPolicy.ENTITY]

# Every C0 and C1 control character and DEL: each would end or split a frame.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Letters and signs that Unicode does not decompose into a base letter and a mark.
_TRANSLITERATIONS = {
    "Æ": "AE",
    "æ": "ae",
    "Ð": "D",
    "ð": "d",
    "Đ": "D",
    "đ": "d",
    "Ħ": "H",
    "ħ": "h",
    "ı": "i",
    "Ł": "L",
    "ł": "l",
    "Ŋ": "NG",
    "ŋ": "ng",
    "Ø": "O",
    "ø": "o",
    "Œ": "OE",
    "œ": "oe",
    "ß": "ss",
    "ẞ": "SS",
    "Þ": "TH",
    "þ": "th",
    "Ŧ": "T",
    "ŧ": "t",
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "–": "-",
    "—": "-",
    "−": "-",
    "‘": "'",
    "’": "'",
    "‚": ",",
    "“": '"',
    "”": '"',
    "„": '"',
    "«": '"',
    "»": '"',
    "€": "EUR",
}

# What an ASCII-compatible encoding must write byte for byte: the printable ASCII
# characters (codes, digits, `|`) and the line endings.
_ASCII_PROBE = "".join(map(chr, range(32, 127))) + "\r\n"
_ENCODING_PROBLEMS: dict[str, str | None] = {}


def encoding_problem(encoding: str) -> str | None:
    """Why `encoding` cannot carry SIP2 frames, or None when it can.

    SIP2's codes, digits, `|` and line endings must each be one ASCII byte, so
    UTF-16, UTF-32 and EBCDIC code pages are refused.
    """
    if encoding not in _ENCODING_PROBLEMS:
        _ENCODING_PROBLEMS[encoding] = _find_encoding_problem(encoding)
    return _ENCODING_PROBLEMS[encoding]


def _find_encoding_problem(encoding: str) -> str | None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        return f"{encoding!r} is not a known character set"
    try:
        written = _ASCII_PROBE.encode(encoding)
    except (UnicodeError, TypeError, LookupError):
        # LookupError: a codec that is not a text encoding, such as rot13.
        written = b""
    if written != _ASCII_PROBE.encode():
        return (
            f"{encoding!r} does not write ASCII as single bytes, which SIP2's codes "
            "and delimiters need"
        )
    return None


def make_safe(text: str, policy: DelimiterPolicy) -> str:
    """Make a value safe inside a variable field.

    Control characters (CR, LF and the rest) always become one space: they would
    end or split the frame. A `|` becomes what `policy` says.
    """
    # Deviation D11 (docs/sip2-conformance.md): the spec has no escape, so the
    # value is changed rather than the frame broken. Permanent.
    if "|" in text:
        text = text.replace("|", _DELIMITER_TEXT[policy])
    if text.isprintable():
        # Most values: no control character (nor any other non-printable one).
        return text
    return _CONTROL.sub(" ", text)


def pieces(text: str, policy: DelimiterPolicy) -> list[str]:
    """`text` cut into pieces of at most 255 characters (at least one piece).

    A cut never falls inside an `&#124;` entity, so no piece carries half of one.
    """
    if len(text) <= MAX_FIELD_LENGTH:
        return [text]
    found: list[str] = []
    start = 0
    while start < len(text):
        end = start + MAX_FIELD_LENGTH
        if policy is DelimiterPolicy.ENTITY and end < len(text):
            # An entity that overlaps the cut starts in the five places before it.
            entity = text.rfind(_ENTITY, end - len(_ENTITY) + 1, end + len(_ENTITY))
            if entity != -1 and entity < end:
                end = entity
        found.append(text[start:end])
        start = end
    return found


def wire_pieces(text: str, policy: DelimiterPolicy, fit_to: str | None) -> list[str]:
    """A value as it goes on the wire, in pieces of at most 255 characters.

    `fit_to` names the encoding to transliterate for, or None when every
    character is known to fit.
    """
    if fit_to is not None:
        text = representable(text, fit_to)
    return pieces(make_safe(text, policy), policy)


def representable(text: str, encoding: str) -> str:
    """`text` with each character `encoding` cannot hold transliterated or `?`.

    Accented letters lose their marks (`ë` -> `e`), a few letters without marks
    are spelt out (`æ` -> `ae`, `ß` -> `ss`, `ł` -> `l`), and every other
    character the encoding cannot hold becomes one `?`.
    """
    # Composed first, so that a decomposed `e` + U+0308 stays `ë` in Latin-1.
    text = unicodedata.normalize("NFC", text)
    return "".join(
        character if _fits(character, encoding) else _transliterate(character, encoding)
        for character in text
    )


def _transliterate(character: str, encoding: str) -> str:
    if unicodedata.category(character) == "Cc":
        # A C1 control: left alone here, it becomes a space like any control.
        return character
    spelt = _TRANSLITERATIONS.get(character)
    if spelt is None:
        decomposed = unicodedata.normalize("NFKD", character)
        spelt = "".join(part for part in decomposed if not unicodedata.combining(part))
    if spelt == character or not all(_fits(part, encoding) for part in spelt):
        return "?"
    return spelt


def _fits(character: str, encoding: str) -> bool:
    try:
        character.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def write_due_date(moment: dt.datetime, style: DueDateStyle) -> str:
    """A due date (AH) in `style`.

    `SIP` writes the 18-character SIP2 date (naive as local time, aware in UTC
    with `   Z`); `ISO` and `DATE` write the wall-clock time of `moment` as given.
    """
    if style is DueDateStyle.SIP:
        return write_date(moment)
    day = f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
    if style is DueDateStyle.DATE:
        return day
    return (
        f"{day[:4]}-{day[4:6]}-{day[6:]} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
