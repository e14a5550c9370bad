"""What an idle terminal costs the server in memory (#5, `bench/load.py --idle`).

An idle connection shares one empty frame queue instead of holding its own,
and a thread that has checked a password gives the hash's 8 MiB table back to
the system instead of keeping it in its C library arena.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from sip2server.server import _NO_FRAMES, MAX_QUEUED_FRAMES, SipConnection
from tests.sip2server.conftest import SipTarget
from tests.sip2server.test_wire_behaviour import (
    STATUS_FRAME,
    RawTerminal,
    in_thread,
)

REPO = Path(__file__).resolve().parents[2]


def _connections(target: SipTarget) -> list[SipConnection]:
    return [
        connection
        for listener in target.server.listeners
        for connection in listener.factory.connections
    ]


@pytest_twisted.inlineCallbacks
def test_idle_connection_shares_the_empty_frame_queue(sip_target: SipTarget) -> Any:
    """After a burst of pipelined frames is answered, the connection keeps no queue."""
    burst = MAX_QUEUED_FRAMES + 8

    def burst_of_status_requests() -> tuple[RawTerminal, list[bytes]]:
        terminal = RawTerminal(sip_target)
        terminal.login()
        terminal.send(STATUS_FRAME * burst)
        return terminal, [terminal.reply()[:2] for _ in range(burst)]

    terminal, answers = yield in_thread(burst_of_status_requests)
    try:
        # The last reply was written in the same reactor turn that let the
        # queue go, so by now the server has done both.
        idle = _connections(sip_target)
        assert [b"98"] * burst == answers
        assert [True] == [connection._queue is _NO_FRAMES for connection in idle]

        again = yield in_thread(terminal.exchange, STATUS_FRAME)
        assert b"98" == again[:2]
        assert 0 == len(_NO_FRAMES)
    finally:
        terminal.close()


# Run in a fresh interpreter: two threads hash a password three times each,
# as the login threads do, and the growth of resident memory is printed (kB).
_HASHING = textwrap.dedent(
    """
    import re, sys, threading
    from pathlib import Path

    from ils.secrets import hash_secret
    from sip2server.server import return_hash_memory

    if sys.argv[1] == "returned" and not return_hash_memory():
        raise SystemExit("mallopt refused")

    def rss():
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmRSS:\\s+(\\d+)", status).group(1))

    def logins():
        for _ in range(3):
            hash_secret("load-secret")

    before = rss()
    threads = [threading.Thread(target=logins) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(rss() - before)
    """
)


def _growth_kb(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _HASHING, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or not Path("/proc/self/status").exists(),
    reason="glibc's arenas on Linux are what this is about",
)
def test_password_hash_memory_goes_back_to_the_system() -> None:
    """Two threads that hashed passwords keep under 4 MiB, not an 8 MiB table each."""
    kept = _growth_kb("kept")
    if kept < 8 * 1024:
        pytest.skip(f"this C library gave the tables back by itself ({kept} kB)")

    returned = _growth_kb("returned")

    assert returned < 4 * 1024, f"{returned} kB kept (without the fix: {kept} kB)"
