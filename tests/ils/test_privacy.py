"""Privacy: loan history anonymised by the retention setting, a patron's data
exported, and erased only when nothing is open, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ils.cli import main
from ils.fees import FeeService
from ils.models import (
    CirculationLog,
    Fee,
    FeeKind,
    Hold,
    HoldStatus,
    Loan,
    LoanEvent,
    Patron,
    PatronCategory,
    PaymentMethod,
)
from ils.pins import check_pin
from ils.privacy import anonymise, erase_patron, export_patron
from ils.results import CirculationRefused, Refusal
from tests.ils.factories import PIN, Library, SettableClock
from tests.ils.fees_support import (
    add_hold,
    add_loan,
    assert_books_balance,
    library_copy,
    set_institution,
)

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine in turn, with P1 (a PIN, a block) and P2."""
    for built in library_copy(request.param, tmp_path):
        built.add_patron("P1", pin=PIN, block_note="Owes a book")
        built.add_patron("P2", surname="Lindqvist", category="CHILD")
        yield built


def _links(library: Library) -> dict[str, list[int | None]]:
    """The patron id of every loan, log row and hold, in id order."""
    with library.database.read() as session:
        return {
            name: list(
                session.scalars(sa.select(model.patron_id).order_by(model.id)).all()
            )
            for name, model in (
                ("loans", Loan),
                ("log", CirculationLog),
                ("holds", Hold),
            )
        }


def test_history_older_than_the_retention_loses_the_patron(library: Library) -> None:
    """With 30 days kept: a loan returned 31 days ago, a log row and a finished
    hold that old lose the patron; a loan returned 29 days ago, a loan still out
    since 60 days ago, newer log rows and an open hold keep them. The old loan
    keeps its category, dates, item and branch."""
    set_institution(library, loan_history_days=30)
    for barcode in ("OLD", "RECENT", "OUT", "HELD", "DONE"):
        library.add_item(barcode)
    add_loan(
        library,
        "P2",
        "OLD",
        out=NOW - 45 * DAY,
        due=NOW - 31 * DAY,
        returned=NOW - 31 * DAY,
    )
    add_loan(
        library,
        "P1",
        "RECENT",
        out=NOW - 40 * DAY,
        due=NOW - 29 * DAY,
        returned=NOW - 29 * DAY,
    )
    add_loan(library, "P1", "OUT", out=NOW - 60 * DAY, due=NOW - 30 * DAY)
    add_hold(library, "P1", "HELD", placed=NOW - 60 * DAY)
    add_hold(
        library,
        "P1",
        "DONE",
        placed=NOW - 60 * DAY,
        status=HoldStatus.FULFILLED,
        finished=NOW - 31 * DAY,
    )
    check_pin(library.database, "P1", "0000", NOW - 31 * DAY)
    check_pin(library.database, "P1", "0000", NOW - 29 * DAY)
    with library.database.transaction() as session:
        session.execute(sa.update(Loan).values(patron_category_id=None))
    p1 = _id(library, "P1")
    p2 = _id(library, "P2")

    (count,) = anonymise(library.database, NOW)

    assert (1, 1, 1) == (count.loans, count.log_rows, count.holds)
    assert {
        "loans": [None, p1, p1],
        "log": [None, p1],
        "holds": [p1, None],
    } == _links(library)
    with library.database.read() as session:
        old = session.scalars(sa.select(Loan).order_by(Loan.id)).first()
        assert old is not None
        child = session.scalar(
            sa.select(PatronCategory.id).where(PatronCategory.code == "CHILD")
        )
        assert (child, NOW - 45 * DAY, NOW - 31 * DAY) == (
            old.patron_category_id,
            old.checked_out_at,
            old.returned_at,
        )
    assert p2 is not None


def _id(library: Library, barcode: str) -> int | None:
    with library.database.read() as session:
        return session.scalar(sa.select(Patron.id).where(Patron.barcode == barcode))


def test_a_dry_run_counts_and_changes_nothing(library: Library) -> None:
    """The dry run says one loan would be unlinked and leaves it linked."""
    set_institution(library, loan_history_days=30)
    library.add_item("OLD")
    add_loan(
        library,
        "P1",
        "OLD",
        out=NOW - 45 * DAY,
        due=NOW - 31 * DAY,
        returned=NOW - 31 * DAY,
    )

    (count,) = anonymise(library.database, NOW, dry_run=True)

    assert 1 == count.loans
    assert [_id(library, "P1")] == _links(library)["loans"]


