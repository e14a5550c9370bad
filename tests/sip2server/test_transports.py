"""Transports: TLS (with and without terminal certificates), the PROXY protocol,
several listeners with their own accounts, keepalive and idle timeouts, and the
account rules that depend on the connection (allowlist, connection limits).

Every test runs a real server on loopback ports with a SQLite library (the
transport does not depend on the database engine) and talks to it over real
sockets; certificates are made at test time into the test's folder.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from tests.sip2server.certificates import TlsFiles, make_tls_files
from tests.sip2server.conftest import (
    ADA,
    INSTITUTION,
    ITEMS,
    LOCATION,
    LOGIN,
    PASSWORD,
    Launcher,
    SipTarget,
    target,
)
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    checkout_body,
    in_thread,
)

ADA_CARD = ADA
GATE_LOGIN_FRAME = b"9300CNgate1|COgate-secret|CPNORTH|\r"


def tls_terminal(
    where: SipTarget, files: TlsFiles, *, certificate: bool = False
) -> RawTerminal:
    """A terminal that speaks TLS, trusting the test CA, with its own certificate."""
    context = ssl.create_default_context(cafile=str(files.ca))
    if certificate:
        context.load_cert_chain(files.terminal_certificate, files.terminal_key)
    terminal = RawTerminal(where)
    terminal.sock = context.wrap_socket(terminal.sock, server_hostname="127.0.0.1")
    return terminal


def proxy_v1(source: str, source_port: int = 40000) -> bytes:
    """A PROXY protocol v1 header for a TCP4 or TCP6 connection from `source`."""
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {source_port} 6001\r\n".encode()


def proxy_v2(source: str, source_port: int = 40000) -> bytes:
    """A PROXY protocol v2 header (binary) for a TCP connection from `source`."""
    address = ipaddress.ip_address(source)
    if address.version == 4:
        family = 0x11  # AF_INET, STREAM
        destination = ipaddress.ip_address("127.0.0.1")
    else:
        family = 0x21  # AF_INET6, STREAM
        destination = ipaddress.ip_address("::1")
    body = address.packed + destination.packed + struct.pack("!HH", source_port, 6001)
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    # Version 2, command PROXY (0x21), family and protocol, then the length.
    return signature + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait on the reactor until `condition()` holds (True) or `timeout` passes."""
    from twisted.internet import reactor  # noqa: PLC0415

    waited = 0.0
    while not condition():
        if waited >= timeout:
            return False
        await task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02
    return True


# --- TLS ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tls_listener_serves_a_terminal_that_trusts_its_certificate(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Over TLS a terminal verifies the server's certificate, logs in and checks out."""
    files = make_tls_files(tmp_path)
    running = await launcher.start(listeners=[files.listener()])

    def talk() -> tuple[bytes, bytes, str]:
        with tls_terminal(target(running), files) as terminal:
            login = terminal.exchange(LOGIN_FRAME)
            checkout = terminal.exchange(checkout_body(ADA_CARD, ITEMS[0]) + b"\r")
            return login, checkout, terminal.sock.version() or ""

    login, checkout, version = await in_thread(talk)

    assert b"941" == login
    assert checkout.startswith(b"121")
    assert version in ("TLSv1.2", "TLSv1.3")


@pytest_twisted.ensureDeferred
async def test_tls_with_client_ca_admits_only_terminals_with_a_signed_certificate(
    launcher: Launcher, tmp_path: Path
) -> None:
    """With client_ca, a terminal without a certificate is cut off; with one, served."""
    files = make_tls_files(tmp_path)
    running = await launcher.start(listeners=[files.listener(client_ca=True)])

    def without_certificate() -> str:
        try:
            with tls_terminal(target(running), files) as terminal:
                # TLS 1.3 finishes the client's side first; the refusal comes
                # with the first read.
                terminal.exchange(LOGIN_FRAME)
        except (ssl.SSLError, ConnectionError, OSError) as error:
            return type(error).__name__
        return "served"

    def with_certificate() -> bytes:
        with tls_terminal(target(running), files, certificate=True) as terminal:
            return terminal.exchange(LOGIN_FRAME)

    refused = await in_thread(without_certificate)
    login = await in_thread(with_certificate)

    assert "served" != refused
    assert b"941" == login


