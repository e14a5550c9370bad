"""The circulation service on real databases: look-ups, checkout, renewal, checkin."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.models import CirculationLog, ItemStatus, Loan, LoanEvent, PatronBlock
from ils.results import CirculationRefused, Refusal
from tests.ils.factories import PIN, Library, SettableClock, build_library

# 05:30 UTC on 15 January 2026 is still 14 January in Los Angeles (UTC-8) and
# already 15 January in London (UTC+0 in winter).
NOW = datetime(2026, 1, 15, 5, 30, tzinfo=UTC)


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library on each engine in turn."""
    built = build_library(database_url)
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


def refusal_of(call: object) -> Refusal:
    """Run a zero-argument call that must be refused, and give its reason."""
    assert callable(call)
    with pytest.raises(CirculationRefused) as raised:
        call()
    return raised.value.reason


def log_rows(library: Library) -> list[tuple[LoanEvent, str | None]]:
    """Every circulation log row as (event, detail), oldest first."""
    with library.database.read() as session:
        rows = session.execute(
            sa.select(CirculationLog.event, CirculationLog.detail).order_by(
                CirculationLog.id
            )
        ).all()
    return [(event, detail) for event, detail in rows]


# Look-ups.


def test_patron_view_shows_the_account(
    library: Library, circulation: Circulation
) -> None:
    """A patron's view carries names, category, PIN check, loans and limits."""
    library.add_patron("P1", pin=PIN, block_note="Unpaid damage")
    library.add_item("I1")
    library.add_patron("P2")
    circulation.checkout("P2", "I1", branch_code="NORTH")

    view = circulation.patron("P1", pin=PIN)

    assert view is not None
    assert view.full_name == "Ada Okafor"
    assert view.category_code == "ADULT"
    assert view.home_branch_code == "NORTH"
    assert view.has_pin is True
    assert view.pin_valid is True
    assert view.blocked is True
    assert view.block_notes == ("Unpaid damage",)
    assert view.may_borrow is False
    assert view.max_loans == 3
    assert view.currency == "GBP"
    assert view.fines_minor == 0
    assert view.loans == ()
    wrong = circulation.patron("P1", pin="0000")
    assert wrong is not None
    assert wrong.pin_valid is False
    unchecked = circulation.patron("P1")
    assert unchecked is not None
    assert unchecked.pin_valid is None


def test_unknown_patron_and_item_look_up_as_none(circulation: Circulation) -> None:
    """Looking up barcodes nobody has gives None rather than an error."""
    assert circulation.patron("NOBODY") is None
    assert circulation.item("NOTHING") is None


def test_item_view_shows_the_loan(library: Library, circulation: Circulation) -> None:
    """An item on loan shows its borrower, due time and media type."""
    library.add_item("D1", item_type="DVD", title="Reef Life")
    library.add_patron("P1")
    circulation.checkout("P1", "D1", branch_code="NORTH")

    view = circulation.item("D1")

    assert view is not None
    assert view.title == "Reef Life"
    assert view.media_type == "006"
    assert view.item_type_code == "DVD"
    assert view.on_loan is True
    assert view.borrower_barcode == "P1"
    # ADULT x DVD: 3 days from 15 Jan in London, end of 18 Jan (GMT = UTC).
    assert view.due_at == datetime(2026, 1, 18, 23, 59, 59, tzinfo=UTC)
    assert view.status is ItemStatus.AVAILABLE
    assert view.price_minor == 1299
    assert view.currency == "GBP"


# Checkout and its due date.


def test_due_date_is_end_of_day_in_the_branch_time_zone(
    library: Library, circulation: Circulation
) -> None:
    """The due time is the end of the local day, which differs between branches."""
    library.add_patron("P1")
    library.add_item("B1")
    library.add_item("B2")

    west = circulation.checkout("P1", "B1", branch_code="WEST")
    north = circulation.checkout("P1", "B2", branch_code="NORTH")

    # WEST: local 14 Jan 21:30 PST + 14 days = 28 Jan; 23:59:59 PST is 07:59:59
    # UTC on 29 Jan.
    assert west.due_at == datetime(2026, 1, 29, 7, 59, 59, tzinfo=UTC)
    # NORTH: local 15 Jan 05:30 GMT + 14 days = 29 Jan; 23:59:59 GMT = UTC.
    assert north.due_at == datetime(2026, 1, 29, 23, 59, 59, tzinfo=UTC)
    assert west.due_at.tzinfo is not None
    assert west.renewal is False


