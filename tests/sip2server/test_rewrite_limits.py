"""Screen rewrites and templates that cannot hurt the server (#5, second trial:
findings F2, F3 and F4).

F2: a rewrite that backtracks without end runs at most `REWRITE_TIMEOUT` and
leaves its text as it was, while other terminals are answered. F3: a
replacement that cannot work is refused at load; a fault in the output policy
after a committed checkout still sends the reply and writes the transaction
log. F4: a template may not name a field the message fills itself. Behaviour is
tested on a real server on loopback; the refusals through `ils check-config`
and `ils serve`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import regex
from click.testing import CliRunner
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from sip2server.answers.output import apply_policy
from sip2server.app import start_server
from sip2server.cli import check_config, serve
from sip2server.config import parse_config
from sip2server.policy import TerminalPolicy
from sip2server.protocol import CheckoutResponse
from tests.sip2server.conftest import (
    ADA,
    ITEMS,
    LOGIN,
    PASSWORD,
    SipTarget,
    server_config,
    serving,
    stock_library,
)
from tests.sip2server.test_adv_fixes_wire import pay
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    RawTerminal,
    checkout_body,
    in_thread,
)

# A run of `a` in the trial's 37: the AF echoes the amount in quotes, so the
# run is followed by a quote and (a|a)+$ tries 2**26 ways before it fails.
# Without a time limit that held the interpreter about ten seconds (each more
# `a` doubles it); 26 keeps the test finite where the limit is missing.
RUN = 26
STALLING = "(a|a)+$"
# The pattern several times over: each runs out of time on its own, so the
# reply is held back for at least this many time limits.
COPIES = 5
# No answer to 99 comes near this unless the server is stalled.
BOUND = 2.0


def _config_file(tmp_path: Path, policy_lines: str, *, before: str = "") -> Path:
    config = tmp_path / "sip2server.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///x.sqlite3"\n\n'
        + before
        + '[[accounts]]\nlogin = "k"\npassword = "p"\ninstitution = "CITY"\n'
        'location = "NORTH"\n\n[accounts.policy]\n' + policy_lines
    )
    return config


@pytest.fixture
def server_log() -> Iterator[list[dict[str, Any]]]:
    """Every event the server logs while the test runs."""
    events: list[dict[str, Any]] = []
    observe = events.append
    globalLogPublisher.addObserver(observe)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observe)


def _mine(events: list[dict[str, Any]], level: LogLevel, words: str) -> list[str]:
    return [
        text
        for event in list(events)
        if event.get("log_level") is level and words in (text := formatEvent(event))
    ]


# -- F2: a rewrite runs for a bounded time --------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("(a|a)+$", "a" * 60 + "!"),
        ("(a|aa)+$", "a" * 60 + "!"),
        (r"(\w|\d)+$", "1" * 60 + "!"),
        ("(a{1,100}){1,100}$", "a" * 60 + "!"),
        ("a*" * 12 + "b", "a" * 150),
    ],
)
def test_a_trial_pattern_gives_up_in_bounded_time_and_changes_nothing(
    pattern: str, text: str
) -> None:
    """Each stalling pattern of the trial returns within 2 s on text it cannot
    match, with the text as it was (and, if it ran out of time, says so)."""
    policy = TerminalPolicy(screen_rewrites=[{"pattern": pattern, "replace": "x"}])
    slow: list[str] = []

    started = time.monotonic()
    result = policy.rewrite(text, slow.append)
    took = time.monotonic() - started

    assert text == result
    assert took < BOUND, took
    assert slow in ([], [pattern])


@pytest_twisted.async_yield_fixture
async def stalling_target(sqlite_url: str) -> AsyncIterator[SipTarget]:
    """The stock library behind an account whose AF rewrites stall: (a|a)+$."""
    library = stock_library(sqlite_url)
    policy = {"screen_rewrites": [{"pattern": STALLING, "replace": "x"}] * COPIES}
    async with serving(library, server_config(sqlite_url, policy=policy)) as running:
        yield running


@pytest_twisted.ensureDeferred
async def test_a_stalling_rewrite_does_not_delay_another_terminal(
    stalling_target: SipTarget, server_log: list[dict[str, Any]]
) -> None:
    """While (a|a)+$ works on one terminal's AF, another's 99s are answered in
    under 2 s; the rewrite is skipped and warned of once, naming account and
    pattern."""
    done = threading.Event()

    def stall() -> bytes:
        try:
            with RawTerminal(stalling_target, timeout=300) as kiosk:
                kiosk.login()
                return kiosk.exchange(pay(ADA, b"a" * RUN, b"1234"))
        finally:
            done.set()

    def keep_asking() -> list[float]:
        took = []
        with RawTerminal(stalling_target) as other:
            other.login()
            while not done.is_set():
                started = time.monotonic()
                answer = other.exchange(STATUS_FRAME)
                took.append(time.monotonic() - started)
                assert answer.startswith(b"98"), answer
                assert took[-1] < BOUND, took
        return took

    stalled = in_thread(stall)
    took = await in_thread(keep_asking)
    reply = await stalled

    assert took, "no 99 was answered while the rewrites ran"
    assert reply.startswith(b"38N"), reply
    # parse_amount's sentence, with the amount as the terminal sent it.
    screen = (
        b"|AF'" + b"a" * RUN + b"' is not an amount in GBP "
        b"(at most 2 decimal places, no sign or separators).|"
    )
    assert screen in reply, reply
    warnings = _mine(server_log, LogLevel.warn, "ran out of time")
    assert 1 == len(warnings), warnings
    assert LOGIN in warnings[0]
    assert STALLING in warnings[0]


# -- F3: replacements are read at load; a fault after commit still answers ------


@pytest.mark.parametrize(
    ("replace", "problem"),
    [
        ("\\\\9", "invalid group reference"),
        ("\\\\g<name>", "unknown group"),
        ("\\\\q", "bad escape"),
    ],
)
def test_check_config_refuses_a_replacement_that_cannot_work(
    tmp_path: Path, replace: str, problem: str
) -> None:
    """`ils check-config` exits 1 naming the rewrite's replace key and why."""
    config = _config_file(
        tmp_path, f'screen_rewrites = [{{ pattern = "not", replace = "{replace}" }}]\n'
    )

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 1 == result.exit_code, result.output
    assert "accounts[0].policy.screen_rewrites[0].replace" in result.output
    assert problem in result.output


