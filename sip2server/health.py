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

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ils.db import Database


class DatabaseHealth:
    """The database's state: online until a request meets an error."""

    def __init__(self) -> None:
        self._online = True
        self._errors = 0
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

    def probe(self, database: Database) -> bool:
        """Run `SELECT 1` in a write unit (blocking); record and return the outcome.

        A write unit, as a checkout's: on SQLite it takes the write lock, so a
        database that another process holds locked is reported down (98 says
        offline and /healthz 503, both from this probe), not up because a
        read still works.
        """
        try:
            with database.transaction() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError:
            # Not counted as an error: the outage was counted when a request met it.
            self._online = False
            return False
        self.answered()
        return True