def test_tls_files_that_do_not_match_are_refused_naming_the_key(tmp_path: Path) -> None:
    """A private key that is not the certificate's stops the start with the key."""
    from sip2server.config import TlsSettings  # noqa: PLC0415
    from sip2server.listeners import StartupError, tls_options  # noqa: PLC0415

    files = make_tls_files(tmp_path)
    wrong = TlsSettings(
        certificate=files.server_certificate, private_key=files.terminal_key
    )
    missing = TlsSettings(
        certificate=tmp_path / "none.pem", private_key=files.server_key
    )

    with pytest.raises(StartupError, match=r"listeners\[0\]\.tls: the certificate"):
        tls_options(wrong, "listeners[0].tls")
    with pytest.raises(StartupError, match=r"listeners\[0\]\.tls\.certificate: "):
        tls_options(missing, "listeners[0].tls")


@pytest_twisted.ensureDeferred
async def test_plain_listener_survives_a_real_tls_handshake(launcher: Launcher) -> None:
    """A TLS client on the plain port fails its handshake; others are served."""
    running = await launcher.start()

    def talk() -> tuple[str, bytes]:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        outcome = "handshake completed"
        raw = socket.create_connection(running.addresses()[0], timeout=10)
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass
        except (ssl.SSLError, ConnectionError, OSError) as error:
            outcome = type(error).__name__
        with RawTerminal(target(running)) as other:
            return outcome, other.exchange(STATUS_FRAME)

    outcome, status = await in_thread(talk)

    assert "handshake completed" != outcome
    assert status.startswith(b"98")


# --- the PROXY protocol ---------------------------------------------------------------


@pytest.mark.parametrize("header", [proxy_v1, proxy_v2], ids=["v1", "v2"])
@pytest_twisted.ensureDeferred
async def test_proxy_header_address_is_the_one_the_allowlist_checks(
    launcher: Launcher, header: Callable[[str], bytes]
) -> None:
    """Behind a load balancer the allowlist sees the terminal's address, v4 or v6."""
    running = await launcher.start(
        listeners=[{"endpoint": "haproxy:tcp:0:interface=127.0.0.1"}],
        kiosk={"allowed_networks": ["203.0.113.0/24", "2001:db8:5::/48"]},
    )
    from twisted.logger import globalLogPublisher  # noqa: PLC0415

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)

    def login_from(source: str) -> bytes:
        with RawTerminal(target(running)) as terminal:
            terminal.send(header(source))
            return terminal.exchange(LOGIN_FRAME)

    try:
        inside_v4 = await in_thread(login_from, "203.0.113.7")
        inside_v6 = await in_thread(login_from, "2001:db8:5::17")
        outside = await in_thread(login_from, "198.51.100.9")
    finally:
        globalLogPublisher.removeObserver(seen.append)

    assert [b"941", b"941", b"940"] == [inside_v4, inside_v6, outside]
    connected = [
        event["peer"]
        for event in seen
        if event.get("log_format", "").startswith("terminal connected")
    ]
    assert ["203.0.113.7:40000", "[2001:db8:5::17]:40000", "198.51.100.9:40000"] == (
        connected
    )


@pytest_twisted.ensureDeferred
async def test_proxy_listener_with_tls_reads_the_header_before_the_handshake(
    launcher: Launcher, tmp_path: Path
) -> None:
    """PROXY first, then TLS inside it: what a TCP load balancer in front sends."""
    files = make_tls_files(tmp_path)
    running = await launcher.start(
        listeners=[files.listener("haproxy:tcp:0:interface=127.0.0.1")],
        kiosk={"allowed_networks": ["192.0.2.0/24"]},
    )

    def talk() -> bytes:
        context = ssl.create_default_context(cafile=str(files.ca))
        raw = socket.create_connection(running.addresses()[0], timeout=10)
        raw.sendall(proxy_v2("192.0.2.44"))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(LOGIN_FRAME)
            return tls.recv(100)

    assert b"941\r" == await in_thread(talk)


