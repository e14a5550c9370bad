"""Creating and upgrading the core schema through Alembic, and `ils init`.

Layer: `ils`. Imports Alembic, SQLAlchemy, click and `ils.db`; nothing above the
core. The migrations live in the package (`ils/migrations`), so an installed
`ils` needs no alembic.ini: the configuration is built here.

To write a new migration during development:

    python -c "from ils.schema import alembic_config; from alembic import command;
    command.revision(alembic_config('sqlite:///var/dev.sqlite3'),
    message='add fees', autogenerate=True)"
"""

from __future__ import annotations

import click
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from ils.db import Database, DatabaseConfigError, display_url

SCRIPT_LOCATION = "ils:migrations"
DATABASE_URL_VARIABLE = "ILS_DATABASE_URL"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the core's migrations, optionally with a URL."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        # ConfigParser treats % as interpolation; a password may contain one.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision id among the migrations shipped with this version."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a migration
        raise RuntimeError("the package has no migrations")
    return head


def upgrade_database(url: str, revision: str = "head") -> str:
    """Create the schema, or upgrade it, to the newest revision (or the one given).

    Safe to run again: a database already at the head is left as it is.

    Returns:
        The head revision id the database is now at.

    Raises:
        DatabaseConfigError: the URL cannot be used.
    """
    database = Database(url, pool_size=1)
    try:
        with database.connect_for_write() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite alters a table by copying it (batch mode), and dropping
                # the old copy of a table that others refer to fails while
                # foreign keys are enforced. They are off for the upgrade (the
                # pragma only works outside a transaction) and checked after.
                _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
            try:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite:
                    broken = connection.exec_driver_sql(
                        "PRAGMA foreign_key_check"
                    ).all()
                    if broken:
                        connection.rollback()
                        raise RuntimeError(
                            f"the upgrade would break {len(broken)} references"
                            f" (first: {tuple(broken[0])}); nothing was changed"
                        )
                connection.commit()
            finally:
                if sqlite:
                    _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")
        reached = _current(database)
    finally:
        database.dispose()
    if reached is None:  # pragma: no cover - upgrade always stamps a revision
        raise RuntimeError("the upgrade left no revision stamped")
    return reached


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    # Straight to the driver: through SQLAlchemy the statement would open a
    # transaction first, inside which SQLite ignores this pragma.
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - a checked-out connection has one
        raise RuntimeError("the database connection is closed")
    driver.execute(pragma)


def _current(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None when it has no schema yet.

    Raises:
        DatabaseConfigError: the URL cannot be used.
    """
    database = Database(url, pool_size=1)
    try:
        return _current(database)
    finally:
        database.dispose()


@click.command("init")
@click.option(
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
def init_command(url: str | None) -> None:
    """Create the library database, or upgrade it to this version's schema.

    Running it again on an up-to-date database changes nothing, so it is safe
    to run after every upgrade of the software.
    """
    if not url:
        raise click.UsageError(
            f"say which database with --db URL or set ${DATABASE_URL_VARIABLE},"
            " e.g. --db sqlite:///var/library.sqlite3"
        )
    try:
        revision = upgrade_database(url)
    except DatabaseConfigError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error
    click.echo(f"database at {display_url(url)} is at revision {revision}")


__all__ = [
    "DATABASE_URL_VARIABLE",
    "alembic_config",
    "current_revision",
    "head_revision",
    "init_command",
    "upgrade_database",
]
