"""`ils rules`: load a loan-rules file, show the rule matrix, explain a checkout.

Layer: `ils`. Imports click and the core; the output goes to the terminal of the
librarian who ran the command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ils.db import Database, DatabaseConfigError
from ils.models import utcnow
from ils.rules.rulesfile import RulesFileError, read_rules
from ils.rules.store import explain_rule, load_rules, show_rules
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


@click.group("rules")
def rules_group() -> None:
    """Loan rules and branch calendars: load them from a file, show, explain.

    Rules are written in a TOML file (see config/loan-rules.toml, where every
    key is explained) and loaded with `ils rules load`.
    """


@rules_group.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE")
@_db_option
def load_command(file: Path, url: str | None) -> None:
    """Replace all loan rules and branch calendars with those in FILE.

    The file is checked first; if anything is wrong, every problem is listed
    and the database is left as it was. Otherwise the old rules are replaced in
    one step, and what changed is printed.
    """
    try:
        rules = read_rules(file)
    except RulesFileError as error:
        raise click.ClickException(f"nothing loaded:\n{error}") from None
    with _database(url) as database:
        try:
            changes = load_rules(database, rules, str(file))
        except RulesFileError as error:
            raise click.ClickException(f"nothing loaded:\n{error}") from None
    for line in changes:
        click.echo(line)
    click.echo(
        f"loaded {plural(len(rules.rule), 'rule')} and"
        f" {plural(len(rules.calendar), 'calendar')}"
    )


@rules_group.command("show")
@_db_option
def show_command(url: str | None) -> None:
    """Print the loan-rule matrix as a table, and each branch's calendar."""
    with _database(url) as database:
        for line in show_rules(database):
            click.echo(line)


@rules_group.command("explain")
@click.argument("patron")
@click.argument("item")
@click.option(
    "--branch",
    "branch_code",
    metavar="CODE",
    help="The branch of the checkout. Defaults to the item's current branch.",
)
@_db_option
def explain_command(
    patron: str, item: str, branch_code: str | None, url: str | None
) -> None:
    """Say which rule applies when PATRON (a card barcode) borrows ITEM (an item
    barcode), which more specific rules were looked for and absent, and when a
    checkout made now would be due."""
    with _database(url) as database:
        try:
            lines = explain_rule(database, patron, item, branch_code, utcnow())
        except LookupError as error:
            raise click.ClickException(str(error)) from None
    for line in lines:
        click.echo(line)


# For the other core commands that take the same --db option and checks.
db_option = _db_option
open_database = _database
