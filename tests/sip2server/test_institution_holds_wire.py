"""Title holds kept within institutions, over the wire (#5, second trial F1).

The two libraries of `test_institutions_wire.py` on one database: CITY (kiosk1,
branch NORTH) and OTHER (other1, branch OMAIN). A 15 naming its title by AJ
finds only titles with a copy of an institution the account serves; a CITY copy
checked in is never trapped for an OTHER hold on its title; OTHER's patron's 64
lists no CITY title. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest_twisted
import sqlalchemy as sa

from ils.models import Branch, Hold, HoldStatus, Item, Patron
from tests.sip2server.conftest import ADA, BEN, ITEMS
from tests.sip2server.test_institutions_wire import (
    OTHER_LOGIN_FRAME,
    OTHER_PATRON,
    TwoLibraries,
    _start,
)
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    RawTerminal,
    in_thread,
    sip_now,
)

# Titles as `stock_library` and `add_other_institution` name them.
CITY_TITLE = b"Tide Tables, volume 02"
OTHER_TITLE = b"Other Shore"
HELD = ITEMS[1]
NOT_RECOGNISED = b"This item is not recognised."


@pytest_twisted.async_yield_fixture
async def libraries(database_url: str) -> AsyncIterator[TwoLibraries]:
    """CITY and OTHER on one database; each account serves only its own."""
    both, server = await _start(database_url, {})
    try:
        yield both
    finally:
        await server.stop()
        both.library.database.dispose()


@pytest_twisted.async_yield_fixture
async def consortium(database_url: str) -> AsyncIterator[TwoLibraries]:
    """As `libraries`, but OTHER's account also serves CITY."""
    both, server = await _start(database_url, {"serves_institutions": ["CITY"]})
    try:
        yield both
    finally:
        await server.stop()
        both.library.database.dispose()


def hold_by_title(ao: bytes, patron: str, title: bytes, extra: bytes = b"") -> bytes:
    """A 15 placing a hold on the title `title` (AJ), with the right PIN."""
    return (
        b"15+"
        + sip_now()
        + extra
        + b"AO"
        + ao
        + b"|AA"
        + patron.encode()
        + b"|AJ"
        + title
        + b"|AD1234|\r"
    )


def holds(both: TwoLibraries) -> list[tuple[str, str, HoldStatus]]:
    """Every hold as (patron barcode, pickup branch code, status), by id."""
    with both.library.database.read() as session:
        rows = session.execute(
            sa.select(Patron.barcode, Branch.code, Hold.status)
            .join(Patron, Hold.patron_id == Patron.id)
            .join(Branch, Hold.pickup_branch_id == Branch.id)
            .order_by(Hold.id)
        )
        return [(row[0], row[1], row[2]) for row in rows]


@pytest_twisted.ensureDeferred
async def test_a_hold_by_title_is_not_recognised_across_institutions(
    libraries: TwoLibraries,
) -> None:
    """other1 cannot reserve a CITY-only title by AJ, nor kiosk1 an OTHER-only
    one: both get 'not recognised'; each still reserves its own by AJ."""

    def talk() -> list[bytes]:
        with RawTerminal(libraries.target) as other:
            assert b"941" == other.exchange(OTHER_LOGIN_FRAME)
            other_replies = [
                other.exchange(hold_by_title(b"OTHER", OTHER_PATRON, CITY_TITLE)),
                other.exchange(hold_by_title(b"OTHER", OTHER_PATRON, OTHER_TITLE)),
            ]
        with RawTerminal(libraries.target) as city:
            assert b"941" == city.exchange(LOGIN_FRAME)
            return [
                *other_replies,
                city.exchange(hold_by_title(b"CITY", ADA, OTHER_TITLE)),
                city.exchange(hold_by_title(b"CITY", ADA, CITY_TITLE)),
            ]

    across, own, city_across, city_own = await in_thread(talk)

    assert across.startswith(b"160"), across
    assert NOT_RECOGNISED in across, across
    assert b"BR" not in across, across
    assert city_across.startswith(b"160"), city_across
    assert NOT_RECOGNISED in city_across, city_across
    assert own.startswith(b"161"), own
    assert city_own.startswith(b"161"), city_own
    assert holds(libraries) == [
        (OTHER_PATRON, "OMAIN", HoldStatus.PENDING),
        (ADA, "NORTH", HoldStatus.PENDING),
    ]


