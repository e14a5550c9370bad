"""Importing the loans a library has open (and, if wanted, its loan history).

Layer: `ils` (the core). Imports SQLAlchemy, `ils.db`, `ils.models`,
`ils.importing` and the standard library. It never prints or logs.

A row lends one item to one patron: card number, item barcode, checkout date,
due date, renewals so far and optionally the branch of the checkout (else the
item's home branch) and a return date (a loan already returned, kept as
history). Rows are checked in full before anything is written; see
`ils.importing.circfile` for the dry run, batches and second runs.

A loan is taken as already imported, not as a conflict, when the item has a
loan to the same patron that began at the same moment (open, or returned when
the row has a return date).

An open loan (no return date) is refused for an item this library would not
lend as it stands: one whose status is not available (not for loan, lost,
missing, withdrawn, damaged, in processing), one trapped for a hold (waiting on
the hold shelf or in transit to its pickup branch) and one in transit between
branches. The library sets the item's status, or ends the hold, and imports the
row again; a hold is never changed behind its patron's back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
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
    ItemFacts,
    Lookups,
    PatronFacts,
    RowChecks,
    RowProblems,
    parse_count,
    parse_moment,
    read_rows,
)
from ils.importing.report import ImportReport
from ils.models import Hold, HoldStatus, Item, ItemStatus, Loan

# Export writes the first name of each; Koha's issue columns are accepted too.
COLUMNS = (
    Column(
        name="cardnumber",
        aliases=("patron_barcode", "borrower_barcode"),
        required=True,
        width=64,
    ),
    Column(name="barcode", aliases=("item_barcode",), required=True, width=64),
    Column(
        name="issuedate", aliases=("checkout_date", "checked_out_at"), required=True
    ),
    Column(name="date_due", aliases=("due_date", "due_at"), required=True),
    Column(name="renewals_count", aliases=("renewals",)),
    Column(name="branchcode", aliases=("branch",), width=32),
    Column(name="returndate", aliases=("return_date", "returned_at")),
)


@dataclass(slots=True)
class _LoanImport:
    lookups: Lookups = field(default_factory=Lookups)
    # Item barcode -> the line that lent it, for loans still open in the file.
    open_in_file: dict[str, int] = field(default_factory=dict)
    # Whole rows seen, for exact repeats.
    seen: dict[tuple[str, ...], int] = field(default_factory=dict)

    def apply(self, session: Session, row: CsvRow, write: bool) -> str:
        self._not_repeated(row)
        patron, item, branch, renewals = self._parties(session, row)
        out, due, back = self._dates(row, branch)
        if self._already(session, row, patron=patron, item=item, out=out, back=back):
            return ALREADY
        if back is None:
            _lendable(session, item)
        if write:
            session.add(
                Loan(
                    item_id=item.id,
                    patron_id=patron.id,
                    branch_id=branch.id,
                    checked_out_at=out,
                    due_at=due,
                    returned_at=back,
                    renewals=renewals,
                    patron_category_id=patron.category_id,
                )
            )
        return IMPORTED

    def _not_repeated(self, row: CsvRow) -> None:
        same = tuple(row[column.name] for column in COLUMNS)
        earlier = self.seen.setdefault(same, row.line)
        if earlier != row.line:
            raise RowProblems(
                [(None, f"duplicate row: the same loan as line {earlier}")]
            )

    def _parties(
        self, session: Session, row: CsvRow
    ) -> tuple[PatronFacts, ItemFacts, BranchFacts, int]:
        checks = RowChecks()
        patron = self.lookups.patron(session, row["cardnumber"])
        if patron is None:
            checks.add("cardnumber", f"unknown patron {row['cardnumber']}")
        item = self.lookups.item(session, row["barcode"])
        if item is None:
            checks.add("barcode", f"unknown item {row['barcode']}")
        branch = None
        if row["branchcode"]:
            branch = self.lookups.branch(session, row["branchcode"])
            if branch is None:
                checks.add("branchcode", f"unknown branch {row['branchcode']}")
        elif item is not None:
            branch = self.lookups.branch_by_id(session, item.home_branch_id)
        renewals = 0
        try:
            renewals = parse_count(row["renewals_count"])
        except ValueError as error:
            checks.add("renewals_count", str(error))
        checks.done()
        assert patron is not None
        assert item is not None
        assert branch is not None
        return patron, item, branch, renewals

    def _dates(
        self, row: CsvRow, branch: BranchFacts
    ) -> tuple[datetime, datetime, datetime | None]:
        """Checkout, due and return moments, read in the loan branch's zone."""
        checks = RowChecks()
        moments: dict[str, datetime | None] = {}
        for name, end_of_day in (
            ("issuedate", False),
            ("date_due", True),
            ("returndate", False),
        ):
            moments[name] = None
            if row[name]:
                try:
                    moments[name] = parse_moment(
                        row[name], branch.zone, end_of_day=end_of_day
                    )
                except ValueError as error:
                    checks.add(name, f"bad date: {error}")
        checks.done()
        out, due, back = (
            moments["issuedate"],
            moments["date_due"],
            moments["returndate"],
        )
        assert out is not None
        assert due is not None
        if due < out:
            checks.add("date_due", "due before checkout")
        if back is not None and back < out:
            checks.add("returndate", "returned before checkout")
        checks.done()
        return out, due, back

    def _already(
        self,
        session: Session,
        row: CsvRow,
        *,
        patron: PatronFacts,
        item: ItemFacts,
        out: datetime,
        back: datetime | None,
    ) -> bool:
        """Whether an earlier run stored this loan; refuses a conflicting one."""
        if back is not None:
            return bool(
                session.scalar(
                    sa.select(Loan.id).where(
                        Loan.item_id == item.id,
                        Loan.patron_id == patron.id,
                        Loan.checked_out_at == out,
                        Loan.returned_at.is_not(None),
                    )
                )
            )

        earlier = self.open_in_file.get(row["barcode"])
        if earlier is not None:
            raise RowProblems(
                [("barcode", f"item already lent at line {earlier} of this file")]
            )
        current = session.execute(
            sa.select(Loan.patron_id, Loan.checked_out_at).where(
                Loan.item_id == item.id, Loan.returned_at.is_(None)
            )
        ).first()
        if current is not None and (current[0], current[1]) != (patron.id, out):
            whom = "this patron" if current[0] == patron.id else "another patron"
            since = current[1].isoformat(timespec="minutes")
            raise RowProblems(
                [("barcode", f"item already on loan to {whom} since {since}")]
            )
        self.open_in_file[row["barcode"]] = row.line
        return current is not None


