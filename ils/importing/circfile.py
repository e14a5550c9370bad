"""What the loan, hold and fee imports share: columns, values, and the import run.

Layer: `ils` (the core). Imports SQLAlchemy, `ils.db`, `ils.models`,
`ils.importing.report` and the standard library. It never prints or logs.

A circulation import reads a whole CSV file, checks each row and either only
reports (a dry run, which changes nothing) or writes the good rows: in one
transaction, or in batches of a given size. A batch that was committed is
recognised on a second run (each importer says how: a loan is already there
when that item is on loan to that patron since that moment) and its rows are
counted as already imported, so an interrupted import is finished by running
the same command again.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ils.currency import MAX_MINOR
from ils.db import Database
from ils.importing.report import (
    ImportAbortedError,
    ImportReport,
    ImportSetupError,
    ReportTally,
    describe_database_error,
)
from ils.models import Branch, Institution, Item, Patron

# The end of a due day given without a time, as loan rules make it.
END_OF_DAY = time(23, 59, 59)

# ISO 4217 currencies whose minor unit is not the hundredth (the rest have two
# decimals).
CURRENCY_DECIMALS = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0,
    "JOD": 3, "JPY": 0, "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3,
    "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0,
    "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip

_AMOUNT = re.compile(r"^(\d+)(?:\.(\d*))?$")

# The longest value any column takes (a description or a note); a longer one is
# a broken file, such as a quote left open.
MAX_VALUE = 10_000

# What a spreadsheet program takes as the start of a formula. `ils export`
# writes a quote before a cell that starts with one of these, so that opening
# the file runs nothing; the imports take that quote off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# The earliest date an import takes: nothing a library holds today was lent,
# placed or charged before it, and times near year 1 cannot be moved into UTC.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """A column an import reads: the name export writes, and other names accepted.

    Aliases are Koha's names where Koha has the column, and plain ones.
    """

    name: str
    aliases: tuple[str, ...] = ()
    required: bool = False
    width: int | None = None


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data row: the line it starts on and its values by column name ("" if
    absent or blank)."""

    line: int
    values: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.values.get(name, "")


