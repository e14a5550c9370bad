"""Out of service stays out of service across a restart, until staff say otherwise.

Finding 13 of the second adversarial trial of issue #6: the setting lived in
memory only, so a crash, a power cut or a restart by systemd silently put the
kiosk back in service. Each kiosk here is a fresh view model on the same
configuration and journal folder, as after a restart; the server is the real
one with the demo library.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted

from kiosk.model import Screen
from tests.kiosk.conftest import LiveServer
from tests.kiosk.test_session import start_kiosk


async def _restart_and_look(
    live_server: LiveServer, tmp_path: Path, out_of_service: bool | None = None
) -> tuple[bool, Screen]:
    """Start a kiosk, optionally set its service state, stop it; return what it
    showed at start."""
    kiosk = await start_kiosk(live_server, tmp_path)
    try:
        seen = (kiosk.check.out_of_service, kiosk.check.screen)
        if out_of_service is not None:
            kiosk.check.set_out_of_service(out_of_service)
    finally:
        kiosk.link.stop()
        kiosk.journal.close()
    return seen


@pytest_twisted.ensureDeferred
async def test_out_of_service_is_kept_across_a_restart(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Taken out of service, the restarted kiosk shows "out of order"; put back
    in service, the next start shows the welcome screen."""
    first = await _restart_and_look(live_server, tmp_path, out_of_service=True)
    second = await _restart_and_look(live_server, tmp_path, out_of_service=False)
    third = await _restart_and_look(live_server, tmp_path)

    assert (False, Screen.ATTRACT) == first
    assert (True, Screen.OUT_OF_ORDER) == second
    assert (False, Screen.ATTRACT) == third