def test_most_specific_loan_rule_wins(
    library: Library, circulation: Circulation
) -> None:
    """(category, type) beats (category, *) beats (*, type) beats (*, *)."""
    library.add_patron("ADULT1")
    library.add_patron("CHILD1", category="CHILD")
    for barcode, item_type in (("AD", "DVD"), ("AB", "BOOK"), ("CD", "DVD")):
        library.add_item(barcode, item_type=item_type)
    library.add_item("CB")

    def days(patron: str, item: str) -> int:
        due = circulation.checkout(patron, item, branch_code="NORTH").due_at
        return (due.date() - NOW.date()).days

    assert days("ADULT1", "AD") == 3
    assert days("ADULT1", "AB") == 14
    assert days("CHILD1", "CD") == 7
    assert days("CHILD1", "CB") == 28


def test_checkout_result_includes_the_new_loan(
    library: Library, circulation: Circulation
) -> None:
    """The patron in a checkout result already shows the loan just made."""
    library.add_patron("P1")
    library.add_item("B1", title="Salt Roads")

    result = circulation.checkout("P1", "B1", branch_code="NORTH", terminal="kiosk-1")

    assert [loan.item_barcode for loan in result.patron.loans] == ["B1"]
    assert result.patron.loans[0].title == "Salt Roads"
    assert result.patron.loans[0].checked_out_at == NOW
    assert result.item.on_loan is True
    assert result.item.borrower_barcode == "P1"


