"""The servers of `bench/load.py`, the library they serve, and the checks after.

Bench layer (a script folder, not part of the product): starts `ils serve`
(one process, or several sharing one loopback port through `reuse_port`
listeners, each its own `ILS_INSTANCE` with its own transaction log) and the
pysip2 baseline as processes of their own, builds and drops the benchmark
library, and afterwards checks the database and the transaction logs: no item
with two open loans, and every loan change the database committed has an "ok"
line in some process's transaction log. Imports `bench.load_mixes`,
`bench.make_library`, SQLAlchemy and `ils.db`; it must not import `bench.load`
(which imports it).
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.load_mixes import CONFIG, ITEMS, PATRONS
from bench.make_library import LibrarySize, make_library

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
START_SECONDS = 120

# --- starting the servers ----------------------------------------------------


@dataclass
class Server:
    """A server process on loopback, and its output file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    output: Path

    def rss_mb(self) -> float:
        """Resident memory of the process, from /proc/<pid>/status (VmRSS)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kilobytes = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return kilobytes / 1024

    def cpu_seconds(self) -> float:
        """User and system CPU time of the process so far (/proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)
        utime, stime = fields[1].split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class ServerGroup:
    """Several `ils serve` processes on one port, measured as one server:
    CPU time and resident memory are the sums over the processes."""

    name: str
    members: list[Server]
    port: int
    transaction_logs: list[Path]

    def rss_mb(self) -> float:
        return sum(member.rss_mb() for member in self.members)

    def cpu_seconds(self) -> float:
        return sum(member.cpu_seconds() for member in self.members)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def raise_open_files() -> None:
    """Raise the soft limit of open files to the hard one."""
    # Thousands of idle terminals need thousands of descriptors; the soft
    # limit may be raised up to the hard one without privileges.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _launch(
    name: str, command: list[str], folder: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    output = folder / f"{name}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            preexec_fn=raise_open_files,  # noqa: PLW1509 (no threads yet)
        )
    return process, output


def _listening(name: str, process: subprocess.Popen[bytes], output: Path) -> Server:
    # Wait for the line naming the port; stop the process if it never comes.
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        match = LISTENING.search(output.read_text(errors="replace"))
        if match:
            return Server(name, process, int(match.group(1)), output)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise SystemExit(f"{name} did not start:\n{output.read_text(errors='replace')}")


def start(name: str, command: list[str], folder: Path) -> Server:
    """Start a server process and wait for the line naming its port."""
    return _listening(name, *_launch(name, command, folder))


def _config(folder: Path, synchronous: str, port: int | None) -> Path:
    # The benchmark's account; on SQLite, `synchronous` as sqlite_synchronous.
    # With a port: a reuse_port listener on it and a log per instance.
    text = CONFIG.replace(
        "[database]\n", f'[database]\nsqlite_synchronous = "{synchronous}"\n'
    )
    if port is not None:
        text = text.replace(
            "[server]\n",
            f'[server]\ntransaction_log = "{folder}/transactions-{{instance}}.log"\n',
        )
        text += (
            f'\n[[listeners]]\nendpoint = "tcp:{port}:interface=127.0.0.1"\n'
            "reuse_port = true\n"
        )
    config = folder / "load.toml"
    config.write_text(text)
    return config


def start_ours(
    url: str, folder: Path, synchronous: str = "full", processes: int = 1
) -> ServerGroup:
    """`processes` times `ils serve` on `url`, sharing one loopback port
    (reuse_port listeners), instances 1..N, one transaction log each."""
    # A socket bound to the port with SO_REUSEPORT but never listening holds
    # the port for the servers while they start; it takes no connection.
    placeholder = socket.socket()
    placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    placeholder.bind(("127.0.0.1", 0))
    port = int(placeholder.getsockname()[1])
    config = _config(folder, synchronous, port)
    command = [sys.executable, "-m", "ils.cli", "serve", "--config", str(config)]
    launched = [
        (
            f"ours-{n}",
            *_launch(
                f"ours-{n}", [*command, "--db", url], folder, {"ILS_INSTANCE": str(n)}
            ),
        )
        for n in range(1, processes + 1)
    ]
    members: list[Server] = []
    try:
        for name, process, output in launched:
            members.append(_listening(name, process, output))
    except SystemExit:
        for _, process, _ in launched:
            if process.poll() is None:
                process.kill()
                process.wait()
        raise
    finally:
        placeholder.close()
    ports = {member.port for member in members}
    if ports != {port}:
        ServerGroup("ours", members, port, []).stop()
        raise SystemExit(f"the processes did not share port {port}: {sorted(ports)}")
    logs = [folder / f"transactions-{n}.log" for n in range(1, processes + 1)]
    return ServerGroup("ours", members, port, logs)


def start_baseline(folder: Path, script: Path) -> Server:
    """The pysip2 server with fixed replies (`script --serve-baseline`)."""
    return start("pysip2", [sys.executable, str(script), "--serve-baseline"], folder)


