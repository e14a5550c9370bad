"""Assembling a running SIP2 server from a configuration.

Layer: `sip2server`. Builds the database, the circulation services, the thread
pool and the listeners; `ils serve` and the end-to-end tests both start the
server through `start_server`, so the tests run what operators run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.python.threadpool import ThreadPool

from ils.circulation import Circulation
from ils.db import Database, display_url
from ils.models import Branch, Institution, LoanRule
from ils.schema import current_revision, head_revision
from sip2server.accounts import AccountBook
from sip2server.config import ServerConfig
from sip2server.mapping import SipCirculation
from sip2server.server import SipServerFactory
from sip2server.session import TerminalSession


class StartupError(RuntimeError):
    """The server cannot start with this configuration and database."""


@dataclass
class RunningServer:
    """A started server: its listening ports and what they share."""

    config: ServerConfig
    database: Database
    threadpool: ThreadPool
    ports: list[IListeningPort] = field(default_factory=list)

    def addresses(self) -> list[tuple[str, int]]:
        """Host and port of each listener, in configuration order."""
        result = []
        for port in self.ports:
            address = port.getHost()
            result.append((str(address.host), int(address.port)))
        return result

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Stop listening, finish the work in hand, and release the database."""
        yield defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in self.ports]
        )
        self.ports.clear()
        self.threadpool.stop()
        self.database.dispose()


@dataclass(frozen=True)
class LibraryPlaces:
    """What the server needs to know of the library's institutions and branches."""

    library_names: dict[str, str]
    branch_zones: dict[str, ZoneInfo]


def check_database(database: Database, config: ServerConfig) -> LibraryPlaces:
    """Refuse to start on a database without the schema or the accounts' places.

    Raises:
        StartupError: naming what is missing and the command that fixes it.
    """
    if database.is_sqlite:
        path = Path(database.engine.url.database or "")
        if not path.is_file():
            # Opening it would create an empty file; say what to run instead.
            raise StartupError(
                f"there is no SQLite database at {path}; "
                "run `ils init --db URL` (or `ils demo --db URL` for demo data)"
            )
    revision = current_revision(database.url)
    if revision is None:
        raise StartupError(
            f"the database at {display_url(database.url)} has no tables yet; "
            "run `ils init --db URL` (or `ils demo --db URL` for demo data)"
        )
    if revision != head_revision():
        raise StartupError(
            f"the database is at schema revision {revision}, this version needs "
            f"{head_revision()}; run `ils init --db URL` to upgrade it"
        )

    with database.read() as session:
        institutions = {
            row.code: row.name
            for row in session.execute(select(Institution.code, Institution.name))
        }
        branches = {
            row.code: row.timezone
            for row in session.execute(select(Branch.code, Branch.timezone))
        }
    problems = []
    for index, account in enumerate(config.accounts):
        where = f"accounts[{index}] ({account.login})"
        if account.institution not in institutions:
            problems.append(
                f"{where}: institution {account.institution!r} is not in the "
                f"database (it has: {', '.join(sorted(institutions)) or 'none'})"
            )
        if account.location not in branches:
            problems.append(
                f"{where}: location {account.location!r} is not a branch in the "
                f"database (it has: {', '.join(sorted(branches)) or 'none'})"
            )
    if problems:
        raise StartupError("\n".join(problems))
    return LibraryPlaces(
        library_names={str(code): str(name) for code, name in institutions.items()},
        branch_zones={
            str(code): ZoneInfo(str(zone)) for code, zone in branches.items()
        },
    )


def listener(reactor: Any, description: str, key: str) -> Any:
    """The endpoint a listen string describes.

    Raises:
        StartupError: naming the configuration key and what is wrong.
    """
    try:
        return serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as error:
        raise StartupError(
            f"{key}: {description!r} is not a listening endpoint ({error}); "
            "write it like tcp:6001:interface=127.0.0.1"
        ) from None


def loan_rule_count(database: Database) -> int:
    """How many loan rules the database has: with none, nothing can be lent."""
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(LoanRule)) or 0)


@defer.inlineCallbacks
def start_server(
    config: ServerConfig,
    reactor: Any,
    *,
    listen: Sequence[str] | None = None,
) -> Any:
    """Start listening as configured; fires with a `RunningServer`.

    Raises:
        StartupError: the database is not ready for this configuration.
    """
    database = Database(
        config.database.url,
        pool_size=config.server.threads,
        busy_timeout=config.database.busy_timeout,
    )
    try:
        places = check_database(database, config)
    except Exception:
        database.dispose()
        raise

    threadpool = ThreadPool(
        minthreads=1, maxthreads=config.server.threads, name="sip2-db"
    )
    threadpool.start()
    running = RunningServer(config=config, database=database, threadpool=threadpool)

    accounts = AccountBook(config.accounts)
    circulation = SipCirculation(
        Circulation(database),
        branch_zones=places.branch_zones,
        library_names=places.library_names,
    )
    factory = SipServerFactory(
        reactor=reactor,
        threadpool=threadpool,
        new_session=lambda: TerminalSession(accounts, circulation),
        max_frame_bytes=config.server.max_frame_bytes,
        mask_patron_data=config.server.mask_patron_data,
        idle_timeout=config.server.idle_timeout,
    )
    try:
        for index, description in enumerate(listen or config.server.listen):
            endpoint = listener(reactor, description, f"server.listen[{index}]")
            port = yield endpoint.listen(factory)
            running.ports.append(port)
    except Exception:
        yield running.stop()
        raise
    return running
