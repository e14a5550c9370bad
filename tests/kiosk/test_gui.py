"""Whole kiosk apps, offscreen, driving complete flows against the real server.

Each test runs the real `KioskApp` (SDL offscreen, no X) on the asyncio loop
that pytest-twisted's asyncio reactor runs, as `ils kiosk` does, and presses
its buttons, types on its keypad and scans through the keyboard wedge.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from kiosk.runtime import Kiosk, assemble
from kiosk.session import Screen
from kiosk.sipclient import LinkState
from tests.kiosk.conftest import ITEMS, PATRON, PIN, LiveServer, kiosk_config
from tests.kiosk.test_sipclient import reached


async def frames(count: int = 2) -> None:
    """Let Kivy draw `count` frames."""
    from kivy.clock import Clock as KivyClock  # noqa: PLC0415

    for _ in range(count):
        drawn: defer.Deferred[None] = defer.Deferred()
        KivyClock.schedule_once(lambda _, d=drawn: d.callback(None), 0)
        await drawn


async def settle(kiosk: Kiosk) -> None:
    """Wait for the work the screen started, then for the screen to show it."""
    while kiosk.app.working:
        await defer.DeferredList(list(kiosk.app.working))
    await frames()


@pytest_twisted.async_yield_fixture
async def gui(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[Kiosk]:
    """A running kiosk app, online, with a file printer and a Clock for timeouts."""
    from twisted.internet import reactor  # noqa: PLC0415

    config = kiosk_config(
        live_server.port,
        tmp_path,
        devices={"printer": f"file:{tmp_path / 'receipts.bin'}"},
        kiosk={"staff_cards": ["29999000000001"]},
    )
    kiosk = assemble(config, reactor, clock=Clock())
    kiosk.link.start()
    await reached(kiosk.link, LinkState.ONLINE)
    running = defer.Deferred.fromFuture(
        asyncio.ensure_future(kiosk.app.async_run(async_lib="asyncio"))
    )
    while kiosk.app.root is None and not running.called:
        await frames(1)
    if running.called:
        await running  # raises what stopped the app
    await frames()
    try:
        yield kiosk
    finally:
        kiosk.app.stop()
        await running
        kiosk.close()


def type_keys(text: str) -> None:
    """Type on the hardware keyboard (or a keyboard-wedge scanner), then Enter."""
    from kivy.core.window import Window  # noqa: PLC0415

    for character in text:
        Window.dispatch("on_key_down", ord(character), 0, character, [])
    Window.dispatch("on_key_down", 13, 40, None, [])


@pytest_twisted.ensureDeferred
async def test_borrow_three_items_with_one_refused(
    gui: Kiosk, live_server: LiveServer
) -> None:
    """Card and PIN on the keypad, three scans: two lent, the reference book refused
    in plain words, and a receipt printed with the card masked."""
    app, check = gui.app, gui.check
    app.press("start")
    await settle(gui)
    for digit in PATRON:
        app.press(f"key:{digit}")
    app.press("ok")
    await settle(gui)
    assert Screen.PIN is check.screen
    for digit in PIN:
        app.press(f"key:{digit}")
    await frames()
    assert "••••" == app.entry
    app.press("ok")
    await settle(gui)
    assert Screen.MENU is check.screen

    app.press("borrow")
    await settle(gui)
    for barcode in (ITEMS[0], live_server.library.reference_item, ITEMS[1]):
        type_keys(barcode)
        await settle(gui)

    rows = app.root.ids.screens.get_screen("items").ids.rows.children
    shown = {row.barcode: (row.title, row.detail, row.good) for row in rows}
    assert 3 == len(shown)
    title, detail, good = shown[ITEMS[0]]
    assert "Pride and prejudice" == title
    assert detail.startswith("Borrowed. Due back ")
    assert good
    _, refused, good = shown[live_server.library.reference_item]
    assert "This item cannot be borrowed. Please ask at the desk." == refused
    assert not good

    app.press("finish")
    await settle(gui)
    app.press("print")
    await settle(gui)
    assert Screen.ATTRACT is check.screen
    printed = (Path(gui.check.config.devices.printer[5:])).read_bytes()
    assert b"**********0018" in printed
    assert PATRON.encode() not in printed
