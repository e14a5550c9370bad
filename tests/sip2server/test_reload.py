"""Reloading the configuration of a running server, through the path SIGHUP takes.

A real server on loopback with real terminals: the reload is `reload_server`,
which `ils serve` calls on SIGHUP (test_operations sends the signal itself to a
server process once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from sip2server.config import ServerConfig, load_config
from sip2server.reload import reload_server
from tests.sip2server.conftest import ADA, ITEMS
from tests.sip2server.test_transports import GATE_LOGIN_FRAME, Launcher, target
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    checkout_body,
    in_thread,
)

SORTER_LOGIN_FRAME = b"9300CNsorter1|COsorter-secret|CPNORTH|\r"


def with_sorter(config: ServerConfig) -> ServerConfig:
    """`config` with one more account, sorter1, and the gate removed."""
    sorter = config.accounts[0].model_copy(
        update={"login": "sorter1", "password": "sorter-secret"}
    )
    return config.model_copy(update={"accounts": [config.accounts[0], sorter]})


async def reload(running: Any, load: Any) -> bool:
    """Run the reload SIGHUP runs, collecting what it logs."""
    from twisted.internet import reactor  # noqa: PLC0415

    result: bool = await reload_server(running, reactor, load)
    return result


@pytest_twisted.ensureDeferred
async def test_reload_serves_new_accounts_and_keeps_connected_terminals(
    launcher: Launcher,
) -> None:
    """A terminal logged in before the reload goes on; new logins see new accounts."""
    running = await launcher.start()
    new_config = with_sorter(launcher.config())
    before = RawTerminal(target(running))
    try:
        await in_thread(before.login)

        applied = await reload(running, lambda: new_config)

        def talk() -> tuple[bytes, bytes, bytes, bytes]:
            checkout = before.exchange(checkout_body(ADA, ITEMS[0]) + b"\r")
            with RawTerminal(target(running)) as sorter:
                sorter_login = sorter.exchange(SORTER_LOGIN_FRAME)
            with RawTerminal(target(running)) as gate:
                gate_login = gate.exchange(GATE_LOGIN_FRAME)
            return checkout, sorter_login, gate_login, before.exchange(STATUS_FRAME)

        checkout, sorter_login, gate_login, status = await in_thread(talk)
    finally:
        before.close()

    assert applied
    assert checkout.startswith(b"121")
    assert b"941" == sorter_login
    assert b"940" == gate_login
    assert status.startswith(b"98")


@pytest_twisted.ensureDeferred
async def test_a_broken_file_is_refused_naming_file_and_key_and_the_old_one_stays(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A reload of a file with a bad key logs file, key and problem; logins go on."""
    running = await launcher.start()
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[database]\nurl = "sqlite:///x"\n\n[[accounts]]\nlogin = "k"\n'
        'password = "p"\ninstitution = "CITY"\nlocation = "NORTH"\n'
        "max_connections = -1\n"
    )
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        applied = await reload(running, lambda: load_config(broken))
    finally:
        globalLogPublisher.removeObserver(seen.append)

    def login() -> bytes:
        with RawTerminal(target(running)) as terminal:
            return terminal.exchange(LOGIN_FRAME)

    assert not applied
    problems = [str(event.get("problem", "")) for event in seen]
    assert any(
        f"{broken}: accounts[0].max_connections: Input should be greater than or "
        "equal to 0" in problem
        for problem in problems
    ), problems
    assert b"941" == await in_thread(login)


@pytest_twisted.ensureDeferred
async def test_a_reload_naming_an_unknown_branch_is_refused(
    launcher: Launcher,
) -> None:
    """An account at a branch the database lacks is refused; the old accounts stay."""
    running = await launcher.start()
    config = launcher.config()
    wrong = config.model_copy(
        update={
            "accounts": [config.accounts[0].model_copy(update={"location": "NOWHERE"})]
        }
    )

    applied = await reload(running, lambda: wrong)

    def login() -> bytes:
        with RawTerminal(target(running)) as terminal:
            return terminal.exchange(GATE_LOGIN_FRAME)

    assert not applied
    assert b"941" == await in_thread(login)


@pytest_twisted.ensureDeferred
async def test_a_refused_reload_logs_each_problem_on_its_own_naming_the_file(
    launcher: Launcher,
) -> None:
    """An account whose institution and location are both missing from the
    database gives two error events, one line each, each starting with the
    configuration file's name, as the file's own errors do."""
    running = await launcher.start()
    config = launcher.config()
    broken = config.accounts[0].model_copy(
        update={"login": "broken", "institution": "NOPE", "location": "NOWHERE"}
    )
    wrong = config.model_copy(update={"accounts": [*config.accounts, broken]})
    source = Path("/etc/ils/sip2server.toml")
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        applied = await reload_server(running, _reactor(), lambda: wrong, source=source)
    finally:
        globalLogPublisher.removeObserver(seen.append)

    index = len(config.accounts)
    texts = [
        formatEvent(event) for event in seen if event.get("log_level") == LogLevel.error
    ]
    assert not applied
    assert 2 == len(texts), texts
    assert texts[0].startswith(
        "configuration not reloaded, the running one stays: "
        f"{source}: accounts[{index}] (broken): institution 'NOPE' is not in"
    )
    assert texts[1].startswith(
        "configuration not reloaded, the running one stays: "
        f"{source}: accounts[{index}] (broken): location 'NOWHERE' is not a branch"
    )
    assert not any("\n" in text for text in texts)


def _reactor() -> Any:
    from twisted.internet import reactor  # noqa: PLC0415

    return reactor


@pytest_twisted.ensureDeferred
async def test_reload_changes_which_accounts_a_listener_admits(
    launcher: Launcher,
) -> None:
    """A listener's account list, changed in the file, applies to the next login."""
    listeners = [{"endpoint": "tcp:0:interface=127.0.0.1", "accounts": ["gate1"]}]
    running = await launcher.start(listeners=listeners)
    opened = [
        {**listeners[0], "accounts": ["gate1", "kiosk1"]},
    ]
    new_config = launcher.config(listeners=opened)

    def login() -> bytes:
        with RawTerminal(target(running)) as terminal:
            return terminal.exchange(LOGIN_FRAME)

    refused = await in_thread(login)
    applied = await reload(running, lambda: new_config)
    admitted = await in_thread(login)

    assert (b"940", True, b"941") == (refused, applied, admitted)
