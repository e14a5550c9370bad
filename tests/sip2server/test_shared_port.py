"""Two `ils serve` processes on one port (reuse_port) and one PostgreSQL database.

Both processes are started from the same configuration file, as the template
unit ils-sip2@.service starts them, with only ILS_INSTANCE telling them apart.
Terminals connect to the one port over real TCP on loopback; which process
serves whom is the kernel's choice, read back from each process's own metrics
endpoint. The database is checked afterwards with SQLAlchemy, never through
the servers under test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.models import Item, Loan, Patron
from tests.conftest import REPO_ROOT
from tests.sip2server.conftest import stock_library
from tests.sip2server.port_terminal import Terminal
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    checkout_body,
    sip_now,
)

LISTENING = re.compile(r"SIP2 server listening on 127\.0\.0\.1:(\d+)")
METRICS = re.compile(r"Metrics on http://127\.0\.0\.1:(\d+)/metrics")
# Terminals connected at first; more are added (up to MOST_TERMINALS) only in
# the unlikely case that the kernel gave every one of them to one process.
TERMINALS = 16
MOST_TERMINALS = 64
CONTESTED = [f"3123400077{n:04d}" for n in range(6)]
REPLY_TIMEOUT = 20.0


def _config(folder: Path, port: int) -> Path:
    path = folder / "shared-port.toml"
    path.write_text(
        f"""\
[server]
threads = 4
transaction_log = "{folder}/transactions-{{instance}}.log"

[metrics]
listen = "tcp:0:interface=127.0.0.1"

[database]
url = "sqlite:///unused"

[[listeners]]
endpoint = "tcp:{port}:interface=127.0.0.1"
reuse_port = true

[[accounts]]
login = "kiosk1"
password = "kiosk-secret"
institution = "CITY"
location = "NORTH"
"""
    )
    return path


@dataclass
class Instance:
    """One `ils serve` process of the pair, with its name and metrics port."""

    name: str
    process: subprocess.Popen[str]
    sip_port: int = 0
    metrics_port: int = 0
    output: list[str] = field(default_factory=list)

    def wait_started(self) -> None:
        """Read the banner until the SIP2 and metrics lines are both seen."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if match := LISTENING.search(line):
                self.sip_port = int(match.group(1))
            if match := METRICS.search(line):
                self.metrics_port = int(match.group(1))
                break
        if not (self.sip_port and self.metrics_port):
            self.kill()
            pytest.fail(f"instance {self.name} did not start: {''.join(self.output)}")
        # Keep reading, so a full pipe never blocks the server's logging.
        threading.Thread(
            target=lambda: self.output.extend(self.process.stdout or []), daemon=True
        ).start()

    def counter(self, name: str, **labels: str) -> float:
        """A counter's value on this process's own /metrics (0 if not yet seen)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=REPLY_TIMEOUT) as response:
            text = response.read().decode()
        shown = ",".join(f'{key}="{value}"' for key, value in labels.items())
        wanted = f"{name}{{{shown}}} " if labels else f"{name} "
        for line in text.splitlines():
            if line.startswith(wanted):
                return float(line.split()[-1])
        return 0.0

    def logins(self) -> int:
        """Logins this process accepted."""
        return int(self.counter("sip2_logins_total", result="accepted"))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def start_instance(name: str, config: Path, database_url: str) -> Instance:
    """`ils serve` with this file and database, as instance `name`."""
    process = subprocess.Popen(
        [
            *[sys.executable, "-m", "ils.cli", "serve", "--config", str(config)],
            *["--db", database_url],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "ILS_INSTANCE": name},
    )
    return Instance(name, process)


@pytest.fixture
def instances() -> Iterator[list[Instance]]:
    """Server processes a test starts; each is killed at the end if still running."""
    started: list[Instance] = []
    yield started
    for instance in started:
        instance.kill()


@pytest.fixture
def shared_port() -> Iterator[int]:
    """A loopback port held, bound but not listening, with SO_REUSEPORT.

    The servers can bind it beside this socket (both have SO_REUSEPORT) while
    no other program can take it; it never accepts, so it takes no connection.
    """
    placeholder = socket.socket()
    placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    placeholder.bind(("127.0.0.1", 0))
    try:
        yield placeholder.getsockname()[1]
    finally:
        placeholder.close()


def _patron(number: int) -> str:
    return f"2123400077{number:04d}"


def _checkin_frame(item: str) -> bytes:
    now = sip_now()
    return b"09N" + now + now + b"APNORTH|AOCITY|AB" + item.encode() + b"|\r"


def _loans(database_url: str, item: str) -> list[tuple[str, object]]:
    """(patron barcode, returned_at) of every loan of `item`."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [
                (row[0], row[1])
                for row in connection.execute(
                    sa.select(Patron.barcode, Loan.returned_at)
                    .join(Item, Loan.item_id == Item.id)
                    .join(Patron, Loan.patron_id == Patron.id)
                    .where(Item.barcode == item)
                )
            ]
    finally:
        engine.dispose()


