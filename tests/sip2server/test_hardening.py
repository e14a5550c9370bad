"""Hardening against floods and odd input (#5 adversarial findings 5, 6, 10, 11).

Each test runs a real server on loopback over a copy of the stock SQLite
library; terminals are raw sockets speaking SIP2 bytes, behind PROXY headers
where a test needs many source addresses.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from sip2server.app import start_server
from sip2server.logs import text_file_observer
from tests.sip2server.conftest import ADA
from tests.sip2server.test_fees_wire import pay_frame
from tests.sip2server.test_metrics import fetch
from tests.sip2server.test_transports import Launcher, proxy_v1, target
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    WRONG_LOGIN_FRAME,
    RawTerminal,
    in_thread,
    sip_now,
)

PROXIED = [{"endpoint": "haproxy:tcp:0:interface=127.0.0.1"}]


def item_information() -> bytes:
    """A 17 for an item of the stock library."""
    return b"17" + sip_now() + b"AOCITY|AB31234000000001|\r"


# -- 6: password hashing never delays circulation ------------------------------


@pytest_twisted.ensureDeferred
async def test_item_information_is_answered_while_every_login_thread_is_busy(
    launcher: Launcher,
) -> None:
    """A logged-in gate's 17 does not wait behind logins being checked."""
    running = await launcher.start(server={"login_threads": 1})
    assert running.logins is not None
    pool = running.logins.pool
    release = threading.Event()

    def talk() -> tuple[bytes, bytes]:
        with (
            RawTerminal(target(running)) as gate,
            RawTerminal(target(running)) as other,
        ):
            gate.login()
            pool.callInThread(release.wait, 30)  # the login thread is taken
            other.send(LOGIN_FRAME)  # so this login waits
            answer = gate.exchange(item_information())
            release.set()
            return answer, other.reply()

    try:
        answer, other = await in_thread(talk)
    finally:
        release.set()
    assert answer.startswith(b"18")
    assert other == b"941"


@pytest_twisted.ensureDeferred
async def test_login_beyond_the_backlog_is_refused_at_once_as_busy(
    launcher: Launcher,
) -> None:
    """With the login thread taken and one login waiting, the next gets 940."""
    running = await launcher.start(server={"login_threads": 1, "login_backlog": 1})
    assert running.logins is not None
    release = threading.Event()
    running.logins.pool.callInThread(release.wait, 30)

    def talk() -> tuple[bytes, bytes]:
        with (
            RawTerminal(target(running)) as first,
            RawTerminal(target(running)) as second,
        ):
            first.send(LOGIN_FRAME)
            refused = second.exchange(LOGIN_FRAME)  # answered before the release
            release.set()
            return refused, first.reply()

    try:
        refused, accepted = await in_thread(talk)
    finally:
        release.set()
    assert (refused, accepted) == (b"940", b"941")
    assert running.logins.refused == 1


@pytest_twisted.ensureDeferred
async def test_failed_logins_lock_out_the_whole_ipv6_64(launcher: Launcher) -> None:
    """Failed logins from one /64 count together; another /64 is unaffected."""
    running = await launcher.start(
        listeners=PROXIED, server={"max_failed_logins_per_address": 2}
    )

    def login_from(source: str, frame: bytes) -> bytes:
        with RawTerminal(target(running)) as terminal:
            terminal.send(proxy_v1(source))
            return terminal.exchange(frame)

    failed = [
        await in_thread(login_from, "2001:db8:7::1", WRONG_LOGIN_FRAME),
        await in_thread(login_from, "2001:db8:7::2", WRONG_LOGIN_FRAME),
    ]
    same_64 = await in_thread(login_from, "2001:db8:7::99", LOGIN_FRAME)
    other_64 = await in_thread(login_from, "2001:db8:8::1", LOGIN_FRAME)

    assert failed == [b"940", b"940"]
    assert same_64 == b"940"
    assert other_64 == b"941"


@pytest.mark.parametrize("source", ["192.0.2.1", "192.0.2.2"])
def test_ipv4_addresses_are_counted_one_by_one(source: str) -> None:
    """An IPv4 address is its own key, not widened to a network."""
    from sip2server.accounts import address_key  # noqa: PLC0415

    assert address_key(source) == source


