"""Fixes for the third adversarial trial of the SIP2 server (#5, session 10).

F2 leftover: many rewrites are capped at load and share one time budget per
reply. M1: the health port closes a connection that has not sent a whole
request in time. T1: certificate subjects compare only ASCII case. L1: the
instance name is checked. T2: a key file that is not a key is named. C1: a
captured value with `|`, CR or LF is not spliced into a raw frame.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import protocol, reactor, threads
from twisted.web.resource import Resource
from twisted.web.server import Site

import sip2server.health
from sip2server.accounts import TerminalCertificate
from sip2server.app import StartupError, listener, operations_factory, start_server
from sip2server.cli import check_config
from sip2server.config import parse_subject
from sip2server.endpoint_text import tls_files
from sip2server.policy import MAX_REWRITES, REWRITE_BUDGET, TerminalPolicy
from tests.sip2server.conftest import server_config
from tests.sip2server.test_conformance import conform, write_plan

# (a|a)+$ on a run of a's followed by something else backtracks until stopped:
# each try costs a whole REWRITE_TIMEOUT (0.1 s).
STALLING = {"pattern": "(a|a)+$", "replace": "x"}
STALL_TEXT = "a" * 26 + '"'


def _config_file(tmp_path: Path, policy_lines: str, *, before: str = "") -> Path:
    config = tmp_path / "sip2server.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///x.sqlite3"\n\n'
        + before
        + '[[accounts]]\nlogin = "k"\npassword = "p"\ninstitution = "CITY"\n'
        'location = "NORTH"\n\n[accounts.policy]\n' + policy_lines
    )
    return config


def _rewrites(count: int) -> str:
    one = '{ pattern = "q", replace = "k" }'
    return "screen_rewrites = [" + ", ".join([one] * count) + "]\n"


# -- F2 leftover: the number of rewrites and their time per reply --------------


def test_check_config_refuses_seventeen_rewrites_naming_the_key(
    tmp_path: Path,
) -> None:
    """An account with 17 rewrites is refused, naming its screen_rewrites key."""
    assert 16 == MAX_REWRITES
    config = _config_file(tmp_path, _rewrites(17))

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 1 == result.exit_code, result.output
    assert "accounts[0].policy.screen_rewrites" in result.output
    assert "at most 16" in result.output


def test_check_config_refuses_seventeen_institution_rewrites(tmp_path: Path) -> None:
    """17 rewrites inherited from [institution.CITY.policy] are refused there."""
    institution = "[institution.CITY.policy]\n" + _rewrites(17) + "\n"
    config = _config_file(tmp_path, "", before=institution)

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 1 == result.exit_code, result.output
    assert "institution.CITY.policy.screen_rewrites" in result.output


def test_sixteen_rewrites_are_accepted(tmp_path: Path) -> None:
    """Exactly 16 rewrites load."""
    config = _config_file(tmp_path, _rewrites(16))

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 0 == result.exit_code, result.output


def test_rewrites_after_the_reply_budget_is_spent_are_skipped_and_reported() -> None:
    """Three stalling rewrites spend the 0.25 s budget (0.1 s each at least),
    so the fourth, which would turn every a into b, is skipped and reported."""
    assert 0.25 == REWRITE_BUDGET
    turn = {"pattern": "a", "replace": "b"}
    policy = TerminalPolicy(screen_rewrites=[STALLING, STALLING, STALLING, turn])
    slow: list[str] = []

    result = policy.rewrite(STALL_TEXT, slow.append)

    assert STALL_TEXT == result
    assert ["(a|a)+$", "(a|a)+$", "(a|a)+$", "a"] == slow


def test_one_budget_is_shared_by_the_screen_messages_of_a_reply() -> None:
    """Of two screen messages of one reply, the second gets no time once the
    first spent the budget: its rewrite b -> c is skipped."""
    turn = {"pattern": "b", "replace": "c"}
    policy = TerminalPolicy(screen_rewrites=[STALLING, STALLING, STALLING, turn])

    result = policy.rewrite_all((STALL_TEXT, "bb"), None)

    assert (STALL_TEXT, "bb") == result


def test_a_quick_rewrite_still_runs() -> None:
    """Within the budget, rewrites apply in order."""
    policy = TerminalPolicy(
        screen_rewrites=[
            {"pattern": "a", "replace": "b"},
            {"pattern": "b", "replace": "c"},
        ]
    )

    assert ("cc", "c") == policy.rewrite_all(("ab", "a"))


# -- M1: the health port closes a connection that trickles its request --------


class _Ok(Resource):
    isLeaf = True  # noqa: N815 - Twisted's name

    def render_GET(self, request: Any) -> bytes:
        return b"ok"


def _trickle(port: int, pause: float, limit: float) -> tuple[float, bytes]:
    """Send a request line, then a header line every `pause` seconds (never
    the blank line) until the server closes; how long that took, and what the
    server sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as link:
        started = time.monotonic()
        link.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        link.settimeout(pause)
        got = b""
        while time.monotonic() - started < limit:
            try:
                chunk = link.recv(4096)
            except TimeoutError:
                try:
                    link.sendall(b"X-Drip: 1\r\n")
                except OSError:
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        return time.monotonic() - started, got


