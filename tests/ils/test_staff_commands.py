"""`ils fees`, `ils holds place|cancel|pickup|list`, `ils patrons` and `ils items`
as a member of staff runs them at the desk, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from click.testing import CliRunner

from ils.circulation import Circulation
from ils.cli import main
from ils.models import (
    CirculationLog,
    HoldStatus,
    Item,
    ItemStatus,
    LoanEvent,
    Patron,
    Payment,
)
from ils.results import Refusal
from tests.ils.circulation_support import (
    hold_states,
    library,
    library_templates,
    refusal_of,
)
from tests.ils.factories import Library

__all__ = ["library", "library_templates"]

STAFF = f"staff:{getpass.getuser()}"


def staff(library: Library, *args: str) -> tuple[int, str]:
    """Run `ils ARGS --db URL` on the test library: (exit status, output)."""
    url = library.database.engine.url.render_as_string(hide_password=False)
    outcome = CliRunner().invoke(main, [*args, "--db", url])
    return outcome.exit_code, outcome.output


def test_fees_are_charged_listed_paid_and_written_off_by_staff(
    library: Library,
) -> None:
    """A 5.00 damage fee is listed, 2.00 is paid in cash, the rest written off;
    an overpayment and a refund of credit the card lacks are refused in one line,
    and the payments name the member of staff."""
    library.add_patron("P1")

    charged = staff(
        library, "fees", "charge", "P1", "damage", "5.00", "--note", "Torn cover"
    )
    listed = staff(library, "fees", "list", "P1")
    paid = staff(library, "fees", "pay", "P1", "2.00")
    too_much = staff(library, "fees", "pay", "P1", "4.00")
    written_off = staff(library, "fees", "write-off", "P1", "--note", "Goodwill")
    no_credit = staff(library, "fees", "refund-credit", "P1")
    bad_amount = staff(library, "fees", "pay", "P1", "2.5.0")
    unknown = staff(library, "fees", "list", "NOBODY")

    assert charged == (
        0,
        "charged fee 1: damage 5.00 GBP, 5.00 left to pay after credit\n",
    )
    assert listed[0] == 0
    assert (
        listed[1]
        .splitlines()[0]
        .startswith("fee 1: damage 5.00 of 5.00 GBP owed, Torn cover, ")
    )
    assert listed[1].splitlines()[1] == "1 fee; 5.00 GBP owed"
    assert paid == (
        0,
        "paid 2.00 GBP by cash (payment 1): fee 1 2.00; owes 3.00, credit 0.00 GBP\n",
    )
    assert too_much == (1, "Error: That is more than is owed; please pay less.\n")
    assert written_off == (
        0,
        "wrote off 3.00 GBP (payment 2) on 1 fee; owes 0.00, credit 0.00 GBP\n",
    )
    assert no_credit == (1, "Error: This card holds no credit to pay back.\n")
    assert bad_amount[0] == 1
    assert unknown == (1, "Error: This library card is not recognised.\n")
    with library.database.read() as session:
        takers = session.scalars(sa.select(Payment.terminal).order_by(Payment.id)).all()
    assert [STAFF, STAFF] == list(takers)


def test_staff_place_move_list_and_cancel_a_hold(library: Library) -> None:
    """A title hold placed from the desk is listed as pending, moved to West and
    cancelled by its id; an unknown hold id is refused by name."""
    library.add_item("B1")
    library.add_patron("PATRON02")

    placed = staff(
        library, "holds", "place", "PATRON02", "--title-of", "B1", "--pickup", "NORTH"
    )
    listed = staff(library, "holds", "list", "PATRON02")
    moved = staff(library, "holds", "pickup", "1", "WEST")
    cancelled = staff(library, "holds", "cancel", "1")
    unknown = staff(library, "holds", "cancel", "99")
    both = staff(library, "holds", "place", "PATRON02", "--pickup", "NORTH")

    assert placed[0] == 0, placed[1]
    assert placed[1].startswith(
        "placed hold 1: pending #1, patron ****ON02, pickup NORTH"
    )
    assert placed[1].endswith(", The Tide Tables\n")
    assert listed[1].splitlines()[0].startswith("pending: hold 1: pending #1")
    assert listed[1].splitlines()[-1] == "0 holds ready, 1 pending"
    assert moved[1].startswith("moved hold 1: pending #1, patron ****ON02, pickup WEST")
    assert cancelled[1].startswith("cancelled hold 1: cancelled, patron ****ON02")
    assert unknown == (1, "Error: no hold 99 of a patron in this library\n")
    assert both[0] == 2
    assert hold_states(library) == [("PATRON02", HoldStatus.CANCELLED, None)]


def test_staff_block_unblock_and_unlock_a_card(library: Library) -> None:
    """A staff block stops borrowing until lifted, and a locked PIN is unlocked
    with its count of wrong PINs reset; both are logged as the member of staff."""
    library.add_patron("P1")
    library.add_item("B1")
    with library.database.transaction() as session:
        session.execute(
            sa.update(Patron)
            .where(Patron.barcode == "P1")
            .values(
                pin_failures=5,
                pin_locked_until=datetime.now(UTC) + timedelta(minutes=20),
            )
        )
    circulation = Circulation(library.database)

    blocked = staff(library, "patrons", "block", "P1", "--note", "Card  misuse")
    refusal = refusal_of(lambda: circulation.checkout("P1", "B1", branch_code="NORTH"))
    unblocked = staff(library, "patrons", "unblock", "P1")
    again = staff(library, "patrons", "unblock", "P1")
    unlocked = staff(library, "patrons", "unlock-pin", "P1")
    lent = circulation.checkout("P1", "B1", branch_code="NORTH")

    assert blocked == (0, "blocked P1: Card misuse\n")
    assert refusal is Refusal.PATRON_BLOCKED
    assert unblocked == (0, "unblocked P1: 1 block lifted\n")
    assert again == (0, "P1 had no block to lift\n")
    assert unlocked == (0, "PIN of P1 unlocked\n")
    assert lent.item.barcode == "B1"
    with library.database.read() as session:
        patron = session.scalars(sa.select(Patron).where(Patron.barcode == "P1")).one()
        assert (patron.pin_failures, patron.pin_locked_until) == (0, None)
        by = set(
            session.scalars(
                sa.select(CirculationLog.terminal).where(
                    CirculationLog.patron_id == patron.id,
                    CirculationLog.event.in_(
                        [LoanEvent.PATRON_BLOCKED, LoanEvent.PATRON_ENABLED]
                    ),
                )
            )
        )
    assert {STAFF} == by


def test_staff_mark_items_missing_found_and_lost(library: Library) -> None:
    """A shelf copy is marked missing and found again; a copy on loan marked lost
    bills its borrower the price, and cannot be marked found while on loan."""
    library.add_patron("P1")
    library.add_item("B1")
    library.add_item("B2")
    Circulation(library.database).checkout("P1", "B1", branch_code="NORTH")

    missing = staff(library, "items", "mark-missing", "B2")
    found = staff(library, "items", "mark-found", "B2")
    not_lost = staff(library, "items", "mark-found", "B2")
    lost = staff(library, "items", "mark-lost", "B1")
    on_loan = staff(library, "items", "mark-found", "B1")
    unknown = staff(library, "items", "mark-missing", "NOTHING")

    assert missing == (0, "B2 marked missing (was available)\n")
    assert found == (0, "B2 found (was missing)\n")
    assert not_lost == (1, "Error: B2 is available, not lost or missing\n")
    assert lost == (0, "B1 marked lost; borrower billed lost 12.99 GBP\n")
    assert on_loan[0] == 1
    assert "This item is on loan: check it in if it is back" in on_loan[1]
    assert unknown == (1, "Error: This item is not recognised.\n")
    with library.database.read() as session:
        statuses = dict(session.execute(sa.select(Item.barcode, Item.status)).all())
    assert {"B1": ItemStatus.LOST, "B2": ItemStatus.AVAILABLE} == statuses
