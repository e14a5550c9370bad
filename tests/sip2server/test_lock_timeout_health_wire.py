"""A row lock that outlasts PostgreSQL's lock_timeout (SQLSTATE 55P03) refuses
that one request but does not mark the database down (issue #5, trial 3 G-F19):
98 still says online. Over real TCP on loopback, on PostgreSQL (the only engine
with row locks; skipped without ILS_TEST_POSTGRES_URL)."""

from __future__ import annotations

import psycopg
import pytest_twisted
from sqlalchemy.exc import OperationalError

from sip2server import app
from sip2server.health import DatabaseHealth, concerns_one_request
from tests.sip2server.conftest import ADA, ITEMS, server_config, stock_library
from tests.sip2server.test_stop_and_health import (
    UNAVAILABLE,
    _with_busy_timeout,
    checkout,
    logged_in,
)
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    in_thread,
    screen_messages,
)


@pytest_twisted.ensureDeferred
async def test_a_lock_timeout_refuses_the_request_and_98_stays_online(
    postgres_url: str,
) -> None:
    """With Ada's patron row held FOR UPDATE by another session, her 11 is
    refused (120, "not available just now") after the 0.5 s lock_timeout; the
    98 that follows says online (Y) and checkout ok (Y), the server counts one
    database error, and once the lock is gone the same 11 lends the item."""
    from twisted.internet import reactor  # noqa: PLC0415

    library = stock_library(postgres_url)
    config = _with_busy_timeout(server_config(postgres_url), 0.5)
    running = await app.start_server(config, reactor)
    outside = psycopg.connect(postgres_url.replace("+psycopg", ""))
    try:
        outside.execute(
            "SELECT id FROM patron WHERE barcode = %s FOR UPDATE", (ADA,)
        ).fetchall()
        terminal = await in_thread(logged_in, running)
        refused = await in_thread(terminal.exchange, checkout(ITEMS[0]))
        status = await in_thread(terminal.exchange, STATUS_FRAME)
        online, errors = running.health.online, running.health.errors
        outside.rollback()
        lent = await in_thread(terminal.exchange, checkout(ITEMS[0]))
        terminal.close()

        assert refused.startswith(b"120"), refused
        assert UNAVAILABLE in screen_messages(refused)
        # 98: online status, checkin ok, checkout ok (the first three flags).
        assert status.startswith(b"98YYY"), status
        assert (True, 1) == (online, errors)
        assert lent.startswith(b"121"), lent
    finally:
        outside.rollback()
        outside.close()
        await running.stop()
        library.database.dispose()


def test_only_lock_not_available_keeps_the_database_online() -> None:
    """`failed` with psycopg's LockNotAvailable (55P03) counts the error and
    keeps the database online; with ConnectionFailure (08006) or an error of
    no driver it marks the database down."""
    health = DatabaseHealth()
    lock = OperationalError("SELECT", {}, psycopg.errors.LockNotAvailable("held"))
    assert concerns_one_request(lock)
    health.failed(lock)
    assert (True, 1) == (health.online, health.errors)

    for original in (psycopg.errors.ConnectionFailure("gone"), OSError("gone")):
        other = DatabaseHealth()
        other.failed(OperationalError("SELECT", {}, original))
        assert (False, 1) == (other.online, other.errors)
