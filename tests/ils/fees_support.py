"""Helpers for the fee, PIN, patron status and privacy tests: a quick copy of the
test library, settings, loans made directly in the tables, and the ledger's
invariants.

Loans and holds are written straight into the tables here, so that these tests
of money and privacy do not depend on how the checkout is decided.

Building the test library runs every migration, about a second a test; these
tests instead build it once per engine and run and copy it for each test (a
file copy on SQLite, `CREATE DATABASE ... TEMPLATE` on PostgreSQL). The copy is
a real database of the real schema like any other.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ils.db import Database
from ils.fees import NON_MONEY_METHODS
from ils.models import (
    Branch,
    Fee,
    Hold,
    HoldStatus,
    Institution,
    Item,
    Loan,
    Patron,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from tests.conftest import postgres_admin_url
from tests.ils.factories import Library, build_library

_templates: dict[str, str] = {}


def _sqlite_template() -> str:
    if "sqlite" not in _templates:
        folder = Path(tempfile.mkdtemp(prefix="ils-money-template-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "template.sqlite3"
        built = build_library(f"sqlite:///{path}")
        built.database.dispose()
        _templates["sqlite"] = str(path)
    return _templates["sqlite"]


def _postgres_template(admin_url: str) -> str:
    if "postgresql" not in _templates:
        name = f"ils_money_template_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(admin_url).set(database=name)
        built = build_library(url.render_as_string(hide_password=False))
        built.database.dispose()

        def drop() -> None:
            with admin.connect() as connection:
                connection.execute(
                    sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                )
            admin.dispose()

        atexit.register(drop)
        _templates["postgresql"] = name
    return _templates["postgresql"]


def library_copy(engine: str, tmp_path: Path) -> Iterator[Library]:
    """A fresh copy of the test library on `engine` ("sqlite" or "postgresql"),
    disposed of afterwards; PostgreSQL is skipped (or, when it is required,
    failed) as the `database_url` fixture does."""
    if engine == "sqlite":
        path = tmp_path / "ils.sqlite3"
        shutil.copyfile(_sqlite_template(), path)
        library = Library(database=Database(f"sqlite:///{path}", pool_size=20))
        yield library
        library.database.dispose()
        return

    admin_url = postgres_admin_url()
    if admin_url is None:
        if os.environ.get("ILS_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required for this run")
        pytest.skip("ILS_TEST_POSTGRES_URL is not set")
    template = _postgres_template(admin_url)
    name = f"ils_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        # PostgreSQL 15 copies a small template faster file by file than
        # through the write-ahead log (its new default).
        version = int(
            connection.execute(sa.text("SHOW server_version_num")).scalar_one()
        )
        strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""
        connection.execute(
            sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
        )
    url = sa.make_url(admin_url).set(database=name)
    library = Library(
        database=Database(url.render_as_string(hide_password=False), pool_size=20)
    )
    try:
        yield library
    finally:
        library.database.dispose()
        with admin.connect() as connection:
            connection.execute(
                sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            )
        admin.dispose()


def set_institution(library: Library, **settings: Any) -> None:
    """Change the test institution's settings (fee_limit_minor=..., ...)."""
    with library.database.transaction() as session:
        session.execute(sa.update(Institution).values(**settings))


def patron_id(library: Library, barcode: str) -> int:
    """The internal id of a patron."""
    with library.database.read() as session:
        found = session.scalar(sa.select(Patron.id).where(Patron.barcode == barcode))
    assert found is not None
    return found


def add_loan(
    library: Library,
    patron: str,
    item: str,
    *,
    out: datetime,
    due: datetime,
    returned: datetime | None = None,
    branch: str = "NORTH",
) -> int:
    """Write a loan of `item` to `patron` into the table; returns its id."""
    with library.database.transaction() as session:
        found = session.scalar(sa.select(Patron).where(Patron.barcode == patron))
        item_id = session.scalar(sa.select(Item.id).where(Item.barcode == item))
        branch_id = session.scalar(sa.select(Branch.id).where(Branch.code == branch))
        assert found is not None
        assert item_id is not None
        assert branch_id is not None
        loan = Loan(
            item_id=item_id,
            patron_id=found.id,
            branch_id=branch_id,
            checked_out_at=out,
            due_at=due,
            returned_at=returned,
            renewals=0,
            patron_category_id=found.category_id,
        )
        session.add(loan)
        session.flush()
        return loan.id


