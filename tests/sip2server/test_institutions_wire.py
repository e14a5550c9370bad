"""Institutions kept apart on one database, over the wire (#5 adversarial finding 1).

Two institutions share the test database: CITY (the stock library, branches
NORTH and WEST) and OTHER (branch OMAIN, one patron, one item). Each has a kiosk
account; a terminal of one must not read, lend, return, pay, hold, block or edit
anything of the other. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.logger import LogLevel, globalLogPublisher

from ils.models import (
    Branch,
    Fee,
    FeeKind,
    Hold,
    Institution,
    Item,
    Loan,
    Patron,
    PatronBlock,
)
from sip2server.app import RunningServer, start_server
from sip2server.config import parse_config
from tests.ils.factories import Library
from tests.sip2server.conftest import (
    ADA,
    BEN,
    ITEMS,
    LOGIN,
    PASSWORD,
    PIN,
    SipTarget,
    stock_library,
)
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    RawTerminal,
    in_thread,
    sip_now,
)

OTHER_LOGIN_FRAME = b"9300CNother1|COother-secret|CPOMAIN|\r"
OTHER_PATRON = "29999000000017"
OTHER_ITEM = "39999000000105"
# Ada's item, lent by the CITY kiosk before the OTHER kiosk tries to return it.
LENT = ITEMS[0]
HELD = ITEMS[1]


@dataclass
class TwoLibraries:
    """A server with a CITY and an OTHER kiosk account, on one database."""

    target: SipTarget
    library: Library

    def count(self, query: Any) -> int:
        """A count read straight from the database."""
        with self.library.database.read() as session:
            return int(session.scalar(query) or 0)


def add_other_institution(library: Library, *, fee_for: str) -> None:
    """OTHER with branch OMAIN, a patron and an item; and a 2.50 fee on `fee_for`."""
    with library.database.transaction() as session:
        other = Institution(code="OTHER", name="Other Libraries", currency="GBP")
        session.add(other)
        session.flush()
        session.add(
            Branch(
                institution_id=other.id,
                code="OMAIN",
                name="Other Main",
                timezone="Europe/London",
            )
        )
        patron = session.scalars(sa.select(Patron).where(Patron.barcode == fee_for))
        session.add(
            Fee(
                patron_id=patron.one().id,
                kind=FeeKind.DAMAGE,
                amount_minor=250,
                balance_minor=250,
                currency="GBP",
            )
        )
    library.add_patron(OTHER_PATRON, surname="Varga", home_branch="OMAIN", pin=PIN)
    library.add_item(OTHER_ITEM, title="Other Shore", branch="OMAIN")


def two_account_config(database_url: str, *, other_policy: dict[str, Any]) -> Any:
    """The CITY kiosk and the OTHER kiosk, as an operator would write them."""
    return parse_config(
        {
            "server": {"listen": ["tcp:0:interface=127.0.0.1"], "threads": 4},
            "database": {"url": database_url},
            "accounts": [
                {
                    "login": LOGIN,
                    "password": PASSWORD,
                    "institution": "CITY",
                    "location": "NORTH",
                },
                {
                    "login": "other1",
                    "password": "other-secret",
                    "institution": "OTHER",
                    "location": "OMAIN",
                    "policy": other_policy,
                },
            ],
        },
        "<test>",
    )


async def _start(
    database_url: str, other_policy: dict[str, Any]
) -> tuple[TwoLibraries, RunningServer]:
    from twisted.internet import reactor  # noqa: PLC0415 - see conftest

    library = stock_library(database_url)
    add_other_institution(library, fee_for=ADA)
    server = await start_server(
        two_account_config(database_url, other_policy=other_policy), reactor
    )
    host, port = server.addresses()[0]
    target = SipTarget(host=host, port=port, library=library, server=server)
    return TwoLibraries(target=target, library=library), server


@pytest_twisted.async_yield_fixture
async def two_libraries(database_url: str) -> AsyncIterator[TwoLibraries]:
    """CITY and OTHER on one database; OTHER's account serves only OTHER."""
    libraries, server = await _start(database_url, {})
    try:
        yield libraries
    finally:
        await server.stop()
        libraries.library.database.dispose()


@pytest_twisted.async_yield_fixture
async def consortium(database_url: str) -> AsyncIterator[TwoLibraries]:
    """As `two_libraries`, but OTHER's account also serves CITY."""
    libraries, server = await _start(database_url, {"serves_institutions": ["CITY"]})
    try:
        yield libraries
    finally:
        await server.stop()
        libraries.library.database.dispose()


