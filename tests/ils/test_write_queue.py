"""SQLite write units of one process queue in-process; PostgreSQL ones do not."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from ils.db import Database


def _make_counter(database: Database) -> None:
    with database.transaction() as session:
        session.execute(
            sa.text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        )


def _insert_in_thread(database: Database, row: int) -> threading.Thread:
    def insert() -> None:
        with database.transaction() as session:
            session.execute(
                sa.text("INSERT INTO counter (id, n) VALUES (:id, 0)"), {"id": row}
            )

    thread = threading.Thread(target=insert)
    thread.start()
    return thread


def _rows(database: Database) -> list[int]:
    with database.read() as session:
        return list(session.execute(sa.text("SELECT id FROM counter")).scalars())


def test_sqlite_writer_waits_for_its_turn_without_taking_a_connection(
    sqlite_url: str,
) -> None:
    """A second SQLite write unit waits on the lock before BEGIN, then runs."""
    database = Database(sqlite_url, pool_size=4)
    _make_counter(database)
    pool = database.engine.pool
    assert isinstance(pool, sa.pool.QueuePool)

    with database.transaction() as holder:
        holder.execute(sa.text("INSERT INTO counter (id, n) VALUES (1, 0)"))
        waiter = _insert_in_thread(database, 2)
        # The waiter cannot finish while the holder's unit is open...
        waiter.join(timeout=0.3)
        assert waiter.is_alive()
        # ...and it is queued on the lock: only the holder has a connection.
        assert pool.checkedout() == 1
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert sorted(_rows(database)) == [1, 2]
    database.dispose()


def test_sqlite_writer_queued_too_long_gets_database_is_locked(
    sqlite_url: str,
) -> None:
    """A write unit that waits past the busy timeout for its turn is refused."""
    database = Database(sqlite_url, busy_timeout=0.2)
    _make_counter(database)
    failures: list[BaseException] = []

    def insert() -> None:
        try:
            with database.transaction() as session:
                session.execute(sa.text("INSERT INTO counter (id, n) VALUES (2, 0)"))
        except sa.exc.OperationalError as error:
            failures.append(error)

    with database.transaction() as holder:
        holder.execute(sa.text("INSERT INTO counter (id, n) VALUES (1, 0)"))
        waiter = threading.Thread(target=insert)
        waiter.start()
        waiter.join(timeout=30)
    assert len(failures) == 1
    assert "database is locked" in str(failures[0])
    assert _rows(database) == [1]
    database.dispose()


def test_postgres_writers_do_not_queue_in_process(database_url: str) -> None:
    """On PostgreSQL a second write unit runs while the first is still open."""
    if not database_url.startswith("postgres"):
        pytest.skip("the in-process queue is for SQLite only")
    database = Database(database_url, pool_size=4)
    _make_counter(database)
    with database.transaction() as holder:
        holder.execute(sa.text("INSERT INTO counter (id, n) VALUES (1, 0)"))
        other = _insert_in_thread(database, 2)
        other.join(timeout=30)
        assert not other.is_alive()
    assert sorted(_rows(database)) == [1, 2]
    database.dispose()
