"""From a decoded MARC 21 record to the columns of a title and its items.

Layer: `ils` (the core). Imports pymarc, `ils.models` (for `ItemStatus`) and the
standard library; no database access.

The holdings field is Koha's `952`, the de facto interchange form of item data
between open-source library systems; its subfields are listed in
docs/import.md.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from pymarc import Field, Record

from ils.models import ItemStatus

# Column widths of ils.models, so that PostgreSQL never refuses a long value.
CONTROL_NUMBER_WIDTH = 64
YEAR_WIDTH = 16
BARCODE_WIDTH = 64
CODE_WIDTH = 32
LOCATION_WIDTH = 80
COLLECTION_WIDTH = 80
CALL_NUMBER_WIDTH = 120

UNTITLED = "[untitled]"

# Punctuation that ISBD puts before the next element of a description:
# " /" before the statement of responsibility, " :" before other title
# information or the publisher, " ;" before a second title or place, " =" before
# a parallel title, "," between elements.
_ISBD_TAIL = re.compile(r"\s*[/:;=,]\s*$")
# A trailing full stop ends the area; it is kept after an initial ("K.") or an
# abbreviation made of initials ("U.S."), and in an ellipsis.
_FINAL_STOP = re.compile(r"(?<![.\s][A-Z])(?<!^[A-Z])(?<!\.\.)\.\s*$")
_ISBN = re.compile(r"^(?:\d{9}[\dX]|\d{13})$")
_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")


def trim_isbd(text: str, *, full_stop: bool = True) -> str:
    """`text` without the ISBD punctuation and full stop that end a MARC subfield.

    With `full_stop` False a final "." is kept, for elements such as a publisher
    ("U.S. Govt. Print. Off.") whose last word is usually abbreviated.

    >>> trim_isbd("Moby-Dick, or, The whale /")
    'Moby-Dick, or, The whale'
    >>> trim_isbd("Izuka, Scot K.,")
    'Izuka, Scot K.'
    """
    while True:
        trimmed = _ISBD_TAIL.sub("", text.strip())
        if full_stop:
            trimmed = _FINAL_STOP.sub("", trimmed).rstrip()
        if trimmed == text:
            return trimmed
        text = trimmed


def _subfield(field: Field, code: str) -> str | None:
    for value in field.get_subfields(code):
        if value.strip():
            return str(value.strip())
    return None


def title_of(record: Record) -> str | None:
    """The title proper with other title information (245 $a and $b), trimmed.

    The punctuation that ends a 245 $h (medium) belongs to the next element, so
    it is kept: "Act $h[electronic resource] : $b report" reads "Act : report".
    """
    field = record.get("245")
    if field is None:
        return None

    parts: list[str] = []
    for subfield in field.subfields:
        value = subfield.value.strip()
        if subfield.code in ("a", "b") and value:
            parts.append(value)
        elif subfield.code == "h" and parts:
            tail = re.search(r"[:;=/]\s*$", value)
            if tail:
                parts[-1] = f"{parts[-1]} {tail.group(0).strip()}"

    title = trim_isbd(" ".join(parts))
    return title or None


def author_of(record: Record) -> str | None:
    """The main entry (100, 110 or 111 $a), else the statement of responsibility."""
    for field in record.get_fields("100", "110", "111"):
        name = _subfield(field, "a")
        if name:
            return trim_isbd(name) or None
    title = record.get("245")
    if title is not None:
        statement = _subfield(title, "c")
        if statement:
            return trim_isbd(statement) or None
    return None


def isbn_of(record: Record) -> str | None:
    """The first well-formed ISBN in 020 $a, digits (and a final X) only.

    A qualifier after the number ("(pbk.)") and hyphens are dropped. The check
    digit is not verified: a misprinted ISBN is still what is on the book.
    """
    for field in record.get_fields("020"):
        for value in field.get_subfields("a"):
            words = value.split()
            if not words:
                continue
            candidate = words[0].replace("-", "").upper()
            if _ISBN.match(candidate):
                return candidate
    return None


def _publication_field(record: Record) -> Field | None:
    # RDA puts publication in 264 with second indicator 1; older records use 260.
    for field in record.get_fields("264"):
        if field.indicator2 == "1":
            return field
    fields = record.get_fields("260") or record.get_fields("264")
    return fields[0] if fields else None


def publication_of(record: Record) -> tuple[str | None, str | None]:
    """The publisher (264/260 $b) and year (264/260 $c, else 008/07-10)."""
    field = _publication_field(record)
    publisher = date = None
    if field is not None:
        name = _subfield(field, "b")
        publisher = trim_isbd(name, full_stop=False) or None if name else None
        date = _subfield(field, "c")

    year: str | None = None
    if date:
        found = _YEAR.search(date)
        year = found.group(1) if found else trim_isbd(date.strip("[]")) or None
    if year is None:
        fixed = record.get("008")
        data = fixed.data if fixed is not None else None
        if data and len(data) >= 11 and data[7:11].isdigit():
            year = data[7:11]
    return publisher, year[:YEAR_WIDTH] if year else None


def call_number_of(record: Record) -> str | None:
    """A call number for items made without a 952: local 099, 092 or 090, else 082.

    Classification and item part ($a and $b) are joined with a space.
    """
    for tag in ("099", "092", "090", "082"):
        for field in record.get_fields(tag):
            parts = [value.strip() for value in field.get_subfields("a", "b")]
            number = " ".join(part for part in parts if part)
            if number:
                return number[:CALL_NUMBER_WIDTH]
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class TitleColumns:
    """What the bib_record table keeps beside the whole record."""

    control_number: str | None
    title: str
    author: str | None
    isbn: str | None
    publisher: str | None
    publication_year: str | None


def _composed(text: str | None) -> str | None:
    # MARC 21 UTF-8 records usually carry decomposed letters (o + combining
    # macron); the columns are for display and search, so they are stored NFC.
    return unicodedata.normalize("NFC", text) if text else text


def title_columns(record: Record) -> tuple[TitleColumns, list[str]]:
    """The bib_record columns of `record` (text in NFC), and problems to report."""
    problems: list[str] = []
    control = record.get("001")
    control_number = (control.data or "").strip() if control is not None else ""
    if len(control_number) > CONTROL_NUMBER_WIDTH:
        problems.append(f"001 is longer than {CONTROL_NUMBER_WIDTH} characters; cut")

    title = title_of(record)
    if title is None:
        problems.append(f"no title (245 $a); stored as {UNTITLED!r}")

    publisher, year = publication_of(record)
    author = author_of(record)
    return (
        TitleColumns(
            control_number=control_number[:CONTROL_NUMBER_WIDTH] or None,
            title=_composed(title) or UNTITLED,
            author=_composed(author),
            isbn=isbn_of(record),
            publisher=_composed(publisher),
            publication_year=year,
        ),
        problems,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """One item described by a Koha 952 field; None where the field is silent."""

    barcode: str | None
    home_branch: str | None
    current_branch: str | None
    item_type: str | None
    call_number: str | None
    location: str | None
    collection: str | None
    price_minor: int | None
    status: ItemStatus


def price_in_minor_units(text: str) -> int:
    """A decimal price ("12.50", "12", "1,250.00") as minor units (1250).

    Two decimal places are assumed, as for USD, EUR and GBP.

    Raises:
        ValueError: when the text is not a non-negative amount with at most two
            decimals.
    """
    # TODO(#4): take the exponent from the institution's currency (JPY has none).
    cleaned = text.strip().replace(",", "")
    cleaned = re.sub(r"^[^\d.]+", "", cleaned)
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a price") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{text!r} is not a price")
    minor = amount * 100
    if minor != minor.to_integral_value():
        raise ValueError(f"{text!r} has more than two decimals")
    return int(minor)


def _flag(field: Field, code: str) -> int:
    value = _subfield(field, code)
    try:
        return int(value) if value else 0
    except ValueError:
        return 1


def _status(field: Field) -> ItemStatus:
    # Koha keeps each state in its own subfield, non-zero meaning set; one status
    # is kept here, the one that most stops circulation.
    if _flag(field, "0"):
        return ItemStatus.WITHDRAWN
    if _flag(field, "1"):
        return ItemStatus.LOST
    if _flag(field, "4"):
        return ItemStatus.DAMAGED
    not_for_loan = _flag(field, "7")
    if not_for_loan < 0:
        return ItemStatus.IN_PROCESSING
    if not_for_loan > 0:
        return ItemStatus.NOT_FOR_LOAN
    return ItemStatus.AVAILABLE


def _text(field: Field, code: str, width: int, problems: list[str]) -> str | None:
    value = _subfield(field, code)
    if value is not None and len(value) > width:
        problems.append(f"952 ${code} is longer than {width} characters; cut")
        value = value[:width]
    return value


def holdings_of(record: Record) -> tuple[list[Holding], list[str]]:
    """The items in the record's 952 fields, and problems worth reporting.

    A 952 whose barcode or codes are too long for the database is left out and
    reported; a price that cannot be read is reported and left empty.
    """
    holdings: list[Holding] = []
    problems: list[str] = []
    for number, field in enumerate(record.get_fields("952"), start=1):
        where = f"952 #{number}"
        barcode = _subfield(field, "p")
        home = _subfield(field, "a")
        current = _subfield(field, "b") or home
        item_type = _subfield(field, "y")

        too_long = [
            f"${code}"
            for code, value, width in (
                ("p", barcode, BARCODE_WIDTH),
                ("a", home, CODE_WIDTH),
                ("b", current, CODE_WIDTH),
                ("y", item_type, CODE_WIDTH),
            )
            if value is not None and len(value) > width
        ]
        if too_long:
            problems.append(f"{where}: {', '.join(too_long)} too long; item skipped")
            continue

        price: int | None = None
        price_text = _subfield(field, "g")
        if price_text:
            try:
                price = price_in_minor_units(price_text)
            except ValueError as error:
                problems.append(f"{where}: price left empty, {error}")

        holdings.append(
            Holding(
                barcode=barcode,
                home_branch=home,
                current_branch=current,
                item_type=item_type,
                call_number=_text(field, "o", CALL_NUMBER_WIDTH, problems),
                location=_text(field, "c", LOCATION_WIDTH, problems),
                collection=_text(field, "8", COLLECTION_WIDTH, problems),
                price_minor=price,
                status=_status(field),
            )
        )
    return holdings, problems
