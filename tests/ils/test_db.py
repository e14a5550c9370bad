"""The Database unit-of-work layer on real SQLite files and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.db import Database, DatabaseConfigError, display_url, normalise_url


@pytest.fixture
def counter(database_url: str) -> Database:
    """A database on each engine with one table holding one counter row."""
    database = Database(database_url, pool_size=8)
    with database.transaction() as session:
        session.execute(
            sa.text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        )
        session.execute(sa.text("INSERT INTO counter (id, n) VALUES (1, 0)"))
    return database


def read_counter(database: Database) -> int:
    """The counter's value, read in a read unit."""
    with database.read() as session:
        return int(session.execute(sa.text("SELECT n FROM counter")).scalar_one())


def test_transaction_commits_on_success(counter: Database) -> None:
    """A write unit that ends normally is committed."""
    with counter.transaction() as session:
        session.execute(sa.text("UPDATE counter SET n = 5"))
    assert read_counter(counter) == 5
    counter.dispose()


def test_transaction_rolls_back_on_error(counter: Database) -> None:
    """A write unit that raises leaves nothing behind."""

    def update_then_fail() -> None:
        with counter.transaction() as session:
            session.execute(sa.text("UPDATE counter SET n = 7"))
            raise LookupError("stop")

    with pytest.raises(LookupError):
        update_then_fail()
    assert read_counter(counter) == 0
    counter.dispose()


def test_read_unit_never_commits(counter: Database) -> None:
    """Whatever a read unit changes is rolled back at its end."""
    with counter.read() as session:
        session.execute(sa.text("UPDATE counter SET n = 9"))
    assert read_counter(counter) == 0
    counter.dispose()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(
    sqlite_url: str,
) -> None:
    """Every SQLite connection is in WAL mode with a 30 s busy timeout and FKs on."""
    database = Database(sqlite_url)
    with database.read() as session:
        assert session.execute(sa.text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert session.execute(sa.text("PRAGMA busy_timeout")).scalar_one() == 30000
        assert session.execute(sa.text("PRAGMA foreign_keys")).scalar_one() == 1
    database.dispose()


def test_sqlite_commits_are_synced_unless_normal_is_asked_for(sqlite_url: str) -> None:
    """synchronous is FULL (2) by default and NORMAL (1) when asked for."""
    for setting, expected in ((None, 2), ("normal", 1), ("full", 2)):
        database = (
            Database(sqlite_url)
            if setting is None
            else Database(sqlite_url, sqlite_synchronous=setting)
        )
        with database.read() as session:
            value = session.execute(sa.text("PRAGMA synchronous")).scalar_one()
        database.dispose()
        assert value == expected, setting


def test_unknown_sqlite_synchronous_is_refused(sqlite_url: str) -> None:
    """Only full and normal are offered; OFF would risk a corrupt database."""
    with pytest.raises(DatabaseConfigError, match=r"sqlite_synchronous.*'off'"):
        Database(sqlite_url, sqlite_synchronous="off")


def test_sqlite_writers_that_read_first_queue_instead_of_failing(
    sqlite_url: str,
) -> None:
    """Twelve threads each reading then writing the counter all succeed, in turn."""
    database = Database(sqlite_url, pool_size=12)
    with database.transaction() as session:
        session.execute(
            sa.text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        )
        session.execute(sa.text("INSERT INTO counter (id, n) VALUES (1, 0)"))
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def increment() -> None:
        barrier.wait()
        try:
            with database.transaction() as session:
                value = session.execute(sa.text("SELECT n FROM counter")).scalar_one()
                session.execute(sa.text("UPDATE counter SET n = :n"), {"n": value + 1})
        except BaseException as error:  # collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=increment) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    # BEGIN IMMEDIATE makes each read-then-write atomic: no update is lost.
    assert read_counter(database) == 12
    database.dispose()


def test_sqlite_writer_gives_up_after_the_busy_timeout(sqlite_url: str) -> None:
    """A writer waiting on a held write lock fails after about busy_timeout seconds."""
    database = Database(sqlite_url, busy_timeout=0.5)
    with database.transaction() as session:
        session.execute(
            sa.text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        )

    with database.transaction() as holder:
        holder.execute(sa.text("INSERT INTO counter (id, n) VALUES (1, 0)"))
        started = time.monotonic()
        with (
            pytest.raises(sa.exc.OperationalError, match="database is locked"),
            database.transaction() as waiter,
        ):
            waiter.execute(sa.text("INSERT INTO counter (id, n) VALUES (2, 0)"))
        waited = time.monotonic() - started

    # Well short of the 30 s default; the lower bound allows for timer slack.
    assert 0.4 <= waited < 5
    assert read_counter(database) == 0
    database.dispose()


@pytest.mark.parametrize("busy_timeout", [-1.0, float("nan"), float("inf")])
def test_unusable_busy_timeout_is_refused(sqlite_url: str, busy_timeout: float) -> None:
    """A busy timeout that is negative or not a finite number is refused."""
    with pytest.raises(DatabaseConfigError, match="busy_timeout"):
        Database(sqlite_url, busy_timeout=busy_timeout)


def test_error_messages_do_not_show_bound_parameters(database_url: str) -> None:
    """A failed statement's error text leaves out the values bound to it."""
    database = Database(database_url)
    barcode = "P-SECRET-29310"

    with pytest.raises(sa.exc.DBAPIError) as raised, database.read() as session:
        session.execute(
            sa.text("SELECT id FROM no_such_patron WHERE barcode = :barcode"),
            {"barcode": barcode},
        )

    assert "no_such_patron" in str(raised.value)
    assert barcode not in str(raised.value)
    assert barcode not in repr(raised.value)
    database.dispose()


def test_missing_sqlite_folder_is_named(tmp_path: Path) -> None:
    """A SQLite file in a folder that does not exist is refused, naming the folder."""
    missing = tmp_path / "no" / "such"
    with pytest.raises(DatabaseConfigError, match=str(missing)):
        Database(f"sqlite:///{missing / 'library.sqlite3'}")


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("not a url", "not a database URL"),
        ("mysql://user@localhost/library", "only SQLite"),
        ("postgresql+asyncpg://user@localhost/library", "only psycopg"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_unusable_urls_are_refused_with_a_reason(url: str, complaint: str) -> None:
    """Each URL the layer cannot use raises DatabaseConfigError saying why."""
    with pytest.raises(DatabaseConfigError, match=complaint) as raised:
        Database(url)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://reader:pw@127.0.0.1:5999/library",
        "postgresql://reader:pw@127.0.0.1:5999/library",
        "postgresql+psycopg://reader:pw@127.0.0.1:5999/library",
    ],
)
def test_postgres_urls_are_given_the_psycopg_driver(url: str) -> None:
    """postgres:// and postgresql:// both become postgresql+psycopg://."""
    assert normalise_url(url).drivername == "postgresql+psycopg"
    database = Database(url)
    assert database.url == url
    assert database.engine.url.drivername == "postgresql+psycopg"
    database.dispose()


def test_display_url_masks_the_password() -> None:
    """A URL shown to people has its password replaced by asterisks."""
    shown = display_url("postgresql://reader:s3cret@127.0.0.1/library")
    assert shown == "postgresql://reader:***@127.0.0.1/library"
    assert display_url("not a url") == "<unparseable URL>"