# -- 5: connections that never log in cannot fill the server --------------------


@pytest_twisted.ensureDeferred
async def test_a_connection_that_does_not_log_in_in_time_is_closed(
    launcher: Launcher,
) -> None:
    """Past login_timeout a silent connection is closed; a logged-in one stays."""
    running = await launcher.start(
        listeners=[{"endpoint": "tcp:0:interface=127.0.0.1", "login_timeout": 0.2}]
    )

    def talk() -> tuple[bytes, bytes]:
        with (
            RawTerminal(target(running)) as kiosk,
            RawTerminal(target(running)) as silent,
        ):
            kiosk.login()
            # Blocks until the server closes it (or the read times out).
            closed = silent.sock.recv(16)
            return closed, kiosk.exchange(item_information())

    closed, answer = await in_thread(talk)
    assert closed == b""
    assert answer.startswith(b"18")


@pytest_twisted.ensureDeferred
async def test_connections_not_logged_in_are_capped_per_address(
    launcher: Launcher,
) -> None:
    """The third not-logged-in connection from one address is closed; others pass."""
    running = await launcher.start(
        listeners=PROXIED, server={"max_unauthenticated_per_address": 2}
    )

    def connect(source: str) -> RawTerminal:
        terminal = RawTerminal(target(running))
        terminal.send(proxy_v1(source))
        return terminal

    def talk() -> list[bytes]:
        first, second = connect("198.51.100.5"), connect("198.51.100.5")
        try:
            # Answered: the header has been read and the two are counted.
            seen = [first.exchange(STATUS_FRAME)[:2], second.exchange(STATUS_FRAME)[:2]]
            with connect("198.51.100.5") as third:
                seen.append(third.sock.recv(16))  # closed at once
            with connect("198.51.100.6") as elsewhere:
                seen.append(elsewhere.exchange(STATUS_FRAME)[:2])
            seen.append(first.exchange(LOGIN_FRAME))  # no longer counted
            with connect("198.51.100.5") as fourth:
                seen.append(fourth.exchange(STATUS_FRAME)[:2])
            return seen
        finally:
            first.close()
            second.close()

    seen = await in_thread(talk)
    assert seen == [b"98", b"98", b"", b"98", b"941", b"98"]


# -- 11: PROXY v1 UNKNOWN ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_proxy_unknown_keeps_the_socket_address(launcher: Launcher) -> None:
    """`PROXY UNKNOWN` (a balancer's own check) is served from the socket's address."""
    running = await launcher.start(
        listeners=PROXIED, kiosk={"allowed_networks": ["127.0.0.0/8"]}
    )

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(target(running)) as terminal:
            terminal.send(b"PROXY UNKNOWN\r\n")
            status = terminal.exchange(STATUS_FRAME)[:2]
            return status, terminal.exchange(LOGIN_FRAME)

    assert await in_thread(talk) == (b"98", b"941")


# -- 11: the transaction log holds only logged-in terminals' work ----------------


@pytest_twisted.ensureDeferred
async def test_requests_before_login_write_nothing_to_the_transaction_log(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Refusals before login leave no line; a logged-in terminal's payment does."""
    journal = tmp_path / "transactions.jsonl"
    running = await launcher.start(server={"transaction_log": str(journal)})
    payment = pay_frame(ADA, b"1.00")

    def talk() -> list[bytes]:
        with RawTerminal(target(running)) as terminal:
            answers = [terminal.exchange(payment)[:3] for _ in range(3)]
            answers.append(terminal.exchange(WRONG_LOGIN_FRAME))
            terminal.login()
            answers.append(terminal.exchange(payment)[:2])
            return answers

    answers = await in_thread(talk)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert answers == [b"38N", b"38N", b"38N", b"940", b"38"]
    assert [line["command"] for line in lines] == ["fee_paid"]
    assert lines[0]["terminal"] == "kiosk1"


# -- 11: control characters from terminals never reach the text log raw -----------


@pytest_twisted.ensureDeferred
async def test_control_characters_in_a_login_are_escaped_in_the_text_log(
    launcher: Launcher,
) -> None:
    """ESC, BEL, NUL and U+2028 in a login name are written as escapes."""
    running = await launcher.start()
    stream = io.StringIO()
    observer = text_file_observer(stream)
    globalLogPublisher.addObserver(observer)
    evil = "9300CNevil\x1b[31m\x07\x00\u2028FORGED|COx|CPNORTH|\r".encode()

    def talk() -> bytes:
        with RawTerminal(target(running)) as terminal:
            return terminal.exchange(evil)

    try:
        answer = await in_thread(talk)
    finally:
        globalLogPublisher.removeObserver(observer)
    written = stream.getvalue()
    refused = [line for line in written.splitlines() if "login refused" in line]
    assert answer == b"940"
    assert len(refused) == 1
    assert "login=evil\\x1b[31m\\x07\\x00\\u2028FORGED" in refused[0]
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u2028]", written)


