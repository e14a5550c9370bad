"""Stopping, lock timeouts, an unwritable database and the operations port (#5,
second adversarial trial F18, F19, F12, F11), over real TCP on loopback.

- A stop (SIGTERM, Ctrl-C) answers and logs the requests in hand, and reads
  no new ones.
- On PostgreSQL a row another session holds is waited for only as long as
  `[database] busy_timeout`, then the request is refused "not available",
  while other terminals are served.
- A SQLite file that cannot be written makes /healthz 503 and 98 offline from
  the start, and service resumes by itself once the file is writable.
- The metrics and health port keeps a bounded number of connections.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import pytest_twisted
from sqlalchemy import text

from ils.db import Database
from sip2server import app
from sip2server.app import RunningServer
from sip2server.config import ServerConfig
from tests.sip2server.conftest import ADA, ITEMS, server_config, stock_library
from tests.sip2server.test_metrics import fetch
from tests.sip2server.test_transports import Launcher, target
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    RawTerminal,
    checkout_body,
    in_thread,
    screen_messages,
)

UNAVAILABLE = "The library system is not available just now; please try again."


def item_info(item: str) -> bytes:
    """A 17 for `item`, with its terminator."""
    return b"1720260101    120000AOCITY|AB" + item.encode() + b"|\r"


def checkout(item: str) -> bytes:
    """An 11 of `item` to Ada, with its terminator."""
    return checkout_body(ADA, item) + b"\r"


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the reactor run until `condition` holds (fails after 15 s)."""
    from twisted.internet import reactor, task  # noqa: PLC0415

    for _ in range(1500):
        if condition():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"never happened: {what}")


def logged_in(running: RunningServer) -> RawTerminal:
    """A terminal connected to the server and logged in."""
    terminal = RawTerminal(target(running))
    terminal.login()
    return terminal


def _with_busy_timeout(config: ServerConfig, seconds: float) -> ServerConfig:
    """The configuration with `[database] busy_timeout = seconds`."""
    database = config.database.model_copy(update={"busy_timeout": seconds})
    return config.model_copy(update={"database": database})


def _database_file(launched: Launcher) -> Path:
    return Path(launched.database_url.removeprefix("sqlite:///"))


# --- F18: a stop answers the requests in hand ---------------------------------


@pytest_twisted.ensureDeferred
async def test_stop_answers_and_logs_the_request_in_hand(
    metered: Launcher, tmp_path: Path
) -> None:
    """A checkout in hand when the stop begins gets its 12 and its log line; a
    request sent after the stop began is neither read nor carried out."""
    log_path = tmp_path / "transactions.log"
    running = await metered.start(server={"transaction_log": str(log_path)})
    first = await in_thread(logged_in, running)
    second = await in_thread(logged_in, running)
    # Another process holds SQLite's write lock, so the checkout waits in hand.
    holder = sqlite3.connect(_database_file(metered), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answer = in_thread(first.exchange, checkout(ITEMS[0]))
        await until(lambda: running.threadpool.in_hand == 1, "checkout in hand")
        stopping = running.stop()
        assert isinstance(running.threadpool, app.RequestThreads)
        pool = running.threadpool
        await until(lambda: pool.closed, "the stop waits for the pool")
        second.send(checkout(ITEMS[1]))
        assert not stopping.called
    finally:
        holder.rollback()
        holder.close()
    reply = await answer
    await stopping
    assert reply.startswith(b"121"), reply
    # The second terminal's checkout was not read: closed without a reply.
    with pytest.raises(ConnectionError):
        await in_thread(second.reply)
    first.close()
    second.close()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(line["command"], line["outcome"]) for line in lines] == [
        ("checkout", "ok")
    ]
    assert lines[0]["item"].endswith(ITEMS[0][-4:])
    with sqlite3.connect(_database_file(metered)) as check:
        on_loan = check.execute(
            "SELECT item.barcode FROM loan JOIN item ON item.id = loan.item_id "
            "WHERE loan.returned_at IS NULL"
        ).fetchall()
    assert on_loan == [(ITEMS[0],)]