# --- several listeners -------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_each_listener_admits_only_its_own_accounts(launcher: Launcher) -> None:
    """The gate's login works on the gates' listener and is refused on the kiosks'."""
    running = await launcher.start(
        listeners=[
            {"endpoint": "tcp:0:interface=127.0.0.1", "accounts": [LOGIN]},
            {"endpoint": "tcp:0:interface=127.0.0.1", "accounts": ["gate1"]},
        ]
    )

    def login(index: int, frame: bytes) -> bytes:
        with RawTerminal(target(running, index)) as terminal:
            return terminal.exchange(frame)

    answers = [
        await in_thread(login, 0, LOGIN_FRAME),
        await in_thread(login, 0, GATE_LOGIN_FRAME),
        await in_thread(login, 1, GATE_LOGIN_FRAME),
        await in_thread(login, 1, LOGIN_FRAME),
    ]

    assert [b"941", b"940", b"941", b"940"] == answers


@pytest_twisted.ensureDeferred
async def test_keepalive_is_set_as_each_listener_says(launcher: Launcher) -> None:
    """The server's socket has its listener's keepalive timings, or none if off."""
    running = await launcher.start(
        listeners=[
            {
                "endpoint": "tcp:0:interface=127.0.0.1",
                "keepalive_idle": 45,
                "keepalive_interval": 7,
                "keepalive_count": 3,
            },
            {"endpoint": "tcp:0:interface=127.0.0.1", "keepalive": False},
        ]
    )
    from sip2server.server import _socket_of  # noqa: PLC0415

    terminals = [RawTerminal(target(running, 0)), RawTerminal(target(running, 1))]
    try:
        for terminal in terminals:
            assert (await in_thread(terminal.exchange, STATUS_FRAME)).startswith(b"98")
        options = []
        for listener in running.listeners:
            (connection,) = listener.factory.connections
            sock = _socket_of(connection.transport)
            assert sock is not None
            options.append(
                (
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0,
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                )
            )
    finally:
        for terminal in terminals:
            terminal.close()

    assert (True, 45, 7, 3) == options[0]
    assert options[1][0] is False


@pytest_twisted.ensureDeferred
async def test_idle_timeout_is_per_listener(launcher: Launcher) -> None:
    """A listener's own idle timeout closes silent terminals there, not elsewhere."""
    running = await launcher.start(
        listeners=[
            {"endpoint": "tcp:0:interface=127.0.0.1", "idle_timeout": 0.3},
            {"endpoint": "tcp:0:interface=127.0.0.1"},
        ]
    )

    def talk() -> tuple[bool, bytes]:
        with (
            RawTerminal(target(running, 0)) as short,
            RawTerminal(target(running, 1)) as patient,
        ):
            closed = short.wait_for_close()
            return closed, patient.exchange(STATUS_FRAME)

    closed, status = await in_thread(talk)

    assert closed
    assert status.startswith(b"98")


# --- account rules that depend on the connection -----------------------------


@pytest_twisted.ensureDeferred
async def test_allowlist_refuses_logins_from_other_networks(launcher: Launcher) -> None:
    """An account limited to 10.0.0.0/8 cannot log in from 127.0.0.1; 127/8 can."""
    running = await launcher.start(
        kiosk={"allowed_networks": ["10.0.0.0/8", "fd00::/8"]},
        gate={"allowed_networks": ["127.0.0.0/8"]},
    )

    def login(frame: bytes) -> bytes:
        with RawTerminal(target(running)) as terminal:
            return terminal.exchange(frame)

    assert b"940" == await in_thread(login, LOGIN_FRAME)
    assert b"941" == await in_thread(login, GATE_LOGIN_FRAME)


