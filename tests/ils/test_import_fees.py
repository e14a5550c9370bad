"""The fee CSV import: exact amounts in the institution's currency, balances that
equal amount less allocations, bad rows, second runs; and the value parsers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from ils.importing.circfile import parse_amount, parse_moment
from ils.importing.fees import import_fees
from ils.models import Fee, FeeKind, Payment, PaymentAllocation, PaymentMethod
from tests.ils.factories import Library, build_library

HEADER = "cardnumber,debit_type_code,amount,amountoutstanding,description,date,barcode"


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "GBP", 1250),
        ("12.5", "GBP", 1250),
        ("12", "GBP", 1200),
        ("0.07", "USD", 7),
        ("5.000000", "EUR", 500),
        ("500", "JPY", 500),
        ("1.250", "KWD", 1250),
        ("0.1", "USD", 10),
        ("19.99", "USD", 1999),
    ],
)
def test_amounts_become_exact_minor_units(text: str, currency: str, minor: int) -> None:
    """Decimal text is read by the currency's exponent, digit by digit, no float."""
    assert minor == parse_amount(text, currency)


@pytest.mark.parametrize(
    "text", ["12.345", "-1", "1,50", "1e3", "£3", "", "1.2.3", "500.5 "]
)
def test_bad_amounts_are_refused(text: str) -> None:
    """A sign, a comma, an exponent, a symbol or too many decimals is refused."""
    currency = "JPY" if text == "500.5 " else "USD"
    with pytest.raises(ValueError, match=r"not an amount|more decimals"):
        parse_amount(text, currency)


def test_moments_without_a_zone_are_the_branchs_wall_clock() -> None:
    """Dates and naive times take the zone given; an offset or Z overrides it."""
    paris = ZoneInfo("Europe/Paris")

    assert datetime(2026, 12, 3, 23, 0, tzinfo=UTC) == parse_moment("2026-12-04", paris)
    assert datetime(2026, 12, 4, 22, 59, 59, tzinfo=UTC) == parse_moment(
        "2026-12-04", paris, end_of_day=True
    )
    assert datetime(2026, 12, 4, 9, 30, tzinfo=UTC) == parse_moment(
        "2026-12-04 10:30", paris
    )
    assert datetime(2026, 12, 4, 10, 30, tzinfo=UTC) == parse_moment(
        "2026-12-04T10:30:00Z", paris
    )


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library (currency GBP) with patrons P1 and P2 and item N1."""
    library = build_library(database_url, pool_size=2)
    library.add_patron("P1")
    library.add_patron("P2", home_branch="WEST")
    library.add_item("N1")
    yield library
    library.database.dispose()


def write(tmp_path: Path, text: str, name: str = "fees.csv") -> Path:
    """A CSV file in the test's folder."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_fees_import_with_balances_and_earlier_payments(
    library: Library, tmp_path: Path
) -> None:
    """A part-paid fee gets one allocation of what was paid; kinds map from Koha."""
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,OVERDUE,1.50,,Late: The Tide Tables,2026-11-20,N1\n"
        "P1,L,12.500000,2.5,Lost book,2026-11-20T10:00:00,\n"
        "P2,Res,0.75,0.75,Hold fee,2026-11-21,\n",
    )

    report = import_fees(library.database, path)

    assert (report.imported, report.skipped) == (3, 0)
    with library.database.read() as session:
        fees = session.scalars(sa.select(Fee).order_by(Fee.id)).all()
        assert [(f.kind, f.amount_minor, f.balance_minor) for f in fees] == [
            (FeeKind.OVERDUE, 150, 150),
            (FeeKind.LOST, 1250, 250),
            (FeeKind.HOLD, 75, 75),
        ]
        assert {f.currency for f in fees} == {"GBP"}
        assert fees[0].item_id is not None
        # P2's home is WEST, Los Angeles: midnight there is 08:00 UTC.
        assert fees[2].created_at == datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
        payments = session.execute(
            sa.select(
                Payment.amount_minor, Payment.method, PaymentAllocation.fee_id
            ).join(PaymentAllocation, PaymentAllocation.payment_id == Payment.id)
        ).all()
        assert payments == [(1000, PaymentMethod.OTHER, fees[1].id)]
        for fee in fees:
            allocated = sum(a.amount_minor for a in fee.allocations)
            assert fee.balance_minor == fee.amount_minor - allocated


def test_bad_fee_rows_are_reported_and_a_second_run_adds_nothing(
    library: Library, tmp_path: Path
) -> None:
    """Bad kinds, amounts, dates and repeats are refused; a re-run finds the rest."""
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "P1,manual,2.00,,Card,2026-11-20,\n"  # 2 good
        "P1,PIZZA,2.00,,Card,2026-11-20,\n"  # 3
        "P1,manual,2.001,,Card,2026-11-20,\n"  # 4
        "P1,manual,1.00,2.00,Card,2026-11-20,\n"  # 5
        "P1,manual,1.00,,Card,yesterday,\n"  # 6
        "P1,manual,2.00,,Card,2026-11-20,\n"  # 7 same as 2
        "NOBODY,manual,2.00,,Card,2026-11-20,\n"  # 8
        "P1,manual,0,,Card,2026-11-20,\n",  # 9
    )

    report = import_fees(library.database, path)
    again = import_fees(library.database, path)

    assert (report.imported, report.skipped) == (1, 7)
    assert [(p.position, p.column) for p in report.problems] == [
        (3, "debit_type_code"),
        (4, "amount"),
        (5, "amountoutstanding"),
        (6, "date"),
        (7, None),
        (8, "cardnumber"),
        (9, "amount"),
    ]
    assert report.problems[2].message == "bad amount: more outstanding than charged"
    assert (again.imported, again.already, again.skipped) == (0, 1, 7)
    with library.database.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Fee)) == 1