class RowProblems(Exception):  # noqa: N818 - carries a row's refusals, not a fault
    """The reasons one row cannot be imported, each with the column at fault."""

    def __init__(self, problems: Sequence[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = tuple(problems)


class RowChecks:
    """The problems found so far in one row; `done()` raises if there are any."""

    def __init__(self) -> None:
        self._problems: list[tuple[str | None, str]] = []

    def add(self, column: str | None, message: str) -> None:
        """Note a problem in `column` (None: the row as a whole)."""
        self._problems.append((column, message))

    def done(self) -> None:
        """Refuse the row if anything was noted.

        Raises:
            RowProblems: with every problem noted.
        """
        if self._problems:
            raise RowProblems(self._problems)

    def __bool__(self) -> bool:
        return bool(self._problems)


def read_text(path: Path) -> str:
    """The file as text; a UTF-8 byte order mark is dropped.

    Raises:
        ImportSetupError: the file is not UTF-8.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ImportSetupError(
            f"{path} is not UTF-8 (bad byte at line {line}); save it as UTF-8 CSV"
        ) from None


def read_rows(
    path: Path, columns: Sequence[Column], tally: ReportTally
) -> list[CsvRow]:
    """Every non-blank data row of a CSV file, by column name.

    Unknown columns are listed once as a warning at line 1; a row with more
    fields than the header is refused and counted as read and skipped.

    Raises:
        ImportSetupError: not UTF-8, empty, or a required column is missing.
    """
    records = csv_records(read_text(path), path)
    try:
        _, header = next(records)
    except StopIteration:
        raise ImportSetupError(f"{path} is empty; it needs a header row") from None

    by_name = {column.name: column for column in columns}
    accepted = {
        alias: column.name for column in columns for alias in column.aliases
    } | {column.name: column.name for column in columns}
    positions: dict[str, int] = {}
    ignored: list[str] = []
    for index, raw in enumerate(header):
        name = raw.strip().lower()
        canonical = accepted.get(name)
        if canonical is None:
            ignored.append(raw.strip())
        elif canonical in positions:
            tally.problem(1, f"column {raw.strip()!r} repeats {canonical!r}; ignored")
        else:
            positions[canonical] = index
    missing = [
        column.name
        for column in columns
        if column.required and column.name not in positions
    ]
    if missing:
        known = ", ".join(column.name for column in columns)
        raise ImportSetupError(
            f"the header row of {path} lacks the column(s) {', '.join(missing)};"
            f" it has {', '.join(repr(name.strip()) for name in header) or 'none'}"
            f" (the columns read: {known}; the file must be comma-separated)"
        )
    if ignored:
        tally.problem(1, f"column(s) not imported: {', '.join(ignored)}")

    rows: list[CsvRow] = []
    for start, fields in records:
        if not any(value.strip() for value in fields):
            continue
        tally.read += 1
        if len(fields) > len(header):
            tally.problem(
                start,
                f"{len(fields)} fields where the header has {len(header)}; row skipped",
            )
            tally.skipped += 1
            continue
        values = {
            name: cell_value(fields[index]) if index < len(fields) else ""
            for name, index in positions.items()
        }
        problems = _value_problems(values, by_name)
        if problems:
            for name, message in problems:
                tally.problem(start, f"{message}; row skipped", column=name)
            tally.skipped += 1
            continue
        rows.append(CsvRow(start, values))
    return rows


def _value_problems(
    values: dict[str, str], by_name: dict[str, Column]
) -> list[tuple[str, str]]:
    """(column, problem) for each value too wide for its column or not storable."""
    problems: list[tuple[str, str]] = []
    for name, value in values.items():
        width = by_name[name].width
        if width is not None and len(value) > width:
            problems.append((name, f"longer than {width} characters"))
        elif (problem := value_problem(value)) is not None:
            problems.append((name, problem))
    return problems


def csv_records(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record of `text` with the line it starts on (the header is 1).

    The csv module's limit on a field's length is lifted while reading, so that
    an over-long value is reported as a row problem by its column rather than
    ending the import.

    Raises:
        ImportSetupError: the csv module could not read the file, naming the line.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        line = 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise ImportSetupError(
                    f"{path} line {reader.line_num}: not readable as CSV ({error})"
                ) from None
            yield line, fields
            line = reader.line_num + 1
    finally:
        csv.field_size_limit(limit)


def cell_value(raw: str) -> str:
    """A CSV cell's value: stripped of surrounding blanks and of the quote that
    `ils export` puts before a cell a spreadsheet would take as a formula
    ("'=SUM(A1)" is read as "=SUM(A1)")."""
    value = raw.strip()
    if value.startswith("'") and value[1:2] and value[1] in FORMULA_STARTS:
        value = value[1:].strip()
    return value


def value_problem(value: str) -> str | None:
    """Why a value cannot be stored by every database the core runs on, or None:
    PostgreSQL keeps no NUL character in text, and no value is this long."""
    if "\x00" in value:
        return "contains a NUL character"
    if len(value) > MAX_VALUE:
        return f"longer than {MAX_VALUE} characters"
    return None


# Values.


def zone_of(branch: Branch) -> ZoneInfo:
    """The time zone a branch reckons dates in; UTC when its name is unknown."""
    try:
        return ZoneInfo(branch.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_moment(text: str, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date and time as an aware UTC moment.

    A value without a zone (a date, or a time with no offset) is wall-clock time
    in `zone`; a bare date is the start of that day, or its end (23:59:59) with
    `end_of_day`. A space may stand for the `T`, as Koha and SQL write it.

    Raises:
        ValueError: not such a date, with what was expected.
    """
    value = text.strip()
    try:
        if len(value) <= 10 and "T" not in value and " " not in value:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, END_OF_DAY if end_of_day else time())
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date or date and time"
            " (e.g. 2026-12-04 or 2026-12-04T14:30:00+01:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is too far in the future or past") from None
    if moment < EARLIEST:
        raise ValueError(f"{text!r} is before {EARLIEST.year}")
    return moment