def test_serve_refuses_an_institutions_replacement_naming_its_table(
    tmp_path: Path,
) -> None:
    """`ils serve` will not start with \\9 in an [institution.CITY] rewrite,
    and names that table's key, not the account's."""
    institution = (
        "[institution.CITY.policy]\n"
        'screen_rewrites = [{ pattern = "not", replace = "\\\\9" }]\n\n'
    )
    config = _config_file(tmp_path, "", before=institution)

    result = CliRunner().invoke(serve, ["--config", str(config)])

    assert 1 == result.exit_code, result.output
    assert "institution.CITY.policy.screen_rewrites[0].replace" in result.output
    assert "accounts[0]" not in result.output


@pytest_twisted.async_yield_fixture
async def faulty_target(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[SipTarget, Path]]:
    """A server whose account's rewrite of "due back" fails when it runs, and
    the transaction log it writes."""
    from twisted.internet import reactor  # noqa: PLC0415 - see conftest

    library = stock_library(database_url)
    journal = tmp_path / "transactions.log"
    config = parse_config(
        {
            "server": {
                "listen": ["tcp:0:interface=127.0.0.1"],
                "threads": 4,
                "transaction_log": str(journal),
            },
            "database": {"url": database_url},
            "accounts": [
                {
                    "login": LOGIN,
                    "password": PASSWORD,
                    "institution": "CITY",
                    "location": "NORTH",
                    "policy": {
                        "screen_rewrites": [
                            {"pattern": "due back", "replace": "back by"}
                        ]
                    },
                }
            ],
        },
        "<test>",
    )
    # The load check now refuses \9 with no group 9, so the fault is planted
    # after loading: it stands for any failure of the policy at run time.
    config.accounts[0].policy._rewrites = ((regex.compile("due back"), "\\9"),)
    server = await start_server(config, reactor)
    host, port = server.addresses()[0]
    try:
        target = SipTarget(host=host, port=port, library=library, server=server)
        yield target, journal
    finally:
        await server.stop()
        library.database.dispose()


