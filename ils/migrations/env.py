"""Alembic's environment for the core schema.

Layer: `ils`. Run through `ils.schema` (which puts an open connection in
`config.attributes["connection"]`) or through the alembic command line with a
config made by `ils.schema.alembic_config(url)`. Offline (SQL script) mode is
not supported: the library runs migrations against a live database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ils.db import Database
from ils.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the connection given, or on one made from the URL."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database given to the migrations: set sqlalchemy.url")
    database = Database(url, pool_size=1)
    try:
        with database.connect_for_write() as connection:
            _run(connection)
    finally:
        database.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; run against a database")
run_migrations_online()
