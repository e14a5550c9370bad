"""The terminal mixes of `bench/load.py`: SIP2 terminals, kiosk and sorter.

Bench layer (a script folder, not part of the product): the load generator's
terminals over TCP on loopback, the kiosk and sorter request mixes, and the
in-process profile of the same mixes. Imports `bench.make_library`,
`sip2server.protocol` and, for the profile only, the server's session code;
it must not import `bench.load` (which imports it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.make_library import (
    BRANCHES,
    INSTITUTION_CODE,
    item_barcode,
    patron_barcode,
)
from sip2server.protocol import (
    CheckinRequest,
    CheckoutRequest,
    ItemInformationRequest,
    Language,
    LoginRequest,
    Message,
    PatronInformationRequest,
    RenewRequest,
    Summary,
    encode,
)

LOGIN = "loadterm"
PASSWORD = "load-secret"
BRANCH = BRANCHES[0]
# Items with an even serial are at BRANCH and on the shelf; odd ones are on
# loan (make_library lends every second item when loans are half the items).
ITEMS = 40_000
PATRONS = 2_000
ITEMS_PER_KIOSK = 12

CONFIG = f"""\
[server]
threads = 10
idle_timeout = 0
max_connections = 10000
max_failed_logins_per_address = 20

[database]
url = "sqlite:///unused"

[[accounts]]
login = "{LOGIN}"
password = "{PASSWORD}"
institution = "{INSTITUTION_CODE}"
location = "{BRANCH}"
allowed_networks = ["127.0.0.0/8", "::1"]
"""


# --- the terminals -----------------------------------------------------------


@dataclass
class Tally:
    """What one run measured: latencies per message, refusals, the window."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    window: tuple[float, float] = (0.0, 0.0)

    def counting(self, at: float) -> bool:
        return self.window[0] <= at < self.window[1]

    def messages(self) -> int:
        return sum(len(v) for key, v in self.latencies.items() if key != "pair")


