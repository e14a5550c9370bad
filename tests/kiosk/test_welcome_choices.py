"""Choices made on the welcome screen by someone who goes away are undone.

Finding N-K of the second adversarial trial of issue #6: a language or display
mode picked on the welcome screen, with no session started after it, stayed
for the next person, since no timer runs there. Against the real server and
the demo library; the kiosk's timers run on a `Clock`.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted

from kiosk.model import Screen
from tests.kiosk.conftest import LiveServer
from tests.kiosk.test_session import start_kiosk


@pytest_twisted.ensureDeferred
async def test_welcome_screen_choices_return_to_the_defaults_after_the_idle_time(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """French, large text and high contrast chosen at 0 s are kept until the
    idle time (60 s here) passes without a touch, then English and the plain
    display are back; a later touch starts the count again."""
    kiosk = await start_kiosk(live_server, tmp_path, timeouts={"idle": 60.0})
    check = kiosk.check
    try:
        assert Screen.ATTRACT is check.screen
        check.choose_language("fr")
        check.toggle_large_text()
        check.toggle_high_contrast()
        kiosk.clock.advance(59)
        kept = (check.language, check.large_text, check.high_contrast)
        kiosk.clock.advance(1)
        undone = (check.language, check.large_text, check.high_contrast)

        check.choose_language("de")
        kiosk.clock.advance(50)
        check.touch()
        kiosk.clock.advance(50)
        touched = check.language
        kiosk.clock.advance(10)
        later = check.language
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    assert ("fr", True, True) == kept
    assert ("en", False, False) == undone
    assert ("de", "en") == (touched, later)
