"""Fixtures shared by the whole suite: databases on both engines and ../shared.

Databases are real: a SQLite file in the test's temporary folder, and a fresh
PostgreSQL database on the server named by ILS_TEST_POSTGRES_URL (which
`scripts/with-postgres.sh` starts for `make test`). Without that variable the
PostgreSQL half of each test is skipped, unless ILS_TEST_REQUIRE_POSTGRES is set,
in which case it fails: CI must never pass by skipping a database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"


def postgres_admin_url() -> str | None:
    """The admin URL of the test PostgreSQL server, or None when there is none."""
    return os.environ.get("ILS_TEST_POSTGRES_URL") or None


def _require_or_skip(reason: str) -> None:
    if os.environ.get("ILS_TEST_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL is required for this run: {reason}")
    pytest.skip(reason)


def _fresh_postgres_database(admin_url: str) -> Iterator[str]:
    name = f"ils_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        admin.dispose()
        _require_or_skip(f"cannot reach PostgreSQL: {error}")
    url = sa.make_url(admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(
                sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            )
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each engine in turn: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ils.sqlite3'}"
        return

    admin_url = postgres_admin_url()
    if admin_url is None:
        _require_or_skip("ILS_TEST_POSTGRES_URL is not set")
        return
    yield from _fresh_postgres_database(admin_url)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for tests of what only PostgreSQL does (row
    locks held by another session); skipped as `database_url` is without one."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        _require_or_skip("ILS_TEST_POSTGRES_URL is not set")
        return
    yield from _fresh_postgres_database(admin_url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An empty SQLite database file, for tests where the engine does not matter."""
    return f"sqlite:///{tmp_path / 'ils.sqlite3'}"


@pytest.fixture
def shared_dir() -> Path:
    """The project's ../shared folder; the test is skipped when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip("../shared is not beside this checkout")
    return SHARED_DIR
