"""`ils import marc|patrons|loans|holds|fees`: the operator's side of the importers.

Layer: `ils`. Imports click, `ils.schema`, `ils.db` and `ils.importing`; the CLI
imports this module only when an import command runs. Output is for the person
at the terminal: progress on stderr, the summary and problems on stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress

from ils.db import Database, DatabaseConfigError
from ils.importing.fees import import_fees
from ils.importing.holds import import_holds
from ils.importing.loans import import_loans
from ils.importing.marc import import_marc
from ils.importing.patrons import import_patrons
from ils.importing.report import ImportAbortedError, ImportReport, ImportSetupError
from ils.schema import DATABASE_URL_VARIABLE, upgrade_database
from ils.text import plural

# Problems listed in full; beyond this the rest are counted.
PROBLEMS_SHOWN = 200

_DB_HELP = (
    "The library database: sqlite:///path/to/library.sqlite3 or"
    " postgresql://user:password@host/dbname."
    f" Defaults to ${DATABASE_URL_VARIABLE}."
)


def _open(url: str | None) -> Database:
    if not url:
        raise click.UsageError(
            f"say which database with --db URL or set ${DATABASE_URL_VARIABLE},"
            " e.g. --db sqlite:///var/library.sqlite3"
        )
    try:
        upgrade_database(url)
        return Database(url)
    except DatabaseConfigError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error


def _show(report: ImportReport, unit: str) -> None:
    # Problems of a CSV file are placed by line; its counts are of rows.
    where = "line" if unit == "row" else unit
    for created in report.created:
        click.echo(f"created {created}")
    for problem in report.problems[:PROBLEMS_SHOWN]:
        click.echo(f"{where} {problem}")
    if len(report.problems) > PROBLEMS_SHOWN:
        more = len(report.problems) - PROBLEMS_SHOWN
        click.echo(f"... and {plural(more, 'more problem')}")

    verb = "would be imported" if report.dry_run else "imported"
    parts = [f"{plural(report.read, unit)} read", f"{report.imported} {verb}"]
    if report.already:
        parts.append(f"{report.already} already imported")
    if report.updated:
        parts.append(f"{report.updated} updated")
    parts.append(f"{report.skipped} skipped")
    if unit == "record":
        parts.append(f"{plural(report.items_created, 'item')} created")
    parts.append(plural(len(report.problems), "warning"))
    click.echo(", ".join(parts))


def _finish(report: ImportReport, unit: str) -> None:
    _show(report, unit)
    if not report.stored_anything:
        raise click.ClickException("nothing was imported from this file")


@click.group("import")
def import_group() -> None:
    """Bring existing data in: catalogue (MARC), patrons, loans, holds, fees (CSV).

    Every command creates or upgrades the database first, so they work on an
    empty one. A bad record or row is reported with its number and skipped;
    everything else in the file still imports. Import in this order: marc,
    patrons, then loans, holds and fees, which refer to both.
    """


@import_group.command("marc")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--db", "url", envvar=DATABASE_URL_VARIABLE, metavar="URL", help=_DB_HELP)
@click.option(
    "--items-per-record",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Make this many items for each record that has no 952 holdings field,"
    " with new barcodes.",
)
@click.option(
    "--branch",
    "branch_code",
    metavar="CODE",
    help="Home branch of made items and of 952 fields without $a. Needed with"
    " --items-per-record unless the library has exactly one branch.",
)
@click.option(
    "--item-type",
    "item_type_code",
    metavar="CODE",
    default="BOOK",
    show_default=True,
    help="Item type of made items and of 952 fields without $y.",
)
@click.option(
    "--library-code",
    metavar="DIGITS",
    default="1234",
    show_default=True,
    help="The four digits inside new item barcodes: 3 + DIGITS + serial + check.",
)
@click.option(
    "--institution",
    "institution_code",
    metavar="CODE",
    help="The institution that new branches belong to (default: the only one).",
)
@click.option(
    "--encoding",
    type=click.Choice(["auto", "utf-8", "marc8"]),
    default="auto",
    show_default=True,
    help="Character set of the records; auto reads leader position 9"
    " ('a' UTF-8, blank MARC-8).",
)
def marc_command(
    *,
    file: Path,
    url: str | None,
    items_per_record: int,
    branch_code: str | None,
    item_type_code: str,
    library_code: str,
    institution_code: str | None,
    encoding: str,
) -> None:
    """Import catalogue records from a MARC 21 file (.mrc, ISO 2709).

    Titles, authors, ISBNs and publishers are read from each record; Koha-style
    952 fields become items (barcode $p, branch $a, call number $o, item type
    $y). Branches and item types the library does not have yet are created and
    listed. Example:

        ils import marc --db sqlite:///var/library.sqlite3 catalogue.mrc
    """
    database = _open(url)

    def progress(read: int) -> None:
        click.echo(f"{plural(read, 'record')} read", err=True)

    try:
        report = import_marc(
            database,
            file,
            items_per_record=items_per_record,
            branch_code=branch_code,
            item_type_code=item_type_code,
            library_code=library_code,
            institution_code=institution_code,
            encoding=encoding,
            progress=progress,
        )
    except ImportSetupError as error:
        raise click.UsageError(str(error)) from error
    except ImportAbortedError as error:
        _show(error.report, "record")
        raise click.ClickException(str(error)) from error
    finally:
        database.dispose()
    _finish(report, "record")


@import_group.command("patrons")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--db", "url", envvar=DATABASE_URL_VARIABLE, metavar="URL", help=_DB_HELP)
@click.option(
    "--update",
    is_flag=True,
    help="Overwrite patrons whose cardnumber is already in the library"
    " (without it those rows are skipped and listed).",
)
def patrons_command(*, file: Path, url: str | None, update: bool) -> None:
    """Import patrons from a CSV file saved as UTF-8, with a header row.

    The header uses Koha's column names: cardnumber, surname, firstname,
    categorycode, branchcode, dateexpiry (YYYY-MM-DD), email, phone and pin
    (or password). Other columns are ignored and listed. PINs are stored only
    as salted hashes. Branches must exist already; unknown patron categories
    are created. Example:

        ils import patrons --db sqlite:///var/library.sqlite3 borrowers.csv
    """
    database = _open(url)
    try:
        report = import_patrons(database, file, update=update)
    except ImportSetupError as error:
        raise click.UsageError(str(error)) from error
    except ImportAbortedError as error:
        _show(error.report, "row")
        raise click.ClickException(str(error)) from error
    finally:
        database.dispose()
    _finish(report, "row")


# Loans, holds and fees: a dry run first, then one transaction or batches.

_CIRCULATION_EPILOG = (
    "Check first with --dry-run: it lists every bad row (line, column, problem)"
    " and changes nothing. Without it the good rows are written in one"
    " transaction, or with --batch-size N in batches of N rows; if an import"
    " stops part way, run the same command again: rows already imported are"
    " counted as such and skipped. Dates are ISO 8601 (2026-12-04, or"
    " 2026-12-04T14:30:00 with or without a zone); a date or time without a"
    " zone is read in the branch's time zone."
)


@contextmanager
def _progress_reporter(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback: a rich bar on a terminal, plain lines otherwise."""
    if sys.stderr.isatty():
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"importing {what}", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            yield advance
        return

    def say(done: int, total: int) -> None:
        click.echo(f"{done} of {plural(total, 'row')} done", err=True)

    yield say


