"""A serial or network receipt printer never holds up the event loop.

Finding 6 of the second adversarial trial of issue #6: a network printer that
takes the bytes and never answers froze the whole kiosk (Kivy and the SIP2
link) for the driver's 2 s timeout on every receipt and on every tap on the
staff screen. The printer here is a Twisted listener on loopback that accepts
and says nothing, served by the same reactor the kiosk runs on: if the kiosk
waited for it on the loop, the loop could not run in the meantime. "Print"
was also offered while the printer reported it could not print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer, protocol

from kiosk.config import DevicesSection
from kiosk.devices import KioskDevices
from kiosk.transactions import Action, ItemOutcome, Result
from tests.kiosk.conftest import ITEMS, LiveServer
from tests.kiosk.test_session import start_kiosk
from tests.kiosk.test_sipclient import _reactor


class _Mute(protocol.Protocol):
    """Takes whatever is sent and never answers."""


def _one_tick() -> defer.Deferred[None]:
    ticked: defer.Deferred[None] = defer.Deferred()
    _reactor().callLater(0, ticked.callback, None)
    return ticked


@pytest_twisted.ensureDeferred
async def test_a_mute_network_printer_is_waited_for_off_the_event_loop() -> None:
    """The receipt's Deferred and the staff status come back at once, the loop
    runs while the printer is waited for, and the state read later reaches
    the staff screen through `on_printer_state`."""
    listening: Any = _reactor().listenTCP(
        0, protocol.Factory.forProtocol(_Mute), interface="127.0.0.1"
    )
    devices = KioskDevices(
        DevicesSection(printer=f"network:127.0.0.1:{listening.getHost().port}"),
        library_name="Demo Library",
    )
    read: defer.Deferred[None] = defer.Deferred()
    devices.on_printer_state = lambda: read.called or read.callback(None)
    lent = ItemOutcome(action=Action.BORROW, barcode=ITEMS[0], result=Result.DONE)
    try:
        first_status = devices.status()["printer"]
        printing = devices.print_receipt_later("21234000000018", [lent], "en")
        called_at_once = printing.called
        await _one_tick()
        called_after_a_tick = printing.called
        await read
        await printing
    finally:
        await defer.maybeDeferred(listening.stopListening)

    assert "unknown" == first_status
    assert (False, False) == (called_at_once, called_after_a_tick)
    assert "unknown" != devices.status()["printer"]


@pytest_twisted.ensureDeferred
async def test_print_is_not_offered_while_the_printer_cannot_print(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Before the printer's state is known "Print" is offered; once the mute
    printer has been read as offline, it is not."""
    listening: Any = _reactor().listenTCP(
        0, protocol.Factory.forProtocol(_Mute), interface="127.0.0.1"
    )
    spec = f"network:127.0.0.1:{listening.getHost().port}"
    kiosk = await start_kiosk(live_server, tmp_path, devices={"printer": spec})
    devices = KioskDevices(DevicesSection(printer=spec), library_name="Demo Library")
    read: defer.Deferred[None] = defer.Deferred()
    devices.on_printer_state = lambda: read.called or read.callback(None)
    kiosk.check.devices = devices
    try:
        devices.status()  # the staff screen asks; the answer comes later
        before = kiosk.check.print_offered
        await read
        after = kiosk.check.print_offered
    finally:
        kiosk.link.stop()
        kiosk.journal.close()
        await defer.maybeDeferred(listening.stopListening)

    assert (True, False) == (before, after)
