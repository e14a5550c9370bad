"""Refusals that may not hold on a retry, failed-login lockouts and the login log.

Layer: tests of `sip2server` (server, accounts, logs) over real TCP on
loopback with a real SQLite file. A "busy" 940 or an "unavailable" reply is not
replayed to a terminal that sends the same frame again, and is not a failed
login; failed logins lock out one login from an address, not every terminal
behind it; refused logins cannot flood the log (second adversarial trial of
issue #5, findings 7, 13 and 17).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from sip2server.accounts import ADDRESS_WIDE_FACTOR, Admission
from sip2server.app import RunningServer, start_server
from sip2server.logs import LineBudget, clipped, escaped_event
from sip2server.server import DETAILED_LOGIN_REFUSALS, MAX_FAILED_LOGINS
from tests.ils.factories import Library
from tests.sip2server.conftest import (
    ADA,
    ITEMS,
    SipTarget,
    server_config,
    stock_library,
)
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    checkout_body,
    in_thread,
    sip_now,
    with_trailer,
)

LOGIN_BODY = b"9300CNkiosk1|COkiosk-secret|CPNORTH|"


def _start(
    sqlite_url: str, database: dict[str, Any] | None = None, **server: Any
) -> tuple[Library, Deferred[RunningServer]]:
    """Start a server on the stock library with [server] and [database] changes."""
    library = stock_library(sqlite_url)
    config = server_config(sqlite_url)
    config = config.model_copy(
        update={
            "server": config.server.model_copy(update=server),
            "database": config.database.model_copy(update=database or {}),
        }
    )
    return library, start_server(config, reactor)


def _target(library: Library, server: RunningServer) -> SipTarget:
    host, port = server.addresses()[0]
    return SipTarget(host=host, port=port, library=library, server=server)


def _refused_logins(server: RunningServer) -> float:
    value = server.metrics.registry.get_sample_value(
        "sip2_logins_total", {"result": "refused"}
    )
    return value or 0.0


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll the reactor's state from a client thread until `condition` holds."""
    deadline = time.monotonic() + 15
    while not blockingCallFromThread(reactor, condition):
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


@pytest_twisted.inlineCallbacks
def test_checksummed_login_retried_after_busy_940s_gets_in(sqlite_url: str) -> Any:
    """The same AY/AZ login frame, refused as busy, logs in once a slot frees."""
    library, starting = _start(sqlite_url, login_threads=1, login_backlog=1)
    server = yield starting
    target = _target(library, server)
    logins = server.logins
    assert logins is not None
    # The only login thread is held, so the first login waits and fills the backlog.
    release = threading.Event()
    logins.pool.callInThread(release.wait, 30)
    frame = with_trailer(LOGIN_BODY, 1) + b"\r"

    def talk() -> tuple[list[bytes], bytes, bytes, bytes]:
        with RawTerminal(target) as waiting, RawTerminal(target) as retrying:
            waiting.send(LOGIN_FRAME)
            wait_until(lambda: logins.waiting == 1)
            busy = [retrying.exchange(frame) for _ in range(MAX_FAILED_LOGINS + 2)]
            release.set()
            first = waiting.reply()
            wait_until(lambda: logins.waiting == 0)
            again = retrying.exchange(frame)
            status = retrying.exchange(STATUS_FRAME)
        return busy, first, again, status

    try:
        busy, first, again, status = yield in_thread(talk)
        refused = _refused_logins(server)
    finally:
        release.set()
        yield server.stop()
        library.database.dispose()

    # 94, ok 0, then AY1 and a checksum: the busy answer echoes the sequence.
    assert all(reply.startswith(b"940AY1AZ") for reply in busy), busy
    assert b"941" == first
    assert again.startswith(b"941AY1AZ"), again
    # Seven busy 940s did not close the connection: it still answers 99.
    assert status.startswith(b"98"), status
    assert 0.0 == refused


