"""`ils export`: a demo library written out and imported into an empty database
comes back the same; PIN hashes only when asked for."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ils.circulation import Circulation
from ils.cli import main
from ils.db import Database
from ils.demo import build_demo
from ils.exporting import export_library, money_text
from ils.fees import FeeService
from ils.importing.fees import import_fees
from ils.importing.holds import import_holds
from ils.importing.loans import import_loans
from ils.importing.marc import import_marc
from ils.importing.patrons import import_patrons
from ils.models import (
    BibRecord,
    Branch,
    Fee,
    FeeKind,
    Hold,
    Item,
    ItemType,
    Loan,
    Patron,
    PatronCategory,
    PaymentMethod,
)
from ils.schema import upgrade_database
from tests.ils.circulation_support import library, library_templates
from tests.ils.factories import Library, SettableClock

__all__ = ["library", "library_templates"]

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
ALICE, BOB, CHARLIE = "21234000000018", "21234000000026", "21234000000034"


def build_source(url: str) -> Database:
    """The demo library with three loans (one returned), three holds and a part-paid
    fee, made through the services where they exist."""
    build_demo(url, patrons=12, items_per_record=1, today=date(2026, 11, 1))
    database = Database(url, pool_size=2)
    circulation = Circulation(database, clock=lambda: NOW)
    circulation.checkout(ALICE, "31234000000016", branch_code="MAIN")
    circulation.checkout(BOB, "31234000000024", branch_code="MAIN")
    circulation.checkout(BOB, "31234000000032", branch_code="MAIN")
    circulation.checkin("31234000000032", branch_code="EAST")

    fees = FeeService(database, clock=lambda: NOW)
    fee = fees.charge(
        ALICE,
        kind=FeeKind.DAMAGE,
        amount_minor=450,
        description="Torn cover",
        by="staff",
        item_barcode="31234000000016",
    )
    fees.pay(ALICE, 200, "USD", PaymentMethod.CASH, "desk", None, fee_id=fee.id)

    # Holds are written directly: the hold service is another part's.
    with database.transaction() as session:

        def patron(barcode: str) -> int:
            found = session.scalar(
                sa.select(Patron.id).where(Patron.barcode == barcode)
            )
            assert found is not None
            return found

        def item(barcode: str) -> Item:
            found = session.scalar(sa.select(Item).where(Item.barcode == barcode))
            assert found is not None
            return found

        main_id = session.scalar(sa.select(Branch.id).where(Branch.code == "MAIN"))
        held = item("31234000000040")
        session.add_all(
            [
                Hold(
                    patron_id=patron(CHARLIE),
                    record_id=held.record_id,
                    item_id=held.id,
                    pickup_branch_id=main_id,
                    placed_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
                    expires_on=date(2027, 1, 31),
                ),
                Hold(
                    patron_id=patron(ALICE),
                    record_id=item("31234000000024").record_id,
                    pickup_branch_id=main_id,
                    placed_at=datetime(2026, 11, 3, 9, 0, tzinfo=UTC),
                ),
                Hold(
                    patron_id=patron(BOB),
                    record_id=held.record_id,
                    pickup_branch_id=main_id,
                    placed_at=datetime(2026, 11, 4, 9, 0, tzinfo=UTC),
                ),
            ]
        )
    return database


def snapshot(database: Database) -> dict[str, set[tuple[object, ...]]]:
    """What a round trip must keep, as sets of plain values."""
    with database.read() as session:
        branch = {
            row[0]: row[1] for row in session.execute(sa.select(Branch.id, Branch.code))
        }
        patrons = session.execute(
            sa.select(
                Patron.barcode,
                Patron.surname,
                Patron.firstname,
                PatronCategory.code,
                Patron.home_branch_id,
                Patron.expires_on,
                Patron.email,
            ).join(PatronCategory)
        ).all()
        items = session.execute(
            sa.select(
                Item.barcode,
                BibRecord.title,
                BibRecord.control_number,
                ItemType.code,
                Item.home_branch_id,
                Item.current_branch_id,
                Item.call_number,
                Item.status,
                Item.price_minor,
            )
            .join(BibRecord)
            .join(ItemType)
        ).all()
        loans = session.execute(
            sa.select(
                Patron.barcode,
                Item.barcode,
                Loan.checked_out_at,
                Loan.due_at,
                Loan.renewals,
                Loan.branch_id,
            )
            .join(Patron, Patron.id == Loan.patron_id)
            .join(Item, Item.id == Loan.item_id)
            .where(Loan.returned_at.is_(None))
        ).all()
        holds = session.execute(
            sa.select(
                Patron.barcode,
                BibRecord.control_number,
                Hold.item_id.is_not(None),
                Hold.pickup_branch_id,
                Hold.placed_at,
                Hold.expires_on,
                Hold.status,
            )
            .join(Patron, Patron.id == Hold.patron_id)
            .join(BibRecord, BibRecord.id == Hold.record_id)
        ).all()
        fees = session.execute(
            sa.select(
                Patron.barcode,
                Fee.kind,
                Fee.amount_minor,
                Fee.balance_minor,
                Fee.description,
                Fee.created_at,
                Item.barcode,
            )
            .join(Patron, Patron.id == Fee.patron_id)
            .outerjoin(Item, Item.id == Fee.item_id)
        ).all()
    return {
        "patrons": {(*row[:4], branch[row[4]], *row[5:]) for row in patrons},
        "items": {
            (*row[:4], branch[row[4]], branch[row[5]], *row[6:]) for row in items
        },
        "loans": {(*row[:5], branch[row[5]]) for row in loans},
        "holds": {(*row[:3], branch[row[3]], *row[4:]) for row in holds},
        "fees": {tuple(row) for row in fees},
    }


def test_export_then_import_into_an_empty_database_gives_the_library_back(
    database_url: str, tmp_path: Path
) -> None:
    """Counts and every kept column of patrons, items, loans, holds and fees match."""
    source = build_source(database_url)
    before = snapshot(source)
    report = export_library(source, tmp_path / "out")
    source.dispose()

    target_url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    upgrade_database(target_url)
    target = Database(target_url, pool_size=2)
    out = tmp_path / "out"
    import_marc(target, out / "catalogue.mrc", institution_code="DEMO")
    import_patrons(target, out / "patrons.csv")
    loans = import_loans(target, out / "loans.csv")
    holds = import_holds(target, out / "holds.csv")
    fees = import_fees(target, out / "fees.csv")
    after = snapshot(target)
    target.dispose()

    # As made by build_source: 12 patrons, 2 open loans, 3 holds, 1 fee.
    assert report.counts["patrons.csv"] == 12
    assert report.counts["loans.csv"] == 2
    assert report.counts["holds.csv"] == 3
    assert report.counts["fees.csv"] == 1
    assert report.counts["items.csv"] == len(before["items"])
    assert (loans.imported, holds.imported, fees.imported) == (2, 3, 1)
    assert {key: len(value) for key, value in after.items()} == {
        key: len(value) for key, value in before.items()
    }
    for key in before:
        assert after[key] == before[key], key
    (fee,) = after["fees"]
    assert fee[:4] == (ALICE, FeeKind.DAMAGE, 450, 250)


def test_pin_hashes_are_written_only_when_asked_for(
    database_url: str, tmp_path: Path
) -> None:
    """Without --with-pin-hashes no hash is in patrons.csv; with it, each patron's."""
    build_demo(database_url, patrons=6, items_per_record=0, today=date(2026, 11, 1))
    runner = CliRunner()

    plain = runner.invoke(
        main, ["export", "--db", database_url, "--out", str(tmp_path / "plain")]
    )
    hashed = runner.invoke(
        main,
        [
            "export",
            "--db",
            database_url,
            "--out",
            str(tmp_path / "hashed"),
            "--with-pin-hashes",
        ],
    )

    assert plain.exit_code == 0, plain.output
    assert f"{tmp_path / 'plain' / 'patrons.csv'}: 6 rows" in plain.output
    with (tmp_path / "plain" / "patrons.csv").open(encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert "pin_hash" not in rows[0]
    assert not any("scrypt" in value for row in rows for value in row)

    assert hashed.exit_code == 0, hashed.output
    database = Database(database_url, pool_size=1)
    with database.read() as session:
        stored = {
            row[0]: row[1]
            for row in session.execute(sa.select(Patron.barcode, Patron.pin_hash))
        }
    database.dispose()
    with (tmp_path / "hashed" / "patrons.csv").open(encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert {row["cardnumber"]: row["pin_hash"] for row in table} == stored


def test_history_adds_returned_loans_that_import_as_history(
    database_url: str, tmp_path: Path
) -> None:
    """--history writes returned loans with a returndate; the import keeps them."""
    source = build_source(database_url)
    export_library(source, tmp_path / "out", history=True)
    source.dispose()

    with (tmp_path / "out" / "loans.csv").open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))

    assert sorted(row["returndate"] != "" for row in rows) == [False, False, True]
    returned = next(row for row in rows if row["returndate"])
    assert (returned["cardnumber"], returned["barcode"]) == (BOB, "31234000000032")
    assert returned["returndate"] == NOW.isoformat()


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1250, "USD", "12.50"),
        (5, "EUR", "0.05"),
        (500, "JPY", "500"),
        (0, "GBP", "0.00"),
    ],
)
def test_money_is_written_as_the_fee_import_reads_it(
    minor: int, currency: str, text: str
) -> None:
    """Minor units become decimal text with the currency's decimals."""
    assert text == money_text(minor, currency)