@pytest.fixture
def warnings() -> Iterator[list[dict[str, Any]]]:
    """Every WARNING event logged while the test runs."""
    seen: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") is LogLevel.warn:
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observe)


def _frames(ao: bytes) -> dict[str, bytes]:
    now = sip_now()
    ada, item = ADA.encode(), LENT.encode()
    return {
        "23": b"23001" + now + b"AO" + ao + b"|AA" + ada + b"|AC|AD1234|\r",
        "63": b"63001" + now + b"Y         AO" + ao + b"|AA" + ada + b"|AD1234|\r",
        "01": b"01N" + now + b"AO" + ao + b"|ALswallowed|AA" + ada + b"|AC|\r",
        "25": b"25" + now + b"AO" + ao + b"|AA" + ada + b"|\r",
        "11": b"11NN"
        + now
        + b" " * 18
        + b"AO"
        + ao
        + b"|AA"
        + OTHER_PATRON.encode()
        + b"|AB"
        + ITEMS[2].encode()
        + b"|AC|AD1234|\r",
        "09": b"09N" + now + now + b"APOMAIN|AO" + ao + b"|AB" + item + b"|AC|\r",
        "37": b"37" + now + b"0100GBPBV2.50|AO" + ao + b"|AA" + ada + b"|\r",
        "15": b"15+"
        + now
        + b"AO"
        + ao
        + b"|AA"
        + ada
        + b"|AB"
        + HELD.encode()
        + b"|\r",
        "19": b"19" + now + b"AO" + ao + b"|AB" + item + b"|CHpwned|\r",
        "17": b"17" + now + b"AO" + ao + b"|AB" + item + b"|\r",
        "35": b"35" + now + b"AO" + ao + b"|AA" + ada + b"|\r",
    }


def _lend_as_city(libraries: TwoLibraries) -> None:
    now = sip_now()
    with RawTerminal(libraries.target) as city:
        city.login()
        lent = city.exchange(
            b"11NN"
            + now
            + b" " * 18
            + b"AOCITY|AA"
            + ADA.encode()
            + b"|AB"
            + LENT.encode()
            + b"|AC|AD1234|\r"
        )
    assert lent.startswith(b"121"), lent


def _other_asks(libraries: TwoLibraries, ao: bytes) -> dict[str, bytes]:
    replies = {}
    with RawTerminal(libraries.target) as other:
        assert b"941" == other.exchange(OTHER_LOGIN_FRAME)
        for command, frame in _frames(ao).items():
            replies[command] = other.exchange(frame)
    return replies


def _assert_nothing_of_city(libraries: TwoLibraries, replies: dict[str, bytes]) -> None:
    # Answered as an unknown card or item: nothing of Ada's account is told.
    for command, reply in replies.items():
        assert b"Okafor" not in reply, command
        assert b"2.50" not in reply, command
    assert b"|BLN|" in replies["23"] or replies["23"].endswith(b"BLN"), replies["23"]
    assert b"|BLN|" in replies["63"], replies["63"]
    assert b"This library card is not recognised." in replies["23"]
    assert replies["01"].startswith(b"24"), replies["01"]
    assert b"|BLN|" in replies["25"] or b"BLN" in replies["25"], replies["25"]
    assert replies["11"].startswith(b"120"), replies["11"]
    assert replies["09"].startswith(b"100"), replies["09"]
    assert replies["37"].startswith(b"38N"), replies["37"]
    assert replies["15"].startswith(b"160"), replies["15"]
    assert replies["19"].startswith(b"200"), replies["19"]
    assert b"This item is not recognised." in replies["17"], replies["17"]
    assert b"Tide Tables" not in replies["17"], replies["17"]

    # And nothing of CITY's was changed.
    ada_blocks = (
        sa.select(sa.func.count())
        .select_from(PatronBlock)
        .join(Patron, PatronBlock.patron_id == Patron.id)
        .where(Patron.barcode == ADA)
    )
    assert 0 == libraries.count(ada_blocks)
    open_loan = (
        sa.select(sa.func.count())
        .select_from(Loan)
        .join(Item, Loan.item_id == Item.id)
        .where(Item.barcode == LENT, Loan.returned_at.is_(None))
    )
    assert 1 == libraries.count(open_loan)
    assert 0 == libraries.count(
        sa.select(sa.func.count())
        .select_from(Loan)
        .join(Item, Loan.item_id == Item.id)
        .where(Item.barcode == ITEMS[2])
    )
    assert 250 == libraries.count(sa.select(sa.func.sum(Fee.balance_minor)))
    assert 0 == libraries.count(sa.select(sa.func.count()).select_from(Hold))


