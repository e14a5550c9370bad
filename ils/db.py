"""The connection to the core database: engines, sessions and units of work.

Layer: `ils`, the bottom. Imports only SQLAlchemy and the standard library.

A `Database` is made once per process from a URL and shared by every thread. It
hands out one session per unit of work:

- `transaction()` for a read-write use case: committed when the block ends,
  rolled back when it raises;
- `read()` for a look-up: always rolled back at the end.

SQLite is set up for a threaded server: WAL journal mode (readers never wait for
the writer), a busy timeout (a writer waits for the lock instead of failing at
once, but gives up with `OperationalError` when the timeout passes) and foreign
keys on. Every write unit starts with `BEGIN IMMEDIATE`, which takes the
write lock at the start; a deferred `BEGIN` would take it only at the first write,
and two such transactions that both read first then fail with "database is
locked" when they try to upgrade, because SQLite cannot make either one wait.

Within one process, SQLite write units also queue on a lock of the `Database`
taken before `BEGIN IMMEDIATE` and released when the unit ends: a writer that
found SQLite's lock taken would otherwise sleep in SQLite's busy handler (1, 2,
5, 10 ... 100 ms steps) and could lose the race many times in a row, whereas
on the in-process lock it wakes as soon as the writer before it is done. The
busy timeout still governs waits for other processes, and the wait for the
in-process lock is bounded by the same timeout. PostgreSQL has row locks and
takes no such lock; there the same timeout is set as each session's
`lock_timeout`, so a statement that waits for a row another session holds
(`SELECT ... FOR UPDATE` left open in psql, a stuck import) gives up with
`OperationalError` after it, as a SQLite writer does, instead of holding one
of the server's threads for as long as the other session lasts.

A SQLite file that cannot be written (a read-only mount, an immutable file, a
full or failing disk) fails writes with "attempt to write a readonly database"
or "disk I/O error". A connection opened while the file was read-only stays
read-only for good, so such an error invalidates the whole pool, as a lost
connection does on PostgreSQL: the next units open fresh connections, and
service resumes by itself once the file is writable again. `check_writable`
makes a write that changes nothing, for health checks.

Durability on SQLite: `synchronous` is FULL by default, so a commit is on disk
(the WAL file synced) before a terminal is told it happened, and a power cut
loses no checkout a patron was given a receipt for. NORMAL syncs only at WAL
checkpoints: a killed process still loses nothing, and the database is never
corrupted, but a power cut or an operating-system crash can roll back the
transactions committed since the last checkpoint. It takes the sync off every
write (about 1 to 2 ms each on the development machine, more on a busy disk)
for a site that puts the speed of its sorters first and has a UPS.

The engine hides SQL parameters from its error messages: they hold patron
barcodes and PIN hashes, and an error's text ends up in a server's log. (The
database's own message can still quote a value, e.g. PostgreSQL's "Key
(barcode)=(...) already exists".)
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

# How long a SQLite writer waits by default for another writer's lock before
# giving up; a server whose terminals give up sooner should pass less.
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0

# An execution option on the write engine; the `begin` hook reads it to choose
# between `BEGIN IMMEDIATE` (write units) and a deferred `BEGIN` (read units).
_BEGIN_OPTION = "ils_sqlite_begin"

_POSTGRES_NAMES = {"postgresql", "postgres"}
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}


class DatabaseConfigError(ValueError):
    """A database URL or setting that cannot be used, with what is wrong with it."""


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def display_url(url: str) -> str:
    """The URL with any password masked, for messages and logs.

    A string that is not a URL at all is returned as "<unparseable URL>", since
    it might hold a password in a place we cannot find.
    """
    try:
        return _safe(sa.make_url(url))
    except ArgumentError:
        return "<unparseable URL>"


def normalise_url(url: str) -> URL:
    """Parse a database URL and settle its driver.

    `postgres://` and `postgresql://` become `postgresql+psycopg://`, the one
    PostgreSQL driver the project installs.

    Raises:
        DatabaseConfigError: the URL cannot be parsed, names a database other than
            SQLite or PostgreSQL, or a driver that is not installed here.
    """
    try:
        parsed = sa.make_url(url)
    except ArgumentError as error:
        raise DatabaseConfigError(
            f"{url!r} is not a database URL; expected sqlite:///path/to/file.sqlite3"
            " or postgresql://user@host/dbname"
        ) from error

    backend, _, driver = parsed.drivername.partition("+")
    if backend in _POSTGRES_NAMES:
        if driver not in ("", "psycopg"):
            raise DatabaseConfigError(
                f"database URL {_safe(parsed)} asks for the PostgreSQL driver"
                f" {driver!r}; only psycopg is supported (use postgresql+psycopg://)"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite+pysqlite")
    raise DatabaseConfigError(
        f"database URL {_safe(parsed)} names {parsed.drivername!r}; only SQLite"
        " (sqlite:///path) and PostgreSQL (postgresql://...) are supported"
    )


def _check_sqlite_path(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise DatabaseConfigError(
            "an in-memory SQLite database cannot be shared by the server's threads;"
            " give a file, e.g. sqlite:///var/library.sqlite3"
        )
    if database.startswith("file:"):
        # A URI filename (sqlite:///file:...?uri=true): sqlite3 checks it itself.
        return
    folder = Path(database).expanduser().resolve().parent
    if not folder.is_dir():
        raise DatabaseConfigError(
            f"the folder {folder} for the SQLite database {database} does not exist;"
            " create it first"
        )


# SQLite's `synchronous` settings a `Database` accepts (see the module docstring).
SQLITE_SYNCHRONOUS = ("full", "normal")


def _sqlite_connect_hook(
    busy_timeout: float, synchronous: str
) -> Callable[[sqlite3.Connection, Any], None]:
    busy_milliseconds = round(busy_timeout * 1000)
    pragma = f"PRAGMA synchronous={synchronous.upper()}"

    def on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Stop pysqlite from issuing BEGIN and COMMIT on its own, so that the
        # `begin` hook below decides how each transaction starts (SQLAlchemy's
        # documented recipe for the pysqlite driver).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_milliseconds}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(pragma)
        finally:
            cursor.close()

    return on_connect


def _postgres_connect_hook(lock_timeout: float) -> Callable[[Any, Any], None]:
    # lock_timeout 0 means "wait for ever" to PostgreSQL; a busy timeout of 0
    # means "do not wait", so it becomes the shortest wait there is.
    statement = f"SET lock_timeout = {max(1, round(lock_timeout * 1000))}"

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(statement)
        # psycopg opened a transaction for the SET; the setting outlives it.
        dbapi_connection.commit()

    return on_connect


# What SQLite says when its file cannot be written; the connection that met it
# may stay unable to write even once the file can be (see the module docstring).
_UNWRITABLE_SQLITE = ("attempt to write a readonly database", "disk i/o error")


def _on_sqlite_error(context: ExceptionContext) -> None:
    error = context.original_exception
    if isinstance(error, sqlite3.DatabaseError) and any(
        text in str(error).lower() for text in _UNWRITABLE_SQLITE
    ):
        # Treated as a lost connection: SQLAlchemy then discards every pooled
        # connection made before now, and the next checkout opens a new one.
        context.is_disconnect = True


def _on_sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


_KEPT = "ils.db.kept"


def keep_loaded(session: Session) -> None:
    """Keep every object `session` loads from now on alive until the session ends.

    A session's identity map holds its objects weakly, so a branch, category or
    rule that a use case read and let go of is forgotten at once, and the next
    reference to it (a many-to-one attribute, `session.get`) reads its row
    again: a checkout read the same branch row twice. A unit of work of
    the circulation service loads a few dozen objects at most, so it keeps them
    all; bulk units (imports, exports) do not call this and keep nothing.
    """
    session.info[_KEPT] = []


def _keep_loaded_object(session: Session, instance: object) -> None:
    kept: list[object] | None = session.info.get(_KEPT)
    if kept is not None:
        kept.append(instance)


class Database:
    """One library's database, shared by every thread of a process.

    Args:
        url: a SQLAlchemy URL: `sqlite:///path/to/file.sqlite3`, or
            `postgresql://user:password@host/dbname` (also `postgres://` or
            `postgresql+psycopg://`).
        pool_size: connections kept open; size it to the server's thread pool.
        busy_timeout: seconds a SQLite writer waits for another's lock before
            its statement fails with `sqlalchemy.exc.OperationalError`
            ("database is locked"). Keep it below the time a terminal waits for
            an answer. On PostgreSQL it is each session's `lock_timeout`: a
            statement waiting longer for another session's row or table lock
            fails with `OperationalError` (lock_not_available); 0 there is
            1 ms, not PostgreSQL's "no timeout".
        sqlite_synchronous: "full" (the default: every commit synced to disk)
            or "normal" (synced at checkpoints only; see the module docstring).
            PostgreSQL ignores it.

    Raises:
        DatabaseConfigError: the URL cannot be used (see `normalise_url`), a
            SQLite file's folder does not exist, or a setting is out of range.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        busy_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS,
        sqlite_synchronous: str = "full",
    ) -> None:
        if pool_size < 1:
            raise DatabaseConfigError(f"pool_size must be at least 1, not {pool_size}")
        if not (math.isfinite(busy_timeout) and busy_timeout >= 0):
            raise DatabaseConfigError(
                f"busy_timeout must be a number of seconds, 0 or more, not"
                f" {busy_timeout!r}"
            )
        if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise DatabaseConfigError(
                f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)},"
                f" not {sqlite_synchronous!r}"
            )
        self.url = url
        self._busy_timeout = busy_timeout
        # Queues this process's SQLite write units (see the module docstring).
        self._write_lock = threading.Lock()
        parsed = normalise_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            _check_sqlite_path(parsed)

        pool_options: dict[str, Any] = {
            "pool_size": pool_size,
            # Bursts beyond the pool get short-lived extra connections.
            "max_overflow": pool_size,
            "pool_timeout": 30,
            # Keep patron barcodes and PIN hashes out of error messages.
            "hide_parameters": True,
        }
        try:
            if self.is_sqlite:
                self.engine: Engine = sa.create_engine(
                    parsed,
                    poolclass=sa.pool.QueuePool,
                    connect_args={
                        "timeout": busy_timeout,
                        # Connections move between the server's threads via the
                        # pool, never in use by two at once.
                        "check_same_thread": False,
                    },
                    **pool_options,
                )
                event.listen(
                    self.engine,
                    "connect",
                    _sqlite_connect_hook(busy_timeout, sqlite_synchronous),
                )
                event.listen(self.engine, "begin", _on_sqlite_begin)
                event.listen(self.engine, "handle_error", _on_sqlite_error)
            else:
                self.engine = sa.create_engine(
                    parsed, pool_pre_ping=True, **pool_options
                )
                event.listen(
                    self.engine, "connect", _postgres_connect_hook(busy_timeout)
                )
        except (NoSuchModuleError, ImportError) as error:
            raise DatabaseConfigError(
                f"cannot load the database driver for {_safe(parsed)}: {error}"
            ) from error

        # Sessions for write units run on a view of the same engine (same pool)
        # whose connections start with BEGIN IMMEDIATE on SQLite.
        self._write_engine = self.engine.execution_options(
            **{_BEGIN_OPTION: "IMMEDIATE"}
        )
        self._write_sessions = sessionmaker(
            bind=self._write_engine, expire_on_commit=False
        )
        self._read_sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        for sessions in (self._write_sessions, self._read_sessions):
            event.listen(sessions, "loaded_as_persistent", _keep_loaded_object)

    @property
    def display_url(self) -> str:
        """The URL with any password masked."""
        return display_url(self.url)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One read-write unit of work: committed on success, rolled back on error.

        On SQLite it holds the write lock from its start to its end, so keep it
        short: it first waits its turn behind this process's other write units
        (up to the busy timeout, then `OperationalError` "database is locked"),
        then takes SQLite's lock with `BEGIN IMMEDIATE`.
        """
        with self._write_turn():
            yield from self._write_unit()

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        # This process's queue of SQLite write units (see the module docstring).
        # TODO(#5): a commit that waits for a busy disk (synchronous = full)
        # holds the turn, and every writer queues behind it (100 to 200 ms
        # seen); no group commit.
        if not self.is_sqlite:
            yield
            return
        if not self._write_lock.acquire(timeout=self._busy_timeout):
            raise OperationalError(
                "BEGIN IMMEDIATE",
                None,
                sqlite3.OperationalError("database is locked"),
            )
        try:
            yield
        finally:
            self._write_lock.release()

    def check_writable(self) -> None:
        """Start a write unit and make a write that changes nothing (blocking).

        On SQLite: `BEGIN IMMEDIATE` (which a read-only file still grants),
        `PRAGMA user_version` set to its own value (which it refuses), then a
        rollback, so nothing reaches the file. On PostgreSQL a read answers
        whether the server is up; a server that takes no writes (a hot
        standby, `default_transaction_read_only`) is reported too.

        Raises:
            sqlalchemy.exc.OperationalError: the database is unreachable,
                locked for longer than the busy timeout, or cannot be written.
        """
        with (
            self._write_turn(),
            self._write_engine.connect() as connection,
            connection.begin() as unit,
        ):
            if self.is_sqlite:
                version = int(
                    connection.exec_driver_sql("PRAGMA user_version").scalar() or 0
                )
                connection.exec_driver_sql(f"PRAGMA user_version = {version}")
            else:
                read_only = connection.exec_driver_sql(
                    "SHOW transaction_read_only"
                ).scalar()
                if read_only == "on":
                    raise OperationalError(
                        "SHOW transaction_read_only",
                        None,
                        Exception("the database takes no writes (read-only)"),
                    )
            unit.rollback()

    def _write_unit(self) -> Iterator[Session]:
        session = self._write_sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One read-only unit of work; whatever it changed is rolled back at the end."""
        session = self._read_sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def read_rows(self) -> Iterator[Connection]:
        """A read-only unit of work on a bare connection, for look-ups that load
        rows, not objects (a session's set-up and teardown cost more than one
        prebuilt statement); rolled back at the end."""
        with self.engine.connect() as connection:
            try:
                yield connection
            finally:
                connection.rollback()

    def connect_for_write(self) -> Connection:
        """A raw connection whose transactions start as write units (for Alembic)."""
        return self._write_engine.connect()

    def dispose(self) -> None:
        """Close every pooled connection; the object stays usable and reconnects."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"
