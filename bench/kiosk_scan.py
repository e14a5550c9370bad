"""Kiosk latency: from a scan arriving to the item's row on screen.

Starts `ils demo` and `ils serve` (SQLite, loopback), runs the real kiosk app
offscreen on the shared asyncio loop, and scans items through the keyboard
wedge. A scan "arrives" when its Enter key is dispatched; it is "on screen" at
the first buffer swap (Kivy's `on_flip`) after which the item's row is the top
row of the list. So each figure includes the SIP2 round trip (11 or 09), the
view model, rebuilding the list and drawing one frame (Kivy's default cap is
60 frames a second, so up to ~17 ms of each figure is waiting for a frame).

Checkouts come in rounds, as patrons' sessions do: the demo patron logs in
with the PIN, borrows 10 books (as many as the demo allows at once; the kiosk
sends the PIN with every 11), finishes, and the 10 are returned without a card
(09), so the next round can borrow again. The returns beyond those of the
rounds are of books not on loan, which the server still answers.

    .venv/bin/python bench/kiosk_scan.py --checkouts 110 --scans 300
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
# Books of the demo library's Main branch that no demo hold waits for.
BOOKS = [
    "31234000000016", "31234000000032", "31234000000040", "31234000000065",
    "31234000000081", "31234000000099", "31234000000107", "31234000000131",
    "31234000000149", "31234000000156", "31234000000164", "31234000000172",
    "31234000000180", "31234000000198", "31234000000206", "31234000000214",
    "31234000000222", "31234000000230", "31234000000248", "31234000000255",
]  # fmt: skip
# A demo adult may have 10 loans at once.
ROUND = 10


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
    reactor: Any, port: int, checkouts: int, scans: int, folder: Path
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
        "borrow reply": [],
        "return reply": [],
    }

    # What each kind of session presses, and where its timings go.
    kinds = {
        "borrow": ("borrow", "borrow (11)", "borrow reply"),
        "return": ("returns", "return (09)", "return reply"),
    }

    async def session(kind: str, barcodes: list[str]) -> None:
        """Start a `kind` session, scan every barcode, check each loan was
        made, and finish without a receipt."""
        button, on_screen, replied = kinds[kind]
        app.press(button)
        await settle(app)
        for barcode in barcodes:
            reply, screen = await _scan(app, barcode)
            timings[on_screen].append(screen)
            timings[replied].append(reply)
            kiosk.check.touch()
        refused = [row.barcode for row in app.check.rows if row.result.name != "DONE"]
        if kind == "borrow" and refused:
            raise RuntimeError(f"checkouts not done: {refused}")
        app.press("finish")
        await settle(app)
        app.press("no_receipt")
        await settle(app)

    try:
        done = 0
        while done < checkouts:
            start = done % len(BOOKS)
            books = (BOOKS + BOOKS)[start : start + min(ROUND, checkouts - done)]
            # A patron's session: the card, the PIN, then the books; then the
            # books go back, so the next session may borrow them again.
            type_keys(PATRON)
            await settle(app)
            type_keys(PIN)
            await settle(app)
            await session("borrow", books)
            await session("return", books)
            done += len(books)

        # More returns, no card: books not on loan, still answered.
        extra = max(0, scans - len(timings["return (09)"]))
        for start in range(0, extra, len(BOOKS)):
            await session("return", BOOKS[: min(len(BOOKS), extra - start)])
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
    parser.add_argument(
        "--checkouts",
        type=int,
        default=110,
        help="checkouts to time, in patron sessions of up to 10 (default 110)",
    )
    parser.add_argument(
        "--scans",
        type=int,
        default=300,
        help="returns to time; at least one per checkout (default 300)",
    )
    options = parser.parse_args()
    with kivy_home():
        _run(options.checkouts, options.scans)


def _run(checkouts: int, scans: int) -> None:
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.pop("DISPLAY", None)
    from kivy.config import Config  # noqa: PLC0415

    Config.set("graphics", "width", "800")
    Config.set("graphics", "height", "480")

    # The machine may be shared: say how busy it was.
    load_before = os.getloadavg()[0]
    results: dict[str, list[float]] = {}
    with demo_server() as port, tempfile.TemporaryDirectory() as folder:

        async def bench(reactor: Any) -> None:
            results.update(await _bench(reactor, port, checkouts, scans, Path(folder)))

        run_on_shared_loop(bench)
    load_after = os.getloadavg()[0]

    every = results["borrow (11)"] + results["return (09)"]
    for name in ("borrow (11)", "return (09)"):
        print(_report(name, results[name]))
    print(_report("all", every))
    # From Enter to the reply applied to the view model, before any drawing.
    for name in ("borrow reply", "return reply"):
        print(_report(name, results[name]))
    print(_report("reply only", results["borrow reply"] + results["return reply"]))
    print(f"load average (1 min): {load_before:.1f} -> {load_after:.1f}")


if __name__ == "__main__":
    main()
