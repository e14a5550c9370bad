"""Checkouts a terminal made offline (`Circulation.checkout(offline=True)`): what
they are recorded over, what still refuses, and another patron's loan of the
item, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from ils.circulation import Circulation
from ils.models import FeeKind, HoldStatus, ItemStatus, LoanEvent, Patron, PatronBlock
from ils.results import Refusal
from tests.ils.circulation_support import (
    NOW,
    circulation,
    clock,
    fees_of,
    hold_states,
    library,
    library_templates,
    log_details,
    refusal_of,
    update_rule,
)
from tests.ils.factories import Library, SettableClock

__all__ = ["circulation", "clock", "library", "library_templates"]

# Two days before the tests' clock (15 January 2026, 10:00 UTC).
TWO_DAYS_AGO = NOW - timedelta(days=2)


def test_offline_checkout_is_recorded_over_every_card_and_limit_refusal(
    library: Library, circulation: Circulation
) -> None:
    """A blocked card sent without its PIN, at its limit of three loans: lent
    offline two days ago it is recorded from then, due 14 days after, and the
    log row names each refusal it went over; with a wrong PIN it is refused."""
    library.add_patron("P1", pin="1234")
    for barcode in ("B1", "B2", "B3", "B4"):
        library.add_item(barcode)
    for barcode in ("B1", "B2", "B3"):
        circulation.checkout("P1", barcode, branch_code="NORTH")
    with library.database.transaction() as session:
        patron_id = session.scalar(sa.select(Patron.id).where(Patron.barcode == "P1"))
        assert patron_id is not None
        session.add(PatronBlock(patron_id=patron_id, note="Unpaid bills"))
    assert Refusal.WRONG_PIN == refusal_of(
        lambda: circulation.checkout("P1", "B4", branch_code="NORTH", pin="9999")
    )

    # A wrong PIN the terminal sends is no offline excuse.
    assert Refusal.WRONG_PIN == refusal_of(
        lambda: circulation.checkout(
            "P1", "B4", branch_code="NORTH", pin="9999", offline=True, at=TWO_DAYS_AGO
        )
    )

    result = circulation.checkout(
        "P1",
        "B4",
        branch_code="NORTH",
        pin_required=True,
        offline=True,
        at=TWO_DAYS_AGO,
    )

    # 13 January + 14 days: the end of 27 January, London time (UTC in winter).
    assert datetime(2026, 1, 27, 23, 59, 59, tzinfo=UTC) == result.due_at
    assert (
        "; offline, recorded over: pin_required patron_blocked max_loans_reached"
        in (log_details(library, LoanEvent.CHECKOUT)[-1] or "")
    )


def test_offline_checkout_judges_the_card_at_its_own_time(
    library: Library, circulation: Circulation
) -> None:
    """A card that expired yesterday was valid two days ago: lent offline then,
    the log row names no expiry; lent offline now, it names card_expired."""
    library.add_patron("P1", expires_on=date(2026, 1, 14))
    library.add_item("B1")
    library.add_item("B2")

    circulation.checkout("P1", "B1", branch_code="NORTH", offline=True, at=TWO_DAYS_AGO)
    circulation.checkout("P1", "B2", branch_code="NORTH", offline=True)

    first, second = log_details(library, LoanEvent.CHECKOUT)
    assert first is not None
    assert "recorded over" not in first
    assert first.endswith("; offline")
    assert second is not None
    assert second.endswith("; offline, recorded over: card_expired")


def test_offline_checkout_still_refuses_what_cannot_be_lent(
    library: Library, circulation: Circulation
) -> None:
    """Unknown patrons and items, an item not for loan or withdrawn, and a
    patron category without a loan rule are refused offline as online."""
    library.add_patron("P1")
    library.add_patron("C1", category="CHILD")
    library.add_item("B1", status=ItemStatus.NOT_FOR_LOAN)
    library.add_item("B2", status=ItemStatus.WITHDRAWN)
    library.add_item("B3")
    library.delete_rule(None, None)

    def offline(patron: str, item: str) -> Refusal:
        return refusal_of(
            lambda: circulation.checkout(
                patron, item, branch_code="NORTH", offline=True, at=TWO_DAYS_AGO
            )
        )

    assert Refusal.UNKNOWN_PATRON == offline("NOBODY", "B3")
    assert Refusal.UNKNOWN_ITEM == offline("P1", "NOTHING")
    assert Refusal.ITEM_NOT_FOR_LOAN == offline("P1", "B1")
    assert Refusal.ITEM_WITHDRAWN == offline("P1", "B2")
    assert Refusal.NO_LOAN_RULE == offline("C1", "B3")


def test_offline_checkout_ends_an_older_loan_and_not_a_newer_one(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """B1 lent to P1 on 1 January (due the 15th) and lent offline to P2 on the
    13th: P1's loan ends on the 13th, unfined. B2 lent to P1 at 10:00 today is
    not taken by P2's offline checkout dated two days ago."""
    update_rule(library, "ADULT", None, fine_minor=20)
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    library.add_item("B2")
    circulation.checkout(
        "P1", "B1", branch_code="NORTH", at=datetime(2026, 1, 1, 12, tzinfo=UTC)
    )
    circulation.checkout("P1", "B2", branch_code="NORTH")
    clock.now = NOW + timedelta(hours=1)

    lent = circulation.checkout(
        "P2", "B1", branch_code="NORTH", offline=True, at=TWO_DAYS_AGO
    )
    refused = refusal_of(
        lambda: circulation.checkout(
            "P2", "B2", branch_code="NORTH", offline=True, at=TWO_DAYS_AGO
        )
    )

    assert "P2" == lent.patron.barcode
    assert Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON == refused
    assert "returned by a checkout to another patron" in log_details(
        library, LoanEvent.CHECKIN
    )
    assert [] == [fee for fee in fees_of(library, "P1") if fee[0] is FeeKind.OVERDUE]
    p1 = circulation.patron("P1")
    assert p1 is not None
    assert ["B2"] == [loan.item_barcode for loan in p1.loans]


