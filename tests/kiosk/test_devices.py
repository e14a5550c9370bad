"""Devices through drivers/: a serial scanner's scans reach the view model, a bad
read asks for a rescan, receipts print with the card masked; keyboard wedge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock

from kiosk.devices import KeyboardWedge, KioskDevices, printer_table
from kiosk.model import Screen
from kiosk.runtime import assemble
from kiosk.sipclient import LinkState
from kiosk.transactions import Action, Result
from kiosk.wording import Refusal
from tests.kiosk.conftest import ITEMS, LiveServer, kiosk_config
from tests.kiosk.test_sipclient import reached

SCANNERS = """
[pipeline]
trim = true
luhn = true
patron_pattern = '^2[0-9]{13}$'
item_pattern = '^3[0-9]{13}$'

[[scanner]]
name = "desk-serial"
kind = "serial"
url = "socket://127.0.0.1:9"
"""


class _ScannerWire(protocol.Protocol):
    """A serial scanner on the far end of a TCP line: the test makes it read."""

    connected: defer.Deferred[_ScannerWire]

    def connectionMade(self) -> None:
        _ScannerWire.connected.callback(self)


def when(kiosk: Any, condition: Any) -> defer.Deferred[None]:
    """Fires at the first change of the view model after which `condition()`."""
    seen: defer.Deferred[None] = defer.Deferred()

    def changed() -> None:
        if condition() and not seen.called:
            seen.callback(None)

    kiosk.check.on_change(changed)
    return seen


@pytest_twisted.ensureDeferred
async def test_a_serial_scanners_reads_reach_the_view_model(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """An item scanned on the attract screen is returned; a read with a bad check
    digit asks the patron to scan again."""
    from twisted.internet import reactor  # noqa: PLC0415

    scanners = tmp_path / "scanners.toml"
    scanners.write_text(SCANNERS)
    _ScannerWire.connected = defer.Deferred()
    scanner_port = reactor.listenTCP(
        0, protocol.Factory.forProtocol(_ScannerWire), interface="127.0.0.1"
    )
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", scanner_port.getHost().port)
    config = kiosk_config(
        live_server.port, tmp_path, devices={"scanner": str(scanners)}
    )
    kiosk = assemble(config, reactor, clock=Clock())
    kiosk.link.start()
    await reached(kiosk.link, LinkState.ONLINE)
    check = kiosk.check
    try:
        kiosk.start_devices(reactor, connect=lambda p: connectProtocol(endpoint, p))
        scanner = await _ScannerWire.connected

        returned = when(kiosk, lambda: bool(check.rows) and not check.busy)
        scanner.transport.write(f"{ITEMS[0]}\r".encode())
        await returned
        assert Screen.ITEMS is check.screen
        assert Action.RETURN is check.rows[0].action
        assert Result.DONE is check.rows[0].result

        refused = when(kiosk, lambda: check.notice is not None)
        scanner.transport.write(b"31234000000017\r")
        await refused
        assert Refusal.SCAN_UNREADABLE is check.notice.refusal  # type: ignore[union-attr]
        assert "desk-serial ready" == kiosk.devices.status()["scanner"]
    finally:
        kiosk.close()
        await defer.maybeDeferred(scanner_port.stopListening)


def test_receipts_print_through_the_driver_with_the_card_masked(
    tmp_path: Path,
) -> None:
    """A file printer gets ESC/POS bytes with only the card's last four digits."""
    from kiosk.config import DevicesSection  # noqa: PLC0415
    from kiosk.transactions import ItemOutcome  # noqa: PLC0415

    path = tmp_path / "receipts.bin"
    devices = KioskDevices(
        DevicesSection(printer=f"file:{path}"), library_name="Demo Library"
    )
    printed = devices.print_receipt(
        "21234000000018",
        [
            ItemOutcome(
                action=Action.BORROW,
                barcode=ITEMS[0],
                result=Result.DONE,
                title="Pride and prejudice",
            )
        ],
    )

    data = path.read_bytes()
    assert printed
    assert b"Pride and prejudice" in data
    assert b"**********0018" in data
    assert b"21234000000018" not in data


