"""Many SIP2 terminals at once on our server and on a baseline that does no work.

The script builds a library with `bench/make_library.py` (a temporary SQLite
file by default; with `--db postgresql://...`, an admin URL, a database made
for the run on that server and dropped after), starts `ils serve` on it on
loopback as a separate process, and starts the baseline: the PyPI `pysip2`
0.1.0 server (`pysip2.SIP2Server`, AnyIO) as a separate process whose async
handlers answer fixed replies and touch no database. Both get the same bytes
from the same load generator (this process, asyncio, one TCP connection and
one login per terminal, AY/AZ on every frame).

Mixes, per terminal count:

- kiosk: per round, one patron's 63 (patron information, with the list of
  items on loan), three 11 (checkout), one 29 (renewal of the first item the
  63 listed, lent before the run), three 09 (checkin of the three): the items
  are on the shelf at the terminal's branch before and after each round. Closed
  loop: each terminal sends its next request as soon as it has the reply.
- sorter: per item, 17 (item information) then 09 (checkin) of an item on
  loan, closed loop; the throughput figure.
- sorter-paced: the same pair, each terminal sending one pair every
  `--sorter-interval` seconds (a busy sorter returns an item every second or
  two); the latency figure a sorter feels, since a closed loop's latencies
  grow with the number of terminals by construction.

Each run lasts `--seconds` after `--warmup` seconds that are not counted. The
script prints, for every run, messages per second and p50/p95/p99 per message
(and per 17+09 pair), and for each mix our throughput divided by the
baseline's. `--idle N` instead opens N logged-in connections to each server
and prints the server process's resident memory (VmRSS) before and after.
`--profile ROUNDS` runs kiosk rounds and sorter pairs through the server's
session code in this process under cProfile, with every SQL statement timed:
where a request's time goes.

The load generator and the server share the machine's cores, so on a small
machine the generator's own CPU time is part of what limits both servers.

Run from the repository root:

    .venv/bin/python bench/load.py [--terminals 1 10 50] [--seconds 10]
    .venv/bin/python bench/load.py --terminals 500 --mixes kiosk sorter-paced
    .venv/bin/python bench/load.py --db postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/load.py --idle 2000
    .venv/bin/python bench/load.py --profile 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load_baseline import serve_baseline  # noqa: E402
from bench.load_mixes import (  # noqa: E402
    BRANCH,
    CONFIG,
    ITEMS,
    ITEMS_PER_KIOSK,
    LOGIN,
    PASSWORD,
    PATRONS,
    SorterItems,
    Tally,
    Terminal,
    _checkin,
    _first_loan,
    _now,
    _ok,
    _timed,
    connect_all,
    kiosk,
    profile,
    sorter,
)
from bench.make_library import (  # noqa: E402
    INSTITUTION_CODE,
    LibrarySize,
    item_barcode,
    make_library,
)
from sip2server.protocol import (  # noqa: E402
    ItemInformationRequest,
)

__all__ = [
    "BRANCH",
    "CONFIG",
    "ITEMS",
    "ITEMS_PER_KIOSK",
    "LOGIN",
    "PASSWORD",
    "PATRONS",
    "SorterItems",
    "Tally",
    "Terminal",
    "_checkin",
    "_first_loan",
    "_now",
    "_ok",
    "_timed",
    "connect_all",
    "kiosk",
    "profile",
    "serve_baseline",
    "sorter",
]

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
TARGET_KIOSK_RATIO = 0.5
TARGET_SORTER_P99 = 0.025
TARGET_IDLE_RSS_MB = 250.0

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


def _raise_open_files() -> None:
    # Thousands of idle terminals need thousands of descriptors; the soft
    # limit may be raised up to the hard one without privileges.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start(name: str, command: list[str], folder: Path) -> Server:
    """Start a server process and wait for the line naming its port."""
    output = folder / f"{name}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_raise_open_files,  # noqa: PLW1509 (no threads yet)
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = LISTENING.search(output.read_text(errors="replace"))
        if match:
            return Server(name, process, int(match.group(1)), output)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{name} did not start:\n{output.read_text(errors='replace')}")


def start_ours(url: str, folder: Path, synchronous: str = "full") -> Server:
    """`ils serve` with the benchmark's account, on `url` (on SQLite, with
    `synchronous` as its `sqlite_synchronous`)."""
    config = folder / "load.toml"
    config.write_text(
        CONFIG.replace(
            "[database]\n", f'[database]\nsqlite_synchronous = "{synchronous}"\n'
        )
    )
    return start(
        "ours",
        [
            *[sys.executable, "-m", "ils.cli", "serve"],
            *["--config", str(config), "--db", url],
            *["--listen", "tcp:0:interface=127.0.0.1"],
        ],
        folder,
    )


def start_baseline(folder: Path) -> Server:
    """The pysip2 server with fixed replies."""
    return start(
        "pysip2",
        [sys.executable, str(Path(__file__).resolve()), "--serve-baseline"],
        folder,
    )


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


async def run_mix(
    server: Server,
    mix: str,
    count: int,
    arguments: argparse.Namespace,
    items: SorterItems,
) -> tuple[Tally, float]:
    """One run; the tally and the server's CPU seconds during the window."""
    terminals = await connect_all(server.port, count)
    tally = Tally()
    began = time.perf_counter()
    tally.window = (
        began + arguments.warmup,
        began + arguments.warmup + arguments.seconds,
    )
    end = tally.window[1]
    chooser = random.Random(count)
    if mix == "kiosk":
        jobs = [
            kiosk(terminal, index, count, tally, end)
            for index, terminal in enumerate(terminals)
        ]
    else:
        interval = arguments.sorter_interval if mix == "sorter-paced" else 0.0
        jobs = [
            sorter(terminal, items, tally, end, interval, chooser.uniform(0, interval))
            for terminal in terminals
        ]
    await asyncio.sleep(0)
    cpu = asyncio.get_running_loop().run_in_executor(None, _cpu_at, server, tally)
    await asyncio.gather(*jobs)
    for terminal in terminals:
        terminal.close()
    return tally, await cpu


