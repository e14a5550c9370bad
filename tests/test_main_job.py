"""The main job as an operator runs it: `ils demo`, `ils serve`, `ils sip`, Ctrl-C.

Each command runs as its own process, exactly as typed at a shell, against a
SQLite file and a PostgreSQL database in turn, with the shipped configuration.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

ILS = [sys.executable, "-m", "ils.cli"]
CONFIG = REPO_ROOT / "config" / "sip2server.toml"
LISTENING = re.compile(r"SIP2 server listening on 127\.0\.0\.1:(\d+)")


def _ils(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ILS, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def served_demo(database_url: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The demo library built by `ils demo` and served by `ils serve` on a free port."""
    built = _ils("demo", "--db", database_url, "--patrons", "10")
    assert 0 == built.returncode, built.stderr

    server = subprocess.Popen(
        [
            *ILS,
            "serve",
            "--config",
            str(CONFIG),
            "--db",
            database_url,
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    port = None
    deadline = time.monotonic() + 60
    assert server.stdout is not None
    while port is None and time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        match = LISTENING.search(line)
        port = int(match.group(1)) if match else None
    if port is None:
        server.kill()
        pytest.fail(f"the server did not start: {server.communicate()[0]}")
    try:
        yield port, server
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def _sip(port: int, *args: str) -> str:
    result = _ils(
        "sip",
        "--port",
        str(port),
        "--login",
        "kiosk1",
        "--password",
        "kiosk1-demo",
        *args,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    return result.stdout


def test_demo_is_served_with_the_shipped_config(
    served_demo: tuple[int, subprocess.Popen[str]],
) -> None:
    """The README's walk-through works: checkout, item information, checkin."""
    port, _ = served_demo

    checkout = _sip(
        port, "checkout", "21234000000018", "31234000000016", "--pin", "1234"
    )
    item = _sip(port, "item", "31234000000016")
    checkin = _sip(port, "checkin", "31234000000016")
    expired = _sip(port, "checkout", "21234000000042", "31234000000032")

    assert "CheckoutResponse (12)\n  ok: yes" in checkout
    assert "title_identifier: Pride and prejudice" in checkout
    assert "circulation_status: 04 (charged)" in item
    assert "CheckinResponse (10)\n  ok: yes" in checkin
    assert "expired" in expired
    assert "ok: no" in expired


def test_ctrl_c_stops_the_server_cleanly(
    served_demo: tuple[int, subprocess.Popen[str]],
) -> None:
    """SIGINT (Ctrl-C) closes the listener and exits with status 0."""
    _, server = served_demo

    server.send_signal(signal.SIGINT)
    output, _ = server.communicate(timeout=30)

    assert 0 == server.returncode
    assert "SIP2 server stopped." in output


def test_serve_refuses_a_database_without_tables(tmp_path: Path) -> None:
    """An empty database is refused with the command that fixes it."""
    result = _ils(
        "serve", "--config", str(CONFIG), "--db", f"sqlite:///{tmp_path}/x.db"
    )

    assert 1 == result.returncode
    assert "ils init --db URL" in result.stderr


def test_serve_names_the_file_and_key_of_a_bad_config(tmp_path: Path) -> None:
    """A broken configuration names the file, the key and the problem."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nthreads = 0\n[database]\nurl = "sqlite:///x"\n')

    result = _ils("serve", "--config", str(bad))

    assert 1 == result.returncode
    assert f"{bad}: server.threads: Input should be greater than or equal to 1" in (
        result.stderr
    )
    assert f"{bad}: accounts: Field required" in result.stderr