class Terminal:
    """One SC: its own connection, login and sequence numbers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.sequence = 0

    @classmethod
    async def connect(cls, port: int) -> Terminal:
        for attempt in range(20):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                # A full accept backlog refuses some of a burst of connections.
                if attempt == 19:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        terminal = cls(reader, writer)
        reply = await terminal.send(
            LoginRequest(login_user_id=LOGIN, login_password=PASSWORD)
        )
        if not reply.startswith(b"941"):
            raise SystemExit(f"login refused: {reply!r}")
        return terminal

    async def send(self, message: Message) -> bytes:
        frame = encode(message, sequence=self.sequence, error_detection=True)
        self.sequence = (self.sequence + 1) % 10
        self.writer.write(frame)
        return await self.reader.readuntil(b"\r")

    def close(self) -> None:
        self.writer.close()


def _ok(command: str, reply: bytes) -> bool:
    # 12, 10 and 30 carry ok in their first fixed field; 64 and 18 are
    # answers, not verdicts. A 96 is a refusal of any request.
    if reply.startswith(b"96"):
        return False
    return command not in ("11", "09", "29") or reply[2:3] == b"1"


async def _timed(
    terminal: Terminal, message: Message, tally: Tally
) -> tuple[float, bytes]:
    started = time.perf_counter()
    reply = await terminal.send(message)
    elapsed = time.perf_counter() - started
    if tally.counting(started):
        command = message.command
        tally.latencies[command].append(elapsed)
        if not _ok(command, reply):
            tally.refused[command] += 1
    return elapsed, reply


def _now() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


async def kiosk(
    terminal: Terminal, index: int, count: int, tally: Tally, end: float
) -> None:
    """Rounds of 63, three 11, one 29, three 09, until `end`."""
    # Even serials are on the shelf at BRANCH; each terminal has its own.
    pool = [2 * (index + count * slot + 1) for slot in range(ITEMS_PER_KIOSK)]
    round_number = 0
    while time.perf_counter() < end:
        patron = patron_barcode(1 + (index + count * round_number) % PATRONS)
        first = (round_number * 3) % ITEMS_PER_KIOSK
        items = [item_barcode(pool[(first + k) % ITEMS_PER_KIOSK]) for k in range(3)]
        round_number += 1

        _, account = await _timed(terminal, _patron_information(patron), tally)
        for item in items:
            await _timed(terminal, _checkout(patron, item), tally)
        renewed = _first_loan(account) or items[0]
        await _timed(terminal, _renew(patron, renewed), tally)
        for item in items:
            await _timed(terminal, _checkin(item), tally)


def _first_loan(account: bytes) -> str | None:
    # The first item the patron had on loan before the round (AU in 64): a
    # renewal of it gives a later due date, unlike one of an item just lent.
    match = re.search(rb"\|AU([^|]+)", account)
    return match.group(1).decode() if match else None


# The requests of the mixes, built alike by the terminals and the profile.


def _patron_information(patron: str) -> PatronInformationRequest:
    """63 with the list of loans, the first five."""
    return PatronInformationRequest(
        language=Language.ENGLISH,
        transaction_date=_now(),
        summary=Summary(charged_items=True),
        institution_id=INSTITUTION_CODE,
        patron_identifier=patron,
        start_item=1,
        end_item=5,
    )


def _checkout(patron: str, item: str) -> CheckoutRequest:
    return CheckoutRequest(
        sc_renewal_policy=True,
        no_block=False,
        transaction_date=_now(),
        nb_due_date=_now(),
        institution_id=INSTITUTION_CODE,
        patron_identifier=patron,
        item_identifier=item,
    )


def _renew(patron: str, item: str) -> RenewRequest:
    return RenewRequest(
        third_party_allowed=False,
        no_block=False,
        transaction_date=_now(),
        nb_due_date=_now(),
        institution_id=INSTITUTION_CODE,
        patron_identifier=patron,
        item_identifier=item,
    )


def _item_information(item: str) -> ItemInformationRequest:
    return ItemInformationRequest(
        transaction_date=_now(), institution_id=INSTITUTION_CODE, item_identifier=item
    )


def _checkin(item: str) -> CheckinRequest:
    now = _now()
    return CheckinRequest(
        no_block=False,
        transaction_date=now,
        return_date=now,
        current_location=BRANCH,
        institution_id=INSTITUTION_CODE,
        item_identifier=item,
    )


@dataclass
class SorterItems:
    """Items on loan, handed out once each across every sorter run on one server."""

    next_serial: int = 1
    wrapped: bool = False

    def take(self) -> str:
        serial = self.next_serial
        self.next_serial += 2
        if self.next_serial > ITEMS:
            self.next_serial, self.wrapped = 1, True
        return item_barcode(serial)


async def sorter(
    terminal: Terminal,
    items: SorterItems,
    tally: Tally,
    end: float,
    interval: float,
    phase: float,
) -> None:
    """17 then 09 per item until `end`; one pair per `interval` s if above 0."""
    due = time.perf_counter() + phase
    while time.perf_counter() < end:
        if interval:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due += interval
            if time.perf_counter() >= end:
                return
        item = items.take()
        started = time.perf_counter()
        pair, _ = await _timed(terminal, _item_information(item), tally)
        pair += (await _timed(terminal, _checkin(item), tally))[0]
        if tally.counting(started):
            tally.latencies["pair"].append(pair)


async def connect_all(port: int, count: int) -> list[Terminal]:
    """`count` logged-in terminals, opened in batches of 16: the server checks
    logins on a small pool of its own and answers 940 at once to logins beyond
    its queue (`login_backlog`, 16 by default)."""
    terminals: list[Terminal] = []
    for first in range(0, count, 16):
        batch = range(first, min(count, first + 16))
        terminals += await asyncio.gather(*(Terminal.connect(port) for _ in batch))
    return terminals


def _rounds(ask: Callable[[Message], Any], numbers: range, sorter: SorterItems) -> None:
    """Kiosk rounds (63, three 11, 29, three 09) and a sorter pair (17, 09) each."""
    for number in numbers:
        patron = patron_barcode(1 + number % PATRONS)
        items = [item_barcode(2 * (3 * number + k + 1)) for k in range(3)]
        account = ask(_patron_information(patron))
        for item in items:
            ask(_checkout(patron, item))
        loans = getattr(account, "charged_items", ())
        ask(_renew(patron, loans[0] if loans else items[0]))
        for item in items:
            ask(_checkin(item))
        item = sorter.take()
        ask(_item_information(item))
        ask(_checkin(item))


def profile(url: str, rounds: int) -> None:
    """Kiosk rounds and sorter pairs through the session code: first timed plainly
    (CPU time of this thread per message), then as many more under cProfile.

    The server runs requests in worker threads, which cProfile does not follow;
    here the same `TerminalSession.handle` runs in this thread, with decoding
    and encoding, on the same library, and every SQL statement is timed.
    """
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415
    import tomllib  # noqa: PLC0415

    from bench.core import StatementTimes  # noqa: PLC0415
    from ils.db import Database  # noqa: PLC0415
    from sip2server.app import check_database, circulation_for  # noqa: PLC0415
    from sip2server.config import ListenerConfig, parse_config  # noqa: PLC0415
    from sip2server.listeners import book_for  # noqa: PLC0415
    from sip2server.protocol import decode  # noqa: PLC0415
    from sip2server.session import TerminalSession  # noqa: PLC0415

    config = parse_config(tomllib.loads(CONFIG), "<bench>")
    database = Database(url, pool_size=2, busy_timeout=config.database.busy_timeout)
    session = TerminalSession(
        book_for(ListenerConfig(endpoint="tcp:0"), config.accounts),
        circulation_for(database, check_database(database, config)),
    )
    session.address = "127.0.0.1"
    session.handle(LoginRequest(login_user_id=LOGIN, login_password=PASSWORD))

    def answer(message: Message) -> Any:
        frame = encode(message, sequence=0, error_detection=True)
        reply = session.handle(decode(frame[:-1]).message).message
        assert reply is not None, f"no reply to {message.command}"
        encode(reply, sequence=0, error_detection=True)
        return reply

    cpu: dict[str, float] = defaultdict(float)
    cpu_calls: dict[str, int] = defaultdict(int)

    def timed(message: Message) -> Any:
        started = time.thread_time()
        reply = answer(message)
        cpu[message.command] += time.thread_time() - started
        cpu_calls[message.command] += 1
        return reply

    sorter_items = SorterItems()
    _rounds(timed, range(rounds), sorter_items)
    print("CPU time per message, this thread, no profiler (decode, session, encode):")
    for command in sorted(cpu):
        print(
            f"    {command}  n={cpu_calls[command]:>5}"
            f"  {cpu[command] / cpu_calls[command] * 1e3:6.2f} ms"
        )

    times = StatementTimes()
    times.watch(database.engine)
    wall: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    sql_calls: dict[str, int] = defaultdict(int)
    sql_seconds: dict[str, float] = defaultdict(float)

    def ask(message: Message) -> Any:
        before_calls = sum(times.calls.values())
        before_sql = sum(times.seconds.values())
        started = time.perf_counter()
        reply = answer(message)
        wall[message.command] += time.perf_counter() - started
        calls[message.command] += 1
        sql_calls[message.command] += sum(times.calls.values()) - before_calls
        sql_seconds[message.command] += sum(times.seconds.values()) - before_sql
        return reply

    profiler = cProfile.Profile()
    profiler.enable()
    _rounds(ask, range(rounds, 2 * rounds), sorter_items)
    profiler.disable()
    database.dispose()

    print("per message under cProfile, in this one thread (decode, session, encode):")
    for command in sorted(calls):
        count = calls[command]
        print(
            f"    {command}  n={count:>5}  {wall[command] / count * 1e3:6.2f} ms,"
            f" {sql_calls[command] / count:5.1f} SQL statements taking"
            f" {sql_seconds[command] / count * 1e3:5.2f} ms"
        )
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(20)
    # The project's own functions, by the time spent in them and below.
    stats.sort_stats("cumulative").print_stats(r"/(ils|sip2server)/", 30)
