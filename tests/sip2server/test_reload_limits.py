"""A reload (SIGHUP) applies login_timeout, max_unauthenticated_per_address and
new TLS files to a running server (#5).

The deadline arithmetic is shown with a Clock over a StringTransport; the rest
on a real server on loopback, reloaded through `reload_server` as SIGHUP does,
with raw sockets and TLS terminals as clients.
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from sip2server.accounts import AccountBook
from sip2server.app import RunningServer
from sip2server.config import ServerConfig
from sip2server.listeners import move_login_deadlines
from sip2server.reload import reload_server
from sip2server.server import SipConnection, SipServerFactory
from sip2server.session import TerminalSession
from tests.sip2server.test_transports import (
    Launcher,
    TlsFiles,
    make_tls_files,
    proxy_v1,
    target,
    tls_terminal,
)
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    in_thread,
)

PROXIED = [{"endpoint": "haproxy:tcp:0:interface=127.0.0.1"}]


# -- login deadlines moved, under a Clock -----------------------------------------


def listening(clock: task.Clock, login_timeout: float) -> SipServerFactory:
    """A listener's factory whose login deadlines run on `clock`."""
    return SipServerFactory(
        reactor=clock,
        threadpool=None,  # type: ignore[arg-type]
        new_session=lambda number: TerminalSession(
            AccountBook([]),
            None,  # type: ignore[arg-type]
            connection_id=number,
        ),
        login_timeout=login_timeout,
    )


def connect(factory: SipServerFactory) -> StringTransport:
    """One terminal connected and not logged in; its transport."""
    connection: SipConnection = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.5", 50000))
    connection.makeConnection(transport)
    return transport


def test_a_lowered_timeout_counts_from_when_the_terminal_connected() -> None:
    """30 s lowered to 15 s after 10 s: the terminal is closed at 15 s, not 25 s."""
    clock = task.Clock()
    factory = listening(clock, 30)
    transport = connect(factory)

    clock.advance(10)
    moved = move_login_deadlines(factory, 15)
    clock.advance(4.9)
    open_at_14_9 = not transport.disconnecting
    clock.advance(0.2)

    assert 1 == moved
    assert open_at_14_9
    assert transport.disconnecting
    assert 15 == factory.login_timeout


def test_a_raised_timeout_gives_a_waiting_terminal_the_longer_time() -> None:
    """30 s raised to 60 s after 10 s: still open at 59.9 s, closed after 60 s."""
    clock = task.Clock()
    factory = listening(clock, 30)
    transport = connect(factory)

    clock.advance(10)
    move_login_deadlines(factory, 60)
    clock.advance(49.9)
    open_at_59_9 = not transport.disconnecting
    clock.advance(0.2)

    assert open_at_59_9
    assert transport.disconnecting


def test_a_deadline_already_past_under_the_new_timeout_closes_at_once() -> None:
    """After 10 s, a new timeout of 5 s closes the waiting terminal right away."""
    clock = task.Clock()
    factory = listening(clock, 30)
    transport = connect(factory)

    clock.advance(10)
    move_login_deadlines(factory, 5)
    clock.advance(0)

    assert transport.disconnecting


def test_a_timeout_of_zero_lifts_the_deadline_of_waiting_terminals() -> None:
    """Set to 0, the old deadline no longer closes anything."""
    clock = task.Clock()
    factory = listening(clock, 30)
    transport = connect(factory)

    move_login_deadlines(factory, 0)
    clock.advance(1000)

    assert not transport.disconnecting
    assert [] == clock.getDelayedCalls()


def test_a_terminal_without_a_deadline_gets_one_from_the_reload() -> None:
    """With no timeout before, the new one counts from the reload, at 100 s."""
    clock = task.Clock()
    factory = listening(clock, 0)
    transport = connect(factory)

    clock.advance(100)
    move_login_deadlines(factory, 5)
    clock.advance(4.9)
    open_before = not transport.disconnecting
    clock.advance(0.2)

    assert open_before
    assert transport.disconnecting


# -- a running server reloaded -------------------------------------------------------


async def reload(running: RunningServer, config: ServerConfig) -> tuple[bool, Any]:
    """Reload `running` with `config` as SIGHUP does; (applied, notes logged)."""
    from twisted.internet import reactor  # noqa: PLC0415

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        applied: bool = await reload_server(running, reactor, lambda: config)
    finally:
        globalLogPublisher.removeObserver(events.append)
    said = [
        str(event.get("note", event.get("problem", "")))
        for event in events
        if "note" in event or "problem" in event
    ]
    return applied, said


