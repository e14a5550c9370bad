"""CSV side of `ils export`: column names, cell text and the file writer.

Layer: `ils` (the core). Imports `ils.importing.circfile` and the standard
library only; it must not import `ils.exporting` or anything above the core.

A cell a spreadsheet would run as a formula gets a quote before it (see
`ils.exporting`); `raw_cells` writes cells as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

from ils.importing.circfile import FORMULA_STARTS, currency_decimals

PATRON_COLUMNS = (
    "cardnumber",
    "surname",
    "firstname",
    "categorycode",
    "branchcode",
    "dateexpiry",
    "email",
    "phone",
)
ITEM_COLUMNS = (
    "barcode",
    "control_number",
    "isbn",
    "title",
    "homebranch",
    "holdingbranch",
    "itype",
    "itemcallnumber",
    "location",
    "ccode",
    "price",
    "status",
    "circulation",
)
LOAN_COLUMNS = (
    "cardnumber",
    "barcode",
    "issuedate",
    "date_due",
    "renewals_count",
    "branchcode",
)
HOLD_COLUMNS = (
    "cardnumber",
    "barcode",
    "control_number",
    "item_level_hold",
    "branchcode",
    "reservedate",
    "expirationdate",
    "found",
)
FEE_COLUMNS = (
    "cardnumber",
    "debit_type_code",
    "amount",
    "amountoutstanding",
    "description",
    "date",
    "barcode",
)


def _moment(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _day(value: date | None) -> str:
    return "" if value is None else value.isoformat()


def money_text(minor: int, currency: str) -> str:
    """Minor units as the decimal text the fee import reads (1250 EUR: "12.50")."""
    decimals = currency_decimals(currency)
    if decimals == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole}.{fraction:0{decimals}d}"


def spreadsheet_safe(value: str) -> str:
    """`value` with a quote before it when a spreadsheet would run it as a
    formula ("=HYPERLINK(...)" becomes "'=HYPERLINK(...)")."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _cells(row: Sequence[str], raw_cells: bool) -> Sequence[str]:
    return row if raw_cells else [spreadsheet_safe(value) for value in row]


def _write_csv(
    path: Path,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    raw_cells: bool = False,
) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(_cells(row, raw_cells))
            count += 1
    return count
