"""Assembling a running SIP2 server from a configuration.

Layer: `sip2server`. Builds the database, the circulation services, the thread
pool, the listeners and the operations endpoint (metrics, health); `ils serve`
and the end-to-end tests both start the server through `start_server`, so the
tests run what operators run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ils.circulation import Circulation
from ils.db import Database, display_url
from ils.models import Branch, Institution, ItemType, LoanRule, PatronCategory
from ils.schema import current_revision, head_revision
from sip2server.accounts import AccountBook, Admission
from sip2server.config import ListenerConfig, ServerConfig, location_problems
from sip2server.health import DatabaseHealth, with_request_deadline
from sip2server.listeners import (
    Listener,
    StartupError,
    book_for,
    endpoint_from,
    keepalive_of,
    reserved_logins,
    tls_options,
)
from sip2server.mapping import SipCirculation, descriptor_shortfall
from sip2server.metrics import ServerMetrics, operations_site
from sip2server.server import LoginSlots, SipServerFactory
from sip2server.session import TerminalSession
from sip2server.txlog import TransactionLog

__all__ = [
    "RunningServer",
    "StartupError",
    "check_database",
    "policy_code_problems",
    "start_server",
]

# Seconds between background checks of a database marked unreachable.
PROBE_INTERVAL = 5.0

# On a stop (SIGTERM, Ctrl-C): how long the requests in hand may take to finish
# and be answered, and then how long their replies may take to leave.
STOP_GRACE = 10.0
REPLY_FLUSH_GRACE = 2.0

# The metrics and health port: at most this many connections at once (more are
# closed as they come), each closed after this many idle seconds, so that it
# cannot use up the file descriptors the terminals need.
OPERATIONS_MAX_CONNECTIONS = 32
OPERATIONS_IDLE_TIMEOUT = 10.0

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


class _CappedFactory(WrappingFactory):
    """Wraps a factory so that at most `limit` of its connections are open."""

    noisy = False

    def __init__(self, wrapped: Any, limit: int) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self.limit = limit
        self.refused = 0

    def buildProtocol(self, addr: Any) -> Any:
        if len(self.protocols) >= self.limit:
            # None: the reactor closes the new connection at once.
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warn(
                    "metrics/health port: {limit} connections open, closing "
                    "new ones ({count} so far)",
                    limit=self.limit,
                    count=self.refused,
                )
            return None
        return super().buildProtocol(addr)


def operations_factory(site: Any) -> Any:
    """The metrics and health site, capped in connections and idle time."""
    site.timeOut = OPERATIONS_IDLE_TIMEOUT
    # Idle time alone lets a client keep a slot by sending a header line now
    # and then; each whole request has a deadline too (#5, trial 3 M1).
    with_request_deadline(site)
    return _CappedFactory(site, OPERATIONS_MAX_CONNECTIONS)


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


def _started_pools(
    reactor: Any, config: ServerConfig
) -> tuple[RequestThreads, ThreadPool, RequestThreads]:
    """The requests', the health probe's and the logins' thread pools, started."""
    requests = RequestThreads(
        reactor, minthreads=1, maxthreads=config.server.threads, name="sip2-db"
    )
    probes = ThreadPool(minthreads=0, maxthreads=1, name="sip2-health")
    logins = RequestThreads(
        reactor,
        minthreads=0,
        maxthreads=config.server.login_threads,
        name="sip2-login",
    )
    for pool in (requests, probes, logins):
        pool.start()
    return requests, probes, logins


def _say_if_unwritable(running: RunningServer) -> None:
    """Probe the database once at the start, and warn if it cannot be written."""
    if running.health.probe(running.database):
        return
    log.warn(
        "the database at {url} cannot be written just now ({problem}): every "
        "loan, return, renewal and payment is answered 'not available', 98 "
        "says offline and /healthz 503 until it can; the server checks it "
        "every {seconds:.0f} s and resumes by itself",
        url=running.database.display_url,
        problem=running.health.problem,
        seconds=PROBE_INTERVAL,
    )


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


@dataclass(frozen=True)
class LibraryPlaces:
    """What the server needs to know of the library's institutions and branches."""

    library_names: dict[str, str]
    branch_zones: dict[str, ZoneInfo]