@pytest_twisted.ensureDeferred
async def test_a_lower_login_timeout_closes_waiting_terminals_not_logged_in_ones(
    launcher: Launcher,
) -> None:
    """After the reload, waiting and new connections are closed; a kiosk stays."""
    running = await launcher.start(server={"login_timeout": 600})
    kiosk, waiting = RawTerminal(target(running)), RawTerminal(target(running))
    try:
        await in_thread(kiosk.login)
        assert b"98" == (await in_thread(waiting.exchange, STATUS_FRAME))[:2]

        applied, _ = await reload(
            running, launcher.config(server={"login_timeout": 0.2})
        )
        waiting_closed = await in_thread(waiting.wait_for_close)
        with RawTerminal(target(running)) as late:
            late_closed = await in_thread(late.wait_for_close)
        kiosk_status = await in_thread(kiosk.exchange, STATUS_FRAME)
    finally:
        kiosk.close()
        waiting.close()

    assert applied
    assert waiting_closed
    assert late_closed
    assert b"98" == kiosk_status[:2]


@pytest_twisted.ensureDeferred
async def test_a_login_timeout_given_on_reload_reaches_connections_without_one(
    launcher: Launcher,
) -> None:
    """Started with no login timeout, a waiting terminal is closed once one is set."""
    running = await launcher.start(server={"login_timeout": 0})

    with RawTerminal(target(running)) as waiting:
        assert b"98" == (await in_thread(waiting.exchange, STATUS_FRAME))[:2]
        await reload(running, launcher.config(server={"login_timeout": 0.2}))
        closed = await in_thread(waiting.wait_for_close)

    assert closed


@pytest_twisted.ensureDeferred
async def test_a_listeners_own_login_timeout_wins_on_reload(
    launcher: Launcher,
) -> None:
    """A listener's login_timeout, not the server's, is what the reload applies."""
    listeners = [{"endpoint": "tcp:0:interface=127.0.0.1", "login_timeout": 300}]
    running = await launcher.start(listeners=listeners, server={"login_timeout": 5})

    await reload(
        running, launcher.config(listeners=listeners, server={"login_timeout": 7})
    )
    kept = running.listeners[0].factory.login_timeout
    listeners[0]["login_timeout"] = 0.5
    await reload(
        running, launcher.config(listeners=listeners, server={"login_timeout": 7})
    )

    assert 300 == kept
    assert 0.5 == running.listeners[0].factory.login_timeout


@pytest_twisted.ensureDeferred
async def test_max_unauthenticated_per_address_follows_each_reload(
    launcher: Launcher,
) -> None:
    """Raised, more waiting connections fit; lowered, those in stay, new ones go."""
    running = await launcher.start(
        listeners=PROXIED, server={"max_unauthenticated_per_address": 1}
    )
    opened: list[RawTerminal] = []

    def arrive() -> bytes:
        # The first two bytes of the status reply, or b"" once closed.
        terminal = RawTerminal(target(running))
        opened.append(terminal)
        terminal.send(proxy_v1("198.51.100.5"))
        try:
            return terminal.exchange(STATUS_FRAME)[:2]
        except ConnectionError:
            return b""

    async def status_of_all_open() -> list[bytes]:
        return [
            (await in_thread(terminal.exchange, STATUS_FRAME))[:2] for terminal in kept
        ]

    try:
        at_one = [await in_thread(arrive), await in_thread(arrive)]
        kept = [opened[0]]
        await reload(
            running,
            launcher.config(
                listeners=PROXIED, server={"max_unauthenticated_per_address": 3}
            ),
        )
        at_three = [await in_thread(arrive) for _ in range(3)]
        kept += opened[2:4]
        await reload(
            running,
            launcher.config(
                listeners=PROXIED, server={"max_unauthenticated_per_address": 1}
            ),
        )
        back_at_one = await in_thread(arrive)
        still_served = await status_of_all_open()
    finally:
        for terminal in opened:
            terminal.close()

    assert [b"98", b""] == at_one
    assert [b"98", b"98", b""] == at_three
    assert b"" == back_at_one
    assert [b"98", b"98", b"98"] == still_served


# -- TLS files read again ------------------------------------------------------


def tls_listener(
    folder: Path, *, client_ca: Path | None = None
) -> list[dict[str, Any]]:
    """A TLS listener reading the server's files from `folder`."""
    tls: dict[str, Any] = {
        "certificate": str(folder / "server.pem"),
        "private_key": str(folder / "server.key"),
    }
    if client_ca is not None:
        tls["client_ca"] = str(client_ca)
    return [{"endpoint": "tcp:0:interface=127.0.0.1", "tls": tls}]


def install(files: TlsFiles, folder: Path) -> None:
    """Put `files`' server certificate and key where the listener reads them."""
    shutil.copyfile(files.server_certificate, folder / "server.pem")
    shutil.copyfile(files.server_key, folder / "server.key")


def tls_login(running: RunningServer, files: TlsFiles, certificate: bool) -> str:
    """Log in over TLS trusting `files`' CA: the reply, or the error's name."""
    try:
        with tls_terminal(target(running), files, certificate=certificate) as kiosk:
            return kiosk.exchange(LOGIN_FRAME).decode()
    except (ssl.SSLError, ConnectionError, OSError) as error:
        return type(error).__name__


