"""Assembling a running SIP2 server from a configuration.

Layer: `sip2server`. Builds the database, the circulation services, the thread
pool, the listeners and the operations endpoint (metrics, health); `ils serve`
and the end-to-end tests both start the server through `start_server`, so the
tests run what operators run. The running-server record and its graceful stop
live in `sip2server.running`, the start-up checks against the database in
`sip2server.startup_checks`; their names are re-exported here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.python.threadpool import ThreadPool

from ils.circulation import Circulation
from ils.db import Database
from sip2server.accounts import AccountBook, Admission, address_key
from sip2server.answers.patrons import REPLY_BYTES
from sip2server.config import ListenerConfig, ServerConfig
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
from sip2server.running import (
    PROBE_INTERVAL,
    REPLY_FLUSH_GRACE,
    STOP_GRACE,
    RequestThreads,
    RunningServer,
    configured_listeners,
)
from sip2server.server import LoginSlots, SipServerFactory
from sip2server.session import TerminalSession
from sip2server.startup_checks import (
    LibraryPlaces,
    check_database,
    loan_rule_count,
    policy_code_problems,
)
from sip2server.thread_wait import ThreadWait, thread_wait_budget
from sip2server.txlog import TransactionLog

__all__ = [
    "PROBE_INTERVAL",
    "REPLY_FLUSH_GRACE",
    "STOP_GRACE",
    "LibraryPlaces",
    "RequestThreads",
    "RunningServer",
    "StartupError",
    "check_database",
    "configured_listeners",
    "loan_rule_count",
    "policy_code_problems",
    "start_server",
]

# The metrics and health port: at most this many connections at once (more are
# closed as they come), each closed after this many idle seconds, so that it
# cannot use up the file descriptors the terminals need.
OPERATIONS_MAX_CONNECTIONS = 32
OPERATIONS_IDLE_TIMEOUT = 10.0
# Of those, at most this many from one address (an IPv6 /64) at once, so a
# client that reconnects as soon as it is closed cannot hold every slot and
# keep a monitor elsewhere from /healthz (#5).
# TODO(#5): four or more addresses together can still take all 32 slots until
# the port's request deadline closes them.
OPERATIONS_MAX_PER_ADDRESS = 8

log = Logger(namespace="sip2server")


class _CappedFactory(WrappingFactory):
    """Wraps a factory so that at most `limit` of its connections are open, and
    at most `per_address` of them from one address (`address_key`)."""

    noisy = False

    def __init__(self, wrapped: Any, limit: int, per_address: int) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self.limit = limit
        self.per_address = per_address
        self.refused = 0
        # Connections open per address, and each open connection's address.
        self._open: dict[str, int] = {}
        self._keys: dict[Any, str] = {}

    def buildProtocol(self, addr: Any) -> Any:
        key = address_key(str(getattr(addr, "host", addr)))
        full = len(self.protocols) >= self.limit
        if full or self._open.get(key, 0) >= self.per_address:
            # None: the reactor closes the new connection at once.
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warn(
                    "metrics/health port: {limit} connections open, or "
                    "{per_address} from {host}; closing new ones ({count} so far)",
                    limit=self.limit,
                    per_address=self.per_address,
                    host=key,
                    count=self.refused,
                )
            return None
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self._open[key] = self._open.get(key, 0) + 1
            self._keys[protocol] = key
        return protocol

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)  # type: ignore[no-untyped-call]
        key = self._keys.pop(p, None)
        if key is not None:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]


def operations_factory(site: Any) -> Any:
    """The metrics and health site, capped in connections and idle time."""
    site.timeOut = OPERATIONS_IDLE_TIMEOUT
    # Idle time alone lets a client keep a slot by sending a header line now
    # and then; each whole request has a deadline too (#5, trial 3 M1).
    with_request_deadline(site)
    return _CappedFactory(site, OPERATIONS_MAX_CONNECTIONS, OPERATIONS_MAX_PER_ADDRESS)


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


def listener(reactor: Any, description: str, key: str) -> Any:
    """The endpoint a listen string describes (see `endpoint_from`).

    Raises:
        StartupError: naming the configuration key and what is wrong.
    """
    return endpoint_from(reactor, description, key)


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
        circulation = circulation_for(
            database, places, reply_bytes=config.server.max_frame_bytes
        )
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


def circulation_for(
    database: Database, places: LibraryPlaces, *, reply_bytes: int = REPLY_BYTES
) -> SipCirculation:
    """The SIP2 mapping over the core, for the library's places; a 64 with lists
    is kept to `reply_bytes` (the server's `max_frame_bytes`)."""
    return SipCirculation(
        Circulation(database),
        database=database,
        branch_zones=places.branch_zones,
        library_names=places.library_names,
        reply_bytes=reply_bytes,
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
        thread_wait=ThreadWait(
            budget=thread_wait_budget(running.config.database.busy_timeout),
            circulation=lambda: running.circulation,
        ),
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
