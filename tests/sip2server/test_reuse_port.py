"""Listeners with `reuse_port`: the setting's refusals, two servers on one port,
the usual error for a port held without SO_REUSEPORT, and everything a listener
does on top (PROXY header, TLS, allowlist, keepalive) still done on a shared
port; and `{instance}` in the metrics and transaction log settings.

Servers run in the test's reactor on a SQLite copy of the stock library over
real loopback sockets (the engine does not matter to a listener); the
two-process test on PostgreSQL is in test_shared_port.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from sip2server.app import StartupError
from sip2server.config import ConfigError, parse_config
from sip2server.server import _socket_of
from tests.sip2server.test_transports import (
    Launcher,
    make_tls_files,
    proxy_v2,
    target,
)
from tests.sip2server.test_wire_behaviour import LOGIN_FRAME, STATUS_FRAME, in_thread

ACCOUNT = {
    "login": "kiosk1",
    "password": "kiosk-secret",
    "institution": "CITY",
    "location": "NORTH",
}


def _listener_problem(listener: dict[str, Any]) -> str:
    try:
        parse_config(
            {
                "database": {"url": "sqlite:///unused"},
                "listeners": [listener],
                "accounts": [ACCOUNT],
            },
            "sip2.toml",
        )
    except ConfigError as error:
        return str(error)
    return "accepted"


@pytest.mark.parametrize(
    ("endpoint", "hint"),
    [
        ("systemd:domain=INET:index=0", "belongs to its socket unit"),
        ("unix:/run/ils/sip2.sock", ""),
        ("ssl:6443:privateKey=k.pem", "give a tcp: endpoint a [listeners.tls]"),
    ],
)
def test_reuse_port_is_refused_at_its_key_for_endpoints_other_than_tcp(
    endpoint: str, hint: str
) -> None:
    """systemd:, unix: and ssl: endpoints with reuse_port are refused at that key."""
    problem = _listener_problem({"endpoint": endpoint, "reuse_port": True})

    assert problem.startswith(
        "sip2.toml: listeners[0].reuse_port: only tcp: and tcp6: endpoints "
        f"(also inside haproxy:) can share a port, not {endpoint!r}"
    )
    assert hint in problem


@pytest.mark.parametrize(
    "endpoint",
    ["tcp:6001:interface=127.0.0.1", "tcp6:6001", "haproxy:tcp:6002"],
)
def test_reuse_port_is_accepted_for_tcp_endpoints(endpoint: str) -> None:
    """tcp:, tcp6: and haproxy:tcp: endpoints may share their port."""
    assert "accepted" == _listener_problem({"endpoint": endpoint, "reuse_port": True})


def test_reuse_port_is_refused_where_the_platform_lacks_so_reuseport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without socket.SO_REUSEPORT the key is refused, saying why."""
    monkeypatch.delattr(socket, "SO_REUSEPORT")

    problem = _listener_problem({"endpoint": "tcp:6001", "reuse_port": True})

    assert problem.startswith(
        "sip2.toml: listeners[0].reuse_port: this platform has no SO_REUSEPORT"
    )
    assert "accepted" == _listener_problem({"endpoint": "tcp:6001"})


def _shared(endpoint: str, **more: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "reuse_port": True, **more}


@pytest_twisted.ensureDeferred
async def test_two_servers_with_reuse_port_listen_on_one_port(
    launcher: Launcher,
) -> None:
    """A second server with reuse_port binds the first one's port and serves."""
    first = await launcher.start(
        listeners=[_shared("tcp:0:interface=127.0.0.1")],
    )
    port = first.addresses()[0][1]
    second = await launcher.start(
        listeners=[_shared(f"tcp:{port}:interface=127.0.0.1")],
    )

    def status() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(STATUS_FRAME)
            return sock.recv(200)

    reply = await in_thread(status)

    assert [("127.0.0.1", port)] == second.addresses()
    assert reply.startswith(b"98")
    listening = second.listeners[0].port
    assert listening is not None
    options = listening.socket  # type: ignore[attr-defined]
    assert 1 == options.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    assert 1024 == _backlog_of(second.config.listeners[0].endpoint)


def _backlog_of(endpoint: str) -> int:
    from twisted.internet import reactor  # noqa: PLC0415

    from sip2server.listeners import endpoint_from  # noqa: PLC0415

    return int(endpoint_from(reactor, endpoint, "k", reuse_port=True).backlog)


@pytest.mark.parametrize(
    ("holder", "newcomer"),
    [(False, True), (True, False), (False, False)],
    ids=["held-plain", "held-shared-new-plain", "neither"],
)
@pytest_twisted.ensureDeferred
async def test_a_port_held_without_reuse_port_on_both_gives_the_usual_error(
    launcher: Launcher,
    holder: bool,
    newcomer: bool,
) -> None:
    """Unless both set reuse_port, the second start fails with the usual message."""
    first = await launcher.start(
        listeners=[{"endpoint": "tcp:0:interface=127.0.0.1", "reuse_port": holder}]
    )
    port = first.addresses()[0][1]
    endpoint = f"tcp:{port}:interface=127.0.0.1"

    with pytest.raises(StartupError) as raised:
        await launcher.start(listeners=[{"endpoint": endpoint, "reuse_port": newcomer}])

    assert (
        f"listeners[0]: cannot listen on '{endpoint}': Address already in use"
        == str(raised.value)
    )


