"""No key on an attached keyboard leads out of the kiosk.

Findings 3, 10 and 11b of the second adversarial trial of issue #6: F1 opened
Kivy's settings panel over the kiosk (rotation, fullscreen, logging...), which
the idle timeout never removed, and Escape quit a windowed kiosk; the second
tap of a double tap pressed the button that appeared under the finger (10);
without the keyboard wedge staff could not type their code on an out-of-order
kiosk (11b); and the last patron's fee line stayed on the hidden account
screen. The whole app
runs offscreen against the real server (the `gui` fixture of test_gui.py);
keys are sent as SDL sends them: on_key_down, then on_keyboard unless taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from kiosk.config import hash_staff_code
from kiosk.harness import start_app
from kiosk.model import Screen
from kiosk.runtime import Kiosk, assemble
from kiosk.sipclient import LinkState
from tests.kiosk.conftest import LiveServer, kiosk_config
from tests.kiosk.test_gui import (  # noqa: F401 (gui is the fixture)
    frames,
    gui,
    settle,
    sign_in,
    type_keys,
)
from tests.kiosk.test_sipclient import reached

KEY_F1 = 282
KEY_ESCAPE = 27


def _press_as_sdl(key: int) -> None:
    from kivy.core.window import Window  # noqa: PLC0415

    if not Window.dispatch("on_key_down", key, 0, None, []):
        Window.dispatch("on_keyboard", key, 0, None, [])


@pytest_twisted.ensureDeferred
async def test_f1_and_escape_do_nothing_but_touch_the_screen(gui: Kiosk) -> None:  # noqa: F811
    """After F1 and Escape on the welcome screen no settings panel is open, the
    app still runs, and the screen is still the welcome screen."""
    from kivy.core.window import Window  # noqa: PLC0415
    from kivy.uix.settings import Settings  # noqa: PLC0415

    app = gui.app
    _press_as_sdl(KEY_F1)
    await frames()
    panels = [w for w in Window.children if isinstance(w, Settings)]
    _press_as_sdl(KEY_ESCAPE)
    await frames()

    assert [] == panels
    assert app.root is not None
    assert app.root in Window.children
    assert Screen.ATTRACT is gui.check.screen
    assert app.open_settings() is False


def _tap(button: Any) -> None:
    """A finger down and up on the middle of `button`."""
    from kivy.tests.common import UnitTestTouch  # noqa: PLC0415

    x, y = button.to_window(*button.center)
    touch = UnitTestTouch(x, y)
    touch.touch_down()
    touch.touch_up()


@pytest_twisted.ensureDeferred
async def test_a_tap_just_after_a_screen_change_is_dropped(gui: Kiosk) -> None:  # noqa: F811
    """The second tap of a double tap on "Return items" does not press "Finish"
    on the item screen that appeared under the finger; a tap later does."""
    app = gui.app
    # Wide enough that no slow frame lets the second tap through.
    app.tap_guard = 60.0
    _tap(app.button("returns"))
    await frames()
    assert Screen.ITEMS is gui.check.screen
    _tap(app.button("finish"))
    await frames()
    dropped = gui.check.screen
    app.tap_guard = 0.0
    _tap(app.button("finish"))
    await frames()

    assert Screen.ITEMS is dropped
    assert Screen.ATTRACT is gui.check.screen


@pytest_twisted.ensureDeferred
async def test_staff_type_their_code_on_an_out_of_order_kiosk_without_a_wedge(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """With `devices.keyboard_wedge = false` and no staff card, the staff code
    typed on a keyboard and Enter open the staff screen of an out-of-service
    kiosk."""
    from twisted.internet import reactor  # noqa: PLC0415

    config = kiosk_config(
        live_server.port,
        tmp_path,
        devices={"keyboard_wedge": False},
        kiosk={"staff_code_hash": hash_staff_code("4711")},
    )
    kiosk = assemble(config, reactor, clock=Clock())
    kiosk.link.start()
    await reached(kiosk.link, LinkState.ONLINE)
    running = await start_app(kiosk.app)
    try:
        kiosk.check.set_out_of_service(True)
        kiosk.check.end_session()
        await frames()
        assert Screen.OUT_OF_ORDER is kiosk.check.screen
        type_keys("4711")
        await settle(kiosk)
        screen = kiosk.check.screen
    finally:
        kiosk.app.stop()
        await running
        kiosk.close()

    assert Screen.STAFF is screen


@pytest_twisted.ensureDeferred
async def test_the_fee_line_is_gone_once_the_session_ends(gui: Kiosk) -> None:  # noqa: F811
    """A patron's "Fees owed" line, shown on My account, is not left on the
    (hidden) account screen after the session ends."""
    app = gui.app
    await sign_in(gui)
    app.press("account")
    await settle(gui)
    shown = app.fees
    gui.check.end_session()
    await frames()

    assert "Fees owed: $0.00" == shown
    assert "" == app.fees