def _three_requests(port: int, pause: float) -> bytes:
    """Three whole requests on one connection, `pause` seconds apart."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as link:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        got = b""
        for turn in range(3):
            if turn:
                time.sleep(pause)
            link.sendall(request)
            got += link.recv(4096)
        return got


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> float:
    """The health port's request deadline cut to half a second."""
    monkeypatch.setattr(sip2server.health, "REQUEST_DEADLINE", 0.5)
    return 0.5


@pytest_twisted.inlineCallbacks
def test_a_trickled_request_is_closed_at_the_deadline(short_deadline: float) -> Any:
    """A client sending one header line every 0.1 s (never silent for the 10 s
    idle time) is closed by the 0.5 s request deadline, not held open."""
    port = reactor.listenTCP(  # type: ignore[attr-defined]
        0, operations_factory(Site(_Ok())), interface="127.0.0.1"
    )
    try:
        took, got = yield threads.deferToThread(_trickle, port.getHost().port, 0.1, 5.0)
    finally:
        yield port.stopListening()
    assert b"" == got
    assert short_deadline <= took < 5.0, took


@pytest_twisted.inlineCallbacks
def test_the_deadline_restarts_after_each_answered_request(
    short_deadline: float,
) -> Any:
    """A kept-alive connection sending a request every 0.35 s (the third 0.7 s
    after connecting, past one 0.5 s deadline) is answered three times."""
    port = reactor.listenTCP(  # type: ignore[attr-defined]
        0, operations_factory(Site(_Ok())), interface="127.0.0.1"
    )
    try:
        got = yield threads.deferToThread(_three_requests, port.getHost().port, 0.35)
    finally:
        yield port.stopListening()
    assert 3 == got.count(b"HTTP/1.1 200 OK"), got


# -- T1: certificate subjects compare only ASCII case and ASCII spaces ---------

_KEY = ec.generate_private_key(ec.SECP256R1())


def _certificate(common_name: str, organization: str) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(_KEY, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("common_name", "organization", "same"),
    [
        ("kiosk-1", "City Library", True),
        ("KIOSK-1", "CITY  LIBRARY", True),
        ("kio\u017fk-1", "City Library", False),
        ("kiosk-1", "City\u00a0Library", False),
        ("K\u0131OSK-1", "City Library", False),
        ("kiosk-1", "City\u2003Library", False),
    ],
)
def test_a_subject_matches_only_by_ascii_case_and_ascii_spaces(
    common_name: str, organization: str, same: bool
) -> None:
    """CN=kiosk-1,O=City Library admits its ASCII upper case and doubled space,
    but not a long s, a dotless i, a no-break or an em space."""
    wanted = parse_subject("CN=kiosk-1,O=City Library")

    seen = TerminalCertificate.of(_certificate(common_name, organization))

    assert same == (wanted == seen.subject_key)


def test_a_non_ascii_subject_still_matches_itself() -> None:
    """CN=\u00c9cole-1 (with an upper-case \u00c9) matches the same certificate,
    and not \u00e9cole-1: only ASCII letters fold."""
    wanted = parse_subject("CN=\u00c9cole-1,O=City Library")

    assert (
        wanted
        == TerminalCertificate.of(
            _certificate("\u00c9cole-1", "City Library")
        ).subject_key
    )
    assert (
        wanted
        != TerminalCertificate.of(
            _certificate("\u00e9cole-1", "City Library")
        ).subject_key
    )


# -- L1: the instance name is checked before it goes into paths ---------------


