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


def _default_sigint() -> None:
    """In the server's child process, before it runs: Ctrl-C (SIGINT) back to
    its default, as at a terminal. A test run started in the background without
    job control (`make test &` in a script, nohup) ignores SIGINT, and a child
    inherits that, so the server would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
        preexec_fn=_default_sigint,  # noqa: PLW1509 - only sigaction, no locks
    )
    port = None
    deadline = time.monotonic() + 60
    assert server.stdout is not None
    banner: list[str] = []
    server.banner = banner  # type: ignore[attr-defined]
    while port is None and time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        banner.append(line)
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


def test_start_banner_names_accounts_but_not_their_passwords(
    served_demo: tuple[int, subprocess.Popen[str]],
) -> None:
    """The start lines list the logins; the passwords stay in the config file."""
    _, server = served_demo
    banner = "".join(server.banner)  # type: ignore[attr-defined]

    assert "login 'kiosk1'" in banner
    assert "kiosk1-demo" not in banner
    assert "gate1-demo" not in banner


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


def test_sip_subcommand_help_needs_no_server() -> None:
    """`ils sip item --help` prints help without connecting anywhere."""
    result = _ils("sip", "--port", "1", "item", "--help")

    assert 0 == result.returncode, result.stderr
    assert "Show what the server knows of an item" in result.stdout


def test_check_config_names_a_bad_listener(tmp_path: Path) -> None:
    """A listen string Twisted cannot read is reported with its key."""
    config = tmp_path / "listen.toml"
    config.write_text(
        CONFIG.read_text().replace(
            'listen = ["tcp:6001:interface=127.0.0.1"]', 'listen = ["tcp:sixthousand"]'
        )
    )

    result = _ils("check-config", str(config), "--db", f"sqlite:///{tmp_path}/x.db")

    assert 1 == result.returncode
    assert "server.listen[0]: 'tcp:sixthousand' is not a listening endpoint" in (
        result.stderr
    )


def test_check_config_creates_no_database_file(tmp_path: Path) -> None:
    """Checking against a SQLite file that is not there reports it and leaves it so."""
    missing = tmp_path / "none.sqlite3"

    result = _ils("check-config", str(CONFIG), "--db", f"sqlite:///{missing}")

    assert 1 == result.returncode
    assert f"there is no SQLite database at {missing}" in result.stderr
    assert not missing.exists()


def test_check_config_reports_every_account_and_missing_loan_rules(
    tmp_path: Path,
) -> None:
    """Every account's missing place is listed; a database without rules is flagged."""
    url = f"sqlite:///{tmp_path}/lib.sqlite3"
    assert 0 == _ils("demo", "--db", url, "--patrons", "5").returncode
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        CONFIG.read_text().replace('institution = "DEMO"', 'institution = "NOPE"')
    )

    problems = _ils("check-config", str(wrong), "--db", url)

    assert 1 == problems.returncode
    assert "accounts[0] (kiosk1): institution 'NOPE'" in problems.stderr
    assert "accounts[1] (gate1): institution 'NOPE'" in problems.stderr

    empty = tmp_path / "empty.sqlite3"
    assert 0 == _ils("init", "--db", f"sqlite:///{empty}").returncode
    subprocess.run(
        [sys.executable, "-c", _COPY_PLACES, str(tmp_path / "lib.sqlite3"), str(empty)],
        check=True,
    )
    warned = _ils("check-config", str(CONFIG), "--db", f"sqlite:///{empty}")

    assert 0 == warned.returncode, warned.stderr
    assert "warning: the database has no loan rules" in warned.stdout


# Copies the demo's institution and branches (and nothing else) into another file.
_COPY_PLACES = """
import sqlite3, sys
source, target = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
for table in ("institution", "branch"):
    rows = source.execute(f"SELECT * FROM {table}").fetchall()
    marks = ",".join("?" * len(rows[0]))
    target.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
target.commit()
"""


def test_unreachable_database_is_one_line_not_a_traceback() -> None:
    """A PostgreSQL that does not answer is reported in one line by `ils init`."""
    result = _ils("init", "--db", "postgresql://ils:secret@127.0.0.1:1/ils")

    assert 1 == result.returncode
    assert result.stderr.startswith("Error: cannot use the database:")
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stderr
