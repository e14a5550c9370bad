"""`ils sip shell` against a real server on loopback (issue #5): at a terminal (a
pseudo-terminal here) lines can be edited and recalled with the up arrow; from a
pipe it reads plain lines, as scripts need.

Layer: tests of `sip2server.sip_command`. The server runs in the test's reactor
on a SQLite copy of the stock library; the shell at a terminal is a real child
process on a pty, the piped one runs through click's test runner in a thread.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from typing import Any

import pytest
import pytest_twisted
from click.testing import CliRunner

from sip2server.reload import reload_server
from sip2server.sip_command import sip
from tests.sip2server.conftest import LOGIN, SipTarget, server_config
from tests.sip2server.test_sip_command import sqlite_target, terminal_options
from tests.sip2server.test_wire_behaviour import in_thread

__all__ = ["sqlite_target"]

# The heading `status` prints for the reply, the ACS status (98).
ONLINE = b"AcsStatusResponse (98)"
# The up arrow as an xterm sends it, then Enter.
UP_ENTER = b"\x1b[A\r"


class PtyShell:
    """`ils sip ... shell` in a child process whose terminal is a pty."""

    def __init__(self, options: list[str]) -> None:
        self.master, slave = pty.openpty()
        command = "from sip2server.sip_command import sip; sip()"
        self.child = subprocess.Popen(
            [sys.executable, "-c", command, *options, "shell"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm"},
            close_fds=True,
        )
        os.close(slave)
        self.seen = bytearray()

    def read_until(self, wanted: bytes, count: int = 1) -> bytes:
        """Everything shown so far, once `wanted` has appeared `count` times."""
        deadline = time.monotonic() + 20
        while self.seen.count(wanted) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {wanted!r} x{count}: {bytes(self.seen)!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"shell ended early: {bytes(self.seen)!r}"
                self.seen += chunk
        return bytes(self.seen)

    def type(self, keys: bytes) -> None:
        """Send keystrokes to the shell."""
        os.write(self.master, keys)

    def close(self) -> int:
        """Wait for the shell to end (killing it after 20 s); its exit status."""
        try:
            return self.child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.child.kill()
            return self.child.wait()
        finally:
            os.close(self.master)


@pytest_twisted.inlineCallbacks
def test_up_arrow_at_a_terminal_repeats_the_last_command(
    sqlite_target: SipTarget,
) -> Any:
    """At a pty, `status`, then up arrow and Enter, asks for the status twice
    (two 98 replies, no 'unknown command'); `quit` ends the shell with 0."""
    pytest.importorskip("readline")

    def session() -> tuple[bytes, int]:
        shell = PtyShell(terminal_options(sqlite_target))
        try:
            shell.read_until(b"sip> ")
            shell.type(b"status\r")
            shell.read_until(ONLINE)
            shell.read_until(b"sip> ", 2)
            shell.type(UP_ENTER)
            shown = shell.read_until(ONLINE, 2)
            shell.read_until(b"sip> ", 3)
            shell.type(b"quit\r")
        finally:
            status = shell.close()
        return shown, status

    shown, status = yield in_thread(session)
    assert b"unknown command" not in shown
    assert 2 == shown.count(ONLINE)
    assert 0 == status


@pytest_twisted.inlineCallbacks
def test_piped_script_runs_each_line_without_a_prompt(
    sqlite_target: SipTarget,
) -> Any:
    """From a pipe, two `status` lines and a comment give two 98 replies,
    no prompt, and exit status 0."""

    def run() -> Any:
        return CliRunner().invoke(
            sip,
            [*terminal_options(sqlite_target), "shell"],
            input="status\n# a comment\nstatus\n",
            catch_exceptions=False,
        )

    result = yield in_thread(run)
    assert 0 == result.exit_code
    assert 2 == result.output.count(ONLINE.decode())
    assert "sip> " not in result.output


@pytest_twisted.inlineCallbacks
def test_piped_script_with_an_unknown_command_exits_with_1(
    sqlite_target: SipTarget,
) -> Any:
    """From a pipe, a `bogus` line is reported, the next line still runs, and
    the shell's exit status is 1 so a script's caller sees the failure."""

    def run() -> Any:
        return CliRunner().invoke(
            sip,
            [*terminal_options(sqlite_target), "shell"],
            input="bogus\nstatus\n",
            catch_exceptions=False,
        )

    result = yield in_thread(run)
    assert 1 == result.exit_code
    assert "unknown command 'bogus'" in result.output
    assert 1 == result.output.count(ONLINE.decode())


class PipedShell:
    """`ils sip ... shell` in a child process reading a pipe, its output read
    as it comes (unbuffered), so a test can act between two lines."""

    def __init__(self, options: list[str]) -> None:
        command = "from sip2server.sip_command import sip; sip()"
        self.child = subprocess.Popen(
            [sys.executable, "-c", command, *options, "shell"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.seen = bytearray()

    def send(self, line: bytes) -> None:
        """Write one line to the shell's standard input."""
        assert self.child.stdin is not None
        self.child.stdin.write(line)
        self.child.stdin.flush()

    def read_until(self, wanted: bytes, count: int = 1) -> bytes:
        """Everything shown so far, once `wanted` has appeared `count` times."""
        assert self.child.stdout is not None
        stdout = self.child.stdout.fileno()
        deadline = time.monotonic() + 20
        while self.seen.count(wanted) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {wanted!r} x{count}: {bytes(self.seen)!r}"
            ready, _, _ = select.select([stdout], [], [], left)
            if ready:
                chunk = os.read(stdout, 4096)
                assert chunk, f"shell ended early: {bytes(self.seen)!r}"
                self.seen += chunk
        return bytes(self.seen)

    def close(self) -> tuple[bytes, int]:
        """Close standard input and wait for the end; all output, exit status."""
        assert self.child.stdout is not None
        rest, _ = self.child.communicate(timeout=20)
        return bytes(self.seen) + rest, self.child.returncode


