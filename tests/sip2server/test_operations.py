"""Operations: the transaction log, JSON log lines, configuration checks, and a
server process started by socket activation that reloads on SIGHUP.

The process test runs `ils serve` exactly as systemd would: the listening
socket is made here and handed over as file descriptor 3 with LISTEN_FDS and
LISTEN_PID, and the server is sent a real SIGHUP.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from sip2server.config import ConfigError, parse_config
from sip2server.logs import event_as_json
from tests.sip2server import test_transports
from tests.sip2server.conftest import ADA, ITEMS, stock_library
from tests.sip2server.test_transports import Launcher, target
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    checkout_body,
    in_thread,
)

# --- the transaction log -----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_transaction_log_has_one_masked_line_per_transaction(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Checkout and checkin each write a line with masked ids; lookups write none."""
    log_path = tmp_path / "log" / "transactions.log"
    # The server makes no folders: the log's must exist.
    log_path.parent.mkdir()
    running = await launcher.start(server={"transaction_log": str(log_path)})

    def talk() -> None:
        with RawTerminal(target(running)) as terminal:
            terminal.login()
            terminal.exchange(STATUS_FRAME)
            assert terminal.exchange(checkout_body(ADA, ITEMS[2]) + b"\r").startswith(
                b"121"
            )
            terminal.exchange(
                b"1720260101    120000AOCITY|AB" + ITEMS[2].encode() + b"|\r"
            )
            terminal.exchange(
                b"09N20260101    12000020260101    120000APNORTH|AOCITY|AB"
                + ITEMS[2].encode()
                + b"|AC|\r"
            )

    await in_thread(talk)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]

    assert ["checkout", "checkin"] == [line["command"] for line in lines]
    assert {"kiosk1"} == {line["terminal"] for line in lines}
    assert {"127.0.0.1"} == {line["peer"] for line in lines}
    assert "ok" == lines[0]["outcome"]
    # ADA is 21234000000018 and the item 31234000000003: last four kept only.
    assert "...0018" == lines[0]["patron"]
    assert "...0003" == lines[0]["item"]
    assert ADA not in text
    assert ITEMS[2] not in text
    assert "Okafor" not in text


# --- JSON log lines ---------------------------------------------------------


def test_json_log_line_has_named_fields_and_the_redacted_message() -> None:
    """A login event as JSON: its fields by name, the message redacted, no password."""
    from twisted.logger import LogLevel  # noqa: PLC0415

    from sip2server.protocol import LoginRequest  # noqa: PLC0415
    from sip2server.server import _Redacted  # noqa: PLC0415

    message = LoginRequest(
        uid_algorithm="0",
        pwd_algorithm="0",
        login_user_id="kiosk1",
        login_password="kiosk-secret",
        location_code="NORTH",
    )
    event = {
        "log_format": "received conn={conn} {message}",
        "log_level": LogLevel.debug,
        "log_namespace": "sip2server",
        "log_time": 0.0,
        "conn": 7,
        "message": _Redacted(message, True),
    }

    line = event_as_json(event)
    parsed = json.loads(line)

    assert 7 == parsed["conn"]
    assert "debug" == parsed["level"]
    assert "sip2server" == parsed["namespace"]
    assert parsed["text"].startswith("received conn=7 LoginRequest(")
    assert "login_user_id='kiosk1'" in parsed["message"]
    assert "kiosk-secret" not in line
    assert "\n" not in line


# --- configuration -----------------------------------------------------------


def _document(**extra: Any) -> dict[str, Any]:
    return {
        "database": {"url": "sqlite:///x.sqlite3"},
        "accounts": [
            {
                "login": "kiosk1",
                "password": "p",
                "institution": "CITY",
                "location": "NORTH",
            },
            {
                "login": "kiosk2",
                "password": "p",
                "institution": "CITY",
                "location": "NORTH",
                "encoding": "utf-8",
            },
        ],
        **extra,
    }


def test_institution_defaults_apply_under_each_account() -> None:
    """[institution.CITY] sets every CITY account's value unless the account has one."""
    config = parse_config(
        _document(institution={"CITY": {"encoding": "cp850", "max_connections": 3}}),
        "x.toml",
    )

    assert ("cp850", 3) == (
        config.accounts[0].encoding,
        config.accounts[0].max_connections,
    )
    assert ("utf-8", 3) == (
        config.accounts[1].encoding,
        config.accounts[1].max_connections,
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"institution": {"CITY": {"password": "shared"}}},
            "x.toml: institution: CITY.password: not an account setting",
        ),
        (
            {"listeners": [{"endpoint": "tcp:6001", "accounts": ["kiosk9"]}]},
            "x.toml: (top level): listeners[0].accounts: 'kiosk9' is not the login",
        ),
        (
            {"listeners": [{"endpoint": "tcp:6001", "keepalive_idle": 0}]},
            "x.toml: listeners[0].keepalive_idle: Input should be greater than",
        ),
    ],
    ids=["institution-password", "listener-account", "keepalive"],
)
def test_bad_operations_settings_name_file_key_and_problem(
    extra: dict[str, Any], expected: str
) -> None:
    """Each mistake in the new tables is reported with the file, the key and why."""
    with pytest.raises(ConfigError) as caught:
        parse_config(_document(**extra), "x.toml")

    assert expected in str(caught.value)