def check_database(database: Database, config: ServerConfig) -> LibraryPlaces:
    """Refuse to start on a database without the schema or the accounts' places
    (each account's institution, and its location a branch of that institution
    or of one its policy serves).

    Raises:
        StartupError: naming what is missing and the command that fixes it.
    """
    if database.is_sqlite:
        path = Path(database.engine.url.database or "")
        if not path.is_file():
            # Opening it would create an empty file; say what to run instead.
            raise StartupError(
                f"there is no SQLite database at {path}; "
                "run `ils init --db URL` (or `ils demo --db URL` for demo data)"
            )
    revision = current_revision(database.url)
    if revision is None:
        raise StartupError(
            f"the database at {display_url(database.url)} has no tables yet; "
            "run `ils init --db URL` (or `ils demo --db URL` for demo data)"
        )
    if revision != head_revision():
        raise StartupError(
            f"the database is at schema revision {revision}, this version needs "
            f"{head_revision()}; run `ils init --db URL` to upgrade it"
        )

    with database.read() as session:
        institutions = {
            row.code: row.name
            for row in session.execute(select(Institution.code, Institution.name))
        }
        branches = {
            row.code: row.timezone
            for row in session.execute(select(Branch.code, Branch.timezone))
        }
        branch_institutions = {
            str(row.branch): str(row.institution)
            for row in session.execute(
                select(
                    Branch.code.label("branch"), Institution.code.label("institution")
                ).join(Institution, Branch.institution_id == Institution.id)
            )
        }
    problems = []
    for index, account in enumerate(config.accounts):
        where = f"accounts[{index}] ({account.login})"
        if account.institution not in institutions:
            problems.append(
                f"{where}: institution {account.institution!r} is not in the "
                f"database (it has: {', '.join(sorted(institutions)) or 'none'})"
            )
        if account.location not in branches:
            problems.append(
                f"{where}: location {account.location!r} is not a branch in the "
                f"database (it has: {', '.join(sorted(branches)) or 'none'})"
            )
    problems += location_problems(config, branch_institutions)
    if problems:
        raise StartupError("\n".join(problems))
    return LibraryPlaces(
        library_names={str(code): str(name) for code, name in institutions.items()},
        branch_zones={
            str(code): ZoneInfo(str(zone)) for code, zone in branches.items()
        },
    )


def policy_code_problems(database: Database, config: ServerConfig) -> list[str]:
    """Codes in the configuration that the database does not have.

    Item types and patron categories in account policies (blocked, in-house,
    security markers by type) and `[institution.CODE]` tables for an
    institution the database lacks: each would silently never apply.
    """
    with database.read() as session:
        known = {
            "item type": set(session.scalars(select(ItemType.code))),
            "patron category": set(session.scalars(select(PatronCategory.code))),
            "institution": set(session.scalars(select(Institution.code))),
        }
    problems = []

    def check(key: str, codes: Any, kind: str) -> None:
        for code in codes:
            if code not in known[kind]:
                have = ", ".join(sorted(known[kind])) or "none"
                problems.append(
                    f"{key}: {code!r} is not {'an' if kind[0] in 'aeiou' else 'a'} "
                    f"{kind} in the database (it has: {have}); it would never apply"
                )

    check("institution", config.institution, "institution")
    for index, account in enumerate(config.accounts):
        where = f"accounts[{index}] ({account.login}).policy"
        policy = account.policy
        check(f"{where}.blocked_item_types", policy.blocked_item_types, "item type")
        check(f"{where}.inhouse_item_types", policy.inhouse_item_types, "item type")
        check(f"{where}.security_markers", policy.security_markers, "item type")
        check(
            f"{where}.inhouse_patron_categories",
            policy.inhouse_patron_categories,
            "patron category",
        )
    return problems


def listener(reactor: Any, description: str, key: str) -> Any:
    """The endpoint a listen string describes (see `endpoint_from`).

    Raises:
        StartupError: naming the configuration key and what is wrong.
    """
    return endpoint_from(reactor, description, key)


def loan_rule_count(database: Database) -> int:
    """How many loan rules the database has: with none, nothing can be lent."""
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(LoanRule)) or 0)


