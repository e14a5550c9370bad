"""Helpers for the fee, PIN, patron status and privacy tests: settings, loans made
directly in the tables, and the ledger's invariants.

Loans and holds are written straight into the tables here, so that these tests
of money and privacy do not depend on how the checkout is decided.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

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
from tests.ils.factories import Library


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
    with library.database.read() as session:
        for fee in session.scalars(sa.select(Fee)):
            allocated = sum(allocation.amount_minor for allocation in fee.allocations)
            assert fee.balance_minor == fee.amount_minor - allocated, fee.id
            assert 0 <= fee.balance_minor <= fee.amount_minor, fee.id

        for patron in session.scalars(sa.select(Patron)):
            payments = session.scalars(
                sa.select(Payment).where(Payment.patron_id == patron.id)
            ).all()
            received = sum(
                p.amount_minor for p in payments if p.method not in NON_MONEY_METHODS
            )
            real_allocations = sum(
                allocation.amount_minor
                for p in payments
                if p.method not in NON_MONEY_METHODS
                for allocation in p.allocations
            )
            credit_spent = sum(
                p.amount_minor for p in payments if p.method is PaymentMethod.CREDIT
            )
            assert received == real_allocations + patron.credit_minor + credit_spent
            assert patron.credit_minor >= 0

        # A CREDIT or WRITE_OFF payment is wholly allocated: it carries no money.
        for payment in session.scalars(
            sa.select(Payment).where(Payment.method.in_(list(NON_MONEY_METHODS)))
        ):
            allocated = session.scalar(
                sa.select(
                    sa.func.coalesce(sa.func.sum(PaymentAllocation.amount_minor), 0)
                ).where(PaymentAllocation.payment_id == payment.id)
            )
            assert payment.amount_minor == allocated, payment.id
