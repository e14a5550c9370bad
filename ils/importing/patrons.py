"""Importing patrons from a CSV file with Koha's borrower column names.

Layer: `ils` (the core). Imports SQLAlchemy, `ils.db`, `ils.models`,
`ils.secrets` and the standard library. It never prints or logs, and a PIN never
leaves this module except as its salted hash.

Rows are checked and their PINs hashed outside any transaction (hashing is slow
on purpose), then written `BATCH_SIZE` rows per transaction. A bad row is
reported with its line number and skipped; the rest still import.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ils.db import Database
from ils.importing.circfile import cell_value, csv_records, value_problem
from ils.importing.codes import CodeBook
from ils.importing.report import (
    ImportAbortedError,
    ImportReport,
    ImportSetupError,
    ReportTally,
    describe_database_error,
)
from ils.models import Patron
from ils.secrets import hash_secret

BATCH_SIZE = 500

# Koha's borrower export names for the columns this import reads.
KNOWN_COLUMNS = (
    "cardnumber",
    "surname",
    "firstname",
    "categorycode",
    "branchcode",
    "dateexpiry",
    "email",
    "phone",
    "pin",
)
REQUIRED_COLUMNS = ("cardnumber", "surname", "categorycode", "branchcode")
# Other names accepted for a column: Koha calls the PIN "password".
ALIASES = {"password": "pin"}

# Widths of the patron table's columns, checked so PostgreSQL never refuses a row.
WIDTHS = {
    "cardnumber": 64,
    "surname": 200,
    "firstname": 200,
    "categorycode": 32,
    "branchcode": 32,
    "email": 254,
    "phone": 64,
}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Koha and MySQL write an absent date this way.
_NO_DATE = {"", "0000-00-00"}


@dataclass(frozen=True, slots=True, kw_only=True)
class _PatronRow:
    """One checked CSV row, its PIN already hashed."""

    line: int
    cardnumber: str
    surname: str
    firstname: str
    categorycode: str
    branchcode: str
    expires_on: date | None
    email: str | None
    phone: str | None
    pin_hash: str | None


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        # utf-8-sig drops the byte order mark that spreadsheet programs write.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ImportSetupError(
            f"{path} is not UTF-8 (bad byte at line {line}); save it as UTF-8 CSV"
        ) from None


def _header(names: list[str], tally: ReportTally) -> tuple[dict[str, int], list[str]]:
    """Column positions by canonical name, and the ignored column names."""
    columns: dict[str, int] = {}
    ignored: list[str] = []
    for index, raw_name in enumerate(names):
        name = raw_name.strip().lower()
        canonical = ALIASES.get(name, name)
        if canonical not in KNOWN_COLUMNS:
            ignored.append(raw_name.strip())
        elif canonical in columns:
            tally.problem(
                1, f"column {raw_name.strip()!r} repeats {canonical!r}; ignored"
            )
        else:
            columns[canonical] = index

    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ImportSetupError(
            f"the header row lacks the column(s) {', '.join(missing)}; it has "
            f"{', '.join(repr(name.strip()) for name in names) or 'no columns'}"
            f" (known columns, Koha's names: {', '.join(KNOWN_COLUMNS)};"
            " the file must be comma-separated)"
        )
    return columns, ignored


def _rows(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the line it starts on (the header is line 1)."""
    return csv_records(text, path)


def _check(
    line: int,
    fields: list[str],
    columns: dict[str, int],
    width: int,
    tally: ReportTally,
) -> _PatronRow | None:
    """The row as a patron, or None after reporting why it is refused."""
    if len(fields) > width:
        tally.problem(
            line, f"{len(fields)} fields where the header has {width}; row skipped"
        )
        return None

    def value(name: str) -> str:
        index = columns.get(name)
        return (
            cell_value(fields[index])
            if index is not None and index < len(fields)
            else ""
        )

    values = {name: value(name) for name in KNOWN_COLUMNS}
    for name in KNOWN_COLUMNS:
        problem = value_problem(value(name))
        if problem is not None:
            tally.problem(line, f"{name} {problem}; row skipped", column=name)
            return None
    for name in ("cardnumber", "surname", "categorycode", "branchcode"):
        if not values[name]:
            tally.problem(line, f"no {name}; row skipped")
            return None
    for name, limit in WIDTHS.items():
        if len(values[name]) > limit:
            tally.problem(
                line, f"{name} is longer than {limit} characters; row skipped"
            )
            return None

    expiry = values["dateexpiry"]
    expires_on: date | None = None
    if expiry not in _NO_DATE:
        try:
            if not _ISO_DATE.match(expiry):
                raise ValueError(expiry)
            expires_on = date.fromisoformat(expiry)
        except ValueError:
            tally.problem(
                line,
                f"dateexpiry {expiry!r} is not a date like 2027-12-31; row skipped",
            )
            return None

    pin = (
        fields[columns["pin"]]
        if "pin" in columns and columns["pin"] < len(fields)
        else ""
    )
    return _PatronRow(
        line=line,
        cardnumber=values["cardnumber"],
        surname=values["surname"],
        firstname=values["firstname"],
        categorycode=values["categorycode"],
        branchcode=values["branchcode"],
        expires_on=expires_on,
        email=values["email"] or None,
        phone=values["phone"] or None,
        pin_hash=hash_secret(pin) if pin else None,
    )


