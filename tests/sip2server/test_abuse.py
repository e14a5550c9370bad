"""A terminal that misbehaves is answered and, past a limit, cut off; others go on.

Each test runs a real server on loopback, on SQLite and on PostgreSQL, and
talks to it with hand-built frames (see test_wire_behaviour for the helpers).
"""

from __future__ import annotations

import time
from typing import Any

import pytest_twisted
from twisted.internet import reactor

from sip2server.app import start_server
from sip2server.server import MAX_FAILED_LOGINS, MAX_PROTOCOL_ERRORS
from tests.sip2server.conftest import SipTarget, server_config
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    WRONG_LOGIN_FRAME,
    RawTerminal,
    in_thread,
    sip_now,
)


@pytest_twisted.inlineCallbacks
def test_a_flood_of_garbage_is_cut_off_and_others_are_served(
    sip_target: SipTarget,
) -> Any:
    """Thousands of unusable frames in one write close that connection, not others."""

    def talk() -> tuple[int, bool, float]:
        with RawTerminal(sip_target) as flooder, RawTerminal(sip_target) as other:
            flooder.send(b"\x00\r" * 20_000)
            started = time.monotonic()
            reply = other.exchange(STATUS_FRAME)
            waited = time.monotonic() - started
            assert reply.startswith(b"98"), reply
            closed = flooder.wait_for_close()
            answered = flooder.unread.count(b"96")
        return answered, closed, waited

    answered, closed, waited = yield in_thread(talk)

    assert closed
    assert MAX_PROTOCOL_ERRORS - 1 == answered
    # Not a timing assertion on speed: only that the other terminal was not
    # made to wait for the flood, which would take far longer than this.
    assert waited < 10


@pytest_twisted.inlineCallbacks
def test_repeated_failed_logins_close_the_connection(sip_target: SipTarget) -> Any:
    """After the limit of wrong passwords the server answers 940 and hangs up."""

    def talk() -> tuple[list[bytes], bool]:
        with RawTerminal(sip_target) as terminal:
            replies = [
                terminal.exchange(WRONG_LOGIN_FRAME) for _ in range(MAX_FAILED_LOGINS)
            ]
            return replies, terminal.wait_for_close()

    replies, closed = yield in_thread(talk)

    assert [b"940"] * MAX_FAILED_LOGINS == replies
    assert closed


@pytest_twisted.inlineCallbacks
def test_an_unreadable_date_gets_a_negative_reply_not_96(sip_target: SipTarget) -> Any:
    """A 17 whose date is impossible is refused as an 18 saying so, echoing AB."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            return terminal.exchange(b"1720261301    120000AOCITY|AB31234000000001|\r")

    reply = yield in_thread(talk)

    assert reply.startswith(b"1801")
    assert b"AB31234000000001|" in reply
    assert b"could not be read" in reply


@pytest_twisted.inlineCallbacks
def test_idle_connections_are_closed_after_the_idle_timeout(database_url: str) -> Any:
    """With idle_timeout set, a terminal that sends nothing is disconnected."""
    from tests.sip2server.conftest import stock_library  # noqa: PLC0415

    library = stock_library(database_url)
    config = server_config(database_url)
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"idle_timeout": 0.5})}
    )
    server = yield start_server(config, reactor)
    host, port = server.addresses()[0]
    target = SipTarget(host=host, port=port, library=library, server=server)

    def talk() -> tuple[bytes, bool]:
        with RawTerminal(target) as terminal:
            first = terminal.exchange(STATUS_FRAME)
            return first, terminal.wait_for_close()

    try:
        first, closed = yield in_thread(talk)
    finally:
        yield server.stop()
        library.database.dispose()

    assert first.startswith(b"98")
    assert closed


def test_sip_now_is_eighteen_characters() -> None:
    """The helper's date has the SIP2 width, so the frames above are well formed."""
    assert 18 == len(sip_now())


@pytest_twisted.inlineCallbacks
def test_a_locked_database_gets_a_refusal_saying_unavailable(sqlite_url: str) -> Any:
    """While another writer holds SQLite's lock, a checkout is refused, not 96."""
    import sqlite3  # noqa: PLC0415

    from tests.sip2server.conftest import ADA, ITEMS, stock_library  # noqa: PLC0415
    from tests.sip2server.test_wire_behaviour import checkout_body  # noqa: PLC0415

    library = stock_library(sqlite_url)
    config = server_config(sqlite_url)
    config = config.model_copy(
        update={"database": config.database.model_copy(update={"busy_timeout": 0.3})}
    )
    server = yield start_server(config, reactor)
    host, port = server.addresses()[0]
    target = SipTarget(host=host, port=port, library=library, server=server)
    blocker = sqlite3.connect(
        sqlite_url.removeprefix("sqlite:///"), timeout=0.1, check_same_thread=False
    )
    blocker.isolation_level = None

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(target) as terminal:
            terminal.login()
            blocker.execute("BEGIN IMMEDIATE")
            try:
                refused = terminal.exchange(checkout_body(ADA, ITEMS[9]) + b"\r")
            finally:
                blocker.execute("ROLLBACK")
            served = terminal.exchange(checkout_body(ADA, ITEMS[9]) + b"\r")
        return refused, served

    try:
        refused, served = yield in_thread(talk)
    finally:
        blocker.close()
        yield server.stop()
        library.database.dispose()

    assert refused.startswith(b"120")
    assert b"not available just now" in refused
    assert served.startswith(b"121")


@pytest_twisted.inlineCallbacks
def test_negative_reply_to_an_unreadable_value_keeps_ay_and_az(
    sip_target: SipTarget,
) -> Any:
    """A 17 with an impossible date and AY4 gets an 18 ending AY4AZ, checksummed."""
    from tests.sip2server.test_wire_behaviour import az, with_trailer  # noqa: PLC0415

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            body = b"1720261301    120000AOCITY|AB31234000000001|"
            return terminal.exchange(with_trailer(body, 4) + b"\r")

    reply = yield in_thread(talk)

    assert reply.startswith(b"18")
    covered, checksum = reply[:-4], reply[-4:]
    assert covered.endswith(b"|AY4AZ")
    assert az(covered) == checksum


@pytest_twisted.inlineCallbacks
def test_a_nul_in_a_barcode_is_bad_input_not_an_outage(sip_target: SipTarget) -> Any:
    """A NUL byte in AB gets an ordinary negative 18 on both engines."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            return terminal.exchange(b"17" + sip_now() + b"AOCITY|AB3123\x00001|\r")

    reply = yield in_thread(talk)

    assert reply.startswith(b"18")
    assert b"not available" not in reply


@pytest_twisted.inlineCallbacks
def test_warnings_per_connection_are_limited_even_between_good_frames(
    sip_target: SipTarget,
) -> Any:
    """Garbage interleaved with valid frames is logged in detail only a few times."""
    from twisted.logger import globalLogPublisher  # noqa: PLC0415

    from sip2server.server import DETAILED_WARNINGS  # noqa: PLC0415

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)

    def talk() -> int:
        with RawTerminal(sip_target) as terminal:
            terminal.send((b"9\r" + STATUS_FRAME) * 200)
            replies = [terminal.reply() for _ in range(400)]
        return sum(reply.startswith(b"98") for reply in replies)

    try:
        statuses = yield in_thread(talk)
    finally:
        globalLogPublisher.removeObserver(seen.append)

    detailed = [
        event
        for event in seen
        if event.get("log_format", "").startswith("protocol error")
    ]
    assert 200 == statuses
    assert DETAILED_WARNINGS == len(detailed)
