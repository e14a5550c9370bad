"""How long a request may wait for a database thread before it is refused.

Layer: `sip2server`, beside the Twisted server (`sip2server.server` wraps each
request it hands to the database threads). Uses the session's reply and
refusal text and the circulation's pure `refuse`; must not import
`sip2server.app`, `kiosk` or `drivers`.

Why: on PostgreSQL a request for a row another session holds waits up to
`lock_timeout` (the configured `busy_timeout`) in one of the database threads.
When every thread is in such a wait, the requests queued behind them would
each start a second (and third) lock wait once a thread frees, answering long
after the terminal gave up, while unrelated requests queue behind those. A
request that has already waited longer than the budget for a thread is
therefore refused as soon as a thread takes it, with the "not available just
now" refusal of a database outage, and without touching the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from sip2server.protocol import EndPatronSessionRequest, LoginRequest
from sip2server.session import UNAVAILABLE, Reply, TerminalSession

if TYPE_CHECKING:
    from sip2server.mapping import SipCirculation

__all__ = ["THREAD_WAIT_LEAST", "THREAD_WAIT_SHARE", "ThreadWait", "thread_wait_budget"]

# The budget as a share of the busy timeout. A request taken within the budget
# may still meet a whole lock wait, so its reply leaves within 1.5 times the
# busy timeout (7.5 s with the default 5 s; terminals are told 10 s in 98);
# one queued behind a whole round of lock waits has waited about the busy
# timeout, twice the budget, and is refused instead of starting another.
THREAD_WAIT_SHARE = 0.5

# The shortest budget, whatever the busy timeout: a very short busy timeout
# (tests use 0.2 s) would otherwise refuse requests that merely waited for the
# machine to schedule a thread.
THREAD_WAIT_LEAST = 1.0

# At most one warning per this many seconds while requests are refused so.
_WARNING_INTERVAL = 30.0

log = Logger(namespace="sip2server")


def thread_wait_budget(busy_timeout: float) -> float:
    """Seconds a request may wait for a database thread, from the busy timeout:
    half of it, and at least `THREAD_WAIT_LEAST`."""
    return max(busy_timeout * THREAD_WAIT_SHARE, THREAD_WAIT_LEAST)


@dataclass
class ThreadWait:
    """The budget for waiting for a database thread, and the refusals past it.

    `circulation` is asked for the circulation in use (a reload replaces it)
    to build each refusal; building one reads no database. Its counters are
    updated from the worker threads, under a lock.
    """

    budget: float
    circulation: Callable[[], SipCirculation]
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last_warning: float = float("-inf")
    _quiet: int = 0

    def handle_in_time(self, session: TerminalSession) -> Callable[[Any], Reply]:
        """`session.handle`, or a refusal if it waits past the budget to run.

        Call it on the reactor's thread as the request is handed to the pool:
        the wait is counted from then until a worker thread runs the result.
        """
        queued = time.monotonic()
        # TODO(#5): refused when a thread takes it, not when the budget runs
        # out, and not counted in a metric of its own.

        def handle(message: Any) -> Reply:
            waited = time.monotonic() - queued
            account = session.account
            if waited <= self.budget or account is None:
                # Before login the session answers without the database.
                return session.handle(message)
            if isinstance(message, LoginRequest | EndPatronSessionRequest):
                # Never refused here: a refused login would end the session's
                # login, and logins have their own threads in a served server;
                # a 35 changes nothing and waits on no lock (it only reads).
                return session.handle(message)
            refusal = self.circulation().refuse(
                message, UNAVAILABLE, account, outage=True
            )
            self._record(waited, session.connection_id)
            # Transient: the same request sent again is run again, not replayed.
            return Reply(refusal, transient=True)

        return handle

    def _record(self, waited: float, conn: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.refused += 1
            if now - self._last_warning < _WARNING_INTERVAL:
                self._quiet += 1
                return
            quiet, self._quiet, self._last_warning = self._quiet, 0, now
        log.warn(
            "request waited {waited:.1f} s for a database thread (budget "
            "{budget:.1f} s, from the busy_timeout); refused as not available "
            "without running it conn={conn} ({quiet} more since the last warning)",
            waited=waited,
            budget=self.budget,
            conn=conn,
            quiet=quiet,
        )