def test_overdue_loans_are_counted(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A loan past its due time shows as overdue on the patron's account."""
    library.add_patron("P1")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")

    clock.now = NOW + timedelta(days=30)
    view = circulation.patron("P1")

    assert view is not None
    assert view.overdue_count == 1
    assert view.loans[0].overdue is True


# Renewal.


def test_checkout_of_own_loan_renews_it_from_now(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Checking out an item the patron already has renews it, due from today."""
    library.add_patron("P1")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")

    clock.now = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
    result = circulation.checkout("P1", "B1", branch_code="NORTH")

    assert result.renewal is True
    # 20 Jan + 14 days = 3 Feb, end of day in London (GMT).
    assert result.due_at == datetime(2026, 2, 3, 23, 59, 59, tzinfo=UTC)
    assert result.patron.loans[0].renewals == 1
    with library.database.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Loan)) == 1


def test_renewal_limit_is_refused(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A second renewal under a rule that allows one is refused by name."""
    library.add_patron("P1")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now += timedelta(days=2)
    circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now += timedelta(days=2)

    reason = refusal_of(lambda: circulation.checkout("P1", "B1", branch_code="NORTH"))

    assert reason is Refusal.RENEWAL_LIMIT_REACHED


def test_repeated_checkout_without_renewal_changes_nothing(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """With renewal not allowed, a repeated checkout returns the loan unrenewed."""
    library.add_patron("P1")
    library.add_item("B1")
    first = circulation.checkout(
        "P1", "B1", branch_code="NORTH", renew_if_on_loan=False
    )
    clock.now = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)

    # A kiosk retrying after lost answers, more often than renewals are allowed.
    repeats = [
        circulation.checkout("P1", "B1", branch_code="NORTH", renew_if_on_loan=False)
        for _ in range(20)
    ]

    assert first.renewal is False
    assert {(False, first.due_at)} == {(r.renewal, r.due_at) for r in repeats}
    assert repeats[-1].patron.loans[0].renewals == 0
    assert repeats[-1].item.borrower_barcode == "P1"
    # Nothing was logged for the repeats.
    assert [(LoanEvent.CHECKOUT, f"due {first.due_at.isoformat()}")] == log_rows(
        library
    )


def test_checkout_with_renewal_allowed_still_renews(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """With renewal allowed, the same repeat renews the loan from now."""
    library.add_patron("P1")
    library.add_item("B1")
    first = circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)

    again = circulation.checkout("P1", "B1", branch_code="NORTH", renew_if_on_loan=True)

    assert again.renewal is True
    assert again.due_at > first.due_at
    assert again.patron.loans[0].renewals == 1


def test_checkout_without_renewal_of_anothers_loan_is_still_refused(
    library: Library, circulation: Circulation
) -> None:
    """Renewal not allowed does not make someone else's loan look like a repeat."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")

    reason = refusal_of(
        lambda: circulation.checkout(
            "P2", "B1", branch_code="NORTH", renew_if_on_loan=False
        )
    )

    assert reason is Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON


# Refusals, one by one.


def test_unknown_patron_is_refused(library: Library, circulation: Circulation) -> None:
    """A card nobody has is refused as UNKNOWN_PATRON."""
    library.add_item("B1")
    call = lambda: circulation.checkout("NOBODY", "B1", branch_code="NORTH")  # noqa: E731
    assert refusal_of(call) is Refusal.UNKNOWN_PATRON


def test_unknown_branch_is_refused(library: Library, circulation: Circulation) -> None:
    """A branch code that is not a branch is refused as UNKNOWN_BRANCH."""
    library.add_patron("P1")
    library.add_item("B1")
    call = lambda: circulation.checkout("P1", "B1", branch_code="MOON")  # noqa: E731
    assert refusal_of(call) is Refusal.UNKNOWN_BRANCH


def test_wrong_pin_is_refused(library: Library, circulation: Circulation) -> None:
    """A PIN that does not match is refused as WRONG_PIN, with the patron known."""
    library.add_patron("P1", pin=PIN)
    library.add_item("B1")

    with pytest.raises(CirculationRefused) as raised:
        circulation.checkout("P1", "B1", branch_code="NORTH", pin="0000")

    assert raised.value.reason is Refusal.WRONG_PIN
    assert raised.value.patron is not None
    assert raised.value.patron.pin_valid is False
    assert raised.value.message == "The PIN does not match this library card."


def test_right_pin_is_accepted(library: Library, circulation: Circulation) -> None:
    """The patron's own PIN lets the checkout through and is reported valid."""
    library.add_patron("P1", pin=PIN)
    library.add_item("B1")

    result = circulation.checkout(
        "P1", "B1", branch_code="NORTH", pin=PIN, pin_required=True
    )

    assert result.patron.pin_valid is True


def test_missing_pin_is_refused_when_required(
    library: Library, circulation: Circulation
) -> None:
    """No PIN given for a patron with a PIN is PIN_REQUIRED when the terminal asks."""
    library.add_patron("P1", pin=PIN)
    library.add_patron("P2")
    library.add_item("B1")

    def call() -> None:
        circulation.checkout("P1", "B1", branch_code="NORTH", pin_required=True)

    assert refusal_of(call) is Refusal.PIN_REQUIRED
    # A patron with no PIN set passes, as does anyone when no PIN is required.
    circulation.checkout("P2", "B1", branch_code="NORTH", pin_required=True)


def test_lost_card_is_refused(library: Library, circulation: Circulation) -> None:
    """A card reported lost is refused as CARD_LOST."""
    library.add_patron("P1", card_lost=True)
    library.add_item("B1")
    call = lambda: circulation.checkout("P1", "B1", branch_code="NORTH")  # noqa: E731
    assert refusal_of(call) is Refusal.CARD_LOST


def test_expiry_is_judged_by_the_branch_local_date(
    library: Library, circulation: Circulation
) -> None:
    """A card expiring on 14 January works in Los Angeles but not in London at NOW."""
    library.add_patron("P1", expires_on=date(2026, 1, 14))
    library.add_item("B1")
    library.add_item("B2")

    circulation.checkout("P1", "B1", branch_code="WEST")
    call = lambda: circulation.checkout("P1", "B2", branch_code="NORTH")  # noqa: E731

    assert refusal_of(call) is Refusal.CARD_EXPIRED


def test_blocked_patron_is_refused_until_the_block_is_lifted(
    library: Library, circulation: Circulation
) -> None:
    """An unlifted block is PATRON_BLOCKED; once lifted, the patron may borrow."""
    library.add_patron("P1", block_note="Lost two items")
    library.add_item("B1")
    call = lambda: circulation.checkout("P1", "B1", branch_code="NORTH")  # noqa: E731

    assert refusal_of(call) is Refusal.PATRON_BLOCKED
    with library.database.transaction() as session:
        session.execute(sa.update(PatronBlock).values(lifted_at=NOW))
    assert circulation.checkout("P1", "B1", branch_code="NORTH").renewal is False


def test_unknown_item_is_refused(library: Library, circulation: Circulation) -> None:
    """An item barcode nobody has is refused as UNKNOWN_ITEM."""
    library.add_patron("P1")
    call = lambda: circulation.checkout("P1", "NOTHING", branch_code="NORTH")  # noqa: E731
    assert refusal_of(call) is Refusal.UNKNOWN_ITEM


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (ItemStatus.NOT_FOR_LOAN, Refusal.ITEM_NOT_FOR_LOAN),
        (ItemStatus.LOST, Refusal.ITEM_LOST),
        (ItemStatus.MISSING, Refusal.ITEM_MISSING),
        (ItemStatus.WITHDRAWN, Refusal.ITEM_WITHDRAWN),
        (ItemStatus.DAMAGED, Refusal.ITEM_NOT_FOR_LOAN),
        (ItemStatus.IN_PROCESSING, Refusal.ITEM_NOT_FOR_LOAN),
    ],
)
def test_item_status_refuses_checkout(
    library: Library, circulation: Circulation, status: ItemStatus, reason: Refusal
) -> None:
    """Each status other than AVAILABLE refuses a checkout with its own reason."""
    library.add_patron("P1")
    library.add_item("B1", status=status)

    with pytest.raises(CirculationRefused) as raised:
        circulation.checkout("P1", "B1", branch_code="NORTH")

    assert raised.value.reason is reason
    assert raised.value.item is not None
    assert raised.value.item.status is status