@pytest_twisted.ensureDeferred
async def test_connection_limit_refuses_one_login_too_many(launcher: Launcher) -> None:
    """With max_connections 2 the third login is 940; after one leaves, it is 941."""
    running = await launcher.start(kiosk={"max_connections": 2})
    terminals = [RawTerminal(target(running)) for _ in range(3)]
    try:
        first = await in_thread(terminals[0].exchange, LOGIN_FRAME)
        second = await in_thread(terminals[1].exchange, LOGIN_FRAME)
        third = await in_thread(terminals[2].exchange, LOGIN_FRAME)
        terminals[0].close()
        freed = await until(lambda: running.admission.seats().get(LOGIN) == 1)
        again = await in_thread(terminals[2].exchange, LOGIN_FRAME)
    finally:
        for terminal in terminals:
            terminal.close()

    assert [b"941", b"941", b"940"] == [first, second, third]
    assert freed
    assert b"941" == again


@pytest_twisted.ensureDeferred
async def test_server_wide_connection_cap_closes_extra_connections(
    launcher: Launcher,
) -> None:
    """Beyond [server] max_connections a new connection is closed; others serve on."""
    running = await launcher.start(server={"max_connections": 2})

    def talk() -> tuple[bool, bytes, bytes]:
        with (
            RawTerminal(target(running)) as one,
            RawTerminal(target(running)) as two,
        ):
            assert one.exchange(STATUS_FRAME).startswith(b"98")
            assert two.exchange(STATUS_FRAME).startswith(b"98")
            with RawTerminal(target(running)) as three:
                closed = three.wait_for_close()
            return closed, one.exchange(STATUS_FRAME)[:2], two.exchange(LOGIN_FRAME)

    closed, status, login = await in_thread(talk)

    assert closed
    assert b"98" == status
    assert b"941" == login


@pytest_twisted.ensureDeferred
async def test_failed_logins_from_one_address_lock_it_out_for_the_window(
    launcher: Launcher,
) -> None:
    """After the per-address limit of wrong passwords even the right one gets 940."""
    running = await launcher.start(
        server={"max_failed_logins_per_address": 3, "failed_login_window": 600}
    )
    wrong = LOGIN_FRAME.replace(b"kiosk-secret", b"guess")

    def talk() -> list[bytes]:
        answers = []
        for frame in (wrong, wrong, wrong, LOGIN_FRAME):
            # A new connection each time: the per-connection limit does not apply.
            with RawTerminal(target(running)) as terminal:
                answers.append(terminal.exchange(frame))
        return answers

    assert [b"940"] * 4 == await in_thread(talk)


@pytest_twisted.ensureDeferred
async def test_messages_an_account_may_not_send_get_a_negative_reply(
    launcher: Launcher,
) -> None:
    """A gate allowed only item information is refused a checkout, and BX says so."""
    running = await launcher.start(gate={"messages": ["item_information"]})

    def talk() -> tuple[bytes, bytes, bytes]:
        with RawTerminal(target(running)) as terminal:
            assert b"941" == terminal.exchange(GATE_LOGIN_FRAME)
            status = terminal.exchange(STATUS_FRAME)
            checkout = terminal.exchange(checkout_body(ADA_CARD, ITEMS[1]) + b"\r")
            item = terminal.exchange(
                b"1720260101    120000AOCITY|AB" + ITEMS[1].encode() + b"|\r"
            )
            return status, checkout, item

    status, checkout, item = await in_thread(talk)

    # BX: patron status N, checkout N, checkin N, block N, status Y, resend Y,
    # login Y, patron info N, end session N, fee N, item info Y, then N.
    assert b"|BXNNNNYYYNNNYNNNNN|" in status
    assert checkout.startswith(b"120")
    assert b"may not do this" in checkout
    assert item.startswith(b"18")


@pytest_twisted.ensureDeferred
async def test_status_before_login_can_be_refused_per_listener(
    launcher: Launcher,
) -> None:
    """With status_before_login false a 99 before 93 gets 96, and 98 after login."""
    running = await launcher.start(
        listeners=[
            {"endpoint": "tcp:0:interface=127.0.0.1", "status_before_login": False}
        ]
    )

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(target(running)) as terminal:
            before = terminal.exchange(STATUS_FRAME)
            terminal.login()
            return before, terminal.exchange(STATUS_FRAME)

    before, after = await in_thread(talk)

    assert b"96" == before
    assert after.startswith(b"98")


