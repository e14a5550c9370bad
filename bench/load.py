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

`--processes N` makes our server N `ils serve` processes sharing one port
(a `reuse_port` listener each, `ILS_INSTANCE` 1..N, a transaction log
each); the kernel spreads the terminals' connections among them, and the
server CPU printed is the sum over them. The baseline stays one process.
After every run the script checks the library: no item with two open loans,
and every checkout, return and renewal the database committed has an "ok"
line in one of the transaction logs (the exit status is 1 otherwise).

The load generator and the server share the machine's cores, so on a small
machine the generator's own CPU time is part of what limits both servers.

Run from the repository root:

    .venv/bin/python bench/load.py [--terminals 1 10 50] [--seconds 10]
    .venv/bin/python bench/load.py --terminals 500 --mixes kiosk sorter-paced
    .venv/bin/python bench/load.py --db postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/load.py --idle 2000
    .venv/bin/python bench/load.py --db postgresql://... --processes 2
    .venv/bin/python bench/load.py --profile 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
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
from bench.load_servers import (  # noqa: E402
    Server,
    ServerGroup,
    check,
    library,
    loans,
    raise_open_files,
    start_baseline,
    start_ours,
)
from bench.make_library import INSTITUTION_CODE, item_barcode  # noqa: E402
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

TARGET_KIOSK_RATIO = 0.5
TARGET_SORTER_P99 = 0.025
TARGET_IDLE_RSS_MB = 250.0
# Our server (one or several processes on one port) or the baseline.
Measured = Server | ServerGroup

# --- one run -----------------------------------------------------------------


async def run_mix(
    server: Measured,
    mix: str,
    count: int,
    arguments: argparse.Namespace,
    items: SorterItems,
) -> tuple[Tally, Cpu]:
    """One run; the tally and the CPU seconds spent during the window."""
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


@dataclass
class Cpu:
    """CPU seconds over a run's counted window: the server's (all its
    processes), this load generator's, and the whole machine's."""

    server: float
    generator: float
    machine: float


def _machine_busy() -> float:
    # CPU seconds the whole machine has spent not idle (/proc/stat, all CPUs).
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_at(server: Measured, tally: Tally) -> Cpu:
    # CPU seconds over the counted window (read from /proc).
    time.sleep(max(0.0, tally.window[0] - time.perf_counter()))
    before = Cpu(server.cpu_seconds(), time.process_time(), _machine_busy())
    time.sleep(max(0.0, tally.window[1] - time.perf_counter()))
    return Cpu(
        server.cpu_seconds() - before.server,
        time.process_time() - before.generator,
        _machine_busy() - before.machine,
    )


# --- reporting ---------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of `values` (share in 0..1)."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def report(
    name: str, mix: str, count: int, tally: Tally, seconds: float, cpu: Cpu
) -> float:
    """Print one run; return its messages per second."""
    rate = tally.messages() / seconds
    print(
        f"{name:<6} {mix:<12} {count:>4} terminals: {rate:8.1f} msg/s"
        f"  (server CPU {cpu.server / seconds:4.2f} cores; load generator"
        f" {cpu.generator / seconds:4.2f}; whole machine"
        f" {cpu.machine / seconds:4.2f} of {os.cpu_count()})"
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


async def measure(arguments: argparse.Namespace, servers: list[Measured]) -> int:
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


async def idle(arguments: argparse.Namespace, servers: list[Measured]) -> int:
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
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="our server as N `ils serve` processes on one port (reuse_port)",
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
    if arguments.processes < 1:
        parser.error("--processes must be at least 1")

    raise_open_files()
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
        before = loans(url)
        ours = start_ours(
            url, Path(folder), arguments.sqlite_synchronous, arguments.processes
        )
        print(
            f"ours: {arguments.processes} `ils serve` process(es) on port"
            f" {ours.port} (reuse_port), pids"
            f" {' '.join(str(m.process.pid) for m in ours.members)}"
        )
        servers: list[Measured] = [ours]
        try:
            if not arguments.no_baseline:
                servers.append(start_baseline(Path(folder), Path(__file__).resolve()))
            job: Callable[..., Any] = idle if arguments.idle else measure
            status = int(asyncio.run(job(arguments, servers)))
        finally:
            for server in servers:
                server.stop()
        if not check(url, before, ours):
            status = 1
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