@pytest_twisted.inlineCallbacks
def test_same_checkin_after_a_database_lock_is_done(sqlite_url: str) -> Any:
    """A 09 refused as unavailable while SQLite is write-locked is done when resent."""
    library, starting = _start(sqlite_url, database={"busy_timeout": 0.3})
    server = yield starting
    target = _target(library, server)
    item = ITEMS[0]
    checkin = (
        with_trailer(
            b"09N"
            + sip_now()
            + sip_now()
            + b"APNORTH|AOCITY|AB"
            + item.encode()
            + b"|AC|",
            2,
        )
        + b"\r"
    )
    path = sqlite_url.removeprefix("sqlite:///")

    def talk() -> tuple[bytes, bytes, bytes]:
        with RawTerminal(target) as sorter:
            sorter.login()
            lent = sorter.exchange(checkout_body(ADA, item) + b"\r")
            holder = sqlite3.connect(path, isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")
                refused = sorter.exchange(checkin)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            done = sorter.exchange(checkin)
        return lent, refused, done

    try:
        lent, refused, done = yield in_thread(talk)
    finally:
        yield server.stop()
        library.database.dispose()

    assert lent.startswith(b"121"), lent
    # 10 with ok 0 saying to try again, then the very same frame: 10 with ok 1.
    assert refused.startswith(b"100"), refused
    assert b"not available just now" in refused
    assert done.startswith(b"101"), done
    assert done != refused


@pytest_twisted.inlineCallbacks
def test_one_logins_guesser_does_not_lock_out_others_from_the_address(
    sqlite_url: str,
) -> Any:
    """Wrong passwords for one login from loopback lock out that login only."""
    library, starting = _start(sqlite_url, max_failed_logins_per_address=3)
    server = yield starting
    target = _target(library, server)
    wrong_guest = b"9300CNguest|COguess|CPNORTH|\r"
    wrong_kiosk = b"9300CNkiosk1|COguess|CPNORTH|\r"

    def talk() -> tuple[list[bytes], bytes, list[bytes], bytes]:
        with RawTerminal(target) as guesser:
            guessed = [guesser.exchange(wrong_guest) for _ in range(4)]
        with RawTerminal(target) as kiosk:
            accepted = kiosk.exchange(LOGIN_FRAME)
        with RawTerminal(target) as guesser:
            wrong = [guesser.exchange(wrong_kiosk) for _ in range(3)]
        with RawTerminal(target) as kiosk:
            locked = kiosk.exchange(LOGIN_FRAME)
        return guessed, accepted, wrong, locked

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        guessed, accepted, wrong, locked = yield in_thread(talk)
    finally:
        globalLogPublisher.removeObserver(seen.append)
        yield server.stop()
        library.database.dispose()

    assert [b"940"] * 4 == guessed
    assert b"941" == accepted
    assert [b"940"] * 3 == wrong
    # kiosk1 has now failed 3 times from 127.0.0.1: the right password waits too.
    assert b"940" == locked
    notes = [e.get("why", "") for e in seen if e.get("outcome") == "refused"]
    assert (
        notes.count(
            ": too many failed logins for this login from this address; try later"
        )
        == 2
    )


def test_failed_logins_lock_out_per_address_and_login() -> None:
    """Admission counts failures per (address, login), and per address higher."""
    clock = Clock()
    admission = Admission(
        max_connections=10,
        max_failed_logins=3,
        failed_login_window=300,
        clock=clock.seconds,
    )
    for _ in range(3):
        admission.login_failed("127.0.0.1", "kiosk1")
    assert admission.address_blocked("127.0.0.1", "kiosk1")
    assert not admission.address_blocked("127.0.0.1", "kiosk2")
    assert not admission.address_blocked("10.0.0.9", "kiosk1")
    # Spraying: 3 * 5 = 15 failures in all from the address lock out every login.
    assert 15 == admission.address_wide_limit == 3 * ADDRESS_WIDE_FACTOR
    for number in range(12):
        admission.login_failed("127.0.0.1", f"spray{number}")
    assert admission.address_blocked("127.0.0.1", "kiosk2")
    clock.advance(301)
    assert not admission.address_blocked("127.0.0.1", "kiosk1")
    assert not admission.address_blocked("127.0.0.1", "kiosk2")


@pytest_twisted.inlineCallbacks
def test_refused_logins_with_long_names_cannot_flood_the_log(sqlite_url: str) -> Any:
    """500 refused logins with 8,000-character names from one address log a few KB."""
    library, starting = _start(sqlite_url, max_failed_logins_per_address=2)
    server = yield starting
    target = _target(library, server)
    frames = [
        b"9300CN" + (b"%03d" % n) + b"L" * 7997 + b"|COx|CPNORTH|\r" for n in range(500)
    ]

    def talk() -> list[bytes]:
        replies: list[bytes] = []
        pending = list(frames)
        while pending:
            with RawTerminal(target) as flooder:
                try:
                    while pending:
                        reply = flooder.exchange(pending[0])
                        pending.pop(0)
                        replies.append(reply)
                except ConnectionError:
                    continue
        return replies

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        replies = yield in_thread(talk)
        yield server.stop()
    finally:
        globalLogPublisher.removeObserver(seen.append)
        library.database.dispose()

    assert [b"940"] * 500 == replies
    lines = [
        formatEvent(escaped_event(event))
        for event in seen
        if event.get("log_namespace") == "sip2server"
        # What the default level (info) writes; debug shows every message.
        and event["log_level"] >= LogLevel.info
    ]
    # Two connections closed after 5 real failures each (10 = 2 * 5 in all from
    # the address), then one more took the 490 lockout refusals: 3 connected
    # and 3 disconnected lines, 10 detailed login lines, 1 summary, and little
    # else; each line at most a few hundred bytes.
    assert len(lines) <= 30, lines
    assert sum(len(line) for line in lines) < 10_000
    refused = [e for e in seen if e.get("outcome") == "refused"]
    closing = [e for e in seen if "failed logins; closing" in e.get("log_format", "")]
    # The budget of 10 went to refusals 1-5, the first closing, refusals 6-9.
    assert (9, 1) == (len(refused), len(closing))
    assert DETAILED_LOGIN_REFUSALS == len(refused) + len(closing)
    assert all(e["login"].endswith("...(8000 characters)") for e in refused)
    # 500 refusals and 2 closing lines, of which 10 were logged in detail.
    summaries = [e for e in seen if "more refused logins" in e.get("log_format", "")]
    assert [(492, "127.0.0.1")] == [(e["count"], e["host"]) for e in summaries]
    assert all(e["log_level"] is LogLevel.warn for e in summaries)


def test_line_budget_writes_a_few_lines_then_a_summary_per_key() -> None:
    """Past the budget lines are counted, and said per key at the period's end."""
    clock = Clock()
    said: list[tuple[str, int, float]] = []
    budget = LineBudget(
        clock.callLater,
        lambda key, count, period: said.append((key, count, period)),
        detailed=3,
        period=60,
    )
    allowed = [budget.allow("10.0.0.1") for _ in range(5)]
    assert [True, True, True, False, False] == allowed
    assert budget.allow("10.0.0.2")
    assert [] == said
    clock.advance(60)
    assert [("10.0.0.1", 2, 60)] == said
    # A new period starts with a fresh budget.
    assert budget.allow("10.0.0.1")


def test_clipped_keeps_short_values_and_cuts_long_ones() -> None:
    """Terminal values over 64 characters keep 64 and say their length."""
    assert "kiosk1" == clipped("kiosk1")
    assert "L" * 64 + "...(8000 characters)" == clipped("L" * 8000)
    assert "" == clipped(None)