def test_items_csv_says_which_copies_are_on_loan_on_the_hold_shelf_or_in_transit(
    library: Library, tmp_path: Path
) -> None:
    """Of four available copies, one lent, one waiting on the North hold shelf and
    one on its way to West are told apart from the one on its open shelf."""
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    for barcode in ("B1", "B2", "B3", "B4"):
        library.add_item(barcode, title=f"Title {barcode}")
    library.add_patron("P1")
    library.add_patron("P2")
    circulation.checkout("P1", "B1", branch_code="NORTH")
    circulation.place_hold("P2", item_barcode="B2", pickup_branch_code="NORTH")
    circulation.place_hold("P2", item_barcode="B3", pickup_branch_code="WEST")
    circulation.checkin("B2", branch_code="NORTH")
    circulation.checkin("B3", branch_code="NORTH")

    export_library(library.database, tmp_path / "out")

    with (tmp_path / "out" / "items.csv").open(encoding="utf-8") as table:
        rows = {row["barcode"]: row for row in csv.DictReader(table)}
    assert {
        code: (row["status"], row["circulation"]) for code, row in rows.items()
    } == {
        "B1": ("available", "on_loan"),
        "B2": ("available", "hold_shelf"),
        "B3": ("available", "in_transit"),
        "B4": ("available", ""),
    }