@pytest_twisted.ensureDeferred
async def test_other_institution_account_can_touch_nothing_of_city(
    two_libraries: TwoLibraries, warnings: list[dict[str, Any]]
) -> None:
    """OTHER's kiosk gets 'unknown' for CITY's patron and items in every message."""

    def talk() -> dict[str, bytes]:
        _lend_as_city(two_libraries)
        return _other_asks(two_libraries, b"OTHER")

    replies = await in_thread(talk)

    _assert_nothing_of_city(two_libraries, replies)
    refused_for = {event.get("terminal") for event in warnings if "owner" in event}
    assert {"other1"} == refused_for


@pytest_twisted.ensureDeferred
async def test_an_ao_the_account_does_not_serve_is_unknown(
    two_libraries: TwoLibraries,
) -> None:
    """OTHER's kiosk naming AO CITY, even for a patron of its own, gets 'unknown'."""
    now = sip_now()
    own = b"23001" + now + b"AOCITY|AA" + OTHER_PATRON.encode() + b"|AC|AD1234|\r"
    plain = b"23001" + now + b"AOOTHER|AA" + OTHER_PATRON.encode() + b"|AC|AD1234|\r"

    def talk() -> tuple[bytes, bytes, dict[str, bytes]]:
        _lend_as_city(two_libraries)
        with RawTerminal(two_libraries.target) as other:
            assert b"941" == other.exchange(OTHER_LOGIN_FRAME)
            named, served = other.exchange(own), other.exchange(plain)
        return named, served, _other_asks(two_libraries, b"CITY")

    named, served, replies = await in_thread(talk)

    assert b"BLN" in named, named
    assert b"Varga" not in named, named
    assert b"BLY" in served, served
    assert b"Varga" in served, served
    _assert_nothing_of_city(two_libraries, replies)


@pytest_twisted.ensureDeferred
async def test_city_account_cannot_use_another_institutions_branch_or_item(
    two_libraries: TwoLibraries,
) -> None:
    """CITY's kiosk may not send a hold to OMAIN, nor lend or read OTHER's item."""
    now = sip_now()
    hold = (
        b"15+"
        + now
        + b"BSOMAIN|AOCITY|AA"
        + BEN.encode()
        + b"|AB"
        + HELD.encode()
        + b"|\r"
    )
    lend = (
        b"11NN"
        + now
        + b" " * 18
        + b"AOCITY|AA"
        + BEN.encode()
        + b"|AB"
        + OTHER_ITEM.encode()
        + b"|AC|AD1234|\r"
    )
    item = b"17" + now + b"AOCITY|AB" + OTHER_ITEM.encode() + b"|\r"

    def talk() -> tuple[bytes, bytes, bytes]:
        with RawTerminal(two_libraries.target) as city:
            assert b"941" == city.exchange(LOGIN_FRAME)
            return city.exchange(hold), city.exchange(lend), city.exchange(item)

    held, lent, read = await in_thread(talk)

    assert held.startswith(b"160"), held
    assert b"That pickup branch is not known" in held, held
    assert lent.startswith(b"120"), lent
    assert b"This item is not recognised." in read, read
    assert b"Other Shore" not in read, read
    assert 0 == two_libraries.count(sa.select(sa.func.count()).select_from(Hold))
    assert 0 == two_libraries.count(sa.select(sa.func.count()).select_from(Loan))


@pytest_twisted.ensureDeferred
async def test_a_consortium_account_serves_the_institutions_it_lists(
    consortium: TwoLibraries,
) -> None:
    """With serves_institutions = ["CITY"], OTHER's kiosk reads and lends CITY's."""
    now = sip_now()
    status = b"23001" + now + b"AOCITY|AA" + ADA.encode() + b"|AC|AD1234|\r"
    lend = (
        b"11NN"
        + now
        + b" " * 18
        + b"AOOTHER|AA"
        + OTHER_PATRON.encode()
        + b"|AB"
        + ITEMS[3].encode()
        + b"|AC|AD1234|\r"
    )

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(consortium.target) as other:
            assert b"941" == other.exchange(OTHER_LOGIN_FRAME)
            return other.exchange(status), other.exchange(lend)

    read, lent = await in_thread(talk)

    assert b"BLY" in read, read
    assert b"Okafor" in read, read
    assert lent.startswith(b"121"), lent
