"""The books always balance: random sequences of charges, payments, write-offs,
credit paid back, lost items and items found again, on SQLite and PostgreSQL
(Hypothesis state machine), checked after every step against a simple model and
the ledger's invariants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ils.fees import FeeService, charge_lost_item, lost_item_found
from ils.models import FeeKind, Item, Patron, PaymentMethod
from ils.results import CirculationRefused, Refusal
from tests.ils.factories import Library, SettableClock
from tests.ils.fees_support import assert_books_balance, library_copy, set_institution

START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
KINDS = [FeeKind.OVERDUE, FeeKind.DAMAGE, FeeKind.MANUAL, FeeKind.RENTAL]


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine in turn."""
    yield from library_copy(request.param, tmp_path)


def test_money_never_appears_or_vanishes(library: Library) -> None:
    """After every step of a random sequence the owed total and credit match the
    model and every fee and payment balances."""

    class Ledger(RuleBasedStateMachine):
        """One patron's account at a fee desk."""

        @initialize(as_credit=st.booleans())
        def open_account(self, as_credit: bool) -> None:
            set_institution(library, overpayment_as_credit=as_credit)
            self.as_credit = as_credit
            self.barcode = f"P-{uuid.uuid4().hex[:10]}"
            library.add_patron(self.barcode)
            self.clock = SettableClock(START)
            self.fees = FeeService(library.database, clock=self.clock)
            self.owed = 0
            self.credit = 0
            self.lost: list[tuple[str, int, int]] = []  # (item, fee id, paid in)

        def _tick(self) -> None:
            self.clock.now += timedelta(minutes=1)

        def _spend_credit_on(self, amount: int) -> None:
            used = min(self.credit, amount)
            self.credit -= used
            self.owed += amount - used

        @rule(kind=st.sampled_from(KINDS), amount=st.integers(1, 5_000))
        def charge(self, kind: FeeKind, amount: int) -> None:
            self._tick()
            self.fees.charge(
                self.barcode, kind=kind, amount_minor=amount, description="", by="s"
            )
            self._spend_credit_on(amount)

        @rule(amount=st.integers(1, 6_000), one_fee=st.booleans())
        def pay(self, amount: int, one_fee: bool) -> None:
            self._tick()
            open_fees = self.fees.fees_of(self.barcode)
            fee_id = open_fees[-1].id if one_fee and open_fees else None
            target = open_fees[-1].balance_minor if fee_id is not None else self.owed
            refusal: Refusal | None = None
            try:
                receipt = self.fees.pay(
                    self.barcode, amount, "GBP", PaymentMethod.CASH, "t", None, fee_id
                )
            except CirculationRefused as refused:
                refusal = refused.reason
            if refusal is not None:
                if target == 0:
                    assert Refusal.NOTHING_OWED is refusal
                else:
                    assert Refusal.OVERPAYMENT_REFUSED is refusal
                    assert amount > target
                    assert not self.as_credit
                return
            paid = min(amount, target)
            assert paid == sum(a.amount_minor for a in receipt.allocations)
            self.owed -= paid
            self.credit += amount - paid
            self.lost = [
                (item, fee, given + self._paid_to(receipt, fee))
                for item, fee, given in self.lost
            ]

        @staticmethod
        def _paid_to(receipt: object, fee_id: int) -> int:
            allocations = getattr(receipt, "allocations", ())
            return sum(a.amount_minor for a in allocations if a.fee_id == fee_id)

        @rule(share=st.integers(1, 100))
        def write_off(self, share: int) -> None:
            self._tick()
            if self.owed == 0:
                return
            amount = max(1, self.owed * share // 100)
            self.fees.write_off(self.barcode, by="staff", note="", amount_minor=amount)
            self.owed -= amount

        @rule(share=st.integers(1, 100))
        def refund(self, share: int) -> None:
            self._tick()
            if self.credit == 0:
                return
            amount = max(1, self.credit * share // 100)
            self.fees.refund_credit(
                self.barcode,
                method=PaymentMethod.CASH,
                terminal="t",
                amount_minor=amount,
            )
            self.credit -= amount

        @rule(price=st.integers(0, 3_000))
        def lose_an_item(self, price: int) -> None:
            self._tick()
            barcode = f"I-{uuid.uuid4().hex[:10]}"
            library.add_item(barcode, price_minor=price)
            with library.database.transaction() as session:
                patron = session.scalar(
                    sa.select(Patron).where(Patron.barcode == self.barcode)
                )
                item = session.scalar(sa.select(Item).where(Item.barcode == barcode))
                assert patron is not None
                assert item is not None
                credit_before = patron.credit_minor
                charged = charge_lost_item(
                    session, patron=patron, item=item, moment=self.clock.now, by="s"
                )
                from_credit = credit_before - patron.credit_minor
            self._spend_credit_on(price)
            if charged:
                self.lost.append((barcode, charged[0].id, from_credit))

        @rule(data=st.data())
        def find_an_item(self, data: st.DataObject) -> None:
            if not self.lost:
                return
            self._tick()
            index = data.draw(st.integers(0, len(self.lost) - 1))
            barcode, fee_id, paid = self.lost.pop(index)
            balance = next(
                (
                    fee.balance_minor
                    for fee in self.fees.fees_of(self.barcode, include_settled=True)
                    if fee.id == fee_id
                ),
                0,
            )
            with library.database.transaction() as session:
                item = session.scalar(sa.select(Item).where(Item.barcode == barcode))
                assert item is not None
                lost_item_found(session, item=item, moment=self.clock.now, by="s")
            # What was paid (not written off) comes back as credit; the rest of
            # the balance is cancelled.
            self.owed -= balance
            self.credit += paid

        @invariant()
        def balances(self) -> None:
            if not hasattr(self, "fees"):
                return
            assert self.owed == sum(
                fee.balance_minor for fee in self.fees.fees_of(self.barcode)
            )
            with library.database.read() as session:
                credit = session.scalar(
                    sa.select(Patron.credit_minor).where(Patron.barcode == self.barcode)
                )
            assert self.credit == credit
            assert_books_balance(library)

    run_state_machine_as_test(
        Ledger,
        settings=settings(
            max_examples=8,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
