"""Putting the kiosk together: link, journal, desk, devices, view model, app.

Layer: `kiosk`, the top (imports Kivy through `kiosk.app`; never `ils`).
`assemble` builds every part from a configuration; `run` starts the link and
runs the app on the asyncio loop shared with Twisted's asyncio reactor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .app import KioskApp
from .audio import AudioCues
from .config import KioskConfig
from .devices import KioskDevices
from .i18n import Catalogues
from .journal import Journal
from .present import Presenter
from .session import SelfCheck
from .sipclient import LinkState, SipLink
from .transactions import SipDesk
from .wording import Wording


@dataclass
class Kiosk:
    """Every part of a running kiosk."""

    app: KioskApp
    check: SelfCheck
    link: SipLink
    journal: Journal | None
    devices: KioskDevices

    def start_devices(self, reactor: Any, **options: Any) -> None:
        """Start reading the configured scanners; scans go to the view model."""
        self.devices.start_scanners(
            reactor,
            lambda code: self.check.run(self.check.scan(code)),
            self.check.scan_rejected,
            **options,
        )
        self.devices.start_rfid(
            reactor,
            lambda tags: self.check.run(self.check.tags_placed(tags)),
            self.check.tags_lifted,
            self.check.tags_found_at_start,
        )

    def start(self, reactor: Any, *, wait: float | None = None) -> None:
        """Start the link, and the devices once the kiosk knows where it stands.

        Devices are started when the link has logged in (or has found the
        server unreachable), or after `wait` seconds (default: the server's
        reply timeout) at the latest, so that an item on the pad at start-up
        is never taken for an offline return while the login is under way.
        """
        started: list[bool] = []

        def devices_now() -> None:
            if not started:
                started.append(True)
                if waiting.active():
                    waiting.cancel()
                self.start_devices(reactor)

        def changed(state: LinkState) -> None:
            if state is not LinkState.CONNECTING:
                devices_now()

        delay = self.check.config.server.timeout if wait is None else wait
        waiting = reactor.callLater(delay, devices_now)
        self.link.on_state(changed)
        self.link.start()

    def close(self) -> None:
        """Stop the devices and the link, and close the journal."""
        self.devices.stop()
        self.link.stop()
        if self.journal is not None:
            self.journal.close()


def assemble(config: KioskConfig, reactor: Any, *, clock: Any = None) -> Kiosk:
    """Build the kiosk's parts; `clock` (default: the reactor) runs its timers."""
    wording = Wording.load(config.messages.catalogue or None)
    journal = Journal(config.offline.journal) if config.offline.enabled else None
    link = SipLink(
        config.server, config.account, location=config.kiosk.branch, reactor=reactor
    )
    desk = SipDesk(config, link, wording, journal)
    catalogues = Catalogues(config.kiosk.languages)
    devices = KioskDevices(
        config.devices,
        library_name=config.kiosk.name,
        catalogues=catalogues,
        wording=wording,
    )
    check = SelfCheck(
        config, desk, link, clock if clock is not None else reactor, devices=devices
    )
    link.on_state(check.link_changed)
    devices.on_printer_state = check.devices_changed
    presenter = Presenter(catalogues, wording)
    app = KioskApp(check, presenter, AudioCues(config.audio))
    return Kiosk(app=app, check=check, link=link, journal=journal, devices=devices)


async def run(config: KioskConfig, reactor: Any) -> None:
    """Run the kiosk until its window closes."""
    kiosk = assemble(config, reactor)
    kiosk.start(reactor)
    try:
        await kiosk.app.async_run(async_lib="asyncio")
    finally:
        kiosk.close()