def test_a_library_that_keeps_history_anonymises_nothing(library: Library) -> None:
    """With no retention setting, old history stays linked and nothing is counted."""
    set_institution(library, loan_history_days=None)
    library.add_item("OLD")
    add_loan(
        library,
        "P1",
        "OLD",
        out=NOW - 400 * DAY,
        due=NOW - 380 * DAY,
        returned=NOW - 380 * DAY,
    )
    assert [] == anonymise(library.database, NOW)
    assert [_id(library, "P1")] == _links(library)["loans"]


def test_the_export_holds_everything_but_the_pin(library: Library) -> None:
    """The export has the record, block, loans, holds, fees, payments and log
    rows, and no trace of the PIN or its hash."""
    library.add_item("I1", title="Salt and Stone")
    library.add_item("I2")
    add_loan(library, "P1", "I1", out=NOW - 3 * DAY, due=NOW + 11 * DAY)
    add_hold(library, "P1", "I2", placed=NOW - DAY)
    fees = FeeService(library.database, clock=SettableClock(NOW))
    fee = fees.charge(
        "P1",
        kind=FeeKind.DAMAGE,
        amount_minor=250,
        description="Torn page",
        by="staff",
        item_barcode="I1",
    )
    fees.pay("P1", 100, "GBP", PaymentMethod.CASH, "desk", "T-9")
    check_pin(library.database, "P1", "9999", NOW)

    data = export_patron(library.database, "P1")

    assert ("P1", "Okafor", True) == (
        data["patron"]["barcode"],
        data["patron"]["surname"],
        data["patron"]["has_pin"],
    )
    assert ["Owes a book"] == [block["note"] for block in data["blocks"]]
    assert [("I1", "Salt and Stone", None)] == [
        (loan["item"], loan["title"], loan["returned_at"]) for loan in data["loans"]
    ]
    assert [("pending", "NORTH")] == [
        (hold["status"], hold["pickup_branch"]) for hold in data["holds"]
    ]
    assert [(fee.id, 250, 150, "I1")] == [
        (f["id"], f["amount_minor"], f["balance_minor"], f["item"])
        for f in data["fees"]
    ]
    assert [(100, "cash", "T-9", [{"fee_id": fee.id, "amount_minor": 100}])] == [
        (p["amount_minor"], p["method"], p["transaction_id"], p["allocations"])
        for p in data["payments"]
    ]
    assert ["fee_charged", "payment", "refusal"] == [
        row["event"] for row in data["circulation_log"]
    ]
    text = json.dumps(data)
    assert "scrypt" not in text
    assert "9999" not in text
    assert PIN not in text


def _refusal(call: object) -> Refusal:
    assert callable(call)
    with pytest.raises(CirculationRefused) as raised:
        call()
    return raised.value.reason


def test_erase_is_refused_while_a_loan_is_open(library: Library) -> None:
    """A patron with a book still out cannot be erased; nothing changes."""
    library.add_item("I1")
    add_loan(library, "P1", "I1", out=NOW - DAY, due=NOW + 13 * DAY)

    reason = _refusal(lambda: erase_patron(library.database, "P1", NOW, by="staff"))

    assert Refusal.LOANS_OPEN is reason
    assert _id(library, "P1") is not None


def test_erase_is_refused_while_money_is_open(library: Library) -> None:
    """An unpaid fee, or credit the library holds, refuses the erase; once the
    credit is paid back, the erase goes through."""
    fees = FeeService(library.database, clock=SettableClock(NOW))
    set_institution(library, overpayment_as_credit=True)
    fees.charge("P1", kind=FeeKind.MANUAL, amount_minor=100, description="", by="s")
    assert Refusal.FEES_OPEN is _refusal(
        lambda: erase_patron(library.database, "P1", NOW, by="staff")
    )
    fees.pay("P1", 150, "GBP", PaymentMethod.CASH, "desk", None)
    assert Refusal.FEES_OPEN is _refusal(
        lambda: erase_patron(library.database, "P1", NOW, by="staff")
    )
    fees.refund_credit("P1", method=PaymentMethod.CASH, terminal="desk")
    erase_patron(library.database, "P1", NOW, by="staff")
    assert _id(library, "P1") is None


