"""A request that waits too long for a database thread is refused, not queued
into another lock wait (issue #5, trial 3 G-F19). Over real TCP on loopback,
on PostgreSQL (the only engine with row locks here; skipped without
ILS_TEST_POSTGRES_URL)."""

from __future__ import annotations

import time

import psycopg
import pytest_twisted

from sip2server import app
from sip2server.config import ServerConfig
from sip2server.protocol import CheckoutResponse, ItemInformationResponse, decode
from sip2server.thread_wait import thread_wait_budget
from tests.sip2server.conftest import ADA, ITEMS, server_config, stock_library
from tests.sip2server.test_stop_and_health import (
    UNAVAILABLE,
    _with_busy_timeout,
    checkout,
    item_info,
    logged_in,
    until,
)
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    RawTerminal,
    in_thread,
    screen_messages,
)

# Two database threads, and a busy timeout (PostgreSQL's lock_timeout) long
# enough that the budget (half of it) leaves a wide margin either side.
THREADS = 2
BUSY_TIMEOUT = 3.0


def _with_threads(config: ServerConfig, threads: int) -> ServerConfig:
    """The configuration with `[server] threads = threads`."""
    server = config.server.model_copy(update={"threads": threads})
    return config.model_copy(update={"server": server})


def _timed_exchange(terminal: RawTerminal, frame: bytes) -> tuple[bytes, float]:
    """The reply to `frame` and the monotonic time it arrived."""
    reply = terminal.exchange(frame)
    return reply, time.monotonic()


def test_the_budget_is_half_the_busy_timeout_and_at_least_a_second() -> None:
    """With the default busy timeout of 5 s a request may wait 2.5 s for a
    thread; with a busy timeout of 0.3 s, 1 s, not 0.15 s."""
    assert 2.5 == thread_wait_budget(5.0)
    assert 1.0 == thread_wait_budget(0.3)


@pytest_twisted.ensureDeferred
async def test_requests_queued_behind_lock_waits_are_refused_not_waited_again(
    postgres_url: str,
) -> None:
    """With Ada's row held FOR UPDATE and two database threads, four terminals'
    11s for her make only two lock waits and all four get a well-formed 120 "not
    available just now"; meanwhile a fifth terminal logs in and has its 99
    answered before any lock wait ends, and its 17 for an unrelated item gets a
    well-formed 18 before a second lock wait could have ended; once the lock is
    gone those items are all still available and an 11 lends one."""
    from twisted.internet import reactor  # noqa: PLC0415

    library = stock_library(postgres_url)
    config = _with_threads(
        _with_busy_timeout(server_config(postgres_url), BUSY_TIMEOUT), THREADS
    )
    running = await app.start_server(config, reactor)
    outside = psycopg.connect(postgres_url.replace("+psycopg", ""))
    locked_items = ITEMS[: THREADS + 2]
    terminals = [await in_thread(logged_in, running) for _ in locked_items]
    try:
        outside.execute(
            "SELECT id FROM patron WHERE barcode = %s FOR UPDATE", (ADA,)
        ).fetchall()
        errors_before = running.health.errors

        # Every 11 at once: two take the threads and wait on the lock, the
        # other two queue behind them.
        started = time.monotonic()
        waits = [
            in_thread(_timed_exchange, terminal, checkout(item))
            for terminal, item in zip(terminals, locked_items, strict=True)
        ]
        await until(
            lambda: running.threadpool.in_hand == len(locked_items),
            "every 11 handed to the database threads",
        )

        # An unrelated terminal: its login and 99 use no database thread.
        other = await in_thread(logged_in, running)
        status, status_at = await in_thread(_timed_exchange, other, STATUS_FRAME)
        unrelated, unrelated_at = await in_thread(
            _timed_exchange, other, item_info(ITEMS[6])
        )
        refusals = [await wait for wait in waits]
        lock_waits = running.health.errors - errors_before

        outside.rollback()
        shelved = [
            await in_thread(other.exchange, item_info(item)) for item in locked_items
        ]
        lent = await in_thread(terminals[0].exchange, checkout(locked_items[0]))
        other.close()

        for reply, _ in refusals:
            assert isinstance(decode(reply).message, CheckoutResponse), reply
            assert reply.startswith(b"120"), reply
            assert [UNAVAILABLE] == screen_messages(reply), reply
        # Only the requests that got a thread waited on the lock.
        assert THREADS == lock_waits
        assert status.startswith(b"98"), status
        assert status_at < min(at for _, at in refusals)
        # A lock wait lasts at least BUSY_TIMEOUT, so before the fix the 17
        # could not be answered sooner than two of them after `started`.
        assert isinstance(decode(unrelated).message, ItemInformationResponse)
        assert unrelated_at - started < 2 * BUSY_TIMEOUT
        # Refused (it too waited past the budget) or answered: well formed.
        assert ITEMS[6].encode() in unrelated or UNAVAILABLE in screen_messages(
            unrelated
        )
        # 18 with circulation status 03: each locked item is still available.
        assert all(reply.startswith(b"1803") for reply in shelved), shelved
        assert lent.startswith(b"121"), lent
    finally:
        outside.rollback()
        outside.close()
        for terminal in terminals:
            terminal.close()
        await running.stop()
        library.database.dispose()