def test_printer_strings_name_the_kinds_they_accept() -> None:
    """devices.printer strings become drivers.printer tables; a typo is named."""
    assert {"connection": "network", "host": "10.0.0.5", "port": 9100} == (
        printer_table("network:10.0.0.5")
    )
    assert None is printer_table("")
    with pytest.raises(ValueError, match=r"devices\.printer: 'lpt1'"):
        printer_table("lpt1")


def test_the_keyboard_wedge_turns_keys_ending_in_enter_into_one_scan() -> None:
    """Characters gather until Enter; Enter alone is not a scan."""
    wedge = KeyboardWedge()
    for character in "31234000000016":
        wedge.key(character)

    assert "31234000000016" == wedge.enter()
    assert None is wedge.enter()


def test_receipts_are_printed_in_the_patrons_language(tmp_path: Path) -> None:
    """A French session's receipt has French labels and French dates."""
    from datetime import date  # noqa: PLC0415

    from kiosk.config import DevicesSection  # noqa: PLC0415
    from kiosk.i18n import Catalogues  # noqa: PLC0415
    from kiosk.transactions import ItemOutcome  # noqa: PLC0415

    path = tmp_path / "receipts.bin"
    devices = KioskDevices(
        DevicesSection(printer=f"file:{path}"),
        library_name="Demo Library",
        catalogues=Catalogues(["en", "fr"]),
    )
    lent = ItemOutcome(
        action=Action.BORROW,
        barcode=ITEMS[0],
        result=Result.DONE,
        title="Emma",
        due=date(2026, 12, 25),
    )

    assert devices.print_receipt("21234000000018", [lent], "fr")

    data = path.read_bytes()
    assert b"Carte: **********0018" in data
    assert b"Documents: 1" in data
    assert b"25/12/2026" in data


@pytest_twisted.ensureDeferred
async def test_the_staff_status_is_in_the_kiosks_language(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """In French the staff screen's labels and states are French, and a file
    printer shows as a spool file rather than "unknown"."""
    from twisted.internet import reactor  # noqa: PLC0415

    from kiosk.present import Presenter  # noqa: PLC0415

    config = kiosk_config(
        live_server.port,
        tmp_path,
        devices={"printer": f"file:{tmp_path / 'receipts.bin'}"},
    )
    kiosk = assemble(config, reactor, clock=Clock())
    kiosk.link.start()
    await reached(kiosk.link, LinkState.ONLINE)
    try:
        status = kiosk.check.staff_status()
        assert "spool file" == status["printer"]
        presenter: Presenter = kiosk.app.presenter
        assert [
            "Serveur : en ligne",
            "Scanner : clavier (douchette)",
            "Plateau RFID : aucun",
            "Imprimante : fichier d'impression",
            "File hors ligne : vide",
        ] == presenter.staff_status("fr", status).splitlines()
    finally:
        kiosk.close()


def test_a_refused_item_on_the_receipt_says_why_and_an_unknown_one_prints_once(
    tmp_path: Path,
) -> None:
    """An item refused as not for loan carries the catalogue's reason, and an
    unknown item (no title) has its barcode printed once, with its reason."""
    from kiosk.config import DevicesSection  # noqa: PLC0415
    from kiosk.transactions import ItemOutcome  # noqa: PLC0415
    from kiosk.wording import Wording  # noqa: PLC0415

    path = tmp_path / "receipts.bin"
    devices = KioskDevices(
        DevicesSection(printer=f"file:{path}"),
        library_name="Demo Library",
        wording=Wording.load(),
    )
    unknown = "39999999999999"
    refused = [
        ItemOutcome(
            action=Action.BORROW,
            barcode=unknown,
            result=Result.REFUSED,
            refusal=Refusal.ITEM_UNKNOWN,
        ),
        ItemOutcome(
            action=Action.BORROW,
            barcode=ITEMS[0],
            result=Result.REFUSED,
            refusal=Refusal.ITEM_NOT_FOR_LOAN,
            title="A thesaurus",
        ),
    ]

    assert devices.print_receipt("21234000000018", refused)

    data = path.read_bytes()
    assert 1 == data.count(unknown.encode())
    assert b"Not done" in data
    assert b"This item cannot be borrowed." in data
    assert b"Please take it to the desk." in data  # the unknown item's reason