def _cpu_at(server: Server, tally: Tally) -> float:
    # The server's CPU seconds over the counted window (read from /proc).
    time.sleep(max(0.0, tally.window[0] - time.perf_counter()))
    before = server.cpu_seconds()
    time.sleep(max(0.0, tally.window[1] - time.perf_counter()))
    return server.cpu_seconds() - before


# --- reporting ---------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of `values` (share in 0..1)."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def report(
    name: str, mix: str, count: int, tally: Tally, seconds: float, cpu: float
) -> float:
    """Print one run; return its messages per second."""
    rate = tally.messages() / seconds
    print(
        f"{name:<6} {mix:<12} {count:>4} terminals: {rate:8.1f} msg/s"
        f"  (server CPU {cpu / seconds:4.2f} cores)"
    )
    order = ["93", "63", "11", "29", "09", "17", "pair"]
    for command in [c for c in order if c in tally.latencies]:
        values = tally.latencies[command]
        refused = tally.refused.get(command, 0)
        print(
            f"    {command:>4}  n={len(values):>6}"
            f"  p50 {percentile(values, 0.5) * 1e3:7.1f}"
            f"  p95 {percentile(values, 0.95) * 1e3:7.1f}"
            f"  p99 {percentile(values, 0.99) * 1e3:7.1f} ms"
            + (f"  refused {refused}" if refused else "")
        )
    return rate


