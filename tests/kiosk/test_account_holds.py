"""My account's holds: the patron's place in each queue from our server's HQ
field, and today's wording against a server that does not send it.

The kiosk's view model runs over a real SIP2 link against the real server with
the demo library (Alice, 21234000000018, signs in); the holds ahead of hers are
placed by Bob through the core, on the same database file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer

from ils.circulation import Circulation
from ils.db import Database
from ils.demo import patron_barcode
from kiosk.i18n import Catalogues
from kiosk.model import Screen
from kiosk.present import Presenter
from kiosk.transactions import QueuePlace, queue_places, take_place
from kiosk.wording import Wording
from sip2server.app import start_server
from sip2server.config import parse_config as parse_server_config
from sip2server.protocol import Language, PatronInformationResponse, PatronStatus
from tests.kiosk.conftest import (
    ITEMS,
    PATRON,
    DemoLibrary,
    LiveServer,
    Relay,
)
from tests.kiosk.test_session import sign_in, start_kiosk

BOB = patron_barcode(2)
PRIDE, MOBY, JANE = ITEMS[0], ITEMS[1], ITEMS[3]


@pytest.fixture
def circulation(demo_library: DemoLibrary) -> Iterator[Circulation]:
    """The core on the test's demo library, to place holds as other patrons."""
    database = Database(demo_library.url)
    try:
        yield Circulation(database)
    finally:
        database.dispose()


@pytest_twisted.async_yield_fixture
async def hq_hidden_server(demo_library: DemoLibrary) -> AsyncIterator[LiveServer]:
    """The demo library served to an account whose policy hides HQ: a server
    that, as far as the kiosk can tell, does not know the field."""
    from twisted.internet import reactor  # noqa: PLC0415

    config = parse_server_config(
        {
            "server": {"listen": ["tcp:0:interface=127.0.0.1"], "threads": 4},
            "database": {"url": demo_library.url},
            "accounts": [
                {
                    "login": "kiosk1",
                    "password": "kiosk1-demo",
                    "institution": "DEMO",
                    "location": "MAIN",
                    "policy": {"hide_fields": ["HQ"]},
                }
            ],
        },
        "<test>",
    )
    server = await start_server(config, reactor)
    relay = Relay(reactor, server.addresses()[0][1])
    relay.port = reactor.listenTCP(0, relay, interface="127.0.0.1")
    live = LiveServer(library=demo_library, server=server, relay=relay, reactor=reactor)
    try:
        yield live
    finally:
        relay.cut()
        await defer.maybeDeferred(relay.port.stopListening)
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_pending_holds_show_the_patrons_place_in_each_queue(
    live_server: LiveServer, circulation: Circulation, tmp_path: Path
) -> None:
    """Alice is 2nd of 2 for Pride and prejudice (Bob first) and 1st of 1 for
    her copy of Moby-Dick; Jane Eyre, checked in for her, is ready for pickup;
    the account screen says so in English, French and German."""
    circulation.place_hold(BOB, item_barcode=PRIDE, pickup_branch_code="MAIN")
    circulation.place_hold(PATRON, item_barcode=PRIDE, pickup_branch_code="MAIN")
    circulation.place_hold(
        PATRON, item_barcode=MOBY, pickup_branch_code="MAIN", item_level=True
    )
    circulation.place_hold(PATRON, item_barcode=JANE, pickup_branch_code="MAIN")
    circulation.checkin(JANE, branch_code="MAIN")
    kiosk = await start_kiosk(live_server, tmp_path)
    try:
        await sign_in(kiosk.check)
        await kiosk.check.open_account()
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    assert Screen.ACCOUNT is kiosk.check.screen
    account = kiosk.check.account
    assert account is not None
    pending = [
        (h.title, h.queue_position, h.queue_length) for h in account.holds_pending
    ]
    assert [("Pride and prejudice", 2, 2), ("Moby-Dick, or, The whale", 1, 1)] == (
        pending
    )
    (ready,) = account.holds_ready
    assert ("Jane Eyre : an autobiography", None) == (ready.title, ready.queue_position)

    words = Presenter(Catalogues(["en", "fr", "de"]), Wording.load())
    pride, moby = account.holds_pending
    assert ("Pride and prejudice", "Waiting: position 2 of 2") == words.hold(
        "en", pride
    )
    assert "Waiting: position 1 of 1" == words.hold("en", moby)[1]
    assert "En attente : position 2 sur 2" == words.hold("fr", pride)[1]
    assert "Wartend: Platz 2 von 2" == words.hold("de", pride)[1]
    assert "Ready for pickup" == words.hold("en", ready)[1]


