"""Importing what patrons owe: fees with their outstanding balances.

Layer: `ils` (the core). Imports SQLAlchemy, `ils.db`, `ils.models`,
`ils.importing` and the standard library. It never prints or logs.

A row is one fee: card number, kind, amount, optionally the amount still
outstanding (else the whole amount), description, date, and optionally the
barcode of the item it is for. Amounts are decimal text in the currency of
the patron's institution ("12.50"), turned into minor units exactly: no
floating point is involved. When less is outstanding than was charged, the
difference is recorded as one payment (method "other", terminal "import") paid
before the move, so that a fee's balance is always its amount less what was
allocated to it.

A fee is taken as already imported when the patron has a fee of the same kind,
amount, date, description and item.
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
    Lookups,
    PatronFacts,
    RowChecks,
    RowProblems,
    parse_amount,
    parse_moment,
    read_rows,
)
from ils.importing.report import ImportReport
from ils.models import Fee, FeeKind, Payment, PaymentAllocation, PaymentMethod

IMPORT_TERMINAL = "import"

# Export writes the first name of each; Koha's account line columns are
# accepted too.
COLUMNS = (
    Column(name="cardnumber", aliases=("patron_barcode",), required=True, width=64),
    Column(
        name="debit_type_code",
        aliases=("kind", "accounttype", "fee_type"),
        required=True,
    ),
    Column(name="amount", required=True),
    Column(name="amountoutstanding", aliases=("outstanding", "balance")),
    Column(name="description", aliases=("note",)),
    Column(name="date", aliases=("created_at", "fee_date", "timestamp"), required=True),
    Column(name="barcode", aliases=("item_barcode",), width=64),
)

# Our kinds by their own names, Koha's debit type codes, and Koha's older
# account types (F and FU fines, L lost, Rent, Res reserve, M sundry, N new card).
KINDS: dict[str, FeeKind] = {kind.value: kind for kind in FeeKind} | {
    "fine": FeeKind.OVERDUE,
    "f": FeeKind.OVERDUE,
    "fu": FeeKind.OVERDUE,
    "l": FeeKind.LOST,
    "rent": FeeKind.RENTAL,
    "rent_daily": FeeKind.RENTAL,
    "rent_renew": FeeKind.RENTAL,
    "rent_daily_renew": FeeKind.RENTAL,
    "res": FeeKind.HOLD,
    "reserve": FeeKind.HOLD,
    "m": FeeKind.MANUAL,
    "n": FeeKind.MANUAL,
    "a": FeeKind.MANUAL,
    "account": FeeKind.MANUAL,
    "account_renew": FeeKind.MANUAL,
    "new_card": FeeKind.MANUAL,
    "sundry": FeeKind.MANUAL,
}


@dataclass(slots=True)
class _FeeImport:
    lookups: Lookups = field(default_factory=Lookups)
    seen: dict[tuple[str, ...], int] = field(default_factory=dict)

    def apply(self, session: Session, row: CsvRow, write: bool) -> str:
        same = tuple(row[column.name] for column in COLUMNS)
        earlier = self.seen.setdefault(same, row.line)
        if earlier != row.line:
            raise RowProblems(
                [
                    (
                        None,
                        f"duplicate row: the same fee as line {earlier} (give two"
                        " real fees of one day different descriptions)",
                    )
                ]
            )
        patron, kind, item_id = self._parties(session, row)
        # Money and dates are the patron's institution's and home branch's.
        branch = self.lookups.branch_by_id(session, patron.home_branch_id)
        amount, outstanding, created_at = self._values(row, branch)

        if session.scalar(
            sa.select(Fee.id).where(
                Fee.patron_id == patron.id,
                Fee.kind == kind,
                Fee.amount_minor == amount,
                Fee.created_at == created_at,
                Fee.description == row["description"],
                Fee.item_id.is_(None) if item_id is None else Fee.item_id == item_id,
            )
        ):
            return ALREADY
        if not write:
            return IMPORTED

        fee = Fee(
            patron_id=patron.id,
            kind=kind,
            amount_minor=amount,
            balance_minor=outstanding,
            currency=branch.currency,
            description=row["description"],
            item_id=item_id,
            created_at=created_at,
            created_by=IMPORT_TERMINAL,
        )
        session.add(fee)
        if outstanding < amount:
            paid = amount - outstanding
            payment = Payment(
                patron_id=patron.id,
                amount_minor=paid,
                currency=branch.currency,
                method=PaymentMethod.OTHER,
                terminal=IMPORT_TERMINAL,
                at=created_at,
                note="paid before the move to this system",
            )
            session.add(payment)
            session.add(PaymentAllocation(payment=payment, fee=fee, amount_minor=paid))
        return IMPORTED

    def _parties(
        self, session: Session, row: CsvRow
    ) -> tuple[PatronFacts, FeeKind, int | None]:
        checks = RowChecks()
        patron = self.lookups.patron(session, row["cardnumber"])
        if patron is None:
            checks.add("cardnumber", f"unknown patron {row['cardnumber']}")
        kind = KINDS.get(row["debit_type_code"].lower())
        if kind is None:
            checks.add(
                "debit_type_code",
                f"unknown kind {row['debit_type_code']!r}; use one of"
                f" {', '.join(kind.value for kind in FeeKind)}",
            )
        item_id = None
        if row["barcode"]:
            item = self.lookups.item(session, row["barcode"])
            if item is None:
                checks.add("barcode", f"unknown item {row['barcode']}")
            else:
                item_id = item.id
        checks.done()
        assert patron is not None
        assert kind is not None
        return patron, kind, item_id

    def _values(self, row: CsvRow, branch: BranchFacts) -> tuple[int, int, datetime]:
        """Amount and outstanding balance in minor units, and the fee's date."""
        checks = RowChecks()
        amount = outstanding = 0
        try:
            # TODO(#4): a negative amount (a credit in Koha) is refused; patron
            # credit is not imported.
            amount = parse_amount(row["amount"], branch.currency)
            if amount == 0:
                checks.add("amount", "bad amount: a fee of 0 is no fee")
        except ValueError as error:
            checks.add("amount", f"bad amount: {error}")
        outstanding = amount
        if row["amountoutstanding"]:
            try:
                outstanding = parse_amount(row["amountoutstanding"], branch.currency)
            except ValueError as error:
                checks.add("amountoutstanding", f"bad amount: {error}")
        created_at = None
        try:
            created_at = parse_moment(row["date"], branch.zone)
        except ValueError as error:
            checks.add("date", f"bad date: {error}")
        if outstanding > amount and not checks:
            checks.add("amountoutstanding", "bad amount: more outstanding than charged")
        checks.done()
        assert created_at is not None
        return amount, outstanding, created_at


def import_fees(
    database: Database,
    path: Path,
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import fees from a UTF-8 CSV file with a header row.

    Arguments, result and errors are those of `ils.importing.loans.import_loans`.
    """
    fees = _FeeImport()
    run = ImportRun(apply=fees.apply)
    rows = read_rows(path, COLUMNS, run.tally)
    return run.run(
        database, rows, dry_run=dry_run, batch_size=batch_size, progress=progress
    )