async def measure(arguments: argparse.Namespace, servers: list[Server]) -> int:
    rates: dict[tuple[str, str, int], float] = {}
    p99: dict[int, float] = {}
    pools = {server.name: SorterItems() for server in servers}
    for count in arguments.terminals:
        for mix in arguments.mixes:
            for server in servers:
                tally, cpu = await run_mix(
                    server, mix, count, arguments, pools[server.name]
                )
                rates[(server.name, mix, count)] = report(
                    server.name, mix, count, tally, arguments.seconds, cpu
                )
                if server.name == "ours" and mix == "sorter-paced":
                    p99[count] = percentile(tally.latencies["pair"], 0.99)
            if len(servers) == 2:
                ratio = rates[("ours", mix, count)] / rates[("pysip2", mix, count)]
                print(f"ours/pysip2 {mix} at {count} terminals: {ratio:.2f}\n")

    if pools["ours"].wrapped:
        print("note: the sorter runs used up the items on loan and began again")
    verdicts = []
    if len(servers) == 2 and 50 in arguments.terminals and "kiosk" in arguments.mixes:
        ratio = rates[("ours", "kiosk", 50)] / rates[("pysip2", "kiosk", 50)]
        verdicts.append(("kiosk ratio at 50", ratio >= TARGET_KIOSK_RATIO))
        print(
            f"target kiosk ratio >= {TARGET_KIOSK_RATIO} at 50 terminals: {ratio:.2f}"
        )
    if 50 in p99:
        verdicts.append(("sorter p99 at 50", p99[50] <= TARGET_SORTER_P99))
        print(
            f"target sorter pair p99 <= {TARGET_SORTER_P99 * 1e3:.0f} ms at 50"
            f" terminals (paced): {p99[50] * 1e3:.1f} ms"
        )
    missed = [name for name, met in verdicts if not met]
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


async def idle(arguments: argparse.Namespace, servers: list[Server]) -> int:
    status = 0
    for server in servers:
        before = server.rss_mb()
        terminals = await connect_all(server.port, arguments.idle)
        await asyncio.sleep(2)
        after = server.rss_mb()
        # Another terminal is still served while the rest sit idle.
        probe = await Terminal.connect(server.port)
        started = time.perf_counter()
        await probe.send(
            ItemInformationRequest(
                transaction_date=_now(),
                institution_id=INSTITUTION_CODE,
                item_identifier=item_barcode(2),
            )
        )
        answered = time.perf_counter() - started
        print(
            f"{server.name:<6} {arguments.idle} idle logged-in terminals: VmRSS"
            f" {before:.1f} MB before, {after:.1f} MB after"
            f" ({(after - before) * 1024 / arguments.idle:.1f} kB each);"
            f" a 17 from one more terminal answered in {answered * 1e3:.1f} ms"
        )
        if server.name == "ours" and after > TARGET_IDLE_RSS_MB:
            status = 1
        for terminal in [*terminals, probe]:
            terminal.close()
        await asyncio.sleep(0.5)
    print(f"target: VmRSS of ours <= {TARGET_IDLE_RSS_MB:.0f} MB")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument(
        "--mixes",
        nargs="+",
        default=["kiosk", "sorter", "sorter-paced"],
        choices=["kiosk", "sorter", "sorter-paced"],
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="counted per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="not counted")
    parser.add_argument(
        "--sorter-interval", type=float, default=1.0, help="seconds between pairs"
    )
    parser.add_argument(
        "--db", metavar="URL", help="a PostgreSQL admin URL (default: SQLite)"
    )
    parser.add_argument("--idle", type=int, metavar="N", help="memory with N idle")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["full", "normal"],
        default="full",
        help="our server's [database] sqlite_synchronous (default full)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="ROUNDS",
        help="profile ROUNDS kiosk rounds and sorter pairs in this process instead",
    )
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve_baseline:
        serve_baseline()
        return 0

    _raise_open_files()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"python {platform.python_version()} on {platform.machine()},"
        f" {platform.system()}; {os.cpu_count()} CPUs; load average"
        f" {' '.join(f'{x:.1f}' for x in os.getloadavg())};"
        f" open files limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )
    with library(arguments.db) as url, tempfile.TemporaryDirectory() as folder:
        engine = (
            "PostgreSQL"
            if url.startswith("postgres")
            else f"SQLite, synchronous {arguments.sqlite_synchronous}"
        )
        print(
            f"library: {ITEMS:,} items, {PATRONS:,} patrons,"
            f" {ITEMS // 2:,} on loan; {engine}"
        )
        if arguments.profile:
            profile(url, arguments.profile)
            return 0
        servers = [start_ours(url, Path(folder), arguments.sqlite_synchronous)]
        try:
            if not arguments.no_baseline:
                servers.append(start_baseline(Path(folder)))
            job: Callable[..., Any] = idle if arguments.idle else measure
            status = int(asyncio.run(job(arguments, servers)))
        finally:
            for server in servers:
                server.stop()
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
