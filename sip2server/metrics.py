"""Prometheus metrics and the health check, served over HTTP on their own port.

Layer: `sip2server`. Uses prometheus-client and `twisted.web`; the server
records into `ServerMetrics` and never imports this module's HTTP part.

Each running server has its own registry, so two servers in one process (the
tests start many) never mix their figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ils.db import Database
from sip2server.health import DatabaseHealth

# Seconds: a sorter gives up after about one second for a 17 and 09 pair.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ServerMetrics:
    """What the server counts: messages, their latency, logins and errors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._messages = Counter(
            "sip2_messages",
            "Requests answered, by command (BX name) and result "
            "(ok, refused, unsupported, unavailable, busy, error)",
            ["command", "result"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "sip2_request_duration_seconds",
            "Time from a request being read to its reply being written",
            ["command"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._logins = Counter(
            "sip2_logins", "Logins (93), by result", ["result"], registry=self.registry
        )
        self._database_errors = Counter(
            "sip2_database_errors",
            "Requests refused because the database could not be reached",
            registry=self.registry,
        )
        self._protocol_errors = Counter(
            "sip2_protocol_errors",
            "Frames that could not be read (answered 96 or a negative reply)",
            registry=self.registry,
        )

    def answered(self, command: str, result: str, seconds: float) -> None:
        """One request answered."""
        self._messages.labels(command=command, result=result).inc()
        self._latency.labels(command=command).observe(max(seconds, 0.0))

    def login(self, ok: bool) -> None:
        """One login answered."""
        self._logins.labels(result="accepted" if ok else "refused").inc()

    def database_error(self) -> None:
        """One request met an unreachable database."""
        self._database_errors.inc()

    def protocol_error(self) -> None:
        """One frame could not be read."""
        self._protocol_errors.inc()

    def watch(
        self,
        *,
        connections: Callable[[], Mapping[str, int]],
        seats: Callable[[], Mapping[str, int]],
        health: DatabaseHealth,
    ) -> None:
        """Report gauges read at each scrape: connections and the database state."""
        self.registry.register(_Gauges(connections, seats, health))


class _Gauges:
    """A collector whose values are read when Prometheus scrapes."""

    def __init__(
        self,
        connections: Callable[[], Mapping[str, int]],
        seats: Callable[[], Mapping[str, int]],
        health: DatabaseHealth,
    ) -> None:
        self._connections = connections
        self._seats = seats
        self._health = health

    def collect(self) -> Iterator[Metric]:
        per_listener = GaugeMetricFamily(
            "sip2_connections",
            "Open terminal connections, by listener",
            labels=["listener"],
        )
        for listener, count in self._connections().items():
            per_listener.add_metric([listener], count)
        yield per_listener

        per_account = GaugeMetricFamily(
            "sip2_account_connections",
            "Connections logged in, by SIP account",
            labels=["account"],
        )
        for account, count in sorted(self._seats().items()):
            per_account.add_metric([account], count)
        yield per_account

        yield GaugeMetricFamily(
            "sip2_database_up",
            "1 when the last request or probe reached the database, else 0",
            value=1 if self._health.online else 0,
        )


class MetricsPage(Resource):
    """GET /metrics: the registry in Prometheus' text format."""

    isLeaf = True  # noqa: N815 (Twisted's attribute name)

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._registry)


class HealthPage(Resource):
    """GET /healthz: 200 when the database answers `SELECT 1`, 503 when not.

    For load balancers and systemd watchdogs: a server whose database is down
    still answers terminals (with refusals), but should get no new ones. The
    probe runs on its own thread pool, not behind terminals' requests.
    """

    isLeaf = True  # noqa: N815 (Twisted's attribute name)

    def __init__(
        self,
        reactor: Any,
        threadpool: ThreadPool,
        database: Database,
        health: DatabaseHealth,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._threadpool = threadpool
        self._database = database
        self._health = health

    def render_GET(self, request: Request) -> Any:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        deferred = deferToThreadPool(
            self._reactor, self._threadpool, self._health.probe, self._database
        )

        def answer(ok: bool) -> None:
            request.setResponseCode(200 if ok else 503)
            request.write(b"ok\n" if ok else b"database unavailable\n")
            request.finish()

        def fault(failure: Failure) -> None:
            request.setResponseCode(503)
            request.write(b"health check failed\n")
            request.finish()

        deferred.addCallbacks(answer, fault)
        return NOT_DONE_YET


def operations_site(
    registry: CollectorRegistry,
    *,
    reactor: Any,
    threadpool: ThreadPool,
    database: Database,
    health: DatabaseHealth,
) -> Any:
    """The HTTP site with /metrics and /healthz."""
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"healthz", HealthPage(reactor, threadpool, database, health))
    site = Site(root)
    site.noisy = False
    return site