@defer.inlineCallbacks
def start_server(
    config: ServerConfig,
    reactor: Any,
    *,
    listen: Sequence[str] | None = None,
    instance: str | None = None,
) -> Any:
    """Start listening as configured; fires with a `RunningServer`.

    `instance` (by default the `ILS_INSTANCE` environment variable, which the
    template unit ils-sip2@.service sets to its instance name) replaces
    `{instance}` in `metrics.listen` and `server.transaction_log`, so that
    processes started with one file have a metrics port and a log each.

    Raises:
        StartupError: the database is not ready for this configuration, or a
            listener cannot be set up.
    """
    instance = _checked_instance(instance or os.environ.get(INSTANCE_VARIABLE) or None)
    log_path = _transaction_log_path(config, instance)
    database = Database(
        config.database.url,
        pool_size=config.server.threads,
        busy_timeout=config.database.busy_timeout,
        sqlite_synchronous=config.database.sqlite_synchronous,
    )
    try:
        places = check_database(database, config)
        for problem in policy_code_problems(database, config):
            log.warn("configuration: {problem}", problem=problem)
        shortfall = descriptor_shortfall(config.server.max_connections)
        if shortfall is not None:
            log.warn("configuration: {problem}", problem=shortfall)
        circulation = circulation_for(database, places)
        listeners = configured_listeners(config, listen)
        # TLS files are read before anything listens, so that a wrong path
        # stops the start with its key instead of half a server.
        tls = {
            key: tls_options(settings.tls, f"{key}.tls")
            for key, settings in listeners
            if settings.tls is not None
        }
        transactions = TransactionLog(log_path) if log_path is not None else None
    except OSError as error:
        database.dispose()
        raise StartupError(
            f"server.transaction_log: cannot open {log_path}: {error.strerror}"
        ) from None
    except Exception:
        database.dispose()
        raise

    server = config.server
    threadpool, probe_pool, login_pool = _started_pools(reactor, config)
    running = RunningServer(
        config=config,
        database=database,
        threadpool=threadpool,
        probe_pool=probe_pool,
        logins=LoginSlots(login_pool, server.login_backlog),
        circulation=circulation,
        admission=Admission(
            max_connections=server.max_connections,
            max_failed_logins=server.max_failed_logins_per_address,
            failed_login_window=server.failed_login_window,
            max_unauthenticated_per_address=server.max_unauthenticated_per_address,
        ),
        health=DatabaseHealth(),
        metrics=ServerMetrics(),
        transactions=transactions,
        listen_override=listen,
        reactor=reactor,
    )
    _say_if_unwritable(running)
    running.metrics.watch(
        connections=running.connections,
        seats=running.admission.seats,
        health=running.health,
    )
    try:
        for key, settings in listeners:
            endpoint = endpoint_from(
                reactor, settings.endpoint, key, reuse_port=settings.reuse_port
            )
            listener = _make_listener(running, reactor, key, settings, tls.get(key))
            running.listeners.append(listener)
            try:
                listener.port = yield endpoint.listen(listener.protocol_factory())
            except CannotListenError as error:
                raise _cannot_listen(key, settings.endpoint, error, listeners) from None
        if config.metrics.listen:
            metrics_listen = for_instance(
                config.metrics.listen, "metrics.listen", instance
            )
            endpoint = endpoint_from(reactor, metrics_listen, "metrics.listen")
            try:
                operations_port = yield endpoint.listen(
                    operations_factory(
                        operations_site(
                            running.metrics.registry,
                            reactor=reactor,
                            threadpool=probe_pool,
                            database=database,
                            health=running.health,
                        )
                    )
                )
            except CannotListenError as error:
                raise _cannot_listen_metrics(
                    config.metrics.listen, metrics_listen, error, listeners, instance
                ) from None
            running.operations_port = operations_port
    except Exception:
        yield running.stop()
        raise
    running.check_database_later(reactor)
    return running


# The environment variable naming this process among several with one file,
# and the text in a setting that is replaced by it.
INSTANCE_VARIABLE = "ILS_INSTANCE"
INSTANCE_FIELD = "{instance}"


# An instance name goes into file paths and endpoint strings: letters, digits,
# `_`, `.` and `-` only (not dots alone), as systemd instance names usually are.
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _checked_instance(instance: str | None) -> str | None:
    """The instance name if it is safe to put into paths and endpoints.

    Raises:
        StartupError: naming ILS_INSTANCE and what is wrong with it.
    """
    if instance is None:
        return None
    if not _INSTANCE_NAME.fullmatch(instance) or not instance.strip("."):
        raise StartupError(
            f"{INSTANCE_VARIABLE}: {instance!r} is not an instance name; use 1 to "
            "64 ASCII letters, digits, '_', '.' or '-' (not dots alone), since it "
            "is put into file names and the metrics endpoint"
        )
    return instance