def parse_day(text: str, zone: ZoneInfo) -> date:
    """A date; a date and time is taken as its date in `zone`.

    Raises:
        ValueError: not an ISO 8601 date or date and time.
    """
    try:
        return parse_moment(text, zone).astimezone(zone).date()
    except OverflowError:
        raise ValueError(f"{text!r} is too far in the future") from None


def parse_count(text: str) -> int:
    """A count written in digits (0 when blank).

    Raises:
        ValueError: not a whole number of zero or more.
    """
    value = text.strip()
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{text!r} is not a whole number of 0 or more")
    if len(value) > 9:
        raise ValueError(f"{text!r} is too large a count")
    return int(value)


def currency_decimals(currency: str) -> int:
    """How many decimals the currency's minor unit has (2 for most)."""
    return CURRENCY_DECIMALS.get(currency.upper(), 2)


def parse_amount(text: str, currency: str) -> int:
    """An amount of money written in decimal ("12.50") as exact minor units (1250).

    The decimals allowed are the currency's (JPY none, KWD three); further
    decimals must be zeros, as in Koha's "5.000000". No float is involved.

    Raises:
        ValueError: not a plain non-negative decimal amount in this currency.
    """
    value = text.strip()
    match = _AMOUNT.match(value)
    if match is None:
        raise ValueError(
            f"{text!r} is not an amount like 12.50 (digits and a decimal point,"
            " no sign, currency or thousands separator)"
        )
    whole, fraction = match.group(1), match.group(2) or ""
    decimals = currency_decimals(currency)
    if fraction[decimals:].strip("0"):
        raise ValueError(f"{text!r} has more decimals than {currency} has ({decimals})")
    digits = (fraction + "0" * decimals)[:decimals]
    try:
        minor = int(Decimal(whole + digits))
    except InvalidOperation:  # pragma: no cover - the pattern allows only digits
        raise ValueError(f"{text!r} is not an amount") from None
    if minor > MAX_MINOR:
        raise ValueError(
            f"{text!r} is more than the largest amount stored ({MAX_MINOR} minor units)"
        )
    return minor


# Look-ups, remembered for the whole import.


class Lookups:
    """Patrons, items and branches by barcode or code, cached for one import.

    Only ids and the few attributes the importers need are kept, so that the
    cache survives the import's transactions.
    """

    def __init__(self) -> None:
        self._patrons: dict[str, PatronFacts | None] = {}
        self._items: dict[str, ItemFacts | None] = {}
        self._branches: dict[str, BranchFacts | None] = {}
        self._branches_by_id: dict[int, BranchFacts] = {}

    def patron(self, session: Session, barcode: str) -> PatronFacts | None:
        if barcode not in self._patrons:
            row = session.execute(
                sa.select(Patron.id, Patron.category_id, Patron.home_branch_id).where(
                    Patron.barcode == barcode
                )
            ).first()
            self._patrons[barcode] = (
                None
                if row is None
                else PatronFacts(id=row[0], category_id=row[1], home_branch_id=row[2])
            )
        return self._patrons[barcode]

    def item(self, session: Session, barcode: str) -> ItemFacts | None:
        if barcode not in self._items:
            row = session.execute(
                sa.select(Item.id, Item.record_id, Item.home_branch_id).where(
                    Item.barcode == barcode
                )
            ).first()
            self._items[barcode] = (
                None
                if row is None
                else ItemFacts(id=row[0], record_id=row[1], home_branch_id=row[2])
            )
        return self._items[barcode]

    def branch(self, session: Session, code: str) -> BranchFacts | None:
        if code not in self._branches:
            branch = session.scalars(
                sa.select(Branch).where(Branch.code == code)
            ).first()
            self._branches[code] = (
                None if branch is None else self._facts(session, branch)
            )
        return self._branches[code]

    def branch_by_id(self, session: Session, branch_id: int) -> BranchFacts:
        if branch_id not in self._branches_by_id:
            branch = session.get_one(Branch, branch_id)
            self._branches[branch.code] = self._facts(session, branch)
        return self._branches_by_id[branch_id]

    def _facts(self, session: Session, branch: Branch) -> BranchFacts:
        currency = session.scalar(
            sa.select(Institution.currency).where(
                Institution.id == branch.institution_id
            )
        )
        facts = BranchFacts(
            id=branch.id,
            code=branch.code,
            zone=zone_of(branch),
            currency=currency or "USD",
        )
        self._branches_by_id[branch.id] = facts
        return facts