def _circulation_import(
    what: str,
    importer: Callable[..., ImportReport],
    *,
    file: Path,
    url: str | None,
    dry_run: bool,
    batch_size: int | None,
) -> None:
    database = _open(url)
    try:
        with _progress_reporter(what) as progress:
            report = importer(
                database,
                file,
                dry_run=dry_run,
                batch_size=batch_size,
                progress=progress,
            )
    except ImportSetupError as error:
        raise click.UsageError(str(error)) from error
    except ImportAbortedError as error:
        _show(error.report, "row")
        raise click.ClickException(str(error)) from error
    finally:
        database.dispose()

    _show(report, "row")
    refused = [problem for problem in report.problems if problem.position > 1]
    if report.dry_run:
        click.echo("dry run: nothing was changed")
        if report.skipped:
            raise click.ClickException(
                f"{plural(report.skipped, 'row')} would be skipped;"
                " fix them or import anyway"
            )
        return
    if not (report.imported or report.already) and (refused or report.skipped):
        raise click.ClickException("nothing was imported from this file")
    if report.read == 0:
        raise click.ClickException("the file has no rows")


def _circulation_command(
    name: str, importer: Callable[..., ImportReport], help_text: str
) -> click.Command:
    """A command `ils import NAME FILE` with the options every such import has."""

    def command(
        *, file: Path, url: str | None, dry_run: bool, batch_size: int | None
    ) -> None:
        _circulation_import(
            name,
            importer,
            file=file,
            url=url,
            dry_run=dry_run,
            batch_size=batch_size,
        )

    command.__doc__ = help_text
    decorated = click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        metavar="N",
        help="Commit every N rows (resumable: a second run skips what is in);"
        " without it, all good rows go in one transaction.",
    )(command)
    decorated = click.option(
        "--dry-run",
        is_flag=True,
        help="Check every row and report what would change; change nothing."
        " Exits non-zero when a row would be skipped.",
    )(decorated)
    decorated = click.option(
        "--db", "url", envvar=DATABASE_URL_VARIABLE, metavar="URL", help=_DB_HELP
    )(decorated)
    decorated = click.argument(
        "file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
    )(decorated)
    return import_group.command(name, epilog=_CIRCULATION_EPILOG)(decorated)


loans_command = _circulation_command(
    "loans",
    import_loans,
    """Import open loans (and returned ones, as history) from a CSV file.

    Columns (Koha's names, or the plain ones in brackets): cardnumber
    (patron_barcode), barcode (item_barcode), issuedate (checkout_date),
    date_due (due_date), renewals_count (renewals), branchcode (branch; default
    the item's home branch), returndate (return_date; a returned loan). A
    due date without a time is due at the end of that day. Example:

        ils import loans --db sqlite:///var/library.sqlite3 --dry-run loans.csv
    """,
)

holds_command = _circulation_command(
    "holds",
    import_holds,
    """Import the holds queues from a CSV file.

    Columns: cardnumber, barcode (an item-level hold; with item_level_hold 0,
    any copy of its title), control_number or isbn (a title-level hold),
    branchcode (the pickup branch), reservedate (placed_at), expirationdate
    (expires_on). A queue is in placement order; holds placed at the same
    moment keep the file's order. Example:

        ils import holds --db sqlite:///var/library.sqlite3 --dry-run holds.csv
    """,
)

fees_command = _circulation_command(
    "fees",
    import_fees,
    """Import what patrons owe from a CSV file.

    Columns: cardnumber, debit_type_code (kind: overdue, lost, damage,
    processing, rental, hold, manual, or Koha's codes), amount (decimal text in
    the institution's currency, e.g. 12.50), amountoutstanding (default: all of
    it), description, date, barcode (the item, optional). Example:

        ils import fees --db sqlite:///var/library.sqlite3 --dry-run fees.csv
    """,
)