@pytest.mark.parametrize(
    "name",
    ["5:interface=0.0.0.0", "/../../tmp/evil", "\u00e9", "..", "a b", "x" * 65],
)
def test_an_unsafe_instance_name_is_refused_at_start(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ILS_INSTANCE with a colon, slash, non-ASCII letter, only dots, a space,
    or 65 characters stops the start with an error naming it."""
    monkeypatch.setenv("ILS_INSTANCE", name)
    config = server_config(f"sqlite:///{tmp_path / 'none.sqlite3'}")
    failures: list[Any] = []

    start_server(config, reactor).addErrback(failures.append)

    assert 1 == len(failures)
    assert failures[0].check(StartupError)
    assert str(failures[0].value).startswith(f"ILS_INSTANCE: {name!r} is not")


@pytest.mark.parametrize("name", ["1", "sip-2", "main_b.3", "x" * 64])
def test_an_ordinary_instance_name_passes_the_check(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """1, sip-2, main_b.3 and 64 letters get past the name check (the start
    then fails on the missing database, not on the name)."""
    monkeypatch.setenv("ILS_INSTANCE", name)
    config = server_config(f"sqlite:///{tmp_path / 'none.sqlite3'}")
    failures: list[Any] = []

    start_server(config, reactor).addErrback(failures.append)

    assert failures
    assert "ILS_INSTANCE" not in str(failures[0].value)


# -- T2: an ssl: listener whose key file is not a key is named ----------------


def test_an_ssl_listener_whose_key_file_holds_only_a_certificate_is_named(
    tmp_path: Path,
) -> None:
    """ssl: with privateKey= a certificate-only PEM file is a StartupError
    naming the listener's key and the file, not an OpenSSL traceback."""
    pem = tmp_path / "server.pem"
    pem.write_bytes(
        _certificate("server", "City Library").public_bytes(serialization.Encoding.PEM)
    )
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={pem}"

    with pytest.raises(StartupError) as raised:
        listener(reactor, endpoint, "listeners[0]")

    said = str(raised.value)
    assert said.startswith(f"listeners[0]: {endpoint!r}: its private key file ")
    assert f"{str(pem)!r}" in said
    assert "is not a PEM key and certificate that match" in said


@pytest.mark.parametrize(
    ("endpoint", "files"),
    [
        ("ssl:6443", ("server.pem", "server.pem")),
        ("ssl:6443:privateKey=k.pem", ("k.pem", "k.pem")),
        ("haproxy:ssl:6443:privateKey=k.pem:certKey=c.pem", ("k.pem", "c.pem")),
        ("ssl:6443:privateKey=C\\:/tls/k.pem", ("C:/tls/k.pem", "C:/tls/k.pem")),
        ("tcp:6001", None),
    ],
)
def test_the_files_an_ssl_endpoint_reads(
    endpoint: str, files: tuple[str, str] | None
) -> None:
    """privateKey defaults to server.pem and certKey to the key's file; an
    escaped colon is read as a colon; tcp: reads no files."""
    assert files == tls_files(endpoint)


# -- C1: a captured value does not reshape a raw frame ------------------------


class _LanguageServer(protocol.Protocol):
    """Accepts any login; answers a 23 with a 24 whose language (a fixed field)
    is the factory's `language`; notes every frame it gets."""

    def dataReceived(self, data: bytes) -> None:
        """Answer each frame by its command code."""
        for frame in data.split(b"\r"):
            if not frame:
                continue
            self.factory.frames.append(frame)  # type: ignore[attr-defined]
            if frame.startswith(b"93"):
                self.transport.write(b"941\r")  # type: ignore[union-attr]
            elif frame.startswith(b"23"):
                language = self.factory.language  # type: ignore[attr-defined]
                self.transport.write(  # type: ignore[union-attr]
                    b"24" + b" " * 14 + language + b"20261204    120000"
                    b"AOCITY|AA1|AEX|BLY|\r"
                )
            elif frame.startswith(b"17"):
                self.transport.write(  # type: ignore[union-attr]
                    b"18000001" + b"20261204    120000" + b"AB1|AJx|\r"
                )


_CAPTURE_PLAN = """
    [plan]
    timeout = 2

    [[steps]]
    name = "login"
    send = "login"
    fields = { CN = "any", CO = "secret" }

    [[steps]]
    name = "status"
    send = "patron_status"
    fields = { AO = "CITY", AA = "1" }
    capture = { lang = "language" }

    [[steps]]
    name = "raw item"
    raw = "17${lang}20261204    120000AOCITY|AB1|"
    """


@pytest.mark.parametrize(("language", "sent"), [(b"|AD", False), (b"001", True)])
@pytest_twisted.inlineCallbacks
def test_a_captured_value_with_a_bar_is_not_spliced_into_a_raw_frame(
    tmp_path: Path, language: bytes, sent: bool
) -> Any:
    """A language captured as |AD fails the raw step that uses it, naming
    ${lang}, and that frame never reaches the server; 001 is sent as typed."""
    factory = protocol.Factory.forProtocol(_LanguageServer)
    factory.frames = []  # type: ignore[attr-defined]
    factory.language = language  # type: ignore[attr-defined]
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    plan = write_plan(tmp_path, _CAPTURE_PLAN)
    try:
        result = yield threads.deferToThread(
            conform, listening.getHost().port, plan, options=("--no-checksums",)
        )
    finally:
        yield listening.stopListening()

    seventeens = [f for f in factory.frames if f.startswith(b"17")]  # type: ignore[attr-defined]
    if sent:
        assert [b"1700120261204    120000AOCITY|AB1|"] == seventeens, result.output
        assert "${lang}" not in result.output
    else:
        assert [] == seventeens, result.output
        assert "the captured ${lang} = '|AD' holds '|'" in result.output