@contextmanager
def library(url: str | None) -> Iterator[str]:
    """A fresh benchmark library: the URL of a temporary SQLite file or PG database."""
    size = LibrarySize(items=ITEMS, patrons=PATRONS, open_loans=ITEMS // 2)
    if url is None:
        with tempfile.TemporaryDirectory() as folder:
            made = f"sqlite:///{folder}/load.sqlite3"
            make_library(made, size, say=lambda _line: None)
            yield made
        return

    import sqlalchemy as sa  # noqa: PLC0415

    from ils.db import normalise_url  # noqa: PLC0415

    admin_url = normalise_url(url)
    name = f"{admin_url.database or 'ils'}_load"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    made = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        make_library(made, size, say=lambda _line: None)
        yield made
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# --- the checks after a run --------------------------------------------------

# Every loan: id, the item's barcode, whether it is open, its renewals.
_LOANS = (
    "SELECT loan.id, item.barcode, loan.returned_at IS NULL, loan.renewals"
    " FROM loan JOIN item ON item.id = loan.item_id"
)
_DOUBLE_LOANS = (
    "SELECT item_id, count(*) FROM loan WHERE returned_at IS NULL"
    " GROUP BY item_id HAVING count(*) > 1"
)

Loans = dict[int, tuple[str, bool, int]]


def loans(url: str) -> Loans:
    """Every loan of the library by id: (item barcode, open, renewals)."""
    import sqlalchemy as sa  # noqa: PLC0415

    from ils.db import normalise_url  # noqa: PLC0415

    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(_LOANS).all()
    finally:
        engine.dispose()
    return {row[0]: (row[1], bool(row[2]), int(row[3])) for row in rows}


def _masked(barcode: str) -> str:
    # As the transaction log shows an item (the benchmark's barcodes are long).
    return "..." + barcode[-4:]


def committed(before: Loans, after: Loans) -> dict[str, Counter[str]]:
    """What the database committed between the two snapshots, per command:
    masked item ids, once per new loan, return or renewal."""
    changes: dict[str, Counter[str]] = {
        "checkout": Counter(),
        "checkin": Counter(),
        "renew": Counter(),
    }
    for loan_id, (barcode, is_open, renewals) in after.items():
        item = _masked(barcode)
        was_open, renewed_before = True, 0
        if loan_id in before:
            _, was_open, renewed_before = before[loan_id]
        else:
            changes["checkout"][item] += 1
        if was_open and not is_open:
            changes["checkin"][item] += 1
        if renewals > renewed_before:
            changes["renew"][item] += renewals - renewed_before
    return changes


def logged(paths: list[Path]) -> tuple[dict[str, Counter[str]], list[int]]:
    """The "ok" lines of the transaction logs per command (masked item ids),
    and the number of lines in each file."""
    found: dict[str, Counter[str]] = {}
    lines = []
    for path in paths:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines.append(0)
        for line in text.splitlines():
            entry = json.loads(line)
            lines[-1] += 1
            if entry["outcome"] == "ok":
                found.setdefault(entry["command"], Counter())[entry["item"]] += 1
    return found, lines


def check(url: str, before: Loans, server: ServerGroup) -> bool:
    """Print and judge the checks after a run: no item with two open loans, and
    every committed checkout, return and renewal in a transaction log."""
    import sqlalchemy as sa  # noqa: PLC0415

    from ils.db import normalise_url  # noqa: PLC0415

    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            doubles = connection.exec_driver_sql(_DOUBLE_LOANS).all()
    finally:
        engine.dispose()
    print(f"check: items with two or more open loans: {len(doubles)}")

    changes = committed(before, loans(url))
    found, lines = logged(server.transaction_logs)
    missing = unlogged(changes, found)
    print(
        "check: committed in the database: "
        + ", ".join(f"{sum(c.values())} {name}" for name, c in changes.items())
        + "; ok lines in the transaction logs: "
        + ", ".join(f"{sum(found.get(n, Counter()).values())} {n}" for n in changes)
    )
    print(
        f"check: transaction log lines per process: {' '.join(map(str, lines))};"
        " committed but not logged: "
        + ", ".join(f"{sum(c.values())} {name}" for name, c in missing.items())
    )
    passed = not doubles and not any(missing.values())
    print(f"check: {'passed' if passed else 'FAILED'}")
    return passed


def unlogged(
    changes: dict[str, Counter[str]], found: dict[str, Counter[str]]
) -> dict[str, Counter[str]]:
    """The committed changes (as `committed` gives them) that no "ok" line of
    the logs (as `logged` gives them) accounts for, per command."""
    checkouts = found.get("checkout", Counter())
    return {
        "checkout": changes["checkout"] - checkouts,
        "checkin": changes["checkin"] - found.get("checkin", Counter()),
        # A checkout by the patron who has the item is a renewal (renewal
        # policy Y), so checkout lines that lent nothing may stand for one.
        "renew": changes["renew"]
        - (found.get("renew", Counter()) + (checkouts - changes["checkout"])),
    }
