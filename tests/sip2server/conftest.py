"""A real SIP2 server on a loopback port, on a real database of each engine.

The server runs in the test's own reactor (pytest-twisted, asyncio reactor);
the third-party clients it is tested with are blocking, so tests run them in a
thread with `deferToThread` while the reactor serves.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
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


def accounts_config(database_url: str, accounts: list[dict[str, Any]]) -> ServerConfig:
    """A configuration with these accounts, each at INSTITUTION and LOCATION unless
    it names its own, on four threads."""
    return parse_config(
        {
            "server": {"listen": ["tcp:0:interface=127.0.0.1"], "threads": 4},
            "database": {"url": database_url},
            "accounts": [
                {"institution": INSTITUTION, "location": LOCATION} | account
                for account in accounts
            ],
        },
        "<test>",
    )


@asynccontextmanager
async def stock_server(
    database_url: str, config: ServerConfig | None = None
) -> AsyncIterator[SipTarget]:
    """A server running on a new stock library at `database_url`, with `config`
    (by default `server_config(database_url)`); stopped, and the library closed,
    on leaving."""
    library = stock_library(database_url)
    async with serving(library, config or server_config(database_url)) as running:
        yield running


@asynccontextmanager
async def serving(library: Library, config: ServerConfig) -> AsyncIterator[SipTarget]:
    """A server running with `config` in front of `library`; stopped, and the
    library closed, on leaving."""
    # Imported here, not at the top: this conftest may load before pytest-twisted
    # installs the asyncio reactor, and importing the reactor would install another.
    from twisted.internet import reactor  # noqa: PLC0415

    server = await start_server(config, reactor)
    host, port = server.addresses()[0]
    try:
        yield SipTarget(host=host, port=port, library=library, server=server)
    finally:
        await server.stop()
        library.database.dispose()


@pytest_twisted.async_yield_fixture
async def sip_target(database_url: str) -> AsyncIterator[SipTarget]:
    """A running server with the stock library, on SQLite and on PostgreSQL."""
    async with stock_server(database_url) as running:
        yield running


# -- servers a test starts with the listeners and accounts it asks for ------------

# The [metrics] table of the `metered` servers: an endpoint on a free loopback port.
METRICS = {"listen": "tcp:0:interface=127.0.0.1"}


def _accounts(kiosk: dict[str, Any], gate: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"institution": INSTITUTION, "location": LOCATION}
    return [
        {"login": LOGIN, "password": PASSWORD, **base, **kiosk},
        {"login": "gate1", "password": "gate-secret", **base, **gate},
    ]


@dataclass
class Launcher:
    """Starts servers on a stock SQLite library and stops them after the test."""

    database_url: str
    library: Any
    started: list[RunningServer]
    # The [metrics] table of the servers it starts; None starts no endpoint.
    metrics: dict[str, Any] | None = None

    def config(
        self,
        *,
        listeners: list[dict[str, Any]] | None = None,
        server: dict[str, Any] | None = None,
        kiosk: dict[str, Any] | None = None,
        gate: dict[str, Any] | None = None,
    ) -> ServerConfig:
        """A configuration with these [[listeners]], [server] keys and accounts."""
        document: dict[str, Any] = {
            "server": {"threads": 4, **(server or {})},
            "database": {"url": self.database_url},
            "accounts": _accounts(kiosk or {}, gate or {}),
        }
        if listeners is None:
            document["server"].setdefault("listen", ["tcp:0:interface=127.0.0.1"])
        else:
            document["listeners"] = listeners
        if self.metrics is not None:
            document["metrics"] = self.metrics
        return parse_config(document, "<test>")

    async def start(self, **settings: Any) -> RunningServer:
        """A running server with the configuration `config(**settings)` makes."""
        from twisted.internet import reactor  # noqa: PLC0415

        running = await start_server(self.config(**settings), reactor)
        self.started.append(running)
        return running


def target(running: RunningServer, index: int = 0) -> SipTarget:
    """Where listener `index` of a running server is."""
    host, port = running.addresses()[index]
    return SipTarget(host=host, port=port, library=None, server=running)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def library_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stock library built once per module; each test gets its own copy."""
    path = tmp_path_factory.mktemp("library") / "ils.sqlite3"
    stock_library(f"sqlite:///{path}").database.dispose()
    return path


@asynccontextmanager
async def _launched(
    library_file: Path, folder: Path, metrics: dict[str, Any] | None
) -> AsyncIterator[Launcher]:
    """A launcher on a copy of `library_file` in `folder`; stops all it started."""
    copy = folder / "ils.sqlite3"
    shutil.copyfile(library_file, copy)
    launched = Launcher(f"sqlite:///{copy}", None, [], metrics=metrics)
    try:
        yield launched
    finally:
        for running in launched.started:
            await running.stop()


@pytest_twisted.async_yield_fixture
async def launcher(library_file: Path, tmp_path: Path) -> AsyncIterator[Launcher]:
    """Starts servers on a copy of the library; every one is stopped after."""
    async with _launched(library_file, tmp_path, None) as launched:
        yield launched


@pytest_twisted.async_yield_fixture
async def metered(library_file: Path, tmp_path: Path) -> AsyncIterator[Launcher]:
    """Starts servers with a metrics endpoint on a copy of the library."""
    async with _launched(library_file, tmp_path, METRICS) as launched:
        yield launched
