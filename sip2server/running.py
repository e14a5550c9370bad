"""The record of a started SIP2 server, and how it stops.

Layer: `sip2server`. `RunningServer` holds what a started server's listeners
share (database, thread pools, circulation, health, metrics) and carries out the
graceful stop a SIGTERM or Ctrl-C asks for; `RequestThreads` is the thread pool
that lets that stop wait for the requests in hand. It must not import
`sip2server.app` (which builds a `RunningServer`), `kiosk` or `drivers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ils.db import Database
from sip2server.accounts import Admission
from sip2server.config import ListenerConfig, ServerConfig
from sip2server.health import DatabaseHealth
from sip2server.listeners import Listener
from sip2server.mapping import SipCirculation
from sip2server.metrics import ServerMetrics
from sip2server.server import LoginSlots
from sip2server.txlog import TransactionLog

__all__ = [
    "PROBE_INTERVAL",
    "REPLY_FLUSH_GRACE",
    "STOP_GRACE",
    "RequestThreads",
    "RunningServer",
    "configured_listeners",
]

# Seconds between background checks of a database marked unreachable.
PROBE_INTERVAL = 5.0

# On a stop (SIGTERM, Ctrl-C): how long the requests in hand may take to finish
# and be answered, and then how long their replies may take to leave.
STOP_GRACE = 10.0
REPLY_FLUSH_GRACE = 2.0

log = Logger(namespace="sip2server")


class RequestThreads(ThreadPool):
    """A thread pool that knows the requests in hand and can stop taking more.

    Once `close` is called, work handed to it is never run (its Deferred never
    fires: the request was not taken, and nothing of it is committed); the
    Deferred `close` returns fires once each request taken before has been
    answered, i.e. after the callbacks that send its reply and write its
    transaction-log line have run on the reactor.
    """

    def __init__(self, reactor: Any, *, minthreads: int, maxthreads: int, name: str):
        super().__init__(minthreads=minthreads, maxthreads=maxthreads, name=name)
        self._reactor = reactor
        self.in_hand = 0
        self.closed = False
        self._idle: list[defer.Deferred[None]] = []

    def callInThreadWithCallback(
        self,
        onResult: Any,  # noqa: N803
        func: Any,
        *args: Any,
        **kw: Any,
    ) -> None:
        if self.closed:
            return
        self.in_hand += 1

        def finished(success: bool, result: Any) -> None:
            # In the worker thread: `onResult` schedules the reply on the
            # reactor, and this count is taken down after it, in that order.
            try:
                if onResult is not None:
                    onResult(success, result)
            finally:
                self._reactor.callFromThread(self._answered)

        super().callInThreadWithCallback(finished, func, *args, **kw)

    def _answered(self) -> None:
        self.in_hand -= 1
        if self.in_hand == 0:
            idle, self._idle = self._idle, []
            for waiting in idle:
                waiting.callback(None)

    def close(self) -> defer.Deferred[None]:
        """Take no more work; fires when the work in hand has been answered."""
        self.closed = True
        if self.in_hand == 0:
            return defer.succeed(None)
        waiting: defer.Deferred[None] = defer.Deferred()
        self._idle.append(waiting)
        return waiting


@dataclass
class RunningServer:
    """A started server: its listeners and what they share.

    `circulation` and each listener's accounts are replaced by a reload; a
    session reads them when it is made and at each login.
    """

    config: ServerConfig
    database: Database
    threadpool: ThreadPool
    circulation: SipCirculation
    admission: Admission
    health: DatabaseHealth
    metrics: ServerMetrics
    transactions: TransactionLog | None = None
    # One thread for health probes, so that /healthz and the outage probe never
    # queue behind terminals' requests (the database pool has room for it).
    probe_pool: ThreadPool | None = None
    # The threads that check login passwords, apart from the requests'.
    logins: LoginSlots | None = None
    listeners: list[Listener] = field(default_factory=list)
    operations_port: IListeningPort | None = None
    # --listen on the command line: plain listeners instead of the configured.
    listen_override: Sequence[str] | None = None
    reactor: Any = None
    # Seconds a stop waits for the requests in hand (see `stop`).
    stop_grace: float = STOP_GRACE
    _probe: LoopingCall | None = None
    _stopping: defer.Deferred[None] | None = None

    @property
    def ports(self) -> list[IListeningPort]:
        """The SIP2 listening ports, in configuration order."""
        return [listener.port for listener in self.listeners if listener.port]

    def addresses(self) -> list[tuple[str, int]]:
        """Host and port of each SIP2 listener, in configuration order."""
        return [_host_port(port) for port in self.ports]

    def operations_address(self) -> tuple[str, int] | None:
        """Host and port of the metrics and health endpoint, if it listens."""
        if self.operations_port is None:
            return None
        return _host_port(self.operations_port)

    def connections(self) -> dict[str, int]:
        """Open connections per listener key."""
        return {
            listener.key: len(listener.factory.connections)
            for listener in self.listeners
        }

    def configured_listeners(self) -> list[tuple[str, ListenerConfig]]:
        """The listeners this server runs, from the file or from --listen."""
        return configured_listeners(self.config, self.listen_override)

    def stop(self) -> defer.Deferred[None]:
        """Stop as a SIGTERM or Ctrl-C asks; a second call waits for the first.

        In order: stop listening and stop reading requests; wait (up to
        `stop_grace` seconds) for the requests already handed to the thread
        pools, so that their replies are sent and their transaction-log lines
        written; close the connections once their replies have left (up to
        `REPLY_FLUSH_GRACE` seconds); then stop the thread pools, release the
        database and close the transaction log.
        """
        if self._stopping is None:
            self._stopping = defer.ensureDeferred(self._stop())
        waiting: defer.Deferred[None] = defer.Deferred()
        self._stopping.addBoth(_relay, waiting)
        return waiting

    async def _stop(self) -> None:
        try:
            await self._finish_requests()
        finally:
            self.threadpool.stop()
            if self.probe_pool is not None:
                self.probe_pool.stop()
            if self.logins is not None:
                self.logins.pool.stop()
            self.database.dispose()
            if self.transactions is not None:
                self.transactions.close()

    async def _finish_requests(self) -> None:
        if self._probe is not None and self._probe.running:
            self._probe.stop()
        ports = list(self.ports)
        if self.operations_port is not None:
            ports.append(self.operations_port)
        await defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in ports]
        )
        for listener in self.listeners:
            listener.port = None
        self.operations_port = None
        connections = [
            connection
            for listener in self.listeners
            for connection in listener.factory.connections
        ]
        for connection in connections:
            # No new requests: what a terminal sends from now is not read.
            transport: Any = connection.transport
            transport.pauseProducing()
        pools = [self.threadpool] + ([self.logins.pool] if self.logins else [])
        in_hand = [pool for pool in pools if isinstance(pool, RequestThreads)]
        if in_hand and self.reactor is not None:
            count = sum(pool.in_hand for pool in in_hand)
            if count:
                log.info(
                    "stopping: finishing {count} request(s) in hand",
                    count=count,
                )
            if not await self._within_grace(
                defer.gatherResults([pool.close() for pool in in_hand])
            ):
                log.warn(
                    "stopping: {count} request(s) still unanswered after "
                    "{seconds} s; closing without their replies",
                    count=sum(pool.in_hand for pool in in_hand),
                    seconds=self.stop_grace,
                )
            for connection in connections:
                # Closes once the replies written so far have been sent.
                connection.stopProducing()
            await self._connections_closed(REPLY_FLUSH_GRACE)

    async def _within_grace(self, work: defer.Deferred[Any]) -> bool:
        """Wait for `work` up to `stop_grace` seconds: whether it finished."""
        outcome: defer.Deferred[bool] = defer.Deferred()

        def settle(finished: bool) -> None:
            if not outcome.called:
                outcome.callback(finished)

        timer = self.reactor.callLater(self.stop_grace, settle, False)
        work.addBoth(lambda _: settle(True))
        finished = await outcome
        if timer.active():
            timer.cancel()
        return finished

    async def _connections_closed(self, seconds: float) -> None:
        """Wait until every SIP2 connection has closed, or `seconds` have passed."""
        step = 0.02
        for _ in range(max(1, round(seconds / step))):
            if not any(self.connections().values()):
                return
            await deferLater(self.reactor, step, lambda: None)

    def check_database_later(self, reactor: Any) -> None:
        """Probe a database marked unreachable every few seconds until it answers."""

        def probe() -> Any:
            if self.health.online:
                return None
            return deferToThreadPool(
                reactor,
                self.probe_pool or self.threadpool,
                self.health.probe,
                self.database,
            ).addErrback(lambda _: None)

        self._probe = LoopingCall(probe)
        self._probe.clock = reactor
        self._probe.start(PROBE_INTERVAL, now=False)


def _relay(result: Any, waiting: defer.Deferred[None]) -> Any:
    # Passes the outcome of the one stop to each caller's own Deferred.
    if isinstance(result, Failure):
        waiting.errback(result)
        return None
    waiting.callback(None)
    return result


def _host_port(port: IListeningPort) -> tuple[str, int]:
    address = port.getHost()
    return str(getattr(address, "host", address)), int(getattr(address, "port", 0))


def configured_listeners(
    config: ServerConfig, listen_override: Sequence[str] | None
) -> list[tuple[str, ListenerConfig]]:
    """The listeners a configuration asks for, or plain ones from --listen."""
    if listen_override:
        return [
            (f"--listen[{index}]", ListenerConfig(endpoint=endpoint))
            for index, endpoint in enumerate(listen_override)
        ]
    return config.all_listeners()
