"""Importing the holds queues a library has open.

Layer: `ils` (the core). Imports SQLAlchemy, `ils.db`, `ils.models`,
`ils.importing` and the standard library. It never prints or logs.

A row is one patron's hold: on one item (its barcode), or on a title named by
the record's control number (MARC 001) or ISBN, or by the barcode of any copy
with `item_level_hold` 0. It has a pickup branch, a placement date and
optionally an expiry date. Imported holds join their title's queue as pending
holds; a title's queue is in placement order, and holds placed at the same
moment keep the order of the file.

A hold is taken as already imported when the patron has an open hold on the
same title (and item, for an item-level hold) placed at the same moment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils.db import Database
from ils.importing.circfile import (
    ALREADY,
    IMPORTED,
    BranchFacts,
    Column,
    CsvRow,
    ImportRun,
    Lookups,
    PatronFacts,
    RowChecks,
    RowProblems,
    parse_day,
    parse_moment,
    read_rows,
)
from ils.importing.report import ImportReport
from ils.models import BibRecord, Hold, HoldStatus

OPEN_STATUSES = (HoldStatus.PENDING, HoldStatus.IN_TRANSIT, HoldStatus.WAITING)

# Export writes the first name of each; Koha's reserve columns are accepted too.
COLUMNS = (
    Column(name="cardnumber", aliases=("patron_barcode",), required=True, width=64),
    Column(name="barcode", aliases=("item_barcode",), width=64),
    Column(name="control_number", aliases=("001",), width=64),
    Column(name="isbn", width=32),
    Column(name="item_level_hold", aliases=("item_level",)),
    Column(
        name="branchcode",
        aliases=("pickup_branch", "pickup_branch_code"),
        required=True,
        width=32,
    ),
    Column(
        name="reservedate",
        aliases=("placed_at", "placement_date", "hold_date"),
        required=True,
    ),
    Column(name="expirationdate", aliases=("expires_on", "expiry_date")),
    Column(name="found"),
)

_YES = {"1", "yes", "true", "y"}
_NO = {"0", "no", "false", "n"}


def _isbn_key(text: str) -> str:
    return text.replace("-", "").replace(" ", "").upper()


@dataclass(slots=True)
class _HoldImport:
    lookups: Lookups = field(default_factory=Lookups)
    records: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # (patron, record, item) -> line, for holds earlier in the file.
    in_file: dict[tuple[int, int, int | None], int] = field(default_factory=dict)
    warnings: list[tuple[int, str | None, str]] = field(default_factory=list)

    def _records(self, session: Session, kind: str, value: str) -> list[int]:
        key = (kind, value)
        if key not in self.records:
            if kind == "control_number":
                query = sa.select(BibRecord.id).where(BibRecord.control_number == value)
            else:
                query = sa.select(BibRecord.id).where(
                    sa.func.upper(sa.func.replace(BibRecord.isbn, "-", ""))
                    == _isbn_key(value)
                )
            self.records[key] = list(session.scalars(query.order_by(BibRecord.id)))
        return self.records[key]

    def _title(
        self, session: Session, row: CsvRow, checks: RowChecks
    ) -> tuple[int | None, int | None]:
        """The record and (for an item-level hold) the item the row asks for."""
        item = None
        if row["barcode"]:
            item = self.lookups.item(session, row["barcode"])
            if item is None:
                checks.add("barcode", f"unknown item {row['barcode']}")

        record_id: int | None = None
        for kind in ("control_number", "isbn"):
            if not row[kind]:
                continue
            # The first identifier given decides.
            found = self._records(session, kind, row[kind])
            name = kind.replace("_", " ")
            if not found:
                checks.add(kind, f"no record has {name} {row[kind]}")
            elif len(found) > 1:
                checks.add(
                    kind,
                    f"{len(found)} records have {name} {row[kind]};"
                    " give the item barcode instead",
                )
            else:
                record_id = found[0]
            break

        if item is not None:
            if record_id is not None and record_id != item.record_id:
                checks.add("barcode", "the item is a copy of another record")
            record_id = item.record_id
        elif not (row["barcode"] or row["control_number"] or row["isbn"]):
            checks.add(
                None, "no item barcode, control_number or isbn: which title is held?"
            )

        level = row["item_level_hold"].lower()
        if level and level not in _YES | _NO:
            checks.add("item_level_hold", f"{row['item_level_hold']!r} is not 1 or 0")
        item_level = item is not None and level not in _NO
        return record_id, (item.id if item is not None and item_level else None)

    def apply(self, session: Session, row: CsvRow, write: bool) -> str:
        patron, record_id, item_id, branch = self._parties(session, row)
        placed_at, expires_on = self._dates(row, branch)
        if self._already(session, row, patron, record_id, item_id, placed_at):
            return ALREADY

        if row["found"]:
            # TODO(#4): import a waiting (W) or in-transit (T) hold with its
            # trapped item instead of putting it back in the queue.
            self.warnings.append(
                (
                    row.line,
                    "found",
                    "waiting or in transit in the old system; imported as"
                    " pending: it is trapped again when a copy is checked in",
                )
            )
        if write:
            session.add(
                Hold(
                    patron_id=patron.id,
                    record_id=record_id,
                    item_id=item_id,
                    pickup_branch_id=branch.id,
                    status=HoldStatus.PENDING,
                    placed_at=placed_at,
                    expires_on=expires_on,
                    placed_by="import",
                )
            )
        return IMPORTED

    def _parties(
        self, session: Session, row: CsvRow
    ) -> tuple[PatronFacts, int, int | None, BranchFacts]:
        checks = RowChecks()
        patron = self.lookups.patron(session, row["cardnumber"])
        if patron is None:
            checks.add("cardnumber", f"unknown patron {row['cardnumber']}")
        record_id, item_id = self._title(session, row, checks)
        branch = self.lookups.branch(session, row["branchcode"])
        if branch is None:
            checks.add("branchcode", f"unknown branch {row['branchcode']}")
        if row["found"].upper() not in ("", "W", "T"):
            checks.add("found", f"{row['found']!r} is not empty, W or T")
        checks.done()
        assert patron is not None
        assert record_id is not None
        assert branch is not None
        return patron, record_id, item_id, branch

    def _dates(self, row: CsvRow, branch: BranchFacts) -> tuple[datetime, date | None]:
        """When the hold was placed, and the day it expires, in the pickup zone."""
        checks = RowChecks()
        placed_at = expires_on = None
        try:
            placed_at = parse_moment(row["reservedate"], branch.zone)
        except ValueError as error:
            checks.add("reservedate", f"bad date: {error}")
        if row["expirationdate"]:
            try:
                expires_on = parse_day(row["expirationdate"], branch.zone)
            except ValueError as error:
                checks.add("expirationdate", f"bad date: {error}")
        checks.done()
        assert placed_at is not None
        placed_on = placed_at.astimezone(branch.zone).date()
        if expires_on is not None and expires_on < placed_on:
            checks.add("expirationdate", "expires before it was placed")
        checks.done()
        return placed_at, expires_on

    def _already(  # noqa: PLR0917 - the hold's identity, one value each
        self,
        session: Session,
        row: CsvRow,
        patron: PatronFacts,
        record_id: int,
        item_id: int | None,
        placed_at: datetime,
    ) -> bool:
        """Whether an earlier run stored this hold; refuses a second one."""
        key = (patron.id, record_id, item_id)
        earlier = self.in_file.get(key)
        if earlier is not None:
            raise RowProblems(
                [
                    (
                        None,
                        "duplicate row: this patron's hold on this title is at"
                        f" line {earlier}",
                    )
                ]
            )
        existing = session.execute(
            sa.select(Hold.placed_at, Hold.item_id).where(
                Hold.patron_id == patron.id,
                Hold.record_id == record_id,
                Hold.status.in_(OPEN_STATUSES),
            )
        ).all()
        if existing and (placed_at, item_id) not in {tuple(row) for row in existing}:
            raise RowProblems(
                [(None, "the patron already has an open hold on this title")]
            )
        self.in_file[key] = row.line
        return bool(existing)


def import_holds(
    database: Database,
    path: Path,
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import holds from a UTF-8 CSV file with a header row.

    Rows are written in file order, so holds placed at the same moment keep
    their order in the queue. Arguments, result and errors are those of
    `ils.importing.loans.import_loans`.
    """
    holds = _HoldImport()
    run = ImportRun(apply=holds.apply, warnings=holds.warnings)
    rows = read_rows(path, COLUMNS, run.tally)
    return run.run(
        database, rows, dry_run=dry_run, batch_size=batch_size, progress=progress
    )
