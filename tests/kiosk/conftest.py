"""The kiosk against a real SIP2 server on loopback, serving the demo library.

The demo library (`ils demo`'s, patron 21234000000018 with PIN 1234, items from
31234000000016) is built once per test run into a SQLite file and copied for
each test. The server runs in the test's own reactor. Between kiosk and server
sits a `Relay`, a plain TCP forwarder on loopback, so a test can cut the line
and move it to a restarted server, as when the server is stopped mid-session.

Kivy's environment is set here, before anything imports kivy: no argument
parsing, a throwaway home, no console or file log.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="kivyhome-"))
os.environ.setdefault("KIVY_AUDIO", "")

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, protocol

from ils.demo import build_demo, item_barcode, patron_barcode
from ils.demo_data_tables import TIMEZONE
from ils.models import Item, ItemStatus
from kiosk.config import KioskConfig, parse_config
from sip2server.app import RunningServer, start_server
from sip2server.config import ServerConfig
from sip2server.config import parse_config as parse_server_config

PATRON = "21234000000018"
PIN = "1234"
# The demo's expired patron (serial 4) and blocked one (serial 5).
EXPIRED_PATRON = patron_barcode(4)
BLOCKED_PATRON = patron_barcode(5)
ITEMS = [item_barcode(serial) for serial in (1, 3, 4, 6, 7, 9)]
UNKNOWN_ITEM = item_barcode(99999)


@dataclass
class DemoLibrary:
    """The copied demo database and one not-for-loan item in it."""

    url: str
    reference_item: str


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo library, built once per run."""
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    url = f"sqlite:///{path}"
    build_demo(url, patrons=6)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        reference = connection.execute(
            sa.select(Item.barcode)
            .where(Item.status == ItemStatus.NOT_FOR_LOAN)
            .order_by(Item.barcode)
        ).scalar()
    engine.dispose()
    assert reference is not None
    return path, reference


@pytest.fixture
def demo_library(demo_template: tuple[Path, str], tmp_path: Path) -> DemoLibrary:
    """A fresh copy of the demo library for one test."""
    source, reference = demo_template
    copy = tmp_path / "library.sqlite3"
    shutil.copy(source, copy)
    return DemoLibrary(url=f"sqlite:///{copy}", reference_item=reference)


def server_config(url: str) -> ServerConfig:
    """The demo kiosk account as a site would set it up for offline use, on a
    free loopback port."""
    return parse_server_config(
        {
            "server": {"listen": ["tcp:0:interface=127.0.0.1"], "threads": 4},
            "database": {"url": url},
            "accounts": [
                {
                    "login": "kiosk1",
                    "password": "kiosk1-demo",
                    "institution": "DEMO",
                    "location": "MAIN",
                    # A kiosk that journals offline: returns keep their time,
                    # offline checkouts are recorded (docs/kiosk.md).
                    "policy": {"offline_days": 7, "no_block_checkouts": "record"},
                }
            ],
        },
        "<test>",
    )


class _Far(protocol.Protocol):
    """The relay's connection to the server."""

    def __init__(self, near: _Near) -> None:
        self.near = near

    def connectionMade(self) -> None:
        self.near.far = self
        for data in self.near.pending:
            self.transport.write(data)
        self.near.pending.clear()

    def dataReceived(self, data: bytes) -> None:
        self.near.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.near.transport.loseConnection()


class _Near(protocol.Protocol):
    """The relay's side of a kiosk's connection."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.far: _Far | None = None
        self.pending: list[bytes] = []

    def connectionMade(self) -> None:
        self.relay.ends.append(self)
        creator = protocol.ClientCreator(self.relay.reactor, _Far, self)
        creator.connectTCP("127.0.0.1", self.relay.target_port).addErrback(
            lambda _: self.transport.loseConnection()
        )

    def dataReceived(self, data: bytes) -> None:
        if self.far is not None:
            self.far.transport.write(data)
        else:
            self.pending.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.far is not None:
            self.far.transport.loseConnection()


class Relay(protocol.Factory):
    """A TCP forwarder on loopback whose line can be cut and moved."""

    def __init__(self, reactor: Any, target_port: int) -> None:
        self.reactor = reactor
        self.target_port = target_port
        self.ends: list[_Near] = []
        self.port: Any = None

    def buildProtocol(self, addr: Any) -> _Near:
        return _Near(self)

    def cut(self) -> None:
        """Drop every connection through the relay."""
        for near in self.ends:
            near.transport.abortConnection()
            if near.far is not None:
                near.far.transport.abortConnection()
        self.ends.clear()


@dataclass
class LiveServer:
    """The demo library served on loopback behind a relay."""

    library: DemoLibrary
    server: RunningServer | None
    relay: Relay
    reactor: Any

    @property
    def port(self) -> int:
        """The relay's port: where the kiosk connects."""
        return int(self.relay.port.getHost().port)

    async def stop(self) -> None:
        """Stop the server and cut every open connection to it."""
        if self.server is not None:
            await self.server.stop()
            self.server = None
        self.relay.cut()

    async def restart(self) -> None:
        """Serve the same database again (on a new port, behind the same relay)."""
        self.server = await start_server(server_config(self.library.url), self.reactor)
        self.relay.target_port = self.server.addresses()[0][1]


@pytest_twisted.async_yield_fixture
async def live_server(demo_library: DemoLibrary) -> AsyncIterator[LiveServer]:
    """A running SIP2 server with the demo library, reached through a relay."""
    from twisted.internet import reactor  # noqa: PLC0415

    server = await start_server(server_config(demo_library.url), reactor)
    relay = Relay(reactor, server.addresses()[0][1])
    relay.port = reactor.listenTCP(0, relay, interface="127.0.0.1")
    live = LiveServer(library=demo_library, server=server, relay=relay, reactor=reactor)
    try:
        yield live
    finally:
        relay.cut()
        await defer.maybeDeferred(relay.port.stopListening)
        if live.server is not None:
            await live.server.stop()


def kiosk_config(port: int, tmp_path: Path, **sections: dict[str, Any]) -> KioskConfig:
    """A kiosk configuration for the demo library; `sections` override tables."""
    data: dict[str, Any] = {
        "kiosk": {
            "institution": "DEMO",
            "branch": "MAIN",
            "languages": ["en", "fr", "de"],
        },
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "timeout": 5.0,
            "status_interval": 30.0,
            "reconnect_min": 0.05,
            "reconnect_max": 0.2,
        },
        "account": {"login": "kiosk1", "password": "kiosk1-demo"},
        "offline": {"enabled": True, "journal": str(tmp_path / "journal.sqlite3")},
        "patron": {"card_pattern": r"2\d{13}", "item_pattern": r"3\d{13}"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_config(data, "<test>")


def branch_today() -> date:
    """Today at the demo library's branches (America/New_York), which set the
    due dates: the machine's own date differs from it for hours each night."""
    return datetime.now(ZoneInfo(TIMEZONE)).date()