def test_erase_unlinks_history_and_deletes_the_patron(library: Library) -> None:
    """With everything returned and paid, the erase cancels the open hold,
    unlinks loans, fees, payments and log rows, deletes the block and the
    patron, and logs the erase without the barcode."""
    library.add_item("I1")
    library.add_item("I2")
    add_loan(
        library, "P1", "I1", out=NOW - 9 * DAY, due=NOW - 2 * DAY, returned=NOW - DAY
    )
    add_hold(library, "P1", "I2", placed=NOW - DAY)
    fees = FeeService(library.database, clock=SettableClock(NOW))
    fees.charge("P1", kind=FeeKind.OVERDUE, amount_minor=40, description="", by="s")
    fees.pay("P1", 40, "GBP", PaymentMethod.CASH, "desk", None)

    erased = erase_patron(library.database, "P1", NOW, by="librarian")

    assert (1, 1, 1, 1, 1, 2, 1) == (
        erased.loans,
        erased.holds,
        erased.holds_cancelled,
        erased.fees,
        erased.payments,
        erased.log_rows,
        erased.blocks,
    )
    assert _id(library, "P1") is None
    with library.database.read() as session:
        assert [HoldStatus.CANCELLED] == session.scalars(sa.select(Hold.status)).all()
        assert [None] == session.scalars(sa.select(Fee.patron_id)).all()
        erased_row = session.scalars(
            sa.select(CirculationLog).where(
                CirculationLog.event == LoanEvent.PATRON_ERASED
            )
        ).one()
        assert ("librarian", None) == (erased_row.terminal, erased_row.patron_id)
        assert "P1" not in (erased_row.detail or "")
    assert "P1" == erased.export["patron"]["barcode"]
    assert_books_balance(library)


def test_erase_keeps_nothing_half_done_when_the_export_cannot_be_kept(
    library: Library,
) -> None:
    """If the export cannot be written, the patron is not erased."""

    def fail(_data: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        erase_patron(library.database, "P1", NOW, by="staff", keep_export=fail)
    assert _id(library, "P1") is not None


def test_the_privacy_commands(library: Library, tmp_path: Path) -> None:
    """`ils privacy` anonymises (dry run first), exports JSON and erases with
    the export written first; an erase that is refused says why."""
    url = library.database.url
    # The commands run at the real time, so these dates are counted from it.
    now = datetime.now(UTC)
    runner = CliRunner()
    set_institution(library, loan_history_days=30)
    library.add_item("OLD")
    add_loan(
        library,
        "P2",
        "OLD",
        out=now - 99 * DAY,
        due=now - 90 * DAY,
        returned=now - 90 * DAY,
    )

    dry = runner.invoke(main, ["privacy", "anonymise", "--db", url, "--dry-run"])
    assert 0 == dry.exit_code, dry.output
    assert "would unlink 1 loan," in dry.output
    done = runner.invoke(main, ["privacy", "anonymise", "--db", url])
    assert "unlinked 1 loan," in done.output

    export = runner.invoke(main, ["privacy", "export", "P1", "--db", url])
    assert 0 == export.exit_code, export.output
    assert "Okafor" == json.loads(export.output)["patron"]["surname"]

    library.add_item("OUT")
    add_loan(library, "P2", "OUT", out=now - DAY, due=now + DAY)
    refused = runner.invoke(main, ["privacy", "erase", "P2", "--db", url, "--yes"])
    assert 1 == refused.exit_code
    assert "not erased: This card still has items on loan." in refused.output

    saved = tmp_path / "p1.json"
    erased = runner.invoke(
        main, ["privacy", "erase", "P1", "--db", url, "--yes", "--export", str(saved)]
    )
    assert 0 == erased.exit_code, erased.output
    assert "Erased patron P1" in erased.output
    assert "P1" == json.loads(saved.read_text())["patron"]["barcode"]
    assert _id(library, "P1") is None

    unknown = runner.invoke(main, ["privacy", "export", "NOPE", "--db", url])
    assert 1 == unknown.exit_code
    assert "not recognised" in unknown.output


def test_erase_says_why_not_before_asking_for_confirmation(library: Library) -> None:
    """A patron with an item on loan is refused at once, without the "are you
    sure?" question, so nobody confirms an erasure that cannot happen."""
    url = library.database.url
    now = datetime.now(UTC)
    library.add_item("OUT")
    add_loan(library, "P2", "OUT", out=now - DAY, due=now + DAY)

    refused = CliRunner().invoke(main, ["privacy", "erase", "P2", "--db", url])

    assert 1 == refused.exit_code
    assert "Erase patron" not in refused.output
    assert "not erased: This card still has items on loan." in refused.output
    assert _id(library, "P2") is not None