def _lendable(session: Session, item: ItemFacts) -> None:
    """Refuse an open loan of an item the library would not lend as it stands.

    Raises:
        RowProblems: the item's status, hold or transit, in the barcode column.
    """
    status, transit_to = session.execute(
        sa.select(Item.status, Item.transit_to_branch_id).where(Item.id == item.id)
    ).one()
    if status is not ItemStatus.AVAILABLE:
        raise RowProblems(
            [
                (
                    "barcode",
                    f"item is {status.value.replace('_', ' ')}; only an"
                    " available item can be lent (change its status first)",
                )
            ]
        )
    trapped = session.scalar(
        sa.select(Hold.status).where(
            Hold.trapped_item_id == item.id,
            Hold.status.in_((HoldStatus.WAITING, HoldStatus.IN_TRANSIT)),
        )
    )
    if trapped is not None:
        where = (
            "waiting on the hold shelf"
            if trapped is HoldStatus.WAITING
            else "in transit to a pickup branch"
        )
        raise RowProblems(
            [
                (
                    "barcode",
                    f"item is {where} for a hold; cancel that hold or check"
                    " the item out at the desk",
                )
            ]
        )
    if transit_to is not None:
        raise RowProblems(
            [("barcode", "item is in transit; check it in at its branch first")]
        )


def import_loans(
    database: Database,
    path: Path,
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import loans from a UTF-8 CSV file with a header row.

    Args:
        database: where to import; its schema must be current.
        path: the CSV file.
        dry_run: check every row and report, changing nothing.
        batch_size: rows per transaction; None writes every good row in one.
        progress: called with (rows done, rows in all) after each batch.

    Returns:
        Counts (imported, or would be in a dry run; already there; skipped) and
        every problem with its line and column.

    Raises:
        ImportSetupError: not UTF-8, or a required column is missing.
        ImportAbortedError: the database refused a batch; earlier ones stay.
        OSError: the file cannot be read.
    """
    loans = _LoanImport()
    run = ImportRun(apply=loans.apply)
    rows = read_rows(path, COLUMNS, run.tally)
    return run.run(
        database, rows, dry_run=dry_run, batch_size=batch_size, progress=progress
    )
