"""Kiosk latency: from a scan arriving to the item's row on screen.

Starts `ils demo` and `ils serve` (SQLite, loopback), runs the real kiosk app
offscreen on the shared asyncio loop, and scans items through the keyboard
wedge. A scan "arrives" when its Enter key is dispatched; it is "on screen" at
the first buffer swap (Kivy's `on_flip`) after which the item's row is the top
row of the list. So each figure includes the SIP2 round trip (11 or 09), the
view model, rebuilding the list and drawing one frame (Kivy's default cap is
60 frames a second, so up to ~17 ms of each figure is waiting for a frame).

    .venv/bin/python bench/kiosk_scan.py --scans 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer

from kiosk.harness import (
    demo_server,
    kivy_home,
    online,
    run_on_shared_loop,
    settle,
    start_app,
    type_keys,
)

PATRON, PIN = "21234000000018", "1234"
# The demo library's lendable items (serials 1-46 but for the reference book).
ITEMS = [
    "31234000000016", "31234000000024", "31234000000032", "31234000000040",
    "31234000000057", "31234000000065", "31234000000073", "31234000000081",
    "31234000000099", "31234000000107", "31234000000123", "31234000000131",
]  # fmt: skip


async def _scan(app: Any, barcode: str) -> tuple[float, float]:
    """Seconds from the Enter of `barcode` to the reply being in the view model,
    and to the buffer swap that shows its row on top."""
    from kivy.core.window import Window  # noqa: PLC0415

    rows = app.root.ids.screens.get_screen("items").ids.rows
    shown: defer.Deferred[float] = defer.Deferred()
    answered: list[float] = []

    def changed() -> None:
        check = app.check
        top = check.rows[0].barcode if check.rows else None
        if not answered and top == barcode and not check.busy:
            answered.append(time.perf_counter())

    app.check.on_change(changed)

    def flipped(*_: Any) -> None:
        if rows.children and rows.children[-1].barcode == barcode and not shown.called:
            shown.callback(time.perf_counter())

    for character in barcode:
        Window.dispatch("on_key_down", ord(character), 0, character, [])
    Window.bind(on_flip=flipped)
    started = time.perf_counter()
    Window.dispatch("on_key_down", 13, 40, None, [])
    finished = await shown
    Window.unbind(on_flip=flipped)
    app.check._listeners.remove(changed)
    await settle(app)
    return answered[0] - started, finished - started


async def _bench(
    reactor: Any, port: int, scans: int, folder: Path
) -> dict[str, list[float]]:
    from twisted.internet.task import Clock  # noqa: PLC0415

    from kiosk.config import parse_config  # noqa: PLC0415
    from kiosk.runtime import assemble  # noqa: PLC0415

    config = parse_config(
        {
            "kiosk": {"institution": "DEMO", "branch": "MAIN"},
            "server": {"port": port},
            "account": {"login": "kiosk1", "password": "kiosk1-demo"},
            "offline": {"enabled": False, "journal": str(folder / "j.sqlite3")},
            "audio": {"enabled": False},
        },
        "<bench>",
    )
    kiosk = assemble(config, reactor, clock=Clock())
    app = kiosk.app
    kiosk.link.start()
    await online(kiosk.link, reactor)
    running = await start_app(app)
    timings: dict[str, list[float]] = {
        "borrow (11)": [],
        "return (09)": [],
        "reply only": [],
    }
    try:
        # Borrow: as many as a demo adult may (10), one patron session.
        type_keys(PATRON)
        await settle(app)
        type_keys(PIN)
        await settle(app)
        app.press("borrow")
        await settle(app)
        for barcode in ITEMS[:9]:
            reply, screen = await _scan(app, barcode)
            timings["borrow (11)"].append(screen)
            timings["reply only"].append(reply)
        app.press("finish")
        await settle(app)
        app.press("no_receipt")
        await settle(app)

        # Returns, no card: cycle through the items (a return of an item not on
        # loan is still answered, as the server does for any return).
        app.press("returns")
        await settle(app)
        for number in range(scans):
            barcode = ITEMS[number % len(ITEMS)]
            reply, screen = await _scan(app, barcode)
            timings["return (09)"].append(screen)
            timings["reply only"].append(reply)
            kiosk.check.touch()
    finally:
        app.stop()
        await running
        kiosk.close()
    return timings


def _report(name: str, values: list[float]) -> str:
    ms = sorted(value * 1000 for value in values)
    p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
    return (
        f"{name:<12} n={len(ms):<4} p50={statistics.median(ms):6.1f} ms  "
        f"p95={p95:6.1f} ms  max={ms[-1]:6.1f} ms"
    )


def main() -> None:
    """Run the benchmark and print p50/p95/max per kind of scan."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans", type=int, default=300, help="return scans to time")
    options = parser.parse_args()
    with kivy_home():
        _run(options.scans)


def _run(scans: int) -> None:
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.pop("DISPLAY", None)
    from kivy.config import Config  # noqa: PLC0415

    Config.set("graphics", "width", "800")
    Config.set("graphics", "height", "480")

    results: dict[str, list[float]] = {}
    with demo_server() as port, tempfile.TemporaryDirectory() as folder:

        async def bench(reactor: Any) -> None:
            results.update(await _bench(reactor, port, scans, Path(folder)))

        run_on_shared_loop(bench)

    every = results["borrow (11)"] + results["return (09)"]
    for name in ("borrow (11)", "return (09)"):
        print(_report(name, results[name]))
    print(_report("all", every))
    # From Enter to the reply applied to the view model, before any drawing.
    print(_report("reply only", results["reply only"]))


if __name__ == "__main__":
    main()
