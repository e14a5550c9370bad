"""Fixtures shared by the driver tests: a socat pty pair and a fixed clock.

Helpers for several drivers add fixtures here; keep each one small.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

FIXED_TIME = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)


@pytest.fixture
def fixed_clock() -> Callable[[], datetime]:
    """A clock that always says FIXED_TIME (timezone-aware), for stamping events."""
    return lambda: FIXED_TIME


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals from socat: bytes written to one come out of the
    other, as over a null-modem cable. Skipped when socat is not installed."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    process = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    # socat says when both ends exist; wait for that line, not for a time.
    for line in process.stderr:
        if "starting data transfer loop" in line:
            break
    else:
        pytest.fail(f"socat exited with {process.wait()} before linking the ptys")
    try:
        yield str(a), str(b)
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