def test_item_on_loan_to_another_patron_is_refused(
    library: Library, circulation: Circulation
) -> None:
    """Checking out another patron's loan is ITEM_ON_LOAN_TO_OTHER_PATRON."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")

    call = lambda: circulation.checkout("P2", "B1", branch_code="NORTH")  # noqa: E731

    assert refusal_of(call) is Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON


def test_missing_loan_rule_is_refused(
    library: Library, circulation: Circulation
) -> None:
    """With no rule for the child's category or the book's type: NO_LOAN_RULE."""
    library.delete_rule(None, None)
    library.add_patron("C1", category="CHILD")
    library.add_item("B1")
    call = lambda: circulation.checkout("C1", "B1", branch_code="NORTH")  # noqa: E731
    assert refusal_of(call) is Refusal.NO_LOAN_RULE


def test_max_loans_is_refused(library: Library, circulation: Circulation) -> None:
    """An adult (limit 3) is refused a fourth loan as MAX_LOANS_REACHED."""
    library.add_patron("P1")
    for number in range(4):
        library.add_item(f"B{number}")
    for number in range(3):
        circulation.checkout("P1", f"B{number}", branch_code="NORTH")

    call = lambda: circulation.checkout("P1", "B3", branch_code="NORTH")  # noqa: E731

    assert refusal_of(call) is Refusal.MAX_LOANS_REACHED


def test_type_rule_limits_only_its_own_type(
    library: Library, circulation: Circulation
) -> None:
    """A child's DVD limit (1) counts DVDs only, and books still go out."""
    library.add_patron("C1", category="CHILD")
    library.add_item("D1", item_type="DVD")
    library.add_item("D2", item_type="DVD")
    library.add_item("B1")

    circulation.checkout("C1", "D1", branch_code="NORTH")
    call = lambda: circulation.checkout("C1", "D2", branch_code="NORTH")  # noqa: E731

    assert refusal_of(call) is Refusal.MAX_LOANS_REACHED
    assert circulation.checkout("C1", "B1", branch_code="NORTH").renewal is False


def test_refusals_come_in_the_documented_order(
    library: Library, circulation: Circulation
) -> None:
    """A lost, expired, blocked card with a wrong PIN is refused for the PIN first."""
    library.add_patron(
        "P1",
        pin=PIN,
        card_lost=True,
        expires_on=date(2020, 1, 1),
        block_note="Many things wrong",
    )
    library.add_item("B1", status=ItemStatus.LOST)

    def checkout(pin: str | None) -> Refusal:
        return refusal_of(
            lambda: circulation.checkout("P1", "B1", branch_code="NORTH", pin=pin)
        )

    assert checkout("0000") is Refusal.WRONG_PIN
    assert checkout(PIN) is Refusal.CARD_LOST


# Checkin.