@dataclass(frozen=True, slots=True, kw_only=True)
class PatronFacts:
    """What an import needs of a patron."""

    id: int
    category_id: int
    home_branch_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemFacts:
    """What an import needs of an item."""

    id: int
    record_id: int
    home_branch_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchFacts:
    """What an import needs of a branch: its id, zone and institution's currency."""

    id: int
    code: str
    zone: ZoneInfo
    currency: str


# The run.


ALREADY = "already"
IMPORTED = "imported"


@dataclass(slots=True)
class ImportRun:
    """One circulation import: `apply` called on each row in a batch's session.

    `apply(session, row, write)` checks the row, stores it when `write` is true
    (not in a dry run), and answers `IMPORTED` (stored, or would be) or
    `ALREADY` (a second run found it stored), or raises `RowProblems` before it
    has written anything.
    """

    apply: Callable[[Session, CsvRow, bool], str]
    # Where `apply` notes (line, column, message) for rows it imports anyway.
    warnings: list[tuple[int, str | None, str]] = field(default_factory=list)
    tally: ReportTally = field(default_factory=ReportTally)

    def run(
        self,
        database: Database,
        rows: list[CsvRow],
        *,
        dry_run: bool,
        batch_size: int | None,
        progress: Callable[[int, int], None] | None,
    ) -> ImportReport:
        """Apply every row, in one unit or in batches; see the module docstring.

        Raises:
            ImportAbortedError: the database refused a batch; earlier batches
                stay committed.
        """
        total = len(rows)
        size = batch_size if batch_size and batch_size > 0 else max(total, 1)
        done = 0
        for batch in _batches(rows, size):
            kept = self.tally.freeze()
            try:
                self._batch(database, batch, dry_run)
            except SQLAlchemyError as error:
                self.warnings.clear()
                raise ImportAbortedError(
                    f"the database refused lines {batch[0].line} to {batch[-1].line},"
                    " which were rolled back; earlier batches were imported and a"
                    f" second run skips them ({describe_database_error(error)})",
                    kept,
                ) from error
            done += len(batch)
            if progress is not None:
                progress(done, total)
        report = self.tally.freeze()
        return report if not dry_run else _as_dry_run(report)

    def _batch(self, database: Database, batch: list[CsvRow], dry_run: bool) -> None:
        unit = database.read() if dry_run else database.transaction()
        # Counted apart and added when the batch has committed, so that a
        # refused batch leaves the report as it was before it.
        counts = {IMPORTED: 0, ALREADY: 0, "skipped": 0}
        problems: list[tuple[int, str | None, str]] = []
        with unit as session:
            for row in batch:
                try:
                    outcome = self.apply(session, row, not dry_run)
                except RowProblems as refused:
                    problems.extend(
                        (row.line, column, message)
                        for column, message in refused.problems
                    )
                    counts["skipped"] += 1
                    continue
                counts[outcome] += 1
            session.flush()
        self.tally.imported += counts[IMPORTED]
        self.tally.already += counts[ALREADY]
        self.tally.skipped += counts["skipped"]
        for line, column, message in [*problems, *self.warnings]:
            self.tally.problem(line, message, column=column)
        self.warnings.clear()
        self.tally.sort_problems()


def _batches(rows: list[CsvRow], size: int) -> Iterator[list[CsvRow]]:
    for start in range(0, max(len(rows), 1), size):
        batch = rows[start : start + size]
        if batch:
            yield batch


def _as_dry_run(report: ImportReport) -> ImportReport:
    return replace(report, dry_run=True)
