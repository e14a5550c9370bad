"""Checkout decisions added for issue #4: the calendar, holds, lending again by
policy, staff overrides, fees, automatic blocks and the PIN lock, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ils.circulation import Circulation
from ils.models import FeeKind, HoldStatus, LoanEvent
from ils.results import Refusal
from tests.ils.circulation_support import (
    NOW,
    circulation,
    clock,
    close_day,
    fees_of,
    hold_states,
    library,
    library_templates,
    log_details,
    refusal_of,
    set_institution,
    update_rule,
)
from tests.ils.factories import PIN, Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]


def test_due_date_on_a_public_holiday_moves_to_the_next_open_day(
    library: Library, circulation: Circulation
) -> None:
    """A fortnight's loan from 15 January falls on the 29th, a holiday at North, so
    it is due at the end of the 30th."""
    close_day(library, "NORTH", date(2026, 1, 29), "Founders' Day")
    library.add_patron("P1")
    library.add_item("B1")

    result = circulation.checkout("P1", "B1", branch_code="NORTH")

    assert result.due_at == datetime(2026, 1, 30, 23, 59, 59, tzinfo=UTC)


def test_item_on_loan_to_another_patron_is_checked_in_and_lent_again_by_policy(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A desk whose policy lends a book on someone else's card again ends that loan,
    fines it six days (30 Jan to 4 Feb at 20p), and lends it to the new patron."""
    update_rule(library, "ADULT", None, fine_minor=20)
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now = datetime(2026, 2, 4, 15, 0, tzinfo=UTC)

    refused = refusal_of(lambda: circulation.checkout("P2", "B1", branch_code="NORTH"))
    result = circulation.checkout(
        "P2", "B1", branch_code="NORTH", checkin_if_on_loan_to_other=True
    )

    assert refused is Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON
    assert result.item.borrower_barcode == "P2"
    assert result.renewal is False
    assert fees_of(library, "P1") == [(FeeKind.OVERDUE, 120, 120)]
    first = circulation.patron("P1")
    assert first is not None
    assert first.loans == ()


def test_staff_override_of_the_loan_limit_is_honoured_only_where_the_rule_allows(
    library: Library, circulation: Circulation
) -> None:
    """Staff may lend an adult a fourth book while the rule allows overrides, the log
    says so, and once the rule forbids them the same request is refused."""
    library.add_patron("P1")
    for number in range(5):
        library.add_item(f"B{number}")
    for number in range(3):
        circulation.checkout("P1", f"B{number}", branch_code="NORTH")
    waive = frozenset({Refusal.MAX_LOANS_REACHED})

    plain = refusal_of(lambda: circulation.checkout("P1", "B3", branch_code="NORTH"))
    overridden = circulation.checkout("P1", "B3", branch_code="NORTH", override=waive)
    update_rule(library, "ADULT", None, staff_override=False)
    forbidden = refusal_of(
        lambda: circulation.checkout("P1", "B4", branch_code="NORTH", override=waive)
    )

    assert plain is Refusal.MAX_LOANS_REACHED
    assert overridden.item.borrower_barcode == "P1"
    assert log_details(library, LoanEvent.CHECKOUT)[-1] == (
        f"due {overridden.due_at.isoformat()}; staff override: max_loans_reached"
    )
    assert forbidden is Refusal.MAX_LOANS_REACHED
    with pytest.raises(ValueError, match="PATRON_BLOCKED"):
        circulation.checkout(
            "P1",
            "B4",
            branch_code="NORTH",
            override=frozenset({Refusal.PATRON_BLOCKED}),
        )


def test_first_in_the_queue_borrows_an_on_shelf_copy_and_others_are_refused(
    library: Library, circulation: Circulation
) -> None:
    """A copy still on the open shelf is kept for the patron first in the queue: a
    passer-by is refused it, the holder borrows it and the hold is fulfilled."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")

    passer_by = refusal_of(
        lambda: circulation.checkout("P2", "B1", branch_code="NORTH")
    )
    result = circulation.checkout("P1", "B1", branch_code="NORTH")

    assert passer_by is Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON
    assert result.item.borrower_barcode == "P1"
    assert hold_states(library) == [("P1", HoldStatus.FULFILLED, None)]


def test_rental_fee_is_charged_and_fees_over_the_limit_block_borrowing(
    library: Library, circulation: Circulation
) -> None:
    """A DVD rents for 1.50; with a 1.00 limit on fees the next book is refused
    unless staff waive the block."""
    set_institution(library, fee_limit_minor=100)
    update_rule(library, "ADULT", "DVD", rental_fee_minor=150)
    library.add_patron("P1")
    library.add_item("D1", item_type="DVD")
    library.add_item("B1")

    circulation.checkout("P1", "D1", branch_code="NORTH")
    blocked = refusal_of(lambda: circulation.checkout("P1", "B1", branch_code="NORTH"))
    waived = circulation.checkout(
        "P1",
        "B1",
        branch_code="NORTH",
        override=frozenset({Refusal.FEES_OVER_LIMIT}),
    )

    assert fees_of(library, "P1") == [(FeeKind.RENTAL, 150, 150)]
    assert blocked is Refusal.FEES_OVER_LIMIT
    assert waived.item.borrower_barcode == "P1"


def test_wrong_pins_lock_the_card_for_checkout(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """After two wrong PINs (the setting) even the right PIN is refused as locked,
    until the lock runs out."""
    set_institution(library, pin_max_failures=2, pin_lock_minutes=30)
    library.add_patron("P1", pin=PIN)
    library.add_item("B1")

    def checkout(pin: str) -> Refusal:
        return refusal_of(
            lambda: circulation.checkout("P1", "B1", branch_code="NORTH", pin=pin)
        )

    wrong = [checkout("0000"), checkout("0000")]
    locked = checkout(PIN)
    clock.now = NOW + timedelta(minutes=31)
    result = circulation.checkout("P1", "B1", branch_code="NORTH", pin=PIN)

    assert wrong == [Refusal.WRONG_PIN, Refusal.WRONG_PIN]
    assert locked is Refusal.PIN_LOCKED
    assert result.patron.pin_valid is True


def test_staff_lending_a_waiting_item_to_another_patron_puts_the_hold_back(
    library: Library, circulation: Circulation
) -> None:
    """When staff override the hold on an item from the hold shelf, the holder's
    hold returns to the queue instead of waiting for an item now on loan."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.checkin("B1", branch_code="NORTH")

    result = circulation.checkout(
        "P2",
        "B1",
        branch_code="NORTH",
        override=frozenset({Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON}),
    )

    assert result.item.borrower_barcode == "P2"
    assert result.item.on_hold_shelf is False
    assert hold_states(library) == [("P1", HoldStatus.PENDING, None)]
    assert [v.queue_position for v in circulation.holds_of("P1").pending] == [1]