@pytest_twisted.ensureDeferred
async def test_proxy_tls_allowlist_and_keepalive_apply_on_a_shared_port(
    launcher: Launcher,
    tmp_path: Path,
) -> None:
    """On a reuse_port listener the PROXY header comes first, then TLS; the
    allowlist sees the header's address; keepalive is as the listener says."""
    files = make_tls_files(tmp_path)
    running = await launcher.start(
        listeners=[
            _shared(
                "haproxy:tcp:0:interface=127.0.0.1",
                tls=files.tls(),
                keepalive_idle=45,
            )
        ],
        kiosk={"allowed_networks": ["192.0.2.0/24"]},
    )
    where = target(running)

    def login_from(source: str) -> bytes:
        context = ssl.create_default_context(cafile=str(files.ca))
        raw = socket.create_connection((where.host, where.port), timeout=10)
        raw.sendall(proxy_v2(source))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(LOGIN_FRAME)
            return tls.recv(100)

    def keepalive_idle_of_a_connection() -> int:
        context = ssl.create_default_context(cafile=str(files.ca))
        raw = socket.create_connection((where.host, where.port), timeout=10)
        raw.sendall(proxy_v2("192.0.2.45"))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(STATUS_FRAME)
            assert tls.recv(200).startswith(b"98")
            (connection,) = running.listeners[0].factory.connections
            sock = _socket_of(connection.transport)
            assert sock is not None
            return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))

    inside = await in_thread(login_from, "192.0.2.44")
    outside = await in_thread(login_from, "198.51.100.9")
    idle = await in_thread(keepalive_idle_of_a_connection)

    assert [b"941\r", b"940\r"] == [inside, outside]
    assert 45 == idle
    listening = running.listeners[0].port
    assert listening is not None
    shared = listening.socket  # type: ignore[attr-defined]
    assert 1 == shared.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
@pytest_twisted.ensureDeferred
async def test_an_ipv6_interface_makes_an_ipv6_shared_socket(
    launcher: Launcher,
) -> None:
    """tcp6: with interface ::1 and reuse_port listens on IPv6 and serves."""
    running = await launcher.start(listeners=[_shared(r"tcp6:0:interface=\:\:1")])
    host, port = running.addresses()[0]

    def status() -> bytes:
        with socket.create_connection(("::1", port), timeout=10) as sock:
            sock.sendall(STATUS_FRAME)
            return sock.recv(200)

    assert "::1" == host
    assert (await in_thread(status)).startswith(b"98")


# --- {instance} in metrics.listen and server.transaction_log ----------------------


@pytest_twisted.ensureDeferred
async def test_instance_names_the_transaction_log_and_metrics_port(
    launcher: Launcher,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ILS_INSTANCE replaces {instance} in server.transaction_log and metrics.listen."""
    monkeypatch.setenv("ILS_INSTANCE", "0")
    launcher.metrics = {"listen": "tcp:{instance}:interface=127.0.0.1"}

    running = await launcher.start(
        server={"transaction_log": str(tmp_path / "transactions-{instance}.log")}
    )

    assert running.transactions is not None
    assert tmp_path / "transactions-0.log" == running.transactions.path
    operations = running.operations_address()
    assert operations is not None
    assert "127.0.0.1" == operations[0]
    assert operations[1] > 0


@pytest_twisted.ensureDeferred
async def test_instance_in_a_setting_without_ils_instance_stops_the_start(
    launcher: Launcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """{instance} with no ILS_INSTANCE set is refused, naming the key."""
    monkeypatch.delenv("ILS_INSTANCE", raising=False)
    launcher.metrics = {"listen": "tcp:91{instance}:interface=127.0.0.1"}

    with pytest.raises(StartupError) as raised:
        await launcher.start()

    assert str(raised.value).startswith(
        "metrics.listen: 'tcp:91{instance}:interface=127.0.0.1' has {instance}, "
        "but ILS_INSTANCE is not set"
    )


@pytest_twisted.ensureDeferred
async def test_instances_on_one_metrics_port_are_told_to_use_instance(
    launcher: Launcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second instance on the first one's metrics port is told about {instance}."""
    monkeypatch.setenv("ILS_INSTANCE", "1")
    launcher.metrics = {"listen": "tcp:0:interface=127.0.0.1"}
    first = await launcher.start()
    operations = first.operations_address()
    assert operations is not None
    monkeypatch.setenv("ILS_INSTANCE", "2")
    launcher.metrics = {"listen": f"tcp:{operations[1]}:interface=127.0.0.1"}

    with pytest.raises(StartupError) as raised:
        await launcher.start()

    assert f"metrics.listen: cannot listen on 'tcp:{operations[1]}:" in str(
        raised.value
    )
    assert "put {instance} in metrics.listen" in str(raised.value)


# --- the template unit -----------------------------------------------------------

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def _settings(unit: str, section: str) -> set[str]:
    text = (UNITS / unit).read_text().split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    return {
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    }


def test_template_unit_has_the_services_hardening_and_names_its_instance() -> None:
    """ils-sip2@.service keeps every hardening line of ils-sip2server.service,
    sets ILS_INSTANCE to its instance name, and needs no socket unit."""
    single = _settings("ils-sip2server.service", "Service")
    template = _settings("ils-sip2@.service", "Service")
    hardening = {
        line
        for line in single
        if line.startswith(("Protect", "Restrict", "Private", "NoNew", "System"))
        or line.startswith(("Capability", "Ambient", "LockPersonality", "RemoveIPC"))
        or line.startswith(("UMask", "ProcSubset", "User=", "Group="))
    }

    assert len(hardening) >= 20
    assert set() == hardening - template
    assert "Environment=ILS_INSTANCE=%i" in template
    assert not any(".socket" in line for line in _settings("ils-sip2@.service", "Unit"))
