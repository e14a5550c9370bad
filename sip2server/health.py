"""Whether the core database answers, as the server last saw it.

Layer: `sip2server`. Imports `ils.db`, SQLAlchemy and Twisted's HTTP channel
(for the health port's request deadline, `DeadlineChannel`); `DatabaseHealth`
uses nothing of Twisted, so the sessions in worker threads can report to it
directly. Imports nothing of `kiosk` or `drivers`.

Requests report what they met (`failed` on a database error, `answered` on a
reply that used the database); while the database is marked down, the server
probes it in the background, so the status reply (98) says online again as
soon as it is, without waiting for a terminal to try a checkout.

Not every database error means the database is down: on PostgreSQL a request
that waited longer than `lock_timeout` for a row another session holds
(SQLSTATE 55P03, lock_not_available) met a busy row, and the database answered.
That request is refused ("not available just now"), but the server is not
marked offline for it (`concerns_one_request`).
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from ils.db import Database

# PostgreSQL's SQLSTATE for a lock wait that outlasted lock_timeout.
LOCK_NOT_AVAILABLE = "55P03"


def concerns_one_request(error: BaseException | None) -> bool:
    """Whether a database error is about the request that met it, not about the
    database: a row lock another session held past `lock_timeout` (PostgreSQL's
    lock_not_available). Other errors (a lost connection, a refused write, a
    SQLite file locked past its busy timeout) say the database cannot be used."""
    original = getattr(error, "orig", None)
    # psycopg 3 names the code `sqlstate`; psycopg2 named it `pgcode`.
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return code == LOCK_NOT_AVAILABLE


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

    def failed(self, error: BaseException) -> None:
        """A request met a database error: counted, and the database marked down
        unless the error concerns that request only (`concerns_one_request`)."""
        with self._lock:
            self._errors += 1
            if not concerns_one_request(error):
                self._online = False

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


# The metrics and health port: a connection that has not sent a whole request
# within this many seconds of connecting (or of its last request's answer) is
# closed, however it trickles its header lines, so slow clients cannot hold the
# port's few connection slots and keep /healthz from a monitor.
# A client that reconnects as soon as it is closed takes a freed slot again, but
# only up to its address's share (app.OPERATIONS_MAX_PER_ADDRESS).
REQUEST_DEADLINE = 10.0


class DeadlineChannel(HTTPChannel):
    """An HTTP connection closed when a whole request takes too long to arrive.

    The site's own idle time-out counts silence; this counts from the moment
    the connection was made, or its last request was answered, to the end of
    the next request (its headers, and its body if it has one).
    """

    deadline: float = REQUEST_DEADLINE
    _timer: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        self._arm()

    def allContentReceived(self) -> None:
        # A whole request is in: no deadline while it is answered.
        self._disarm()
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)  # type: ignore[no-untyped-call]
        if self.transport is not None and not getattr(
            self.transport, "disconnecting", False
        ):
            self._arm()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.callLater(  # type: ignore[no-untyped-call]
            self.deadline, self._late
        )

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _late(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.abortConnection()


def with_request_deadline(site: Any, seconds: float | None = None) -> Any:
    """`site` (a Twisted web Site) with its connections under `seconds`
    (default `REQUEST_DEADLINE`) to send each whole request (HTTP/1.x only;
    the port serves no HTTP/2)."""

    class _Channel(DeadlineChannel):
        deadline = REQUEST_DEADLINE if seconds is None else seconds

    site.protocol = _Channel
    return site
