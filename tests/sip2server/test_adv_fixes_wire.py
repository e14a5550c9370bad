"""Fixes of the adversarial test of #5 (findings 2, 3, 4, 7, 8, 9), over the wire.

Each test runs a real server on loopback (`sip_target`, or a server of its
own from `server_config`) and speaks SIP2 bytes to it; database tests run on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import errno
import json
import os
import resource
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
import sqlalchemy as sa
from click.testing import CliRunner
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from ils.circulation import Circulation
from ils.models import Fee, FeeKind, Hold, Patron
from sip2server.app import start_server
from sip2server.cli import check_config
from sip2server.config import parse_config
from sip2server.mapping import SipCirculation, descriptor_shortfall
from sip2server.reload import reload_server
from tests.sip2server.conftest import (
    ADA,
    BEN,
    ITEMS,
    LOGIN,
    PASSWORD,
    SipTarget,
    server_config,
    serving,
    stock_library,
)
from tests.sip2server.test_mapping_checkin import checkin_frame, hold_frame, talk
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    RawTerminal,
    in_thread,
    sip_now,
)

WRONG_PIN_TEXT = b"The PIN does not match this library card."
LOCKED_TEXT = b"PIN is locked"


def add_fee(target: SipTarget, barcode: str, minor: int) -> None:
    """A damage fee of `minor` pence on the patron with `barcode`."""
    with target.library.database.transaction() as session:
        patron = session.scalars(sa.select(Patron).where(Patron.barcode == barcode))
        session.add(
            Fee(
                patron_id=patron.one().id,
                kind=FeeKind.DAMAGE,
                amount_minor=minor,
                balance_minor=minor,
                currency="GBP",
            )
        )


def owed(target: SipTarget, barcode: str) -> int:
    """What the patron still owes, in pence, read from the database."""
    with target.library.database.read() as session:
        total = session.scalar(
            sa.select(sa.func.sum(Fee.balance_minor))
            .join(Patron, Fee.patron_id == Patron.id)
            .where(Patron.barcode == barcode)
        )
    return int(total or 0)


def pay(patron: str, amount: bytes, pin: bytes | None) -> bytes:
    """37: fee type 01, cash, GBP, then BV AO AA and AD when given."""
    frame = b"37" + sip_now() + b"0100GBPBV" + amount + b"|AOCITY|AA" + patron.encode()
    if pin is not None:
        frame += b"|AD" + pin
    return frame + b"|\r"


def renew_all(patron: str, pin: bytes | None) -> bytes:
    """65: date, then AO AA and AD when given."""
    frame = b"65" + sip_now() + b"AOCITY|AA" + patron.encode()
    if pin is not None:
        frame += b"|AD" + pin
    return frame + b"|\r"


def status(patron: str, pin: bytes) -> bytes:
    """23 with a PIN."""
    return (
        b"23001" + sip_now() + b"AOCITY|AA" + patron.encode() + b"|AC|AD" + pin + b"|\r"
    )


# -- 8: 37 and 65 check the PIN -------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_payment_with_a_wrong_pin_is_refused_and_tells_no_balance(
    sip_target: SipTarget,
) -> None:
    """37 with a wrong AD pays nothing and says nothing of what is owed."""
    add_fee(sip_target, ADA, 250)

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(sip_target) as kiosk:
            kiosk.login()
            wrong = kiosk.exchange(pay(ADA, b"1.00", b"9999"))
            right = kiosk.exchange(pay(ADA, b"1.00", b"1234"))
        return wrong, right

    wrong, right = await in_thread(talk)

    assert wrong.startswith(b"38N"), wrong
    assert WRONG_PIN_TEXT in wrong, wrong
    assert b"owed" not in wrong, wrong
    assert right.startswith(b"38Y"), right
    # 2.50 owed, 1.00 paid with the right PIN only.
    assert 150 == owed(sip_target, ADA)


@pytest_twisted.ensureDeferred
async def test_a_locked_pin_refuses_payment_and_renew_all(
    sip_target: SipTarget,
) -> None:
    """After five wrong PINs, 37 and 65 with the right PIN get the lock message."""
    add_fee(sip_target, ADA, 250)

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(sip_target) as kiosk:
            kiosk.login()
            for _ in range(5):
                kiosk.exchange(status(ADA, b"0000"))
            return (
                kiosk.exchange(pay(ADA, b"1.00", b"1234")),
                kiosk.exchange(renew_all(ADA, b"1234")),
            )

    paid, renewed = await in_thread(talk)

    assert paid.startswith(b"38N"), paid
    assert LOCKED_TEXT in paid, paid
    assert b"Nothing is owed" not in paid, paid
    assert renewed.startswith(b"660"), renewed
    assert LOCKED_TEXT in renewed, renewed
    assert 250 == owed(sip_target, ADA)


@pytest_twisted.ensureDeferred
async def test_renew_all_with_a_wrong_pin_is_refused_even_with_nothing_on_loan(
    sip_target: SipTarget,
) -> None:
    """65 for a patron with no loans is ok only with the right PIN (or none)."""

    def talk() -> tuple[bytes, bytes, bytes]:
        with RawTerminal(sip_target) as kiosk:
            kiosk.login()
            return (
                kiosk.exchange(renew_all(BEN, b"9999")),
                kiosk.exchange(renew_all(BEN, b"1234")),
                kiosk.exchange(renew_all(BEN, None)),
            )

    wrong, right, without = await in_thread(talk)

    assert wrong.startswith(b"660"), wrong
    assert WRONG_PIN_TEXT in wrong, wrong
    assert right.startswith(b"661"), right
    assert without.startswith(b"661"), without


@pytest_twisted.async_yield_fixture
async def pin_required_target(database_url: str) -> AsyncIterator[SipTarget]:
    """The stock library behind an account with patron_pin_required."""
    library = stock_library(database_url)
    async with serving(
        library, server_config(database_url, patron_pin_required=True)
    ) as running:
        yield running


@pytest_twisted.ensureDeferred
async def test_pin_required_account_refuses_payment_and_renew_all_without_ad(
    pin_required_target: SipTarget,
) -> None:
    """With patron_pin_required, 37 and 65 without AD ask for the PIN."""
    add_fee(pin_required_target, ADA, 250)

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(pin_required_target) as kiosk:
            kiosk.login()
            return (
                kiosk.exchange(pay(ADA, b"1.00", None)),
                kiosk.exchange(renew_all(ADA, None)),
            )

    paid, renewed = await in_thread(talk)

    assert paid.startswith(b"38N"), paid
    assert b"Please enter your PIN." in paid, paid
    assert renewed.startswith(b"660"), renewed
    assert b"Please enter your PIN." in renewed, renewed
    assert 250 == owed(pin_required_target, ADA)


# -- 2: screen rewrites cannot stall the server ---------------------------------


def _config_file(tmp_path: Path, policy_lines: str) -> Path:
    config = tmp_path / "sip2server.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///x.sqlite3"\n\n'
        '[[accounts]]\nlogin = "k"\npassword = "p"\ninstitution = "CITY"\n'
        'location = "NORTH"\n\n[accounts.policy]\n' + policy_lines
    )
    return config


def test_check_config_refuses_a_rewrite_that_repeats_a_repetition(
    tmp_path: Path,
) -> None:
    """`ils check-config` exits 1 naming the rewrite whose pattern is (a+)+$."""
    config = _config_file(tmp_path, 'screen_rewrites = [{ pattern = "(a+)+$" }]\n')

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 1 == result.exit_code, result.output
    assert "accounts[0].policy.screen_rewrites[0].pattern" in result.output
    assert "repeats an unbounded repetition" in result.output


@pytest_twisted.async_yield_fixture
async def rewriting_target(database_url: str) -> AsyncIterator[SipTarget]:
    """The stock library behind an account whose AF is rewritten (a{10} -> b)."""
    library = stock_library(database_url)
    policy = {"screen_rewrites": [{"pattern": "a{10}", "replace": "b"}]}
    async with serving(library, server_config(database_url, policy=policy)) as running:
        yield running


@pytest_twisted.ensureDeferred
async def test_a_rewrite_reads_at_most_200_characters_of_terminal_text(
    rewriting_target: SipTarget,
) -> None:
    """An AF that echoes a 1,000-character BV is cut to 200 before rewriting."""

    def talk() -> bytes:
        with RawTerminal(rewriting_target) as kiosk:
            kiosk.login()
            return kiosk.exchange(pay(ADA, b"a" * 1000, b"1234"))

    reply = await in_thread(talk)

    assert reply.startswith(b"38N"), reply
    screens = [field[2:] for field in reply.split(b"|") if field.startswith(b"AF")]
    # "'" then 199 a's: 19 runs of ten rewritten to b, 9 a's left over.
    assert [b"'" + b"b" * 19 + b"a" * 9] == screens, screens


# -- 3: a template cannot ask for a gigabyte ------------------------------------


@pytest.mark.parametrize("spec", [">999999999", ">9223372036854775807", ".256"])
def test_check_config_refuses_a_template_width_over_255(
    tmp_path: Path, spec: str
) -> None:
    """A width or precision over 255 is refused at load, naming the key."""
    config = _config_file(
        tmp_path, f'patron_fields = {{ PB = "{{patron.surname:{spec}}}" }}\n'
    )

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 1 == result.exit_code, result.output
    assert "accounts[0].policy: patron_fields.PB" in result.output
    assert "a width or precision over 255 is not allowed" in result.output


def test_a_template_width_of_255_is_accepted(tmp_path: Path) -> None:
    """The largest width a SIP2 field can hold is still allowed."""
    config = _config_file(
        tmp_path, 'patron_fields = { PB = "{patron.surname:>255}" }\n'
    )

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 0 == result.exit_code, result.output


# -- 4: a failed transaction-log write does not break the next reload ----------


def _logged_config(database_url: str, journal: Path, *, logins: list[str]) -> Any:
    return parse_config(
        {
            "server": {
                "listen": ["tcp:0:interface=127.0.0.1"],
                "threads": 4,
                "transaction_log": str(journal),
            },
            "database": {"url": database_url},
            "accounts": [
                {
                    "login": login,
                    "password": PASSWORD,
                    "institution": "CITY",
                    "location": "NORTH",
                }
                for login in logins
            ],
        },
        "<test>",
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest_twisted.ensureDeferred
async def test_reload_after_a_full_disk_applies_and_reopens_the_transaction_log(
    sqlite_url: str, tmp_path: Path
) -> None:
    """With the log on a full disk, SIGHUP's reload still applies and reopens it."""
    from twisted.internet import reactor  # noqa: PLC0415 - see conftest

    library = stock_library(sqlite_url)
    journal = tmp_path / "tx" / "transactions.jsonl"
    journal.parent.mkdir()
    # Every write to /dev/full fails with ENOSPC, as on a full disk.
    journal.symlink_to("/dev/full")
    running = await start_server(
        _logged_config(sqlite_url, journal, logins=[LOGIN]), reactor
    )
    host, port = running.addresses()[0]
    target = SipTarget(host=host, port=port, library=library, server=running)
    second_login = b"9300CNkiosk2|CO" + PASSWORD.encode() + b"|CPNORTH|\r"
    try:
        with RawTerminal(target) as kiosk:
            await in_thread(kiosk.login)
            lost = await in_thread(kiosk.exchange, checkin_frame(ITEMS[0]))
            journal.unlink()

            applied = await reload_server(
                running,
                reactor,
                lambda: _logged_config(sqlite_url, journal, logins=[LOGIN, "kiosk2"]),
            )
            kept = await in_thread(kiosk.exchange, checkin_frame(ITEMS[1]))
        with RawTerminal(target) as second:
            new_account = await in_thread(second.exchange, second_login)
    finally:
        await running.stop()
        library.database.dispose()

    assert lost.startswith(b"10"), lost
    assert kept.startswith(b"10"), kept
    assert applied is True
    assert b"941" == new_account
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [("checkin", "...0002")] == [(x["command"], x["item"]) for x in lines]


