"""Faults under load: the server killed, a thousand idle connections, PostgreSQL lost.

Each test runs `ils serve` as its own process, exactly as an operator starts
it, and drives it with blocking terminals over real TCP on loopback. The
database is a real SQLite file or PostgreSQL database, checked afterwards with
SQLAlchemy, never through the server under test. The single-terminal outage
(98 offline, metrics, /healthz) is in test_metrics; here several terminals
keep lending and returning while PostgreSQL's backends are killed.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ils.models import Item, Loan, Patron
from tests.conftest import REPO_ROOT, postgres_admin_url
from tests.ils.factories import Library, build_library
from tests.sip2server.conftest import REFERENCE_ITEM, stock_library
from tests.sip2server.port_terminal import Terminal
from tests.sip2server.test_metrics import _block_connections
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    checkout_body,
    sip_now,
)

LISTENING = re.compile(r"SIP2 server listening on 127\.0\.0\.1:(\d+)")
CONFIG = """\
[server]
threads = 4

[database]
url = "sqlite:///unused"

[[accounts]]
login = "kiosk1"
password = "kiosk-secret"
institution = "CITY"
location = "NORTH"
"""
TERMINALS = 4
ITEMS_EACH = 8
# Replies seen before the server is killed: well into the terminals' work.
KILL_AFTER = 12
CONTESTED = "31234000009991"
IDLE = 1_000


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class ServerProcess:
    """`ils serve` in its own process, on a free loopback port."""

    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def serve(database_url: str, folder: Path) -> ServerProcess:
    """Start `ils serve` on the database and wait for its listening line."""
    config = folder / "faults.toml"
    config.write_text(CONFIG)
    process = subprocess.Popen(
        [
            *[sys.executable, "-m", "ils.cli", "serve", "--config", str(config)],
            *[
                "--db",
                database_url,
                "--listen",
                # The listeners' default backlog, as a shipped server has it.
                "tcp:0:interface=127.0.0.1",
            ],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_raise_open_files,  # noqa: PLW1509 (before any thread runs in it)
    )
    assert process.stdout is not None
    lines: list[str] = []
    port = None
    for line in process.stdout:
        lines.append(line)
        match = LISTENING.search(line)
        if match:
            port = int(match.group(1))
            break
    if port is None:
        process.kill()
        pytest.fail(f"the server did not start: {''.join(lines)}")
    running = ServerProcess(process, port, lines)
    # Keep reading, so a full pipe never blocks the server's logging.
    threading.Thread(
        target=lambda: running.output.extend(process.stdout or []), daemon=True
    ).start()
    return running


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Server processes a test starts; each is killed at the end if still running."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


def _patron(number: int) -> str:
    return f"2123400000{number:04d}"


def _item(terminal: int, number: int) -> str:
    return f"3123400050{terminal:02d}{number:02d}"


def loan_library(database_url: str) -> Library:
    """The stock library, plus a patron and eight items per terminal, one contested."""
    library = stock_library(database_url)
    for terminal in range(TERMINALS):
        # CHILD patrons may have ten loans (the catch-all rule); ADULT only three.
        library.add_patron(_patron(100 + terminal), category="CHILD")
        for number in range(ITEMS_EACH):
            library.add_item(_item(terminal, number))
    library.add_item(CONTESTED)
    return library


@dataclass
class Outcomes:
    """Replies seen by the terminals: (patron, item) per ok=1 and per ok=0."""

    lent: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    errors: list[AssertionError] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)

    def record(self, patron: str, item: str, reply: bytes) -> None:
        with self.condition:
            assert reply.startswith(b"12"), reply
            (self.lent if reply[2:3] == b"1" else self.refused).append((patron, item))
            self.condition.notify_all()

    def seen(self) -> int:
        return len(self.lent) + len(self.refused)


def _lend(port: int, terminal: int, outcomes: Outcomes) -> None:
    # Until the server dies: an item that is not for loan (always refused, so
    # every terminal that got a reply got a refusal), the contested one, and
    # the terminal's own items.
    patron = _patron(100 + terminal)
    items = [_item(terminal, n) for n in range(ITEMS_EACH)]
    work = [REFERENCE_ITEM, CONTESTED, *items]
    try:
        client = Terminal(port)
        client.login()
        for item in work:
            reply = client.send(checkout_body(patron, item) + b"\r")
            outcomes.record(patron, item, reply)
    except (ConnectionError, OSError):
        # The server was killed: what was not answered is not counted.
        return
    except AssertionError as error:
        outcomes.errors.append(error)


def _loans(library: Library, patron: str, item: str) -> list[tuple[int, Any]]:
    """(id, returned_at) of each loan of `item` to `patron`."""
    with library.database.read() as session:
        return list(
            session.execute(
                sa.select(Loan.id, Loan.returned_at)
                .join(Item, Loan.item_id == Item.id)
                .join(Patron, Loan.patron_id == Patron.id)
                .where(Item.barcode == item, Patron.barcode == patron)
            )
        )


def test_killed_server_keeps_every_lent_loan_and_no_refused_one(
    database_url: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """After SIGKILL mid-traffic and a restart: each ok=1 loan once, no ok=0 loan."""
    library = loan_library(database_url)
    servers.append(serve(database_url, tmp_path))
    outcomes = Outcomes()
    terminals = [
        threading.Thread(target=_lend, args=(servers[0].port, n, outcomes))
        for n in range(TERMINALS)
    ]
    for thread in terminals:
        thread.start()

    with outcomes.condition:
        outcomes.condition.wait_for(
            lambda: (
                outcomes.seen() >= KILL_AFTER
                or not any(t.is_alive() for t in terminals)
            ),
            timeout=60,
        )
    servers[0].process.send_signal(signal.SIGKILL)
    for thread in terminals:
        thread.join(timeout=60)
    servers.append(serve(database_url, tmp_path))

    assert [] == outcomes.errors
    assert outcomes.lent, "no checkout was answered before the kill"
    assert outcomes.refused
    for patron, item in outcomes.lent:
        loans = _loans(library, patron, item)
        assert 1 == len(loans), (patron, item)
        assert loans[0][1] is None
    for patron, item in outcomes.refused:
        assert [] == _loans(library, patron, item), (patron, item)

    # A terminal reconnects to the restarted server and carries on.
    patron, item = outcomes.lent[0]
    client = Terminal(servers[1].port)
    client.login()
    checkin = client.send(_checkin_frame(item))
    client.close()
    assert checkin.startswith(b"101")
    assert _loans(library, patron, item)[0][1] is not None
    library.database.dispose()


def test_a_thousand_idle_connections_do_not_keep_a_terminal_waiting(
    sqlite_url: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """With 1,000 connections open and silent, another terminal is still answered."""
    _raise_open_files()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE + 100:
        pytest.skip(f"the open-files limit ({soft}) is below {IDLE + 100}")
    library = build_library(sqlite_url)
    library.add_item(_item(0, 0))
    # With the listeners' default backlog (1024) the kernel queues a burst of a
    # thousand connections instead of dropping SYNs beyond Twisted's 50.
    servers.append(serve(sqlite_url, tmp_path))
    port = servers[0].port

    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        client = Terminal(port)
        client.login()
        item = client.send(
            b"17" + sip_now() + b"AOCITY|AB" + _item(0, 0).encode() + b"|\r"
        )
        client.close()
        # The idle ones are still open and served: each answers a status request.
        for sock in idle[:: IDLE // 50]:
            sock.sendall(STATUS_FRAME)
            assert sock.recv(4096).startswith(b"98")
    finally:
        for sock in idle:
            sock.close()
        library.database.dispose()

    assert item.startswith(b"18")
    assert _item(0, 0).encode() in item


@dataclass
class Traffic:
    """Every reply the terminals got, by phase of the outage, and what they lent."""

    phase: str = "before"
    replies: list[tuple[str, bytes]] = field(default_factory=list)
    lent: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    errors: list[BaseException] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)

    def record(self, reply: bytes) -> bool:
        with self.condition:
            self.replies.append((self.phase, reply))
            self.condition.notify_all()
        return reply[2:3] == b"1"

    def count(self, phase: str, ok: bool | None = None) -> int:
        return sum(
            1
            for seen, reply in self.replies
            if seen == phase and (ok is None or (reply[2:3] == b"1") == ok)
        )

    def wait(self, predicate: Callable[[], bool]) -> None:
        with self.condition:
            assert self.condition.wait_for(
                lambda: predicate() or bool(self.errors), timeout=60
            )
        assert [] == self.errors


def _circulate(
    port: int, terminal: int, traffic: Traffic, stop: threading.Event
) -> None:
    # Lend an item, then return it, retrying the return until it is taken:
    # so each item has at most one loan open and the terminal knows which.
    patron = _patron(100 + terminal)
    items = [_item(terminal, n) for n in range(ITEMS_EACH)]
    try:
        client = Terminal(port)
        client.login()
        turn = 0
        while not stop.is_set():
            item = items[turn % ITEMS_EACH]
            turn += 1
            if not traffic.record(client.send(checkout_body(patron, item) + b"\r")):
                continue
            traffic.lent[(patron, item)] += 1
            while not traffic.record(client.send(_checkin_frame(item))):
                pass
    except Exception as error:  # the test reports it
        with traffic.condition:
            traffic.errors.append(error)
            traffic.condition.notify_all()


def _checkin_frame(item: str) -> bytes:
    return (
        b"09N" + sip_now() + sip_now() + b"APNORTH|AOCITY|AB" + item.encode() + b"|\r"
    )


def test_postgresql_outage_under_load_refuses_cleanly_and_applies_nothing_twice(
    database_url: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """PostgreSQL cut off mid-traffic: refusals with a message, then service again."""
    admin_url = postgres_admin_url()
    if database_url.startswith("sqlite") or admin_url is None:
        pytest.skip("the outage is staged on PostgreSQL")
    name = sa.make_url(database_url).database
    assert name is not None
    library = loan_library(database_url)
    servers.append(serve(database_url, tmp_path))
    traffic, stop = Traffic(), threading.Event()
    terminals = [
        threading.Thread(target=_circulate, args=(servers[0].port, n, traffic, stop))
        for n in range(TERMINALS)
    ]
    for thread in terminals:
        thread.start()

    try:
        traffic.wait(lambda: len(traffic.replies) >= 20)
        # Connections refused and every server backend killed, mid-transaction.
        _block_connections(admin_url, name, allow=False)
        traffic.phase = "outage"
        traffic.wait(lambda: traffic.count("outage", ok=False) >= 8)
        _block_connections(admin_url, name, allow=True)
        traffic.phase = "after"
        traffic.wait(lambda: traffic.count("after", ok=True) >= 8)
    finally:
        _block_connections(admin_url, name, allow=True)
        stop.set()
        for thread in terminals:
            thread.join(timeout=60)

    assert [] == traffic.errors
    # Every refusal is a well-formed 12 or 10 saying why on the screen.
    refusals = [reply for _, reply in traffic.replies if reply[2:3] != b"1"]
    assert all(reply[:2] in (b"12", b"10") and b"|AF" in reply for reply in refusals)
    # Each loan answered ok=1 was made once, and every one was returned.
    with library.database.read() as session:
        rows = session.execute(
            sa.select(Patron.barcode, Item.barcode, Loan.returned_at)
            .join(Item, Loan.item_id == Item.id)
            .join(Patron, Loan.patron_id == Patron.id)
            .where(Patron.barcode.in_([_patron(100 + n) for n in range(TERMINALS)]))
        ).all()
    library.database.dispose()
    made: dict[tuple[str, str], int] = defaultdict(int)
    for patron, item, _ in rows:
        made[(patron, item)] += 1
    assert dict(traffic.lent) == dict(made)
    assert [] == [row for row in rows if row[2] is None]
