"""`make screenshots`: a PNG of every kiosk screen, in two languages and in
high-contrast mode, written to docs/screenshots/ for reviewers.

Layer: `kiosk` tooling (see `kiosk.harness`). Runs offscreen against the demo
library served by `ils serve`; every screen is reached by pressing buttons and
scanning, as a patron would.

    python -m kiosk.screenshots [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .harness import (
    REPO_ROOT,
    demo_server,
    frames,
    kivy_home,
    online,
    run_on_shared_loop,
    settle,
    start_app,
    type_keys,
)

PATRON, PIN = "21234000000018", "1234"
# Two books to borrow in each tour, and a third lent to the patron beforehand
# (an earlier visit), whose scan shows the renewal offer. Each tour returns
# its three books at the end, so every tour starts with the patron owing none
# and shows the same account.
ITEMS = {
    ("en", False): ("31234000000016", "31234000000032", "31234000000024"),
    ("fr", False): ("31234000000040", "31234000000065", "31234000000057"),
    ("en", True): ("31234000000073", "31234000000099", "31234000000081"),
}
# A reference book of the demo library: not for loan.
REFERENCE = "31234000000115"
STAFF_CARD = "29999000000001"


def _config(port: int, folder: Path, language: str, high_contrast: bool) -> Any:
    from .config import parse_config  # noqa: PLC0415

    return parse_config(
        {
            "kiosk": {
                "name": "Demo Public Library",
                "institution": "DEMO",
                "branch": "MAIN",
                "languages": ["en", "fr", "de"],
                "default_language": language,
                "staff_cards": [STAFF_CARD],
            },
            "server": {"port": port, "reconnect_min": 0.2, "reconnect_max": 0.5},
            "account": {"login": "kiosk1", "password": "kiosk1-demo"},
            "offline": {"enabled": False, "journal": str(folder / "j.sqlite3")},
            "patron": {"card_pattern": r"2\d{13}", "item_pattern": r"3\d{13}"},
            "services": {"email_receipt": True},
            # So that the finish screen offers email; the tour never presses
            # it, and nothing listens on this port.
            "email": {
                "host": "127.0.0.1",
                "port": 9,
                "starttls": "off",
                "sender": "kiosk@example.invalid",
            },
            "devices": {"printer": f"file:{folder / 'receipts.bin'}"},
            "display": {"high_contrast": high_contrast},
            "audio": {"enabled": False},
        },
        "<screenshots>",
    )


async def _tour(
    reactor: Any, port: int, out: Path, language: str, contrast: bool
) -> None:
    from twisted.internet.task import Clock  # noqa: PLC0415

    from .runtime import assemble  # noqa: PLC0415

    suffix = f"{language}{'-contrast' if contrast else ''}"
    with tempfile.TemporaryDirectory() as folder:
        _lend_beforehand(port, ITEMS[language, contrast][2])
        config = _config(port, Path(folder), language, contrast)
        kiosk = assemble(config, reactor, clock=Clock())
        app, check = kiosk.app, kiosk.check
        kiosk.link.start()
        await online(kiosk.link, reactor)
        running = await start_app(app)

        async def shot(name: str) -> None:
            await settle(app)
            await frames(2)
            app.root.export_to_png(str(out / f"{name}-{suffix}.png"))

        await _walk(app, check, shot, ITEMS[language, contrast])

        app.stop()
        await running
        kiosk.close()
        for barcode in ITEMS[language, contrast]:
            _sip(port, "checkin", barcode)


def _lend_beforehand(port: int, barcode: str) -> None:
    """Lend a book to the patron through `ils sip`, as an earlier visit would."""
    _sip(port, "checkout", PATRON, barcode, "--pin", PIN)


def _sip(port: int, *command: str) -> None:
    """One `ils sip` command against the demo server, as the kiosk's account."""
    subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        [
            sys.executable,
            "-m",
            "ils.cli",
            "sip",
            "--port",
            str(port),
            "--login",
            "kiosk1",
            "--password",
            "kiosk1-demo",
            *command,
        ],
        check=True,
        capture_output=True,
    )


async def _walk(app: Any, check: Any, shot: Any, books: tuple[str, str, str]) -> None:
    """Through every screen as a patron, then as staff, shooting each."""
    await shot("attract")
    app.press("start")
    await settle(app)
    for digit in PATRON[:8]:
        app.press(f"key:{digit}")
    await shot("identify")
    for digit in PATRON[8:]:
        app.press(f"key:{digit}")
    app.press("ok")
    await settle(app)
    for digit in PIN[:3]:
        app.press(f"key:{digit}")
    await shot("pin")
    # The keypad as it looks once the tries are used up (shown, then undone:
    # really using them up would lock the demo patron's card).
    check.pin_locked = True
    check._changed()
    await shot("pin-locked")
    check.pin_locked = False
    check._changed()
    await settle(app)
    app.press(f"key:{PIN[3]}")
    app.press("ok")
    await shot("menu")
    app.press("borrow")
    first, second, already_lent = books
    for barcode in (first, REFERENCE, second, already_lent):
        await settle(app)
        type_keys(barcode)
    await shot("items")
    check.toggle_large_text()
    await shot("items-large")
    check.toggle_large_text()
    check._clock.advance(check.config.timeouts.idle - 12)
    await shot("countdown")
    check.touch()
    app.press("menu")
    await settle(app)
    app.press("account")
    await shot("account")
    app.press("menu")
    await settle(app)
    app.press("finish")
    await shot("finish")
    app.press("no_receipt")
    await settle(app)
    type_keys(STAFF_CARD)
    await shot("staff")
    app.press("service")
    await settle(app)
    app.press("close")
    await shot("out_of_order")


def main() -> None:
    """Write every screen's PNG for English, French and English high contrast."""
    with kivy_home():
        _main()


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kiosk.screenshots")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)

    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    from kivy.config import Config  # noqa: PLC0415

    Config.set("graphics", "width", "800")
    Config.set("graphics", "height", "480")

    with demo_server() as port:

        async def tours(reactor: Any) -> None:
            for language, contrast in (("en", False), ("fr", False), ("en", True)):
                await _tour(reactor, port, options.out, language, contrast)

        run_on_shared_loop(tours)


if __name__ == "__main__":
    main()
