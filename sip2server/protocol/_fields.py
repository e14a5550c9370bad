"""How one field's text turns into a Python value and back.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

Each converter reads liberally (what real clients send) and writes strictly (what
the spec says). Reading raises `BadValueError` with a reason; the codec adds the
field's name and the command and turns it into an `InvalidFieldValue`. Writing
raises `LocalProtocolError`, because only our own code chooses what we send.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import re
from typing import Any, Protocol

from ._bitfields import PatronStatus, Summary, SupportedMessages, _BadFlagsError
from .errors import InvalidFieldValue, LocalProtocolError, UnknownCode

#: SIP2 2.00 caps a variable field at 255 characters.
MAX_FIELD_LENGTH = 255

DATE_WIDTH = 18
_BLANK_DATE = " " * DATE_WIDTH
_LOCAL_ZONE = "    "
_UTC_ZONE = "   Z"
_VERSION = re.compile(r"\d\.\d\d")


def _military_zones() -> dict[str, dt.tzinfo]:
    # SIP2 2.00 puts a time-zone letter in the last place of ZZZZ: Z is UTC, and
    # "the appropriate character" otherwise (its example: Q, Atlantic Standard
    # Time). These are the military letters: A-I and K-M east, N-Y west.
    east = "ABCDEFGHIKLM"
    west = "NOPQRSTUVWXY"
    zones: dict[str, dt.tzinfo] = {"Z": dt.UTC}
    for hours, (ahead, behind) in enumerate(zip(east, west, strict=True), start=1):
        zones[ahead] = dt.timezone(dt.timedelta(hours=hours))
        zones[behind] = dt.timezone(dt.timedelta(hours=-hours))
    return zones


_MILITARY_ZONES = _military_zones()

# Every C0 and C1 control character, DEL and the field delimiter: a fixed-width
# text field may hold none of them.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f|]")


class BadValueError(ValueError):
    """A field's text cannot be read as its type (internal to the codec)."""

    def __init__(self, reason: str, *, unknown_code: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unknown_code = unknown_code


def invalid_value(
    command: str, name: str, raw: str, error: BadValueError
) -> InvalidFieldValue:
    """The error a decoder raises for a field whose text `error` refused."""
    kind = UnknownCode if error.unknown_code else InvalidFieldValue
    return kind(
        f"{command} field {name}: {error.reason}",
        field=name,
        value=raw,
        command=command,
    )


class Converter(Protocol):
    """Reads a field's text into a value and writes it back."""

    @property
    def width(self) -> int | None:
        """The fixed width on the wire, or None for a variable field."""

    def read(self, text: str) -> Any:
        """The value of `text`; raises BadValueError."""

    def write(self, value: Any) -> str:
        """The wire text of `value`; raises LocalProtocolError."""


@dataclasses.dataclass(frozen=True, slots=True)
class Text:
    """Free text. Fixed-width text must be written at exactly its width; a control
    character or `|` in it is written as `?`.

    Variable text is written as given: the codec makes it safe (the account's
    delimiter policy), fits it to the character set and cuts it to 255.
    """

    width: int | None = None

    def read(self, text: str) -> str:
        return text

    def write(self, value: Any) -> str:
        if not isinstance(value, str):
            raise LocalProtocolError(f"expected a str, not {value!r}")
        if self.width is None:
            return value
        if len(value) != self.width:
            raise LocalProtocolError(f"{value!r} is not {self.width} characters")
        # Deviation D11: a control character or `|` (read liberally from a
        # client, say) is written as `?`, which keeps the width and the frame.
        return _UNSAFE.sub("?", value)


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    """A protocol version such as `2.00` (four characters, digit dot digit digit)."""

    width: int | None = 4

    def read(self, text: str) -> str:
        if not _VERSION.fullmatch(text):
            raise BadValueError(f"{text!r} is not a protocol version like '2.00'")
        return text

    def write(self, value: Any) -> str:
        if not isinstance(value, str) or not _VERSION.fullmatch(value):
            raise LocalProtocolError(f"{value!r} is not a protocol version like '2.00'")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class YesNo:
    """A Y/N flag. Reads `Y`/`y`/`1` as true and `N`/`n`/`0`/space as false."""

    width: int | None = 1

    def read(self, text: str) -> bool | None:
        if self.width is None and text == "":
            return None
        return _read_bool(text)

    def write(self, value: Any) -> str:
        return "Y" if _bool(value) else "N"


@dataclasses.dataclass(frozen=True, slots=True)
class OneZero:
    """A 1/0 flag ("ok"). Reads `1`/`Y`/`y` as true and `0`/`N`/`n`/space as false."""

    width: int | None = 1

    def read(self, text: str) -> bool:
        return _read_bool(text)

    def write(self, value: Any) -> str:
        return "1" if _bool(value) else "0"


@functools.cache
def _members(enum_type: type[enum.Enum]) -> dict[str, enum.Enum]:
    # A dict lookup is several times faster than calling the enum class.
    return {str(member.value): member for member in enum_type}


@dataclasses.dataclass(frozen=True, slots=True)
class Code:
    """An enumerated code; the enum's values are the wire codes.

    `lenient` names a member to read unknown codes as, instead of failing.
    """

    enum_type: type[enum.Enum]
    width: int | None = None
    lenient: enum.Enum | None = None

    def read(self, text: str) -> enum.Enum | None:
        if self.width is None and text == "":
            return None
        member = _members(self.enum_type).get(text)
        if member is not None:
            return member
        if self.lenient is not None:
            return self.lenient
        raise BadValueError(
            f"{text!r} is not a {self.enum_type.__name__} code", unknown_code=True
        )

    def write(self, value: Any) -> str:
        if not isinstance(value, self.enum_type):
            raise LocalProtocolError(
                f"expected a {self.enum_type.__name__}, not {value!r}"
            )
        code = str(value.value)
        if self.width is not None and len(code) != self.width:
            raise LocalProtocolError(f"{value!r} is not {self.width} characters")
        return code


# The most digits a count may have: beyond any real count, and below 2**63.
_LONGEST_COUNT = 18


@dataclasses.dataclass(frozen=True, slots=True)
class Number:
    """A count. Fixed ones are zero-padded; variable ones (BP, BQ) are read with or
    without padding, and an empty variable one reads as None."""

    width: int | None = None
    #: Zero-pad variable output to this many digits (BZ, CA, CB are 4 digits).
    pad: int = 0

    def read(self, text: str) -> int | None:
        stripped = text.strip(" ")
        if self.width is None and stripped == "":
            return None
        if stripped == "":
            return 0
        if not stripped.isascii() or not stripped.isdigit():
            raise BadValueError(f"{text!r} is not a number")
        if len(stripped) > _LONGEST_COUNT:
            # No count has that many digits (and Python refuses to read an int
            # of over 4,300 digits with a ValueError of its own).
            raise BadValueError(f"{stripped[:20]}... is too long for a count")
        return int(stripped)

    def write(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LocalProtocolError(f"expected a count, not {value!r}")
        width = self.width if self.width is not None else self.pad
        text = str(value).zfill(width)
        if self.width is not None and len(text) > self.width:
            raise LocalProtocolError(f"{value} does not fit in {self.width} digits")
        return text


@dataclasses.dataclass(frozen=True, slots=True)
class Date:
    """An 18-character date `YYYYMMDDZZZZHHMMSS`.

    ZZZZ of four blanks is local time (a naive datetime); `   Z` is UTC (an aware
    one), and the other military zone letters (`   Q`, four hours behind UTC) are
    read as aware datetimes too. Writing always uses blanks or `   Z`. 18
    blanks, or an empty variable field, mean "no date" (None).
    """

    width: int | None = DATE_WIDTH

    def read(self, text: str) -> dt.datetime | None:
        if text in ("", _BLANK_DATE):
            if text == "" and self.width is not None:
                raise BadValueError("a date is missing")
            return None
        return read_date(text)

    def write(self, value: Any) -> str:
        if value is None:
            return _BLANK_DATE
        if not isinstance(value, dt.datetime):
            raise LocalProtocolError(f"expected a datetime or None, not {value!r}")
        return write_date(value)


@dataclasses.dataclass(frozen=True, slots=True)
class DayMonthYear:
    """A day written `dd.MM.yyyy`, as the Gossip extension writes FC.

    Reads a one- or two-digit day and month and a four-digit year (`4.1.2027`
    as well as `04.01.2027`); writes two digits for each. Empty reads as None.
    """

    width: int | None = None

    def read(self, text: str) -> dt.date | None:
        if text == "":
            return None
        parts = text.split(".")
        if not (
            len(parts) == 3
            and text.isascii()
            and 1 <= len(parts[0]) <= 2
            and 1 <= len(parts[1]) <= 2
            and len(parts[2]) == 4
            and all(part.isdigit() for part in parts)
        ):
            raise BadValueError(f"{text!r} is not a dd.MM.yyyy date")
        try:
            return dt.date(int(parts[2]), int(parts[1]), int(parts[0]))
        except ValueError:
            raise BadValueError(f"{text!r} is not a real date") from None

    def write(self, value: Any) -> str:
        # A datetime is a date too, but writing it here would drop its time.
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise LocalProtocolError(f"expected a date, not {value!r}")
        return f"{value.day:02d}.{value.month:02d}.{value.year:04d}"


def read_date(text: str) -> dt.datetime:
    """Read `YYYYMMDDZZZZHHMMSS`; raises BadValueError with the reason."""
    day, zone, time = text[:8], text[8:12], text[12:]
    if not (
        len(text) == DATE_WIDTH and text.isascii() and day.isdigit() and time.isdigit()
    ):
        raise BadValueError(f"{text!r} is not an 18-character YYYYMMDDZZZZHHMMSS date")
    if zone == _LOCAL_ZONE:
        tzinfo = None
    elif zone[:3] == "   " and zone[3] in _MILITARY_ZONES:
        tzinfo = _MILITARY_ZONES[zone[3]]
    else:
        # Deviation D14: digit zones (Sierra's 0000) are refused, not guessed.
        raise BadValueError(
            f"time zone {zone!r} is neither four blanks nor a zone letter like '   Z'"
        )
    try:
        # The digits are checked above; datetime checks the calendar.
        return dt.datetime(
            int(day[:4]),
            int(day[4:6]),
            int(day[6:]),
            int(time[:2]),
            int(time[2:4]),
            int(time[4:]),
            tzinfo=tzinfo,
        )
    except ValueError:
        raise BadValueError(f"{text!r} is not a real date and time") from None


def write_date(value: dt.datetime) -> str:
    """Write a naive datetime with four blanks as zone, an aware one in UTC with `Z`."""
    if value.tzinfo is None or value.utcoffset() is None:
        zone = _LOCAL_ZONE
    else:
        value = value.astimezone(dt.UTC)
        zone = _UTC_ZONE
    day = f"{value.year:04d}{value.month:02d}{value.day:02d}"
    return f"{day}{zone}{value.hour:02d}{value.minute:02d}{value.second:02d}"


@dataclasses.dataclass(frozen=True, slots=True)
class Flags:
    """One of the positional flag strings (patron status, BX, summary)."""

    flags_type: type[PatronStatus] | type[SupportedMessages] | type[Summary]
    width: int | None = None

    def read(self, text: str) -> PatronStatus | SupportedMessages | Summary:
        try:
            return self.flags_type.from_wire(text)
        except _BadFlagsError as error:
            raise BadValueError(str(error)) from None

    def write(self, value: Any) -> str:
        if not isinstance(value, self.flags_type):
            raise LocalProtocolError(
                f"expected a {self.flags_type.__name__}, not {value!r}"
            )
        return value.to_wire()


def _read_bool(text: str) -> bool:
    # Deviation D6: Y/N and 1/0 flags each accept the other style, lowercase and
    # a blank; remove when no client is seen sending them.
    if text in ("Y", "y", "1"):
        return True
    if text in ("N", "n", "0", " "):
        return False
    raise BadValueError(f"{text!r} is not a Y/N or 1/0 flag")


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise LocalProtocolError(f"expected a bool, not {value!r}")
    return value