# -- 11: /healthz and 98 agree while SQLite is locked by another writer -----------


@pytest_twisted.ensureDeferred
async def test_health_and_status_agree_while_the_database_is_write_locked(
    launcher: Launcher,
) -> None:
    """With SQLite write-locked elsewhere, /healthz is 503 and 98 says offline."""
    from twisted.internet import reactor  # noqa: PLC0415

    launcher.metrics = {"listen": "tcp:0:interface=127.0.0.1"}
    config = launcher.config()
    config = config.model_copy(
        update={"database": config.database.model_copy(update={"busy_timeout": 0.2})}
    )
    running = await start_server(config, reactor)
    launcher.started.append(running)
    address = running.operations_address()
    assert address is not None
    path = launcher.database_url.removeprefix("sqlite:///")

    def status() -> bytes:
        with RawTerminal(target(running)) as terminal:
            return terminal.exchange(STATUS_FRAME)[:3]

    def locked() -> tuple[int, bytes]:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            code, _ = fetch(address, "/healthz")
            return code, status()
        finally:
            other.execute("ROLLBACK")
            other.close()

    before = (await in_thread(fetch, address, "/healthz"))[0], await in_thread(status)
    during = await in_thread(locked)
    after = (await in_thread(fetch, address, "/healthz"))[0], await in_thread(status)
    assert before == (200, b"98Y")
    assert during == (503, b"98N")
    assert after == (200, b"98Y")


# -- 11: a refusal before login dates itself in UTC, marked as such --------------


@pytest_twisted.ensureDeferred
async def test_a_refusal_before_login_carries_its_date_as_utc(
    launcher: Launcher,
) -> None:
    """24 before login has ZZZZ `   Z`: its time is UTC, not the terminal's."""
    running = await launcher.start()
    frame = b"23001" + sip_now() + b"AOCITY|AA" + ADA.encode() + b"|AC|AD1234|\r"

    def talk() -> bytes:
        with RawTerminal(target(running)) as terminal:
            return terminal.exchange(frame)

    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    reply = await in_thread(talk)
    after = dt.datetime.now(dt.UTC)
    # 24, 14 status flags, 3 language digits, then the 18-character date.
    date = reply[19:37].decode()
    assert reply[:2] == b"24"
    assert date[8:12] == "   Z"
    sent = dt.datetime.strptime(date[:8] + date[12:], "%Y%m%d%H%M%S")
    assert before <= sent.replace(tzinfo=dt.UTC) <= after


# -- 10: IPv4-mapped networks in allowed_networks ---------------------------------


@pytest_twisted.ensureDeferred
async def test_an_ipv4_mapped_allowed_network_admits_its_ipv4_terminals(
    launcher: Launcher,
) -> None:
    """`::ffff:10.9.0.0/112` admits 10.9.0.5, given as IPv4 or mapped; not 10.8.0.5."""
    running = await launcher.start(
        listeners=PROXIED, kiosk={"allowed_networks": ["::ffff:10.9.0.0/112"]}
    )

    def login_from(source: str) -> bytes:
        with RawTerminal(target(running)) as terminal:
            terminal.send(proxy_v1(source))
            return terminal.exchange(LOGIN_FRAME)

    answers = [
        await in_thread(login_from, source)
        for source in ("10.9.0.5", "::ffff:10.9.0.5", "10.8.0.5")
    ]
    assert answers == [b"941", b"941", b"940"]
    account = running.config.accounts[0]
    assert account.allowed_networks == ("10.9.0.0/16",)