def test_offline_checkout_of_an_item_held_for_another_puts_the_hold_back(
    library: Library, circulation: Circulation
) -> None:
    """An item trapped for P1's hold, lent offline to P2: the loan is P2's, the
    log row names the hold, and P1's hold waits in the queue again."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    circulation.place_hold("P1", item_barcode="B1", pickup_branch_code="NORTH")
    circulation.checkin("B1", branch_code="NORTH")
    assert [("P1", HoldStatus.WAITING, "B1")] == hold_states(library)

    circulation.checkout("P2", "B1", branch_code="NORTH", offline=True, at=NOW)

    assert [("P1", HoldStatus.PENDING, None)] == hold_states(library)
    assert (log_details(library, LoanEvent.CHECKOUT)[-1] or "").endswith(
        "; offline, recorded over: item_on_hold_for_other_patron"
    )


def test_a_terminal_due_date_already_past_is_not_kept(
    library: Library, circulation: Circulation
) -> None:
    """Lent offline two days ago with a due date the terminal set three hours
    after that (already past): the rule's due date is used, so the loan is not
    overdue from the start; a sane terminal due date is kept."""
    library.add_patron("P1")
    library.add_item("B1")
    library.add_item("B2")

    backdated = circulation.checkout(
        "P1",
        "B1",
        branch_code="NORTH",
        offline=True,
        at=TWO_DAYS_AGO,
        terminal_due_at=TWO_DAYS_AGO + timedelta(hours=3),
    )
    sane = circulation.checkout(
        "P1",
        "B2",
        branch_code="NORTH",
        offline=True,
        at=TWO_DAYS_AGO,
        terminal_due_at=NOW + timedelta(days=5),
    )

    # 13 January + 14 days: the end of 27 January, London time (UTC in winter).
    assert datetime(2026, 1, 27, 23, 59, 59, tzinfo=UTC) == backdated.due_at
    assert NOW + timedelta(days=5) == sane.due_at