def _contest(terminals: list[Terminal]) -> dict[str, list[str]]:
    """Every terminal checks out every contested item at once; who got which."""
    start = threading.Barrier(len(terminals))
    won: dict[str, list[str]] = {item: [] for item in CONTESTED}
    problems: list[str] = []
    lock = threading.Lock()

    def lend(number: int, terminal: Terminal) -> None:
        # Each terminal begins at another item, so every item is fought over.
        order = (
            CONTESTED[number % len(CONTESTED) :] + CONTESTED[: number % len(CONTESTED)]
        )
        start.wait()
        for item in order:
            reply = terminal.send(checkout_body(_patron(number), item) + b"\r")
            with lock:
                if not reply.startswith(b"12"):
                    problems.append(reply.decode(errors="replace"))
                elif reply[2:3] == b"1":
                    won[item].append(_patron(number))

    threads = [
        threading.Thread(target=lend, args=(number, terminal))
        for number, terminal in enumerate(terminals)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [] == problems
    return won


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_processes_on_one_port_share_terminals_and_lend_each_item_once(
    database_url: str,
    tmp_path: Path,
    shared_port: int,
    instances: list[Instance],
) -> None:
    """Two servers on one port both get terminals, lend each item once, and one
    survives the other's SIGKILL, taking over the terminals that reconnect."""
    library = stock_library(database_url)
    for number in range(MOST_TERMINALS):
        # CHILD patrons may have ten loans (the catch-all rule), ADULT three.
        library.add_patron(_patron(number), category="CHILD")
    for item in CONTESTED:
        library.add_item(item)
    library.database.dispose()
    config = _config(tmp_path, shared_port)
    instances += [start_instance(name, config, database_url) for name in "ab"]
    first, second = instances
    for instance in instances:
        instance.wait_started()
    assert [shared_port, shared_port] == [first.sip_port, second.sip_port]

    # Terminals connect to the one port; the kernel spreads them.
    terminals: list[Terminal] = []
    try:
        while len(terminals) < MOST_TERMINALS and (
            len(terminals) < TERMINALS or not (first.logins() and second.logins())
        ):
            terminal = Terminal(shared_port, timeout=REPLY_TIMEOUT)
            terminals.append(terminal)
            terminal.login()
        on_first, on_second = first.logins(), second.logins()
        assert on_first > 0
        assert on_second > 0
        assert len(terminals) == on_first + on_second

        # Each contested item is lent once, whichever process the winner used.
        won = _contest(terminals)
        for item in CONTESTED:
            assert 1 == len(won[item]), (item, won[item])
            assert [(won[item][0], None)] == _loans(database_url, item)
        for instance in instances:
            assert (
                instance.counter(
                    "sip2_messages_total", command="checkout", result="refused"
                )
                + instance.counter(
                    "sip2_messages_total", command="checkout", result="ok"
                )
                == len(CONTESTED) * instance.logins()
            )

        # Each process wrote its own transaction log: whole lines, one per
        # checkout it answered, and together one "ok" per contested item.
        lines = {
            instance.name: (tmp_path / f"transactions-{instance.name}.log")
            .read_text()
            .splitlines()
            for instance in instances
        }
        records = {
            name: [json.loads(line) for line in found] for name, found in lines.items()
        }
        assert [len(CONTESTED) * on_first, len(CONTESTED) * on_second] == [
            len(records["a"]),
            len(records["b"]),
        ]
        outcomes = [record["outcome"] for found in records.values() for record in found]
        assert len(CONTESTED) == outcomes.count("ok")

        # SIGKILL the first: its terminals lose their connection, the second's
        # keep theirs; those that reconnect land on the survivor and are served.
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
        broken = 0
        for index, terminal in enumerate(terminals):
            try:
                assert terminal.send(STATUS_FRAME).startswith(b"98")
            except OSError:
                broken += 1
                terminal.close()
                terminals[index] = Terminal(shared_port, timeout=REPLY_TIMEOUT)
                terminals[index].login()
                assert terminals[index].send(STATUS_FRAME).startswith(b"98")
        assert on_first == broken
        assert on_second + on_first == second.logins()
        assert terminals[0].send(_checkin_frame(CONTESTED[0])).startswith(b"101")
        assert [(won[CONTESTED[0]][0], None)] != _loans(database_url, CONTESTED[0])
    finally:
        for terminal in terminals:
            terminal.close()
