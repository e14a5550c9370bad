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

from sip2server.sip_command import sip
from tests.sip2server.conftest import SipTarget
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