@pytest_twisted.ensureDeferred
async def test_a_policy_fault_after_a_checkout_still_answers_and_logs(
    faulty_target: tuple[SipTarget, Path], server_log: list[dict[str, Any]]
) -> None:
    """Two checkouts whose rewrite fails get 12 ok with the AF not rewritten
    (not 96), both reach the transaction log, and the fault is logged once."""
    target, journal = faulty_target

    def talk() -> list[bytes]:
        with RawTerminal(target) as kiosk:
            kiosk.login()
            return [
                kiosk.exchange(checkout_body(ADA, item) + b"\r") for item in ITEMS[:2]
            ]

    replies = await in_thread(talk)

    for reply in replies:
        assert reply.startswith(b"121"), reply
        assert b"|AFChecked out; due back " in reply, reply
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    checkouts = [(line["item"], line["outcome"]) for line in lines]
    assert [("...0001", "ok"), ("...0002", "ok")] == checkouts
    faults = _mine(server_log, LogLevel.error, "output policy")
    assert 1 == len(faults), faults
    assert LOGIN in faults[0]


# -- F4: templates may not name the message's own fields -------------------------


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("patron_fields", "AA"),
        ("patron_fields", "AO"),
        ("patron_fields", "AE"),
        ("item_fields", "AB"),
        ("item_fields", "AJ"),
        ("item_fields", "AO"),
        ("item_fields", "CT"),
    ],
)
def test_check_config_refuses_a_template_for_a_messages_own_field(
    tmp_path: Path, key: str, code: str
) -> None:
    """A template naming AA, AB, AO, AE, AJ or CT is refused, naming key and code."""
    root = "patron.surname" if key == "patron_fields" else "item.title"
    config = _config_file(tmp_path, f'{key} = {{ {code} = "{{{root}}}" }}\n')

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 1 == result.exit_code, result.output
    assert f"accounts[0].policy.{key}" in result.output
    assert f"{code} is the " in result.output
    assert "the server sends itself" in result.output


def test_check_config_names_the_institution_table_of_an_own_field_template(
    tmp_path: Path,
) -> None:
    """item_fields AJ in [institution.CITY.policy] is refused under that key."""
    institution = '[institution.CITY.policy]\nitem_fields = { AJ = "{item.title}" }\n\n'
    config = _config_file(tmp_path, "", before=institution)

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 1 == result.exit_code, result.output
    assert "institution.CITY.policy.item_fields" in result.output
    assert "AJ is the title identifier" in result.output


def test_an_extra_field_the_message_fills_itself_is_not_sent_twice() -> None:
    """A 12 that carries its own AJ loses an extra AJ; other extras stay."""
    reply = CheckoutResponse(
        ok=True,
        renewal_ok=False,
        transaction_date=datetime(2026, 12, 4, 12, 0),
        institution_id="CITY",
        patron_identifier=ADA,
        item_identifier=ITEMS[0],
        title_identifier="Tide Tables, volume 01",
        due_date="20261218    235900",
        extra_fields=(("AJ", "Another title"), ("XI", "BOOK")),
    )

    shown = apply_policy(reply, TerminalPolicy())

    assert (("XI", "BOOK"),) == shown.extra_fields
