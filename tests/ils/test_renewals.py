"""Renewals as a patron at a kiosk meets them: renew one, renew all with each item
reported, and every reason a renewal is refused, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ils.circulation import Circulation
from ils.models import FeeKind, LoanEvent, Patron, PatronBlock
from ils.results import Refusal
from tests.ils.circulation_support import (
    NOW,
    circulation,
    clock,
    fees_of,
    library,
    library_templates,
    log_details,
    refusal_of,
    set_institution,
    update_rule,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]


def test_renew_all_reports_each_item_when_another_patron_holds_one(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Of three loans, the one another patron is waiting for stays due as it was;
    the other two are due fourteen days from the renewal."""
    library.add_patron("P1")
    library.add_patron("P2")
    for barcode in ("B1", "B2", "B3"):
        library.add_item(barcode, title=f"Title {barcode}")
        circulation.checkout("P1", barcode, branch_code="NORTH")
    circulation.place_hold("P2", item_barcode="B2", pickup_branch_code="NORTH")
    clock.now = NOW + timedelta(days=5)

    result = circulation.renew_all("P1")

    # Renewed on 20 Jan: due at the end of 3 Feb; unrenewed: the end of 29 Jan.
    renewed = datetime(2026, 2, 3, 23, 59, 59, tzinfo=UTC)
    unrenewed = datetime(2026, 1, 29, 23, 59, 59, tzinfo=UTC)
    assert [
        (o.item_barcode, o.renewed, o.due_at, o.refusal) for o in result.outcomes
    ] == [
        ("B1", True, renewed, None),
        ("B2", False, unrenewed, Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON),
        ("B3", True, renewed, None),
    ]
    assert [o.item_barcode for o in result.refused] == ["B2"]
    assert result.refused[0].message == (
        "Someone else is waiting for this item, so it cannot be renewed;"
        " please return it by the due date."
    )
    assert sorted(loan.due_at for loan in result.patron.loans) == [
        unrenewed,
        renewed,
        renewed,
    ]


def test_renewals_are_refused_each_for_its_reason(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Too soon, at the limit, not the patron's loan, and a blocked card."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_patron("X1")
    library.add_item("B1")
    library.add_item("B2")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    circulation.checkout("X1", "B2", branch_code="NORTH")

    too_soon = refusal_of(lambda: circulation.renew("P1", "B1"))
    clock.now = NOW + timedelta(days=3)
    first = circulation.renew("P1", "B1")
    clock.now = NOW + timedelta(days=4)
    at_limit = refusal_of(lambda: circulation.renew("P1", "B1"))
    not_theirs = refusal_of(lambda: circulation.renew("P2", "B1"))
    with library.database.transaction() as session:
        patron_id = session.scalar(sa.select(Patron.id).where(Patron.barcode == "X1"))
        session.add(PatronBlock(patron_id=patron_id, note="Card misuse"))
    blocked = refusal_of(lambda: circulation.renew("X1", "B2"))

    assert too_soon is Refusal.DUE_DATE_NOT_LATER
    assert first.renewal is True
    assert first.due_at == datetime(2026, 2, 1, 23, 59, 59, tzinfo=UTC)
    assert at_limit is Refusal.RENEWAL_LIMIT_REACHED
    assert not_theirs is Refusal.ITEM_NOT_ON_LOAN
    assert blocked is Refusal.PATRON_BLOCKED


def test_renewal_is_refused_for_overdues_over_the_limit(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """With one overdue loan enough to block, a renew-all refuses every loan."""
    set_institution(library, overdue_limit=1)
    library.add_patron("P1")
    library.add_item("B1")
    library.add_item("D1", item_type="DVD")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    circulation.checkout("P1", "D1", branch_code="NORTH")
    # The DVD (three days) is overdue; the book is not.
    clock.now = NOW + timedelta(days=5)

    result = circulation.renew_all("P1")

    assert [(o.item_barcode, o.refusal) for o in result.outcomes] == [
        ("D1", Refusal.OVERDUES_OVER_LIMIT),
        ("B1", Refusal.OVERDUES_OVER_LIMIT),
    ]


def test_late_renewal_is_fined_up_to_the_renewal(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Renewing a book two days late charges two days' fine and dates the new loan
    from the renewal."""
    update_rule(library, "ADULT", None, fine_minor=25)
    library.add_patron("P1")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    # Due at the end of 29 Jan; renewed on 31 Jan.
    clock.now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)

    result = circulation.renew("P1", "B1")

    assert result.due_at == datetime(2026, 2, 14, 23, 59, 59, tzinfo=UTC)
    assert fees_of(library, "P1") == [(FeeKind.OVERDUE, 50, 50)]


def test_scanning_a_loan_again_the_same_day_uses_no_renewal(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Checking out one's own item three times in a minute confirms the loan each
    time, keeps its due date, counts and logs no renewal, and a later scan that
    moves the due date still renews."""
    library.add_patron("P1")
    library.add_item("B1")
    first = circulation.checkout("P1", "B1", branch_code="NORTH")

    clock.now = NOW + timedelta(seconds=20)
    second = circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now = NOW + timedelta(seconds=40)
    third = circulation.checkout("P1", "B1", branch_code="NORTH")
    renewals_after_repeats = third.patron.loans[0].renewals
    renewal_log_after_repeats = log_details(library, LoanEvent.RENEWAL)
    clock.now = NOW + timedelta(days=3)
    later = circulation.checkout("P1", "B1", branch_code="NORTH")

    # ADULT/BOOK is 14 days, end of day in London (UTC in January).
    assert first.due_at == datetime(2026, 1, 29, 23, 59, 59, tzinfo=UTC)
    assert (second.due_at, third.due_at) == (first.due_at, first.due_at)
    assert (second.renewal, third.renewal) == (False, False)
    assert 0 == renewals_after_repeats
    assert [] == renewal_log_after_repeats
    assert later.renewal is True
    assert later.due_at == datetime(2026, 2, 1, 23, 59, 59, tzinfo=UTC)
    assert 1 == later.patron.loans[0].renewals
