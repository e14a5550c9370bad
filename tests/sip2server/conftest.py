"""A real SIP2 server on a loopback port, on a real database of each engine.

The server runs in the test's own reactor (pytest-twisted, asyncio reactor);
the third-party clients it is tested with are blocking, so tests run them in a
thread with `deferToThread` while the reactor serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest_twisted

from ils.models import ItemStatus
from sip2server.app import RunningServer, start_server
from sip2server.config import ServerConfig, parse_config
from tests.ils.factories import Library, build_library

LOGIN = "kiosk1"
PASSWORD = "kiosk-secret"
INSTITUTION = "CITY"
LOCATION = "NORTH"

# Patrons: (barcode, surname, firstname, pin, what is special).
ADA = "21234000000018"
BEN = "21234000000026"
EXPIRED = "21234000000034"
BLOCKED = "21234000000042"
PIN = "1234"
# Items, all BOOKs at NORTH.
ITEMS = [f"3123400000{n:04d}" for n in range(1, 13)]
REFERENCE_ITEM = "39999000000001"


@dataclass
class SipTarget:
    """Where the test server listens, and the library behind it."""

    host: str
    port: int
    library: Library
    server: RunningServer


def server_config(database_url: str, **account: Any) -> ServerConfig:
    """A configuration with one kiosk account, as an operator would write it."""
    return parse_config(
        {
            "server": {"listen": ["tcp:0:interface=127.0.0.1"], "threads": 8},
            "database": {"url": database_url},
            "accounts": [
                {
                    "login": LOGIN,
                    "password": PASSWORD,
                    "institution": INSTITUTION,
                    "location": LOCATION,
                    **account,
                }
            ],
        },
        "<test>",
    )


def stock_library(database_url: str) -> Library:
    """The test library with the patrons and items the SIP2 tests use."""
    library = build_library(database_url)
    library.add_patron(ADA, surname="Okafor", firstname="Ada", pin=PIN)
    library.add_patron(BEN, surname="Lindqvist", firstname="Ben", pin=PIN)
    library.add_patron(
        EXPIRED, surname="Moreau", pin=PIN, expires_on=date.today() - timedelta(days=3)
    )
    library.add_patron(BLOCKED, surname="Tanaka", pin=PIN, block_note="Unpaid bills")
    for barcode in ITEMS:
        library.add_item(barcode, title=f"Tide Tables, volume {barcode[-2:]}")
    library.add_item(
        REFERENCE_ITEM,
        title="Atlas of the Coast",
        item_type="REF",
        status=ItemStatus.NOT_FOR_LOAN,
    )
    return library


@pytest_twisted.async_yield_fixture
async def sip_target(database_url: str) -> AsyncIterator[SipTarget]:
    """A running server with the stock library, on SQLite and on PostgreSQL."""
    # Imported here, not at the top: this conftest may load before pytest-twisted
    # installs the asyncio reactor, and importing the reactor would install another.
    from twisted.internet import reactor  # noqa: PLC0415

    library = stock_library(database_url)
    server = await start_server(server_config(database_url), reactor)
    host, port = server.addresses()[0]
    try:
        yield SipTarget(host=host, port=port, library=library, server=server)
    finally:
        await server.stop()
        library.database.dispose()
