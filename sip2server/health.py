"""Whether the core database answers, as the server last saw it.

Layer: `sip2server`. Imports `ils.db` and SQLAlchemy; nothing of Twisted, so
the sessions in worker threads can report to it directly.

Requests report what they met (`failed` on a database error, `answered` on a
reply that used the database); while the database is marked down, the server
probes it in the background, so the status reply (98) says online again as
soon as it is, without waiting for a terminal to try a checkout.
"""

from __future__ import annotations

import threading

from sqlalchemy.exc import SQLAlchemyError

from ils.db import Database


class DatabaseHealth:
    """The database's state: online until a request meets an error."""

    def __init__(self) -> None:
        self._online = True
        self._errors = 0
        self._problem: str | None = None
        self._lock = threading.Lock()

    @property
    def online(self) -> bool:
        """Whether the last request or probe reached the database."""
        return self._online

    @property
    def errors(self) -> int:
        """Database errors met since the server started."""
        return self._errors

    def failed(self) -> None:
        """A request could not reach the database."""
        with self._lock:
            self._online = False
            self._errors += 1

    def answered(self) -> None:
        """A request used the database and got its answer."""
        self._online = True

    @property
    def problem(self) -> str | None:
        """Why the last probe failed (the database's own words), or None."""
        return self._problem

    def probe(self, database: Database) -> bool:
        """Make a write that changes nothing (blocking); record and return the outcome.

        A write unit, as a checkout's (`Database.check_writable`): on SQLite it
        takes the write lock and writes, so a database that another process
        holds locked, or a file that cannot be written, is reported down (98
        says offline and /healthz 503, both from this probe), not up because a
        read still works. On PostgreSQL a read, and a server in read-only mode
        is reported down too.
        """
        try:
            database.check_writable()
        except SQLAlchemyError as error:
            # Not counted as an error: the outage was counted when a request met it.
            self._problem = str(getattr(error, "orig", None) or error).strip()
            self._online = False
            return False
        self._problem = None
        self.answered()
        return True