def _write(
    database: Database,
    rows: list[_PatronRow],
    codes: CodeBook,
    update: bool,
    tally: ReportTally,
) -> None:
    with database.transaction() as session:
        wanted = [row.cardnumber for row in rows]
        existing = {
            patron.barcode: patron
            for patron in session.scalars(
                select(Patron).where(Patron.barcode.in_(wanted))
            )
        }
        for row in rows:
            branch_id = codes.existing_branch_id(session, row.branchcode)
            if branch_id is None:
                tally.problem(
                    row.line,
                    f"branch {row.branchcode!r} does not exist; row skipped"
                    " (create the branch first)",
                )
                tally.skipped += 1
                continue

            patron = existing.get(row.cardnumber)
            if patron is not None and not update:
                tally.problem(
                    row.line,
                    f"cardnumber {row.cardnumber} is already in the database;"
                    " row skipped (use --update to overwrite)",
                )
                tally.skipped += 1
                continue

            category_id = codes.category_id(session, row.categorycode, row.line)
            if patron is None:
                patron = Patron(barcode=row.cardnumber, pin_hash=row.pin_hash)
                session.add(patron)
                tally.imported += 1
            else:
                # An empty PIN in an update leaves the patron's PIN as it was.
                if row.pin_hash is not None:
                    patron.pin_hash = row.pin_hash
                tally.updated += 1
            patron.surname = row.surname
            patron.firstname = row.firstname
            patron.category_id = category_id
            patron.home_branch_id = branch_id
            patron.expires_on = row.expires_on
            patron.email = row.email
            patron.phone = row.phone


def import_patrons(
    database: Database,
    path: Path,
    *,
    update: bool = False,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import patrons from a UTF-8 CSV file with a header row of Koha column names.

    Args:
        database: where to import; its schema must be current.
        path: the CSV file (a byte order mark is allowed).
        update: overwrite patrons whose cardnumber is already in the database,
            instead of skipping those rows.
        batch_size: rows per transaction.

    Returns:
        What was read, stored, updated and skipped, with every problem and its
        line number.

    Raises:
        ImportSetupError: the file is not UTF-8 or its header lacks a required
            column; nothing was stored.
        ImportAbortedError: the database refused a batch; earlier batches stay.
        OSError: the file cannot be read.
    """
    tally = ReportTally()
    rows = _rows(_read_text(path), path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise ImportSetupError(f"{path} is empty; it needs a header row") from None
    columns, ignored = _header(header, tally)
    if ignored:
        tally.problem(1, f"column(s) not imported: {', '.join(ignored)}")

    # Patron imports never create branches, so no institution is needed.
    codes = CodeBook(None, tally)

    seen: set[str] = set()
    batch: list[_PatronRow] = []

    def flush() -> None:
        kept = tally.freeze()
        try:
            _write(database, batch, codes, update, tally)
        except SQLAlchemyError as error:
            raise ImportAbortedError(
                f"the database refused lines {batch[0].line} to {batch[-1].line},"
                f" which were rolled back; earlier lines were imported"
                f" ({describe_database_error(error)})",
                kept,
            ) from error
        batch.clear()

    for line, fields in rows:
        if not any(field.strip() for field in fields):
            continue
        tally.read += 1
        row = _check(line, fields, columns, len(header), tally)
        if row is not None and row.cardnumber in seen:
            tally.problem(
                line,
                f"cardnumber {row.cardnumber} appears earlier in the file; row skipped",
            )
            row = None
        if row is None:
            tally.skipped += 1
            continue
        seen.add(row.cardnumber)
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()

    return tally.freeze()