def connections_closed(target: SipTarget, *, close: bool = False) -> Any:
    """A Deferred that fires once the server has seen every terminal connected
    now closed; with `close`, the server closes them, as a restart would."""
    from twisted.internet import defer  # noqa: PLC0415

    waiting = []
    for listener in target.server.listeners:
        for connection in list(listener.factory.connections):
            lost: defer.Deferred[None] = defer.Deferred()

            def seen_lost(
                reason: Any, original: Any = connection.connectionLost, d: Any = lost
            ) -> None:
                original(reason)
                d.callback(None)

            connection.connectionLost = seen_lost  # type: ignore[method-assign]
            if close:
                connection.transport.loseConnection()
            waiting.append(lost)
    assert waiting, "no terminal was connected"
    return defer.gatherResults(waiting)


@pytest_twisted.inlineCallbacks
def test_shell_connects_and_logs_in_again_after_the_server_closed_it(
    sqlite_target: SipTarget,
) -> Any:
    """After the server closes the connection between two lines, the next
    `status` says it connects and logs in again and gets its 98; exit 0."""
    shell = PipedShell(terminal_options(sqlite_target))
    try:
        shell.send(b"status\n")
        yield in_thread(shell.read_until, ONLINE)
        yield connections_closed(sqlite_target, close=True)
        shell.send(b"status\n")
        yield in_thread(shell.read_until, ONLINE, 2)
    finally:
        shown, status = yield in_thread(shell.close)

    text = shown.decode()
    assert "connecting again to" in text
    assert f"logging in again as '{LOGIN}'" in text
    assert "Broken pipe" not in text
    assert 0 == status


@pytest_twisted.inlineCallbacks
def test_shell_stops_when_its_login_is_refused_on_connecting_again(
    sqlite_target: SipTarget,
) -> Any:
    """After a reload changes the account's password (the server closes the
    terminal), the next line's login is refused: the shell says so, runs no
    further line and exits 1."""
    from twisted.internet import reactor  # noqa: PLC0415

    running = sqlite_target.server
    changed = server_config(running.config.database.url, password="changed-secret")
    shell = PipedShell(terminal_options(sqlite_target))
    try:
        shell.send(b"status\n")
        yield in_thread(shell.read_until, ONLINE)
        closed = connections_closed(sqlite_target)
        applied = yield reload_server(running, reactor, lambda: changed)
        yield closed
        shell.send(b"status\nstatus\n")
    finally:
        shown, status = yield in_thread(shell.close)

    text = shown.decode()
    assert applied
    assert f"login '{LOGIN}' refused by the server when connecting again" in text
    assert "the shell stops" in text
    assert 1 == text.count("AcsStatusResponse (98)")
    assert 1 == status
