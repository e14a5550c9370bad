"""`ils privacy`: anonymise old loan history, export or erase one patron's data.

Layer: `ils`. Imports click and the core; the output goes to the terminal of the
librarian who ran the command (it names the patron they asked about, and
nothing else about anyone).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ils.db import Database, DatabaseConfigError
from ils.models import utcnow
from ils.privacy import anonymise, check_erasable, erase_patron, export_patron
from ils.results import CirculationRefused
from ils.schema import DATABASE_URL_VARIABLE, current_revision, head_revision
from ils.text import plural

_db_option = click.option(
    "--db",
    "url",
    envvar=DATABASE_URL_VARIABLE,
    metavar="URL",
    help=(
        "The database: sqlite:///path/to/library.sqlite3 or"
        " postgresql://user:password@host/dbname."
        f" Defaults to ${DATABASE_URL_VARIABLE}."
    ),
)


@contextmanager
def _database(url: str | None) -> Iterator[Database]:
    if not url:
        raise click.UsageError(
            f"say which database with --db URL or set ${DATABASE_URL_VARIABLE}"
        )
    try:
        revision = current_revision(url)
    except DatabaseConfigError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error
    if revision != head_revision():
        raise click.ClickException(
            "the database is not at this version's schema; run `ils init` first"
        )
    database = Database(url, pool_size=1)
    try:
        yield database
    finally:
        database.dispose()


def _write_json(data: object, output: Path | None) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error}") from None


@click.group("privacy")
def privacy_group() -> None:
    """Patron privacy: anonymise old loan history; export or erase a patron's data.

    See docs/privacy.md for what is kept, what goes, and when.
    """


@privacy_group.command("anonymise")
@_db_option
@click.option(
    "--dry-run", is_flag=True, help="Count what would be anonymised; change nothing."
)
def anonymise_command(url: str | None, dry_run: bool) -> None:
    """Unlink patrons from history older than the institution's loan_history_days.

    Returned loans, circulation log rows and finished holds older than the
    retention setting lose their link to the patron; dates, item, branch and
    patron category stay for statistics. Run it daily (e.g. from a systemd
    timer or cron).
    """
    with _database(url) as database:
        counts = anonymise(database, utcnow(), dry_run=dry_run)
    if not counts:
        click.echo("No institution sets loan_history_days: nothing to anonymise.")
        return
    verb = "would unlink" if dry_run else "unlinked"
    for count in counts:
        click.echo(
            f"{count.institution_code} (history kept {count.history_days} days,"
            f" before {count.cutoff:%Y-%m-%d %H:%M} UTC): {verb}"
            f" {plural(count.loans, 'loan')}, {plural(count.log_rows, 'log row')},"
            f" {plural(count.holds, 'hold')}"
        )


@privacy_group.command("export")
@click.argument("patron", metavar="PATRON")
@_db_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON here instead of to the terminal.",
)
def export_command(patron: str, url: str | None, output: Path | None) -> None:
    """Print everything held about the patron with card PATRON, as JSON.

    The record, blocks, loans still linked to them, holds, fees, payments and
    log rows. The PIN itself is never stored, and its hash is not exported.
    """
    with _database(url) as database:
        try:
            data = export_patron(database, patron)
        except CirculationRefused as refused:
            raise click.ClickException(refused.message) from None
    _write_json(data, output)


@privacy_group.command("erase")
@click.argument("patron", metavar="PATRON")
@_db_option
@click.option(
    "--by", default="staff", show_default=True, help="Who asked, for the log."
)
@click.option(
    "--export",
    "export_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help=(
        "Write the patron's data here, taken in the same step; if it cannot be"
        " written, nothing is erased."
    ),
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase_command(
    patron: str, url: str | None, by: str, export_to: Path | None, yes: bool
) -> None:
    """Erase the patron with card PATRON, at their request.

    Refused while they have items on loan or owe anything (or hold credit).
    Otherwise their open holds are cancelled, their history is kept without
    their name, and their record is deleted. This cannot be undone.
    """
    with _database(url) as database:
        # Say why not before asking "are you sure?" about an erasure that would
        # be refused anyway.
        try:
            check_erasable(database, patron)
        except CirculationRefused as refused:
            raise click.ClickException(f"not erased: {refused.message}") from None
        if not yes:
            click.confirm(f"Erase patron {patron}? This cannot be undone", abort=True)
        try:
            erased = erase_patron(
                database,
                patron,
                utcnow(),
                by=by,
                keep_export=(
                    None
                    if export_to is None
                    else lambda data: _write_json(data, export_to)
                ),
            )
        except CirculationRefused as refused:
            raise click.ClickException(f"not erased: {refused.message}") from None
    click.echo(
        f"Erased patron {patron}: unlinked {plural(erased.loans, 'loan')},"
        f" {plural(erased.holds, 'hold')} ({erased.holds_cancelled} cancelled),"
        f" {plural(erased.fees, 'fee')}, {plural(erased.payments, 'payment')},"
        f" {plural(erased.log_rows, 'log row')};"
        f" removed {plural(erased.blocks, 'block')}."
    )