@pytest_twisted.ensureDeferred
async def test_stop_gives_up_on_a_request_after_its_grace(metered: Launcher) -> None:
    """A request still in hand after `stop_grace` seconds does not hold the stop
    up: the connection is closed, and the stop ends."""
    from twisted.internet import reactor  # noqa: PLC0415

    config = _with_busy_timeout(metered.config(), 1.0)
    running = await app.start_server(config, reactor)
    metered.started.append(running)
    running.stop_grace = 0.1
    terminal = await in_thread(logged_in, running)
    holder = sqlite3.connect(_database_file(metered), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answer = in_thread(terminal.exchange, checkout(ITEMS[0]))
        await until(lambda: running.threadpool.in_hand == 1, "checkout in hand")
        await running.stop()
        with pytest.raises(ConnectionError):
            await answer
    finally:
        holder.rollback()
        holder.close()
        terminal.close()


# --- F19: a lock timeout on PostgreSQL -----------------------------------------


def _show(database: Database, setting: str) -> str:
    with database.read() as session:
        return str(session.execute(text(f"SHOW {setting}")).scalar())


def test_postgres_sessions_get_the_busy_timeout_as_lock_timeout(
    postgres_url: str,
) -> None:
    """busy_timeout 2.5 s becomes lock_timeout 2500 ms; 0 becomes 1 ms, not "none"."""
    for seconds, expected in ((2.5, "2500ms"), (0.0, "1ms")):
        database = Database(postgres_url, pool_size=1, busy_timeout=seconds)
        try:
            assert _show(database, "lock_timeout") == expected
        finally:
            database.dispose()


@pytest_twisted.ensureDeferred
async def test_locked_item_row_is_refused_after_the_timeout_while_others_are_served(
    postgres_url: str,
) -> None:
    """With another session holding the item's row FOR UPDATE, its checkout is
    refused "not available" after busy_timeout, and a 17 of another item is
    answered while the checkout still waits."""
    from twisted.internet import reactor  # noqa: PLC0415

    library = stock_library(postgres_url)
    timeout = 3.0
    config = _with_busy_timeout(server_config(postgres_url), timeout)
    running = await app.start_server(config, reactor)
    outside = psycopg.connect(postgres_url.replace("+psycopg", ""))
    try:
        outside.execute(
            "SELECT id FROM item WHERE barcode = %s FOR UPDATE", (ITEMS[0],)
        ).fetchall()
        lender = await in_thread(logged_in, running)
        reader = await in_thread(logged_in, running)
        started = reactor.seconds()
        refused = in_thread(lender.exchange, checkout(ITEMS[0]))
        await until(lambda: running.threadpool.in_hand == 1, "checkout in hand")
        info = await in_thread(reader.exchange, item_info(ITEMS[1]))
        assert info.startswith(b"18"), info
        assert not refused.called, "the checkout should still wait for the lock"
        reply = await refused
        waited = reactor.seconds() - started
        assert reply.startswith(b"120"), reply
        assert UNAVAILABLE in screen_messages(reply)
        assert waited >= timeout - 0.1
        lender.close()
        reader.close()
    finally:
        outside.rollback()
        outside.close()
        await running.stop()
        library.database.dispose()


# --- F12: a SQLite file that cannot be written --------------------------------


def _make_read_only(path: Path) -> Callable[[], None]:
    """Make `path` unwritable for this process; returns what undoes it.

    As root, file modes are ignored, so the immutable attribute stands in (a
    skip where chattr is missing or the file system lacks it).
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        return lambda: path.chmod(mode)
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: cannot make a file read-only")
    made = subprocess.run(
        [chattr, "+i", str(path)], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.strip()}")
    return lambda: subprocess.run([chattr, "-i", str(path)], check=True)


@pytest_twisted.ensureDeferred
async def test_read_only_database_fails_health_and_recovers_when_writable(
    metered: Launcher,
) -> None:
    """Started on a read-only file: /healthz 503, 98 offline, an 11 "not
    available"; once the file is writable, /healthz 200 and the 11 is lent
    without a restart."""
    path = _database_file(metered)
    undo = _make_read_only(path)
    try:
        running = await metered.start()
        assert not running.health.online
        assert "readonly" in (running.health.problem or "")
        address = running.operations_address()
        assert address is not None
        status, body = await in_thread(fetch, address, "/healthz")
        assert (status, body) == (503, "database unavailable\n")
        terminal = await in_thread(logged_in, running)
        status_reply = await in_thread(terminal.exchange, STATUS_FRAME)
        # 98, then the online flag (the first of six Y/N): N.
        assert status_reply.startswith(b"98N"), status_reply
        refused = await in_thread(terminal.exchange, checkout(ITEMS[0]))
        assert refused.startswith(b"120"), refused
        assert UNAVAILABLE in screen_messages(refused)
    finally:
        undo()
    status, body = await in_thread(fetch, address, "/healthz")
    assert (status, body) == (200, "ok\n")
    lent = await in_thread(terminal.exchange, checkout(ITEMS[0]))
    assert lent.startswith(b"121"), lent
    status_reply = await in_thread(terminal.exchange, STATUS_FRAME)
    assert status_reply.startswith(b"98Y"), status_reply
    terminal.close()


# --- F11: the operations port's connections ------------------------------------


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes `sock` (read end) within 15 s."""
    sock.settimeout(15)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest_twisted.ensureDeferred
async def test_operations_port_closes_connections_beyond_its_cap(
    metered: Launcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the cap a new metrics connection is closed at once, while SIP2
    terminals still connect; once the others close, /healthz answers again."""
    monkeypatch.setattr(app, "OPERATIONS_MAX_CONNECTIONS", 4)
    running = await metered.start()
    address = running.operations_address()
    assert address is not None
    assert running.operations_port is not None
    capped = running.operations_port.factory  # type: ignore[attr-defined]

    def crowd() -> tuple[bool, bytes]:
        idle = [socket.create_connection(address, 5) for _ in range(4)]
        try:
            over = socket.create_connection(address, 5)
            refused = _closed_by_server(over)
            over.close()
            with logged_in(running) as terminal:
                status = terminal.exchange(STATUS_FRAME)
            return refused, status
        finally:
            for sock in idle:
                sock.close()

    refused, status = await in_thread(crowd)
    assert refused
    assert status.startswith(b"98Y"), status
    await until(lambda: not capped.protocols, "the idle connections closed")
    assert await in_thread(fetch, address, "/healthz") == (200, "ok\n")


@pytest_twisted.ensureDeferred
async def test_operations_port_closes_idle_connections(
    metered: Launcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTTP connection that sends nothing is closed after the idle timeout."""
    monkeypatch.setattr(app, "OPERATIONS_IDLE_TIMEOUT", 0.3)
    running = await metered.start()
    address = running.operations_address()
    assert address is not None

    def idle() -> bool:
        with socket.create_connection(address, 5) as sock:
            return _closed_by_server(sock)

    assert await in_thread(idle)


def test_operations_port_defaults() -> None:
    """By default 32 connections at most, each closed after 10 idle seconds."""
    assert (app.OPERATIONS_MAX_CONNECTIONS, app.OPERATIONS_IDLE_TIMEOUT) == (32, 10.0)