def test_systemd_endpoint_without_sockets_is_refused_naming_the_key() -> None:
    """A systemd: listener outside socket activation names its key and the fix."""
    from twisted.internet import reactor  # noqa: PLC0415

    from sip2server.listeners import StartupError, endpoint_from  # noqa: PLC0415

    with pytest.raises(StartupError, match=r"listeners\[1\]: .*LISTEN_FDS"):
        endpoint_from(reactor, "systemd:domain=INET:index=0", "listeners[1]")


def test_systemd_endpoint_by_name_outside_systemd_says_no_such_socket_was_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`systemd:...:name=sip2` (as docs/deployment.md writes it) outside socket
    activation says no socket of that name was passed and how to check, with
    no Python error name and no advice to switch to index=."""
    from twisted.internet import reactor  # noqa: PLC0415

    from sip2server.listeners import StartupError, endpoint_from  # noqa: PLC0415

    monkeypatch.delenv("LISTEN_FDS", raising=False)
    monkeypatch.delenv("LISTEN_FDNAMES", raising=False)

    with pytest.raises(StartupError) as raised:
        endpoint_from(reactor, "systemd:domain=INET6:name=sip2", "listeners[0]")

    message = str(raised.value)
    assert message.startswith("listeners[0]: 'systemd:domain=INET6:name=sip2': ")
    assert "no socket named 'sip2' was passed by systemd" in message
    assert "not started by its socket unit" in message
    assert "FileDescriptorName" in message
    assert "systemctl status ils-sip2server.socket" in message
    assert "KeyError" not in message
    assert "index=" not in message


@pytest_twisted.ensureDeferred
async def test_pypi_sip2_client_logs_in_over_tls(
    launcher: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `sip2` client from PyPI, TLS on, verifies our certificate and logs in."""
    from Sip2.sip2 import Sip2  # noqa: PLC0415

    files = make_tls_files(tmp_path)
    running = await launcher.start(listeners=[files.listener()])
    # The client trusts the system's store; the test CA stands in for it.
    monkeypatch.setenv("SSL_CERT_FILE", str(files.ca))
    host, port = running.addresses()[0]

    def session() -> tuple[bool, dict[str, Any]]:
        client = Sip2()
        client.hostName, client.hostPort = host, port
        client.tlsEnable = True
        client.tlsAcceptSelfsigned = False
        client.logfile_path = str(tmp_path)
        client.socketTimeout = 10
        client.institutionId, client.scLocation = INSTITUTION, LOCATION
        client.connect()
        try:
            encrypted = isinstance(client._socket, ssl.SSLSocket)
            login = client.sip_login_response(
                client.get_response(client.sip_login_request(LOGIN, PASSWORD))
            )
        finally:
            client.disconnect()
        return encrypted, login

    encrypted, login = await in_thread(session)

    assert encrypted
    assert "1" == login["fixed"]["Ok"]


@pytest_twisted.ensureDeferred
async def test_ipv6_listener_checks_an_ipv6_allowlist(launcher: Launcher) -> None:
    """On a tcp6 listener at ::1 an account allowed ::1/128 logs in; fd00::/8 not."""
    running = await launcher.start(
        listeners=[{"endpoint": "tcp6:0:interface=\\:\\:1"}],
        kiosk={"allowed_networks": ["::1/128"]},
        gate={"allowed_networks": ["fd00::/8"]},
    )
    host, port = running.addresses()[0]

    def login(frame: bytes) -> bytes:
        with RawTerminal(SipTarget(host, port, None, running)) as terminal:  # type: ignore[arg-type]
            return terminal.exchange(frame)

    assert "::1" == host
    assert b"941" == await in_thread(login, LOGIN_FRAME)
    assert b"940" == await in_thread(login, GATE_LOGIN_FRAME)
