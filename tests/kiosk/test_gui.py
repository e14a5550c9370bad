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

from kiosk.model import Screen
from kiosk.runtime import Kiosk, assemble
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


async def sign_in(kiosk: Kiosk, card: str = PATRON, pin: str = PIN) -> None:
    """Scan a card through the keyboard wedge on the attract screen, type the PIN."""
    type_keys(card)
    await settle(kiosk)
    type_keys(pin)
    await settle(kiosk)


def shown_rows(kiosk: Kiosk, screen: str) -> list[tuple[str, str, bool]]:
    """(title, detail, good) of each row on a screen's list, top first."""
    rows = kiosk.app.root.ids.screens.get_screen(screen).ids.rows.children
    return [(row.title, row.detail, row.good) for row in reversed(rows)]


@pytest_twisted.ensureDeferred
async def test_return_without_a_card_in_french(gui: Kiosk) -> None:
    """A borrowed book is returned from the attract screen, no card, in French."""
    app, check = gui.app, gui.check
    await sign_in(gui)
    app.press("borrow")
    await settle(gui)
    type_keys(ITEMS[2])
    await settle(gui)
    app.press("finish")
    await settle(gui)
    app.press("no_receipt")
    await settle(gui)

    app.press("lang:fr")
    await settle(gui)
    app.press("returns")
    await settle(gui)
    type_keys(ITEMS[2])
    await settle(gui)

    assert Screen.ITEMS is check.screen
    assert "Rendre : scannez chaque document" == app.items_title
    assert [
        ("Frankenstein, or, The modern Prometheus", "Rendu. Merci.", True)
    ] == shown_rows(gui, "items")


@pytest_twisted.ensureDeferred
async def test_renew_from_the_account_screen(gui: Kiosk) -> None:
    """The account lists the loan with a renew button; pressing it sends 29, which
    the server refuses as too soon, and the patron reads why in plain words."""
    app, check = gui.app, gui.check
    await sign_in(gui)
    app.press("borrow")
    await settle(gui)
    type_keys(ITEMS[0])
    await settle(gui)
    app.press("menu")
    await settle(gui)
    app.press("account")
    await settle(gui)

    assert Screen.ACCOUNT is check.screen
    ((title, due, _),) = shown_rows(gui, "account")
    assert "Pride and prejudice" == title
    assert due.startswith("Due back ")
    assert "Fees owed: $0.00" == app.fees

    app.press(f"renew:{ITEMS[0]}")
    await settle(gui)

    first = shown_rows(gui, "account")[0]
    assert (
        "It is too soon to renew this item: renewing now would not give you more time."
        == first[1]
    )


@pytest_twisted.ensureDeferred
async def test_a_session_times_out_in_the_middle(gui: Kiosk) -> None:
    """Left mid-loan, the kiosk shows a countdown over the screen, then forgets
    the patron and goes back to the attract screen."""
    app, check = gui.app, gui.check
    clock: Clock = check._clock
    await sign_in(gui)
    app.press("borrow")
    await settle(gui)
    type_keys(ITEMS[0])
    await settle(gui)

    clock.advance(check.config.timeouts.idle - check.config.timeouts.warning)
    await frames()
    assert "Your session ends in 15 s. Touch the screen to continue." == app.countdown
    assert "warning" == app.audio.played[-1]
    clock.advance(check.config.timeouts.warning)
    await settle(gui)

    assert Screen.ATTRACT is check.screen
    assert "" == app.countdown
    assert [] == shown_rows(gui, "items")
    assert check.patron is None


@pytest_twisted.ensureDeferred
async def test_server_stopped_mid_session_then_offline_returns_replayed(
    gui: Kiosk, live_server: LiveServer
) -> None:
    """The server stops while a patron borrows: the kiosk says so, takes returns
    offline into its journal, and replays them when the server is back."""
    app, check = gui.app, gui.check
    await sign_in(gui)
    app.press("borrow")
    await settle(gui)
    type_keys(ITEMS[0])
    await settle(gui)

    await live_server.stop()
    await reached(gui.link, LinkState.OUT_OF_ORDER)
    type_keys(ITEMS[1])
    await settle(gui)
    assert (
        "The library system cannot be reached just now. "
        "Please try again shortly or ask at the desk."
    ) == shown_rows(gui, "items")[0][1]
    app.press("finish")
    await settle(gui)
    app.press("no_receipt")
    await settle(gui)
    assert app.offline

    app.press("returns")
    await settle(gui)
    type_keys(ITEMS[0])
    await settle(gui)
    assert (
        "Item 31234000000016",
        "Returned. It will be recorded when the library system is back.",
        True,
    ) == shown_rows(gui, "items")[0]
    assert 1 == len(gui.journal.pending())  # type: ignore[union-attr]

    await live_server.restart()
    await reached(gui.link, LinkState.ONLINE)
    while gui.journal.pending() or check.desk._replaying:  # type: ignore[union-attr]
        await frames(1)

    (result,) = gui.journal.results()  # type: ignore[union-attr]
    assert ITEMS[0] == result.item
    assert "done" == result.state


@pytest_twisted.ensureDeferred
async def test_everything_is_reachable_from_a_hardware_keypad(gui: Kiosk) -> None:
    """Arrow keys move the focus over the buttons and Enter presses the focused one;
    large text and high contrast change the look."""
    from kivy.core.window import Window  # noqa: PLC0415

    app, check = gui.app, gui.check
    names = [button.name for button in app.buttons()]
    assert "start" in names
    for _ in range(names.index("start") + 1):
        Window.dispatch("on_key_down", 274, 0, None, [])
    await frames()
    assert "start" == app.focused_button().name  # type: ignore[union-attr]
    Window.dispatch("on_key_down", 13, 40, None, [])
    await settle(gui)
    assert Screen.IDENTIFY is check.screen

    app.press("high_contrast")
    app.press("large_text")
    await settle(gui)
    assert [0, 0, 0, 1] == list(app.bg)
    assert 1.35 == app.scale


@pytest_twisted.ensureDeferred
async def test_item_rows_grow_to_hold_a_long_title_and_its_reason(
    gui: Kiosk, live_server: LiveServer
) -> None:
    """With large text, a refused reference book's wrapped title and its reason
    both lie inside the row, and rows do not overlap."""
    app, check = gui.app, gui.check
    app.press("start")
    await settle(gui)
    type_keys(PATRON)
    await settle(gui)
    for digit in PIN:
        app.press(f"key:{digit}")
    app.press("ok")
    await settle(gui)
    app.press("borrow")
    await settle(gui)
    check.toggle_large_text()
    for barcode in (live_server.library.reference_item, ITEMS[0]):
        type_keys(barcode)
        await settle(gui)
    await frames(3)

    rows = list(app.root.ids.screens.get_screen("items").ids.rows.children)
    assert 2 == len(rows)
    for row in rows:
        title, detail = row.ids.title, row.ids.detail
        assert title.texture_size[1] > 0
        assert detail.texture_size[1] > 0
        assert row.y <= detail.y, row.title
        assert title.top <= row.top, row.title
        assert detail.top <= title.y + 1
    lower, upper = rows  # Kivy lists children bottom first
    assert lower.top <= upper.y