@pytest_twisted.ensureDeferred
async def test_a_renewed_certificate_serves_new_connections_after_a_reload(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Files replaced at their paths: new terminals get the new certificate."""
    for name in ("old", "new", "live"):
        (tmp_path / name).mkdir()
    old, new = make_tls_files(tmp_path / "old"), make_tls_files(tmp_path / "new")
    live = tmp_path / "live"
    install(old, live)
    running = await launcher.start(listeners=tls_listener(live))
    connected = await in_thread(tls_terminal, target(running), old)
    try:
        assert b"941" == await in_thread(connected.exchange, LOGIN_FRAME)

        install(new, live)
        applied, notes = await reload(
            running, launcher.config(listeners=tls_listener(live))
        )
        trusting_new = await in_thread(tls_login, running, new, False)
        trusting_old = await in_thread(tls_login, running, old, False)
        still = await in_thread(connected.exchange, STATUS_FRAME)
    finally:
        connected.close()

    assert applied
    assert "listeners[0]: TLS files read again; new connections use them" in notes
    assert "941" == trusting_new
    assert "SSLCertVerificationError" == trusting_old
    assert b"98" == still[:2]


@pytest_twisted.ensureDeferred
async def test_a_client_ca_added_on_reload_requires_terminal_certificates(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A client_ca given on reload: new terminals need a certificate it signed."""
    files = make_tls_files(tmp_path)
    running = await launcher.start(listeners=tls_listener(tmp_path))
    before = await in_thread(tls_login, running, files, False)

    applied, _ = await reload(
        running, launcher.config(listeners=tls_listener(tmp_path, client_ca=files.ca))
    )
    without = await in_thread(tls_login, running, files, False)
    with_certificate = await in_thread(tls_login, running, files, True)

    assert applied
    assert "941" == before
    assert "941" != without
    assert "941" == with_certificate


@pytest_twisted.ensureDeferred
async def test_an_unreadable_certificate_refuses_the_reload_and_tls_serves_on(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A certificate file gone: the reload is refused naming the key; TLS serves on."""
    files = make_tls_files(tmp_path)
    running = await launcher.start(listeners=tls_listener(tmp_path))

    (tmp_path / "server.pem").unlink()
    applied, said = await reload(
        running,
        launcher.config(listeners=tls_listener(tmp_path), server={"login_timeout": 1}),
    )
    login = await in_thread(tls_login, running, files, False)

    assert not applied
    assert any("listeners[0].tls.certificate: cannot read" in text for text in said)
    assert "941" == login
    assert 30 == running.listeners[0].factory.login_timeout


@pytest_twisted.ensureDeferred
async def test_tls_added_to_a_plain_listener_waits_for_a_restart(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A reload that turns TLS on says it takes a restart; the port stays plain."""
    make_tls_files(tmp_path)
    plain = [{"endpoint": "tcp:0:interface=127.0.0.1"}]
    running = await launcher.start(listeners=plain)

    applied, notes = await reload(
        running, launcher.config(listeners=tls_listener(tmp_path))
    )

    def plain_login() -> bytes:
        with RawTerminal(target(running)) as kiosk:
            return kiosk.exchange(LOGIN_FRAME)

    assert applied
    assert any("TLS turned on or off takes a restart" in note for note in notes)
    assert b"941" == await in_thread(plain_login)


@pytest_twisted.ensureDeferred
async def test_reuse_port_turned_on_waits_for_a_restart(launcher: Launcher) -> None:
    """A reload that asks for reuse_port says it takes a restart, and the running
    listener keeps the setting its socket was bound with."""
    endpoint = "tcp:0:interface=127.0.0.1"
    running = await launcher.start(listeners=[{"endpoint": endpoint}])

    applied, notes = await reload(
        running,
        launcher.config(listeners=[{"endpoint": endpoint, "reuse_port": True}]),
    )

    assert applied
    assert any("reuse_port changes at the next restart" in note for note in notes)
    assert running.listeners[0].config.reuse_port is False


@pytest_twisted.ensureDeferred
async def test_login_threads_and_backlog_follow_a_reload(launcher: Launcher) -> None:
    """Reloaded, logins are checked on 3 threads with at most 4 waiting."""
    running = await launcher.start(server={"login_threads": 1, "login_backlog": 16})

    applied, _ = await reload(
        running, launcher.config(server={"login_threads": 3, "login_backlog": 4})
    )

    assert applied
    assert running.logins is not None
    assert (3, 4) == (running.logins.pool.max, running.logins.backlog)
    assert b"941" == await in_thread(login_plain, running)


def login_plain(running: RunningServer) -> bytes:
    """The reply to the kiosk's login over plain TCP."""
    with RawTerminal(target(running)) as kiosk:
        return kiosk.exchange(LOGIN_FRAME)
