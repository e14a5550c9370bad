"""Builders for the circulation scenario tests: copies of one title, settings,
rule changes, closed days, and read-backs of holds, fees and the log.

The library itself is `tests.ils.factories.build_library`; these add what the
hold, renewal and checkin scenarios need on top of it.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.db import Database
from ils.models import (
    Branch,
    BranchClosedDay,
    CirculationLog,
    Fee,
    FeeKind,
    Hold,
    HoldStatus,
    Institution,
    Item,
    ItemType,
    LoanEvent,
    LoanRule,
    Patron,
    PatronCategory,
)
from ils.results import CirculationRefused, Refusal
from tests.conftest import postgres_admin_url
from tests.ils.factories import Library, SettableClock, build_library

# A Thursday in winter: London is on UTC, Los Angeles eight hours behind.
NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


class LibraryTemplates:
    """The test library built once per engine (schema by the real migrations) and
    copied for each test: a file copy on SQLite, `CREATE DATABASE ... TEMPLATE`
    on PostgreSQL. It saves running the migrations for every test."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._sqlite: Path | None = None
        self._postgres: str | None = None

    def sqlite_copy(self, url: str) -> None:
        """Fill the empty SQLite database at `url` with the test library."""
        if self._sqlite is None:
            self._folder = Path(tempfile.mkdtemp(prefix="ils-library-template-"))
            template = self._folder / "template.sqlite3"
            build_library(f"sqlite:///{template}", pool_size=1).database.dispose()
            self._sqlite = template
        target = sa.make_url(url).database
        assert target is not None
        shutil.copyfile(self._sqlite, target)

    def postgres_copy(self, url: str, admin_url: str) -> None:
        """Replace the empty PostgreSQL database at `url` by a copy of the library."""
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                if self._postgres is None:
                    name = f"ils_template_{uuid.uuid4().hex[:12]}"
                    connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
                    template_url = sa.make_url(admin_url).set(database=name)
                    build_library(
                        template_url.render_as_string(hide_password=False),
                        pool_size=1,
                    ).database.dispose()
                    self._postgres = name
                target = sa.make_url(url).database
                connection.execute(sa.text(f'DROP DATABASE "{target}" WITH (FORCE)'))
                connection.execute(
                    sa.text(f'CREATE DATABASE "{target}" TEMPLATE "{self._postgres}"')
                )
        finally:
            admin.dispose()

    def drop(self) -> None:
        """Remove the templates, if any were made."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = self._sqlite = None
        admin_url = postgres_admin_url()
        if self._postgres is None or admin_url is None:
            return
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(
                    sa.text(f'DROP DATABASE IF EXISTS "{self._postgres}" WITH (FORCE)')
                )
        finally:
            admin.dispose()
            self._postgres = None


# One set of templates for the whole run: the fixture below is imported by
# several test modules, and pytest makes a session fixture once per module that
# defines it.
_TEMPLATES = LibraryTemplates()


@pytest.fixture(scope="session")
def library_templates() -> Iterator[LibraryTemplates]:
    """The test library's templates, made on first use, removed at the end."""
    yield _TEMPLATES
    _TEMPLATES.drop()


@pytest.fixture
def library(
    database_url: str, library_templates: LibraryTemplates
) -> Iterator[Library]:
    """The test library on each engine in turn, copied from its template."""
    admin_url = postgres_admin_url()
    if database_url.startswith("sqlite"):
        library_templates.sqlite_copy(database_url)
    else:
        assert admin_url is not None
        library_templates.postgres_copy(database_url, admin_url)
    built = Library(database=Database(database_url, pool_size=20))
    yield built
    built.database.dispose()


@pytest.fixture
def clock() -> SettableClock:
    """A clock set to NOW."""
    return SettableClock(NOW)


@pytest.fixture
def circulation(library: Library, clock: SettableClock) -> Circulation:
    """The service on the test library, with the settable clock."""
    return Circulation(library.database, clock=clock)


def refusal_of(call: Any) -> Refusal:
    """Run a zero-argument call that must be refused, and give its reason."""
    with pytest.raises(CirculationRefused) as raised:
        call()
    return raised.value.reason


def add_copy(
    library: Library,
    barcode: str,
    *,
    of: str,
    branch: str = "NORTH",
    item_type: str | None = None,
) -> None:
    """Add another copy of the title that item `of` belongs to."""
    with library.database.transaction() as session:
        first = session.scalars(sa.select(Item).where(Item.barcode == of)).one()
        branch_id = session.scalars(
            sa.select(Branch.id).where(Branch.code == branch)
        ).one()
        type_id = first.item_type_id
        if item_type is not None:
            type_id = session.scalars(
                sa.select(ItemType.id).where(ItemType.code == item_type)
            ).one()
        session.add(
            Item(
                barcode=barcode,
                record_id=first.record_id,
                home_branch_id=branch_id,
                current_branch_id=branch_id,
                item_type_id=type_id,
                location=first.location,
                call_number=first.call_number,
            )
        )


def set_institution(library: Library, **settings: Any) -> None:
    """Change the institution's settings (max_holds, fee_limit_minor, ...)."""
    with library.database.transaction() as session:
        session.execute(sa.update(Institution).values(**settings))


def update_rule(
    library: Library, category: str | None, item_type: str | None, **values: Any
) -> None:
    """Change one of the test library's rules (they name no branch)."""
    with library.database.transaction() as session:
        category_id = (
            None
            if category is None
            else session.scalar(
                sa.select(PatronCategory.id).where(PatronCategory.code == category)
            )
        )
        type_id = (
            None
            if item_type is None
            else session.scalar(
                sa.select(ItemType.id).where(ItemType.code == item_type)
            )
        )
        result = session.execute(
            sa.update(LoanRule)
            .where(
                LoanRule.patron_category_id.is_(None)
                if category_id is None
                else LoanRule.patron_category_id == category_id,
                LoanRule.item_type_id.is_(None)
                if type_id is None
                else LoanRule.item_type_id == type_id,
            )
            .values(**values)
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


def close_day(library: Library, branch: str, day: date, note: str = "") -> None:
    """Close a branch for one date (a public holiday)."""
    with library.database.transaction() as session:
        branch_id = session.scalars(
            sa.select(Branch.id).where(Branch.code == branch)
        ).one()
        session.add(BranchClosedDay(branch_id=branch_id, day=day, note=note))


def hold_states(library: Library) -> list[tuple[str, HoldStatus, str | None]]:
    """Every hold as (patron barcode, status, trapped item barcode), by id."""
    with library.database.read() as session:
        holds = session.scalars(sa.select(Hold).order_by(Hold.id)).all()
        return [
            (
                hold.patron.barcode if hold.patron is not None else "",
                hold.status,
                None if hold.trapped_item is None else hold.trapped_item.barcode,
            )
            for hold in holds
        ]


def fees_of(library: Library, barcode: str) -> list[tuple[FeeKind, int, int]]:
    """A patron's fees as (kind, amount, balance), oldest first."""
    with library.database.read() as session:
        rows = session.execute(
            sa.select(Fee.kind, Fee.amount_minor, Fee.balance_minor)
            .join(Patron, Patron.id == Fee.patron_id)
            .where(Patron.barcode == barcode)
            .order_by(Fee.id)
        ).all()
    return [(kind, amount, balance) for kind, amount, balance in rows]


def log_details(library: Library, event: LoanEvent) -> list[str | None]:
    """The detail of every log row of one kind, oldest first."""
    with library.database.read() as session:
        return list(
            session.scalars(
                sa.select(CirculationLog.detail)
                .where(CirculationLog.event == event)
                .order_by(CirculationLog.id)
            )
        )