# -- 7: running out of file descriptors ------------------------------------------


@contextmanager
def no_descriptor_left() -> Iterator[None]:
    """While inside, this process can open no new file (EMFILE), zone files included."""
    ZoneInfo.clear_cache()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # A new descriptor takes the lowest free number; a limit at that number
    # leaves every open one working and refuses any new one.
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest_twisted.ensureDeferred
async def test_status_is_answered_when_no_file_can_be_opened(
    sip_target: SipTarget,
) -> None:
    """With descriptors exhausted, a logged-in terminal's 99 still gets its 98."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as kiosk:
            kiosk.login()
            with no_descriptor_left():
                return kiosk.exchange(STATUS_FRAME)

    reply = await in_thread(talk)

    assert reply.startswith(b"98"), reply


def test_start_up_names_a_connection_limit_beyond_the_descriptor_limit() -> None:
    """5,000 terminals under a 1,024-file limit are named; 900 under 1,024 are not."""
    shortfall = descriptor_shortfall(5000, (1024, 4096))

    assert shortfall is not None
    assert "server.max_connections is 5000" in shortfall
    assert "only 1024 files" in shortfall
    # 1024 - 64 kept for the database, listeners and logs.
    assert "past 960 terminals" in shortfall
    assert descriptor_shortfall(900, (1024, 4096)) is None


def _out_of_descriptors() -> datetime:
    raise OSError(errno.EMFILE, "Too many open files")


@pytest_twisted.ensureDeferred
async def test_a_fault_in_an_immediate_reply_answers_96_and_keeps_the_connection(
    sip_target: SipTarget,
) -> None:
    """A status request whose answer fails gets 96; the next one, answered, 98."""
    running = sip_target.server
    listener = running.listeners[0]
    database = sip_target.library.database
    failing = SipCirculation(
        Circulation(database),
        branch_zones={},
        library_names={},
        database=database,
        clock=_out_of_descriptors,
    )

    def rebind_all(circulation: SipCirculation) -> None:
        for connection in list(listener.factory.connections):
            connection.rebind(listener.accounts, circulation)

    with RawTerminal(sip_target) as kiosk:
        await in_thread(kiosk.login)
        rebind_all(failing)
        refused = await in_thread(kiosk.exchange, STATUS_FRAME)
        rebind_all(running.circulation)
        answered = await in_thread(kiosk.exchange, STATUS_FRAME)

    assert refused.startswith(b"96"), refused
    assert answered.startswith(b"98"), answered


@pytest_twisted.ensureDeferred
async def test_start_warns_when_max_connections_exceeds_the_descriptor_limit(
    sqlite_url: str, warnings: list[str]
) -> None:
    """A server allowed as many terminals as it may open files warns at start."""
    from twisted.internet import reactor  # noqa: PLC0415 - see conftest

    library = stock_library(sqlite_url)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no descriptor limit in this process")
    config = parse_config(
        {
            "server": {
                "listen": ["tcp:0:interface=127.0.0.1"],
                "threads": 2,
                "max_connections": soft,
            },
            "database": {"url": sqlite_url},
            "accounts": [
                {
                    "login": LOGIN,
                    "password": PASSWORD,
                    "institution": "CITY",
                    "location": "NORTH",
                }
            ],
        },
        "<test>",
    )

    running = await start_server(config, reactor)
    await running.stop()
    library.database.dispose()

    assert any(
        f"server.max_connections is {soft}" in text and "RLIMIT_NOFILE" in text
        for text in warnings
    ), warnings


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """The text of every WARNING logged while the test runs."""
    seen: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") is LogLevel.warn:
            seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observe)


# -- 9: holds with a past expiry, or with AB and AJ that disagree ------------------


@pytest_twisted.ensureDeferred
async def test_hold_with_a_past_expiry_or_a_title_not_of_its_item_is_refused(
    sip_target: SipTarget,
) -> None:
    """15+ with BW in the past, or AJ not the title of AB, is refused; no hold."""
    # Two days back: already past in every branch's zone, whatever the machine's.
    days_ago = (datetime.now() - timedelta(days=2)).strftime("%Y%m%d    235959")
    frames = [
        hold_frame(b"+", BEN, item=ITEMS[4], expires=days_ago.encode()),
        hold_frame(b"+", BEN, item=ITEMS[4], title="Atlas of the Coast"),
        # Same title as the item, in another case: placed.
        hold_frame(b"+", BEN, item=ITEMS[4], title="TIDE TABLES, volume 05"),
    ]

    past, mismatch, matching = await in_thread(talk, sip_target, frames)

    assert past.startswith(b"160"), past
    assert b"That last date has already passed" in past, past
    assert mismatch.startswith(b"160"), mismatch
    assert b"The item scanned is not of the title named" in mismatch, mismatch
    assert matching.startswith(b"161"), matching
    with sip_target.library.database.read() as session:
        holds = session.scalar(sa.select(sa.func.count()).select_from(Hold))
    assert 1 == holds
