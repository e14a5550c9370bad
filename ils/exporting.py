"""`ils export`: a library's data written out in the forms its imports read.

Layer: `ils` (the core). Imports click, pymarc, SQLAlchemy, `ils.db`,
`ils.models`, `ils.schema`, `ils.export_csv`, `ils.export_marc` and the
standard library; nothing above the core.

An export folder holds:

- `catalogue.mrc`: every record as MARC 21 (UTF-8), its stored record with the
  items written afresh as Koha 952 fields (for `ils import marc`);
- `items.csv`: the same items as a table, for people and spreadsheets;
- `patrons.csv`, `loans.csv`, `holds.csv`, `fees.csv`: with the column names
  `ils import patrons|loans|holds|fees` read.

Importing them into an empty database in that order (marc, patrons, loans,
holds, fees) gives the same library back, apart from what the CSV columns do
not carry (see docs/import.md). PIN hashes are left out unless asked for; no
PIN is ever known here. Times are written as ISO 8601 in UTC.

A CSV cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is
written with a quote (`'`) before it, as OWASP advises against CSV injection:
a spreadsheet program would otherwise run it as a formula (a patron can choose
their own name, a fee's description comes from staff or a terminal). The
imports take that quote off again, so a round trip gives the same values;
`raw_cells` (`--raw-cells`) writes the cells as they are, for programs only.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import sqlalchemy as sa
from pymarc import Leader
from sqlalchemy.orm import Session, aliased, undefer

from ils.db import Database, DatabaseConfigError
from ils.export_csv import (
    FEE_COLUMNS,
    HOLD_COLUMNS,
    ITEM_COLUMNS,
    LOAN_COLUMNS,
    PATRON_COLUMNS,
    _cells,
    _day,
    _moment,
    _write_csv,
    money_text,
    spreadsheet_safe,
)
from ils.export_marc import (  # noqa: F401 (_STATUS_SUBFIELDS: old home)
    _STATUS_SUBFIELDS,
    _Codes,
    _holding,
    _record_of,
)
from ils.models import (
    BibRecord,
    Branch,
    Fee,
    Hold,
    HoldStatus,
    Item,
    ItemType,
    Loan,
    Patron,
    PatronCategory,
)
from ils.schema import DATABASE_URL_VARIABLE

__all__ = [
    "FEE_COLUMNS",
    "HOLD_COLUMNS",
    "ITEM_COLUMNS",
    "LOAN_COLUMNS",
    "PATRON_COLUMNS",
    "ExportReport",
    "export_command",
    "export_library",
    "money_text",
    "spreadsheet_safe",
]

# Rows fetched from the database at a time.
_CHUNK = 2_000

_HOLD_FOUND = {HoldStatus.WAITING: "W", HoldStatus.IN_TRANSIT: "T"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportReport:
    """What an export wrote: rows (records, for the catalogue) per file name."""

    folder: Path
    counts: dict[str, int]


def _codes(
    session: Session, model: type[Branch | ItemType | PatronCategory]
) -> dict[int, str]:
    return {row[0]: row[1] for row in session.execute(sa.select(model.id, model.code))}


def _patrons(session: Session, with_pin_hashes: bool) -> Iterator[list[str]]:
    branches = _codes(session, Branch)
    categories = _codes(session, PatronCategory)
    for patron in session.scalars(
        sa.select(Patron).order_by(Patron.id).execution_options(yield_per=_CHUNK)
    ):
        row = [
            patron.barcode,
            patron.surname,
            patron.firstname,
            categories[patron.category_id],
            branches[patron.home_branch_id],
            _day(patron.expires_on),
            patron.email or "",
            patron.phone or "",
        ]
        if with_pin_hashes:
            # TODO(#4): `ils import patrons` reads PINs, not hashes, so this
            # column does not travel back until that import accepts pin_hash.
            row.append(patron.pin_hash or "")
        yield row


def _circulation_states(session: Session, item_ids: Sequence[int]) -> dict[int, str]:
    """Where items that are not simply on their shelf are: "on_loan",
    "hold_shelf" (waiting for a patron) or "in_transit"; the rest are absent."""
    states: dict[int, str] = {}
    for item_id, branch_id in session.execute(
        sa.select(Item.id, Item.transit_to_branch_id).where(
            Item.id.in_(item_ids), Item.transit_to_branch_id.is_not(None)
        )
    ):
        if branch_id is not None:
            states[item_id] = "in_transit"
    for trapped_id in session.scalars(
        sa.select(Hold.trapped_item_id).where(
            Hold.trapped_item_id.in_(item_ids), Hold.status == HoldStatus.WAITING
        )
    ):
        if trapped_id is not None:
            states[trapped_id] = "hold_shelf"
    for item_id in session.scalars(
        sa.select(Loan.item_id).where(
            Loan.item_id.in_(item_ids), Loan.returned_at.is_(None)
        )
    ):
        states[item_id] = "on_loan"
    return states


def _item_row(
    item: Item, bib: BibRecord, codes: _Codes, circulation: str = ""
) -> list[str]:
    return [
        item.barcode,
        bib.control_number or "",
        bib.isbn or "",
        bib.title,
        codes.branches[item.home_branch_id],
        codes.branches[item.current_branch_id],
        codes.types[item.item_type_id],
        item.call_number or "",
        item.location or "",
        item.collection or "",
        "" if item.price_minor is None else money_text(item.price_minor, ""),
        item.status.value,
        circulation,
    ]


def _catalogue(
    session: Session, folder: Path, *, raw_cells: bool = False
) -> tuple[int, int]:
    """Write catalogue.mrc and items.csv; the records and items written."""
    codes = _Codes(_codes(session, Branch), _codes(session, ItemType))
    ids = session.scalars(sa.select(BibRecord.id).order_by(BibRecord.id)).all()
    records = items = 0
    with (
        (folder / "catalogue.mrc").open("wb") as marc,
        (folder / "items.csv").open("w", encoding="utf-8", newline="") as table,
    ):
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(ITEM_COLUMNS)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            copies: dict[int, list[Item]] = {}
            for item in session.scalars(
                sa.select(Item).where(Item.record_id.in_(chunk)).order_by(Item.id)
            ):
                copies.setdefault(item.record_id, []).append(item)
            states = _circulation_states(
                session, [item.id for group in copies.values() for item in group]
            )
            for bib in session.scalars(
                sa.select(BibRecord)
                .options(undefer(BibRecord.marc))
                .where(BibRecord.id.in_(chunk))
                .order_by(BibRecord.id)
            ):
                record = _record_of(bib)
                for item in copies.get(bib.id, []):
                    record.fields.append(_holding(item, codes))
                    writer.writerow(
                        _cells(
                            _item_row(item, bib, codes, states.get(item.id, "")),
                            raw_cells,
                        )
                    )
                    items += 1
                # Leader position 9 "a": the record is in UTF-8.
                record.leader = Leader(
                    str(record.leader)[:9] + "a" + str(record.leader)[10:]
                )
                marc.write(record.as_marc())
                records += 1
            # Keep memory flat on a big catalogue.
            session.expunge_all()
    return records, items


def _loans(session: Session, history: bool) -> Iterator[list[str]]:
    query = (
        sa.select(Loan, Patron.barcode, Item.barcode, Branch.code)
        .join(Patron, Patron.id == Loan.patron_id)
        .join(Item, Item.id == Loan.item_id)
        .join(Branch, Branch.id == Loan.branch_id)
        .order_by(Loan.checked_out_at, Loan.id)
    )
    if not history:
        query = query.where(Loan.returned_at.is_(None))
    for loan, patron, item, branch in session.execute(
        query.execution_options(yield_per=_CHUNK)
    ):
        row = [
            patron,
            item,
            _moment(loan.checked_out_at),
            _moment(loan.due_at),
            str(loan.renewals),
            branch,
        ]
        if history:
            row.append(_moment(loan.returned_at))
        yield row


def _holds(session: Session) -> Iterator[list[str]]:
    held_item = aliased(Item)
    any_copy = (
        sa.select(sa.func.min(Item.barcode))
        .where(Item.record_id == Hold.record_id)
        .scalar_subquery()
    )
    query = (
        sa.select(
            Hold,
            Patron.barcode,
            held_item.barcode,
            BibRecord.control_number,
            Branch.code,
            any_copy,
        )
        .join(Patron, Patron.id == Hold.patron_id)
        .join(BibRecord, BibRecord.id == Hold.record_id)
        .join(Branch, Branch.id == Hold.pickup_branch_id)
        .outerjoin(held_item, held_item.id == Hold.item_id)
        .where(
            Hold.status.in_(
                (HoldStatus.PENDING, HoldStatus.IN_TRANSIT, HoldStatus.WAITING)
            )
        )
        # The queue's order: placement, then the order holds were stored in.
        .order_by(Hold.placed_at, Hold.id)
    )
    for hold, patron, item, control_number, branch, copy in session.execute(
        query.execution_options(yield_per=_CHUNK)
    ):
        if item is not None:
            barcode, control, level = item, "", "1"
        elif control_number:
            barcode, control, level = "", control_number, ""
        else:
            # A title without a control number is named by any of its copies.
            barcode, control, level = copy or "", "", "0"
        yield [
            patron,
            barcode,
            control,
            level,
            branch,
            _moment(hold.placed_at),
            _day(hold.expires_on),
            _HOLD_FOUND.get(hold.status, ""),
        ]


def _fees(session: Session, history: bool) -> Iterator[list[str]]:
    query = (
        sa.select(Fee, Patron.barcode, Item.barcode)
        .join(Patron, Patron.id == Fee.patron_id)
        .outerjoin(Item, Item.id == Fee.item_id)
        .order_by(Fee.created_at, Fee.id)
    )
    if not history:
        query = query.where(Fee.balance_minor > 0)
    for fee, patron, item in session.execute(query.execution_options(yield_per=_CHUNK)):
        yield [
            patron,
            fee.kind.value,
            money_text(fee.amount_minor, fee.currency),
            money_text(fee.balance_minor, fee.currency),
            fee.description,
            _moment(fee.created_at),
            item or "",
        ]


def export_library(
    database: Database,
    folder: Path,
    *,
    history: bool = False,
    with_pin_hashes: bool = False,
    raw_cells: bool = False,
) -> ExportReport:
    """Write the library's data into `folder` (created if missing).

    Args:
        database: the library.
        folder: where the files go; files of the same names are overwritten.
        history: also returned loans still linked to a patron, and settled fees.
        with_pin_hashes: add a `pin_hash` column to patrons.csv.
        raw_cells: write CSV cells as they are, without the quote before one
            a spreadsheet would take as a formula (see the module docstring).

    Returns:
        The rows written per file.
    """
    # TODO(#4): branches (names, time zones), patron blocks and lost cards have
    # no export file and no import yet.
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    # One read unit: every file shows the same moment of the library.
    with database.read() as session:
        counts["catalogue.mrc"], counts["items.csv"] = _catalogue(
            session, folder, raw_cells=raw_cells
        )
        patron_header = (*PATRON_COLUMNS, *(("pin_hash",) if with_pin_hashes else ()))
        counts["patrons.csv"] = _write_csv(
            folder / "patrons.csv",
            patron_header,
            _patrons(session, with_pin_hashes),
            raw_cells=raw_cells,
        )
        loan_header = (*LOAN_COLUMNS, *(("returndate",) if history else ()))
        counts["loans.csv"] = _write_csv(
            folder / "loans.csv",
            loan_header,
            _loans(session, history),
            raw_cells=raw_cells,
        )
        counts["holds.csv"] = _write_csv(
            folder / "holds.csv", HOLD_COLUMNS, _holds(session), raw_cells=raw_cells
        )
        counts["fees.csv"] = _write_csv(
            folder / "fees.csv",
            FEE_COLUMNS,
            _fees(session, history),
            raw_cells=raw_cells,
        )
    return ExportReport(folder=folder, counts=counts)


@click.command("export")
@click.option(
    "--db",
    "url",
    envvar=DATABASE_URL_VARIABLE,
    metavar="URL",
    help=f"The library database. Defaults to ${DATABASE_URL_VARIABLE}.",
)
@click.option(
    "--out",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write into (created if missing).",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv"]),
    default="csv",
    show_default=True,
    help="Tables as CSV (the catalogue is always MARC 21).",
)
@click.option(
    "--history",
    is_flag=True,
    help="Also returned loans still linked to a patron, and fees paid off.",
)
@click.option(
    "--with-pin-hashes",
    is_flag=True,
    help="Add the patrons' PIN hashes (never PINs) as a pin_hash column. Keep"
    " such a file as safe as the database itself.",
)
@click.option(
    "--raw-cells",
    is_flag=True,
    help="Write CSV cells as they are: no quote before a cell that starts with"
    " = + - @ (which a spreadsheet would run as a formula). For programs only;"
    " the imports read either form.",
)
def export_command(
    *,
    url: str | None,
    folder: Path,
    file_format: str,
    history: bool,
    with_pin_hashes: bool,
    raw_cells: bool,
) -> None:
    """Write patrons, items, loans, holds and fees out, as the imports read them.

    The folder gets catalogue.mrc (MARC 21 with Koha 952 items), items.csv,
    patrons.csv, loans.csv (open loans), holds.csv (open holds) and fees.csv
    (fees with something outstanding). Example:

        ils export --db sqlite:///var/library.sqlite3 --out export/
    """
    if not url:
        raise click.UsageError(
            f"say which database with --db URL or set ${DATABASE_URL_VARIABLE}"
        )
    try:
        database = Database(url)
    except DatabaseConfigError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error
    try:
        report = export_library(
            database,
            folder,
            history=history,
            with_pin_hashes=with_pin_hashes,
            raw_cells=raw_cells,
        )
    finally:
        database.dispose()
    for name, count in report.counts.items():
        unit = "records" if name.endswith(".mrc") else "rows"
        click.echo(f"{folder / name}: {count} {unit}")