def test_a_bad_network_in_an_allowlist_is_named() -> None:
    """An allowed_networks entry that is not a network names the account's key."""
    document = _document()
    document["accounts"][1]["allowed_networks"] = ["10.0.0.0/8", "branch-lan"]

    with pytest.raises(ConfigError) as caught:
        parse_config(document, "x.toml")

    assert (
        "x.toml: accounts[1].allowed_networks: 'branch-lan' is not an IP network"
        in str(caught.value)
    )


# --- a socket-activated server process, reloaded by SIGHUP --------------------

_LISTENING = re.compile(r"SIP2 server listening on 127\.0\.0\.1:(\d+)")

# Puts the inherited socket on descriptor 3, as systemd does, names this very
# process (exec keeps the pid) in LISTEN_PID, gives the socket the name that
# systemd/ils-sip2server.socket gives it (FileDescriptorName=sip2), and
# becomes `python -m ils.cli ARGS`.
_ACTIVATE = """
import os, sys
os.dup2(int(os.environ.pop("SOCKET_FD")), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="sip2")
os.execv(sys.executable, [sys.executable, "-m", "ils.cli", *sys.argv[1:]])
"""


def _config_text(database_url: str, log_path: Path) -> str:
    return f"""
[server]
transaction_log = "{log_path}"

[[listeners]]
endpoint = "systemd:domain=INET:name=sip2"

[database]
url = "{database_url}"

[[accounts]]
login = "kiosk1"
password = "kiosk-secret"
institution = "CITY"
location = "NORTH"
"""


class _Lines:
    """The lines of a process's stream, read by a thread, waited for with a timeout."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._reader.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        """The first new line containing `pattern`."""
        while True:
            line = self._queue.get(timeout=timeout)
            self.seen.append(line)
            if pattern in line:
                return line

    def finish(self) -> list[str]:
        """Every line, once the stream has ended."""
        self._reader.join(timeout=30)
        while not self._queue.empty():
            self.seen.append(self._queue.get())
        return self.seen


@pytest.fixture
def activated(
    tmp_path: Path,
) -> Iterator[tuple[subprocess.Popen[str], _Lines, Path, int]]:
    """`ils serve` on a socket made here and passed as systemd would pass it."""
    database_url = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    stock_library(database_url).database.dispose()
    config = tmp_path / "sip2server.toml"
    config.write_text(_config_text(database_url, tmp_path / "tx.log"))

    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    port = listening.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _ACTIVATE,
            "serve",
            "--config",
            str(config),
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(listening.fileno(),),
        env={
            **os.environ,
            "SOCKET_FD": str(listening.fileno()),
            "PYTHONUNBUFFERED": "1",
        },
    )
    # The server has its own copy now; ours must not accept anything.
    listening.close()
    assert process.stdout is not None
    assert process.stderr is not None
    banner = _Lines(process.stdout)
    logs = _Lines(process.stderr)
    try:
        try:
            started = banner.wait_for("SIP2 server listening on")
        except queue.Empty:
            process.kill()
            process.wait(timeout=30)
            pytest.fail(f"the server did not start: {''.join(logs.finish())}")
        assert f"127.0.0.1:{port}" in started
        yield process, logs, config, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_socket_activated_server_reloads_on_sighup_keeping_its_terminals(
    activated: tuple[subprocess.Popen[str], _Lines, Path, int],
) -> None:
    """Served on systemd's socket, SIGHUP adds an account; the connected kiosk stays."""
    process, logs, config, port = activated
    where = test_transports.SipTarget("127.0.0.1", port, None, None)  # type: ignore[arg-type]

    with RawTerminal(where) as kiosk:
        assert b"941" == kiosk.exchange(LOGIN_FRAME)
        config.write_text(
            config.read_text()
            + '\n[[accounts]]\nlogin = "sorter1"\npassword = "sorter-secret"\n'
            'institution = "CITY"\nlocation = "NORTH"\n'
        )
        process.send_signal(signal.SIGHUP)
        reloaded = json.loads(logs.wait_for("configuration reloaded"))
        with RawTerminal(where) as sorter:
            sorter_login = sorter.exchange(b"9300CNsorter1|COsorter-secret|CPNORTH|\r")
        status = kiosk.exchange(STATUS_FRAME)

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    every = logs.finish()
    lines = [json.loads(line) for line in every if line.strip()]

    assert "info" == reloaded["level"]
    assert b"941" == sorter_login
    assert status.startswith(b"98")
    assert 0 == process.returncode
    logins = [line for line in lines if line.get("text", "").startswith("login ")]
    assert logins
    assert all("conn" in line for line in logins)
    assert not any("kiosk-secret" in line for line in every)


def test_check_config_names_a_tls_key_that_does_not_fit(tmp_path: Path) -> None:
    """`ils check-config` reads a listener's TLS files and names the bad one."""
    files = test_transports.make_tls_files(tmp_path)
    config = tmp_path / "tls.toml"
    config.write_text(
        f"""
[[listeners]]
endpoint = "tcp:0:interface=127.0.0.1"
[listeners.tls]
certificate = "{files.server_certificate}"
private_key = "{files.terminal_key}"

[database]
url = "sqlite:///{tmp_path / "none.sqlite3"}"

[[accounts]]
login = "kiosk1"
password = "kiosk-secret"
institution = "CITY"
location = "NORTH"
"""
    )

    result = subprocess.run(
        [sys.executable, "-m", "ils.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert 1 == result.returncode
    assert (
        f"{config}: listeners[0].tls: the certificate and private key do not go "
        "together" in result.stderr
    )