def add_hold(
    library: Library,
    patron: str,
    item: str,
    *,
    placed: datetime,
    status: HoldStatus = HoldStatus.PENDING,
    finished: datetime | None = None,
) -> int:
    """Write a title-level hold on `item`'s record into the table (trapping
    `item` when the status is WAITING or IN_TRANSIT); returns its id."""
    with library.database.transaction() as session:
        found = session.scalar(sa.select(Patron).where(Patron.barcode == patron))
        copy = session.scalar(sa.select(Item).where(Item.barcode == item))
        assert found is not None
        assert copy is not None
        trapped = status in (HoldStatus.WAITING, HoldStatus.IN_TRANSIT)
        hold = Hold(
            patron_id=found.id,
            record_id=copy.record_id,
            pickup_branch_id=found.home_branch_id,
            status=status,
            placed_at=placed,
            trapped_item_id=copy.id if trapped else None,
            trapped_at=placed if trapped else None,
            finished_at=finished,
        )
        session.add(hold)
        session.flush()
        return hold.id


def assert_books_balance(library: Library) -> None:
    """Every fee's balance is its amount less its allocations, and for every
    patron the money received equals the allocations of real money plus the
    credit held plus the credit spent: no money appears or vanishes."""
    money = Payment.method.not_in(list(NON_MONEY_METHODS))
    with library.database.read() as session:
        allocated = (
            sa.select(
                PaymentAllocation.fee_id,
                sa.func.sum(PaymentAllocation.amount_minor).label("total"),
            )
            .group_by(PaymentAllocation.fee_id)
            .subquery()
        )
        fees = session.execute(
            sa.select(
                Fee.id,
                Fee.amount_minor,
                Fee.balance_minor,
                sa.func.coalesce(allocated.c.total, 0),
            ).outerjoin(allocated, allocated.c.fee_id == Fee.id)
        ).all()
        for fee_id, amount, balance, total in fees:
            assert balance == amount - total, fee_id
            assert 0 <= balance <= amount, fee_id

        def per_patron(query: Any) -> dict[int | None, int]:
            return {key: int(value) for key, value in session.execute(query).all()}

        received = per_patron(
            sa.select(Payment.patron_id, sa.func.sum(Payment.amount_minor))
            .where(money)
            .group_by(Payment.patron_id)
        )
        real_allocations = per_patron(
            sa.select(Payment.patron_id, sa.func.sum(PaymentAllocation.amount_minor))
            .join(PaymentAllocation, PaymentAllocation.payment_id == Payment.id)
            .where(money)
            .group_by(Payment.patron_id)
        )
        credit_spent = per_patron(
            sa.select(Payment.patron_id, sa.func.sum(Payment.amount_minor))
            .where(Payment.method == PaymentMethod.CREDIT)
            .group_by(Payment.patron_id)
        )
        for patron_id, credit in session.execute(
            sa.select(Patron.id, Patron.credit_minor)
        ).all():
            assert credit >= 0, patron_id
            assert received.get(patron_id, 0) == (
                real_allocations.get(patron_id, 0)
                + credit
                + credit_spent.get(patron_id, 0)
            ), patron_id

        # A CREDIT or WRITE_OFF payment is wholly allocated: it carries no money.
        unallocated = session.execute(
            sa.select(Payment.id)
            .outerjoin(PaymentAllocation, PaymentAllocation.payment_id == Payment.id)
            .where(Payment.method.in_(list(NON_MONEY_METHODS)))
            .group_by(Payment.id, Payment.amount_minor)
            .having(
                Payment.amount_minor
                != sa.func.coalesce(sa.func.sum(PaymentAllocation.amount_minor), 0)
            )
        ).all()
        assert [] == unallocated