def for_instance(text: str, key: str, instance: str | None) -> str:
    """A setting with `{instance}` replaced by this process's instance name.

    Raises:
        StartupError: the setting has `{instance}` but no instance is named.
    """
    if INSTANCE_FIELD not in text:
        return text
    if instance is None:
        raise StartupError(
            f"{key}: {text!r} has {INSTANCE_FIELD}, but {INSTANCE_VARIABLE} is "
            "not set; the template unit ils-sip2@.service sets it to the "
            f"instance name (or start with {INSTANCE_VARIABLE}=NAME ils serve ...)"
        )
    return text.replace(INSTANCE_FIELD, instance)


def _transaction_log_path(config: ServerConfig, instance: str | None) -> Path | None:
    path = config.server.transaction_log
    if path is None:
        return None
    return Path(for_instance(str(path), "server.transaction_log", instance))


def _cannot_listen_metrics(
    configured: str,
    endpoint: str,
    error: CannotListenError,
    listeners: Sequence[tuple[str, ListenerConfig]],
    instance: str | None,
) -> StartupError:
    """A metrics listen failure; an instance sharing one file is told the fix."""
    problem = _cannot_listen("metrics.listen", endpoint, error, listeners)
    if instance is None or INSTANCE_FIELD in configured:
        return problem
    return StartupError(
        f"{problem}; each instance of a server that shares its SIP2 port needs "
        f"a metrics port of its own: put {INSTANCE_FIELD} in metrics.listen "
        "(docs/deployment.md, 'Several processes on one port')"
    )


def _cannot_listen(
    key: str,
    endpoint: str,
    error: CannotListenError,
    listeners: Sequence[tuple[str, ListenerConfig]],
) -> StartupError:
    """A listen failure naming the key, with the usual cause under systemd."""
    problem = getattr(error.socketError, "strerror", None) or str(error.socketError)
    hint = ""
    if any(settings.endpoint.startswith("systemd:") for _, settings in listeners):
        hint = (
            "; a systemd: listener is configured too: if its socket unit "
            "(ils-sip2server.socket) holds this port, remove this entry "
            "(with socket activation, leave [server] listen out; "
            "docs/deployment.md, section 1)"
        )
    return StartupError(f"{key}: cannot listen on {endpoint!r}: {problem}{hint}")


def circulation_for(database: Database, places: LibraryPlaces) -> SipCirculation:
    """The SIP2 mapping over the core, for the library's places."""
    return SipCirculation(
        Circulation(database),
        database=database,
        branch_zones=places.branch_zones,
        library_names=places.library_names,
    )


def _make_listener(
    running: RunningServer,
    reactor: Any,
    key: str,
    settings: ListenerConfig,
    tls: Any,
) -> Listener:
    server = running.config.server
    listener: Listener

    def new_session(connection_id: int) -> TerminalSession:
        # Read at each connection and login, so a reload reaches them.
        return TerminalSession(
            lambda: listener.accounts,
            running.circulation,
            admission=running.admission,
            health=running.health,
            connection_id=connection_id,
            status_before_login=listener.config.status_before_login,
            all_accounts=lambda: AccountBook(running.config.accounts),
        )

    factory = SipServerFactory(
        reactor=reactor,
        threadpool=running.threadpool,
        new_session=new_session,
        max_frame_bytes=server.max_frame_bytes,
        mask_patron_data=server.mask_patron_data,
        idle_timeout=(
            server.idle_timeout
            if settings.idle_timeout is None
            else settings.idle_timeout
        ),
        login_timeout=(
            server.login_timeout
            if settings.login_timeout is None
            else settings.login_timeout
        ),
        keepalive=keepalive_of(settings),
        proxied=settings.endpoint.startswith("haproxy:"),
        name=key,
        admission=running.admission,
        metrics=running.metrics,
        transactions=running.transactions,
        logins=running.logins,
    )
    listener = Listener(
        key=key,
        config=settings,
        accounts=book_for(
            settings,
            running.config.accounts,
            reserved_logins(listener for _, listener in running.configured_listeners()),
        ),
        factory=factory,
        tls=tls,
    )
    return listener
