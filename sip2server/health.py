"""Whether the core database answers, as the server last saw it.

Layer: `sip2server`. Imports `ils.db`, SQLAlchemy and Twisted's HTTP channel
(for the health port's request deadline, `DeadlineChannel`); `DatabaseHealth`
uses nothing of Twisted, so the sessions in worker threads can report to it
directly. Imports nothing of `kiosk` or `drivers`.

Requests report what they met (`failed` on a database error, `answered` on a
reply that used the database); while the database is marked down, the server
probes it in the background, so the status reply (98) says online again as
soon as it is, without waiting for a terminal to try a checkout.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

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