def test_checkin_closes_the_loan_and_moves_the_item(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A return ends the loan, names the borrower, and puts the item at the branch."""
    library.add_patron("P1")
    library.add_item("B1", branch="NORTH")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    clock.now = NOW + timedelta(days=2)

    result = circulation.checkin("B1", branch_code="WEST", terminal="sorter")

    assert result.was_on_loan is True
    assert result.patron_barcode == "P1"
    assert result.returned_at == NOW + timedelta(days=2)
    assert result.return_branch_code == "WEST"
    assert result.item.current_branch_code == "WEST"
    assert result.item.home_branch_code == "NORTH"
    assert result.item.on_loan is False
    patron = circulation.patron("P1")
    assert patron is not None
    assert patron.loans == ()


def test_checkin_that_keeps_meeting_deadlocks_is_refused_as_try_again(
    library: Library, circulation: Circulation
) -> None:
    """A checkin that deadlocks on every attempt is a TRY_AGAIN refusal, not a fault."""
    if library.database.is_sqlite:
        pytest.skip("SQLite serialises writers and reports no deadlocks to retry")
    library.add_patron("P1")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    # A real PostgreSQL error with the deadlock SQLSTATE on every checkin's log row.
    with library.database.transaction() as session:
        session.execute(
            sa.text(
                "CREATE FUNCTION deadlock_checkins() RETURNS trigger"
                " LANGUAGE plpgsql AS $$ BEGIN"
                " IF NEW.event = 'checkin' THEN"
                " RAISE EXCEPTION 'deadlock for the test' USING ERRCODE = '40P01';"
                " END IF; RETURN NEW; END $$"
            )
        )
        session.execute(
            sa.text(
                "CREATE TRIGGER deadlock_checkins BEFORE INSERT ON circulation_log"
                " FOR EACH ROW EXECUTE FUNCTION deadlock_checkins()"
            )
        )

    with pytest.raises(CirculationRefused) as raised:
        circulation.checkin("B1", branch_code="NORTH", terminal="sorter")

    assert raised.value.reason is Refusal.TRY_AGAIN
    assert raised.value.message == "The library system is busy; please try again."
    assert log_rows(library)[-1] == (LoanEvent.REFUSAL, "try_again")
    item = circulation.item("B1")
    assert item is not None
    assert item.borrower_barcode == "P1"


def test_checkin_of_an_item_not_on_loan_is_clean(
    library: Library, circulation: Circulation
) -> None:
    """Returning an item nobody has borrowed succeeds with was_on_loan False."""
    library.add_item("B1")

    result = circulation.checkin("B1", branch_code="NORTH")

    assert result.was_on_loan is False
    assert result.patron_barcode is None
    assert result.item.on_loan is False


def test_offline_return_keeps_its_time(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """A return recorded offline keeps the time it happened, not the time it arrived."""
    library.add_patron("P1")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    returned = NOW + timedelta(hours=3)
    clock.now = NOW + timedelta(days=5)

    result = circulation.checkin("B1", branch_code="NORTH", returned_at=returned)

    assert result.returned_at == returned
    with library.database.read() as session:
        stored = session.scalar(sa.select(Loan.returned_at))
    assert stored == returned


def test_checkin_refuses_unknown_item_and_branch(
    library: Library, circulation: Circulation
) -> None:
    """Returning an unknown item, or at an unknown branch, is refused by name."""
    library.add_item("B1")
    unknown_item = lambda: circulation.checkin("NOTHING", branch_code="NORTH")  # noqa: E731
    unknown_branch = lambda: circulation.checkin("B1", branch_code="MOON")  # noqa: E731
    assert refusal_of(unknown_item) is Refusal.UNKNOWN_ITEM
    assert refusal_of(unknown_branch) is Refusal.UNKNOWN_BRANCH


def test_item_can_go_out_again_after_return(
    library: Library, circulation: Circulation
) -> None:
    """After a return another patron may borrow it: the open-loan index allows it."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    circulation.checkin("B1", branch_code="NORTH")

    result = circulation.checkout("P2", "B1", branch_code="NORTH")

    assert result.item.borrower_barcode == "P2"


# The log.


def test_every_event_and_refusal_is_logged(
    library: Library, circulation: Circulation, clock: SettableClock
) -> None:
    """Checkout, renewal, refusal and checkin each leave a log row, refusals too."""
    library.add_patron("P1")
    library.add_patron("P2")
    library.add_item("B1")
    circulation.checkout("P1", "B1", branch_code="NORTH", terminal="kiosk-1")
    clock.now += timedelta(days=2)
    circulation.checkout("P1", "B1", branch_code="NORTH", terminal="kiosk-1")
    with pytest.raises(CirculationRefused):
        circulation.checkout("P2", "B1", branch_code="NORTH", terminal="kiosk-2")
    circulation.checkin("B1", branch_code="NORTH", terminal="sorter")

    events = [event for event, _detail in log_rows(library)]

    assert events == [
        LoanEvent.CHECKOUT,
        LoanEvent.RENEWAL,
        LoanEvent.REFUSAL,
        LoanEvent.CHECKIN,
    ]
    assert log_rows(library)[2][1] == "item_on_loan_to_other_patron"
    with library.database.read() as session:
        refusal = session.scalars(
            sa.select(CirculationLog).where(CirculationLog.event == LoanEvent.REFUSAL)
        ).one()
        assert refusal.terminal == "kiosk-2"
        assert refusal.patron_id is not None
        assert refusal.item_id is not None


def test_naive_times_are_rejected(library: Library, circulation: Circulation) -> None:
    """A checkout time without a zone is a programming error, not a guess."""
    library.add_patron("P1")
    library.add_item("B1")
    with pytest.raises(ValueError, match="timezone-aware"):
        circulation.checkout(
            "P1", "B1", branch_code="NORTH", at=datetime(2026, 1, 1, 12, 0)
        )
