"""The operations endpoint: Prometheus metrics and /healthz over HTTP on loopback,
and what a database outage does to them and to the status reply (98).

Metrics are scraped over real HTTP from a running server; the outage is a real
one on PostgreSQL (connections refused and cut, then allowed again).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from ils.db import Database
from sip2server.health import DatabaseHealth
from tests.conftest import postgres_admin_url
from tests.sip2server.conftest import (
    ADA,
    ITEMS,
    METRICS,
    Launcher,
    stock_library,
    target,
)
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    checkout_body,
    in_thread,
)


def fetch(address: tuple[str, int], path: str) -> tuple[int, str]:
    """GET http://address/path; the status and the body (also for 503)."""
    url = f"http://{address[0]}:{address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus' text format, or None if absent."""
    rendered = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = "^" + re.escape(name + (f"{{{rendered}}}" if labels else "")) + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return None if match is None else float(match.group(1))


@pytest_twisted.ensureDeferred
async def test_metrics_count_messages_logins_and_connections(
    metered: Launcher,
) -> None:
    """A scrape shows the checkout by result, its latency, the login and the account."""
    running = await metered.start()
    address = running.operations_address()
    assert address is not None

    def talk() -> tuple[int, str, str]:
        with RawTerminal(target(running)) as terminal:
            terminal.login()
            terminal.exchange(STATUS_FRAME)
            assert terminal.exchange(checkout_body(ADA, ITEMS[0]) + b"\r").startswith(
                b"121"
            )
            assert terminal.exchange(checkout_body(ADA, "nope") + b"\r").startswith(
                b"120"
            )
            terminal.exchange(LOGIN_FRAME.replace(b"kiosk-secret", b"wrong"))
            terminal.login()
            status, during = fetch(address, "/metrics")
        return status, during, ""

    status, text, _ = await in_thread(talk)

    assert 200 == status
    assert 1.0 == sample(text, "sip2_messages_total", command="checkout", result="ok")
    assert 1.0 == sample(
        text, "sip2_messages_total", command="checkout", result="refused"
    )
    assert 1.0 == sample(
        text, "sip2_messages_total", command="sc_acs_status", result="ok"
    )
    assert 2.0 == sample(
        text, "sip2_request_duration_seconds_count", command="checkout"
    )
    assert 2.0 == sample(text, "sip2_logins_total", result="accepted")
    assert 1.0 == sample(text, "sip2_logins_total", result="refused")
    assert 1.0 == sample(text, "sip2_account_connections", account="kiosk1")
    assert 1.0 == sample(text, "sip2_connections", listener="server.listen[0]")
    assert 1.0 == sample(text, "sip2_database_up")
    assert 0.0 == sample(text, "sip2_database_errors_total")


@pytest_twisted.ensureDeferred
async def test_health_is_200_while_the_database_answers(metered: Launcher) -> None:
    """GET /healthz answers 200 "ok" from a server whose database is there."""
    running = await metered.start()
    address = running.operations_address()
    assert address is not None

    status, body = await in_thread(fetch, address, "/healthz")

    assert (200, "ok\n") == (status, body)


@pytest_twisted.ensureDeferred
async def test_health_is_503_when_the_database_does_not_answer() -> None:
    """/healthz on a database nobody listens for answers 503, and says why."""
    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.python.threadpool import ThreadPool  # noqa: PLC0415

    from sip2server.metrics import ServerMetrics, operations_site  # noqa: PLC0415

    # Port 1 on loopback: nothing listens there, so every connection is refused.
    database = Database("postgresql://ils@127.0.0.1:1/ils")
    threadpool = ThreadPool(minthreads=1, maxthreads=1, name="health-test")
    threadpool.start()
    health = DatabaseHealth()
    site = operations_site(
        ServerMetrics().registry,
        reactor=reactor,
        threadpool=threadpool,
        database=database,
        health=health,
    )
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        status, body = await in_thread(
            fetch, ("127.0.0.1", port.getHost().port), "/healthz"
        )
    finally:
        await port.stopListening()
        threadpool.stop()
        database.dispose()

    assert (503, "database unavailable\n") == (status, body)
    assert not health.online


def _block_connections(admin_url: str, name: str, *, allow: bool) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(
                sa.text(
                    f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS '
                    + ("true" if allow else "false")
                )
            )
            if not allow:
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
    finally:
        engine.dispose()


@pytest_twisted.ensureDeferred
async def test_database_outage_shows_in_98_metrics_and_health_then_passes(
    database_url: str,
) -> None:
    """PostgreSQL refusing connections: 98 offline, errors counted, 503; then back."""
    admin_url = postgres_admin_url()
    if database_url.startswith("sqlite") or admin_url is None:
        pytest.skip("the outage is staged on PostgreSQL")
    library = stock_library(database_url)
    library.database.dispose()
    name = sa.make_url(database_url).database
    assert name is not None
    servers = Launcher(database_url, None, [], metrics=METRICS)
    running = await servers.start()
    address = running.operations_address()
    assert address is not None

    def talk() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with RawTerminal(target(running)) as terminal:
            terminal.login()
            seen["before"] = terminal.exchange(STATUS_FRAME)
            _block_connections(admin_url, name, allow=False)
            seen["checkout"] = terminal.exchange(checkout_body(ADA, ITEMS[0]) + b"\r")
            seen["during"] = terminal.exchange(STATUS_FRAME)
            seen["health_during"] = fetch(address, "/healthz")
            seen["metrics"] = fetch(address, "/metrics")[1]
            _block_connections(admin_url, name, allow=True)
            seen["health_after"] = fetch(address, "/healthz")
            seen["after"] = terminal.exchange(STATUS_FRAME)
        return seen

    try:
        seen = await in_thread(talk)
    finally:
        _block_connections(admin_url, name, allow=True)
        for started in servers.started:
            await started.stop()

    # 98: online status, checkin ok, checkout ok are its first three flags.
    assert seen["before"].startswith(b"98YYY")
    assert seen["checkout"].startswith(b"120")
    assert b"not available" in seen["checkout"]
    assert seen["during"].startswith(b"98NNN")
    assert 503 == seen["health_during"][0]
    assert 1.0 == sample(seen["metrics"], "sip2_database_errors_total")
    assert 0.0 == sample(seen["metrics"], "sip2_database_up")
    assert 1.0 == sample(
        seen["metrics"], "sip2_messages_total", command="checkout", result="unavailable"
    )
    assert 200 == seen["health_after"][0]
    assert seen["after"].startswith(b"98YYY")
