"""Driving a whole kiosk from a script: a demo server in a subprocess, the app
offscreen, key presses and frames. Used by `make screenshots` and by
bench/kiosk_scan.py.

Layer: `kiosk` tooling (Kivy, Twisted; never imports `ils`: the demo library
and the SIP2 server run as `ils demo` and `ils serve` processes, exactly as an
operator would start them).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twisted.internet import defer

# Re-exported for the screenshot tours and the benchmark.
from .loop import run_on_shared_loop

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_CONFIG = REPO_ROOT / "config" / "sip2server.toml"
_LISTENING = re.compile(r"SIP2 server listening on 127\.0\.0\.1:(\d+)")


@contextmanager
def kivy_home() -> Iterator[None]:
    """A throwaway KIVY_HOME (unless one is set) for a scripted run, removed after."""
    if "KIVY_HOME" in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="kivyhome-") as home:
        os.environ["KIVY_HOME"] = home
        try:
            yield
        finally:
            del os.environ["KIVY_HOME"]


@contextmanager
def demo_server() -> Iterator[int]:
    """`ils demo` into a temporary SQLite file, then `ils serve`; yields the port."""
    with tempfile.TemporaryDirectory(prefix="kiosk-demo-") as folder:
        url = f"sqlite:///{Path(folder) / 'demo.sqlite3'}"
        ils = [sys.executable, "-m", "ils.cli"]
        # Our own interpreter with fixed arguments: nothing untrusted runs.
        subprocess.run(  # noqa: S603
            [*ils, "demo", "--db", url, "--patrons", "6"],
            check=True,
            capture_output=True,
        )
        server = subprocess.Popen(  # noqa: S603
            [
                *ils,
                "serve",
                "--config",
                str(SERVER_CONFIG),
                "--db",
                url,
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert server.stdout is not None
            port = None
            for line in server.stdout:
                match = _LISTENING.search(line)
                if match:
                    port = int(match.group(1))
                    break
            if port is None:
                raise RuntimeError("the demo SIP2 server did not start")
            yield port
        finally:
            server.terminate()
            server.wait(timeout=30)


async def frames(count: int = 2) -> None:
    """Let Kivy draw `count` frames."""
    from kivy.clock import Clock  # noqa: PLC0415

    for _ in range(count):
        drawn: defer.Deferred[None] = defer.Deferred()
        Clock.schedule_once(lambda _, d=drawn: d.callback(None), 0)
        await drawn


async def settle(app: Any) -> None:
    """Wait for the work the screen started, then for the screen to show it."""
    while app.working:
        await defer.DeferredList(list(app.working))
    await frames()


def type_keys(text: str) -> None:
    """Type on the keyboard (or a keyboard-wedge scanner), then press Enter."""
    from kivy.core.window import Window  # noqa: PLC0415

    for character in text:
        Window.dispatch("on_key_down", ord(character), 0, character, [])
    Window.dispatch("on_key_down", 13, 40, None, [])


async def online(link: Any, reactor: Any, timeout: float = 30.0) -> None:
    """Wait (on the reactor, before Kivy runs) until the SIP2 link is online.

    Raises:
        TimeoutError: the link did not come up in time.
    """
    from twisted.internet.task import deferLater  # noqa: PLC0415

    from .sipclient import LinkState  # noqa: PLC0415

    waited = 0.0
    while link.state is not LinkState.ONLINE:
        if waited > timeout:
            raise TimeoutError(
                f"the SIP2 link is still {link.state.value}: {link.problem}"
            )
        await deferLater(reactor, 0.05, lambda: None)
        waited += 0.05


async def start_app(app: Any) -> defer.Deferred[Any]:
    """Run the app on the shared loop; returns once its first frames are drawn."""
    running = defer.Deferred.fromFuture(
        asyncio.ensure_future(app.async_run(async_lib="asyncio"))
    )
    while app.root is None and not running.called:
        await frames(1)
    await frames()
    return running


__all__ = [
    "REPO_ROOT",
    "demo_server",
    "frames",
    "kivy_home",
    "online",
    "run_on_shared_loop",
    "settle",
    "start_app",
    "type_keys",
]