@pytest_twisted.ensureDeferred
async def test_without_hq_the_account_says_what_it_said_before(
    hq_hidden_server: LiveServer, circulation: Circulation, tmp_path: Path
) -> None:
    """Against a server that sends no HQ, Alice's hold on a copy two patrons
    want shows the item's queue (CF 2) without a position, as before HQ."""
    circulation.place_hold(BOB, item_barcode=PRIDE, pickup_branch_code="MAIN")
    circulation.place_hold(
        PATRON, item_barcode=PRIDE, pickup_branch_code="MAIN", item_level=True
    )
    kiosk = await start_kiosk(hq_hidden_server, tmp_path)
    try:
        await sign_in(kiosk.check)
        await kiosk.check.open_account()
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    account = kiosk.check.account
    assert account is not None
    (hold,) = account.holds_pending
    assert ("Pride and prejudice", None, 2) == (
        hold.title,
        hold.queue_position,
        hold.queue_length,
    )
    words = Presenter(Catalogues(["en"]), Wording.load())
    assert "Waiting: 2 in the queue" == words.hold("en", hold)[1]


def reply_with(*extra: tuple[str, str]) -> PatronInformationResponse:
    """A 64 of nothing but the given extra fields."""
    return PatronInformationResponse(
        patron_status=PatronStatus(),
        language=Language.ENGLISH,
        transaction_date=None,
        hold_items_count=0,
        overdue_items_count=0,
        charged_items_count=0,
        fine_items_count=0,
        recall_items_count=0,
        unavailable_holds_count=0,
        institution_id="DEMO",
        patron_identifier=PATRON,
        personal_name="",
        extra_fields=extra,
    )


def test_hq_values_out_of_form_are_skipped_and_alike_entries_pair_in_order() -> None:
    """Malformed HQ values, a position 0 or past the queue's end, and other codes
    are skipped; two holds with the same CD entry take the two places in order;
    a value cut at 255 characters still pairs with its full CD entry."""
    long_title = "T" * 300
    reply = reply_with(
        ("HQ", "2/3 Salt Roads"),
        ("HQ", "two/3 Salt Roads"),
        ("HQ", "0/3 Salt Roads"),
        ("HQ", "4/3 Salt Roads"),
        ("HQ", "1/1"),
        ("PB", "1/1 Salt Roads"),
        ("HQ", "1/4 Salt Roads"),
        ("HQ", ("7/9 " + long_title)[:255]),
    )

    places = queue_places(reply)

    assert [(2, 3), (1, 4), (7, 9)] == [(p.position, p.length) for p in places]
    first = take_place("Salt Roads", places)
    second = take_place("Salt Roads", places)
    assert isinstance(first, QueuePlace)
    assert isinstance(second, QueuePlace)
    assert (2, 3) == (first.position, first.length)
    assert (1, 4) == (second.position, second.length)
    assert take_place("Salt Roads", places) is None
    cut = take_place(long_title, places)
    assert cut is not None
    assert (7, 9) == (cut.position, cut.length)
    assert [] == places


def test_hq_numbers_of_more_than_nine_digits_are_skipped() -> None:
    """A position or length of 10 or 5,000 digits is skipped, never read (Python
    would refuse an int of 5,000 digits with an error of its own)."""
    reply = reply_with(
        ("HQ", "9" * 5000 + "/1 Salt Roads"),
        ("HQ", "1/" + "9" * 10 + " Salt Roads"),
        ("HQ", "1/999999999 Salt Roads"),
    )

    places = queue_places(reply)

    assert [(1, 999999999)] == [(p.position, p.length) for p in places]