@pytest_twisted.ensureDeferred
async def test_a_city_copy_is_not_trapped_for_an_other_hold_on_its_title(
    libraries: TwoLibraries,
) -> None:
    """With an OTHER hold (pickup OMAIN) first in the title's queue, kiosk1's
    checkin of the CITY copy traps it for Ben's hold at NORTH: no CT OMAIN, no
    OTHER patron's name or card, and OTHER's hold stays pending."""
    # The OTHER hold as an earlier release left it (or staff placed it).
    with libraries.library.database.transaction() as session:
        item = session.scalars(sa.select(Item).where(Item.barcode == HELD)).one()
        session.add(
            Hold(
                patron_id=session.scalars(
                    sa.select(Patron.id).where(Patron.barcode == OTHER_PATRON)
                ).one(),
                record_id=item.record_id,
                pickup_branch_id=session.scalars(
                    sa.select(Branch.id).where(Branch.code == "OMAIN")
                ).one(),
                status=HoldStatus.PENDING,
                placed_at=datetime(2026, 1, 1, tzinfo=UTC),
                placed_by="staff",
            )
        )
    now = sip_now()
    place = b"15+" + now + b"AOCITY|AA" + BEN.encode() + b"|AB" + HELD.encode()
    checkin = b"09N" + now + now + b"APNORTH|AOCITY|AB" + HELD.encode() + b"|AC|\r"

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(libraries.target) as city:
            assert b"941" == city.exchange(LOGIN_FRAME)
            placed = city.exchange(place + b"|AD1234|\r")
            return placed, city.exchange(checkin)

    placed, returned = await in_thread(talk)

    assert placed.startswith(b"161"), placed
    assert returned.startswith(b"10"), returned
    assert b"OMAIN" not in returned, returned
    assert b"Varga" not in returned, returned
    assert b"0017" not in returned, returned
    assert b"|CV01" in returned, returned
    assert b"Lindqvist" in returned, returned
    assert holds(libraries) == [
        (OTHER_PATRON, "OMAIN", HoldStatus.PENDING),
        (BEN, "NORTH", HoldStatus.WAITING),
    ]


@pytest_twisted.ensureDeferred
async def test_the_other_patrons_64_lists_no_city_title(
    libraries: TwoLibraries,
) -> None:
    """After other1 tries to reserve a CITY title by AJ, OTHER's patron's 64
    (unavailable holds asked for) lists no CITY title and counts no hold."""
    info = (
        b"63001"
        + sip_now()
        + b"     Y    AOOTHER|AA"
        + OTHER_PATRON.encode()
        + b"|AD1234|\r"
    )

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(libraries.target) as other:
            assert b"941" == other.exchange(OTHER_LOGIN_FRAME)
            tried = other.exchange(hold_by_title(b"OTHER", OTHER_PATRON, CITY_TITLE))
            return tried, other.exchange(info)

    tried, account = await in_thread(talk)

    assert tried.startswith(b"160"), tried
    assert account.startswith(b"64"), account
    assert b"BLY" in account, account
    assert b"Tide Tables" not in account, account
    assert b"|CD" not in account, account
    # The six four-digit counts after the 14 flags, language and date: all 0.
    assert account[2 + 14 + 3 + 18 :][:24] == b"0000" * 6, account


@pytest_twisted.ensureDeferred
async def test_a_consortium_hold_is_filled_only_from_its_pickup_institution(
    consortium: TwoLibraries,
) -> None:
    """other1 (serving CITY too) finds the CITY title by AJ, but a hold for
    pickup at OMAIN is refused, since no OTHER copy could fill it; for pickup
    at NORTH it is placed."""
    refused = hold_by_title(b"OTHER", OTHER_PATRON, CITY_TITLE)
    at_north = hold_by_title(b"CITY", ADA, CITY_TITLE, extra=b"BSNORTH|")

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(consortium.target) as other:
            assert b"941" == other.exchange(OTHER_LOGIN_FRAME)
            return other.exchange(refused), other.exchange(at_north)

    elsewhere, placed = await in_thread(talk)

    assert elsewhere.startswith(b"160"), elsewhere
    assert b"cannot be collected at that branch" in elsewhere, elsewhere
    assert placed.startswith(b"161"), placed
    assert b"BSNORTH" in placed, placed
    assert holds(consortium) == [(ADA, "NORTH", HoldStatus.PENDING)]
