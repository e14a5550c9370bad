"""Fees as each language writes money: decimal separator, thousands grouping,
the currency's place; and the email-receipt line of the staff screen."""

from __future__ import annotations

import pytest

from kiosk.i18n import Catalogues
from kiosk.present import Presenter, money
from kiosk.wording import Wording

NNBSP = "\u202f"  # narrow no-break space, French thousands separator (CLDR)


@pytest.mark.parametrize(
    ("language", "amount", "currency", "written"),
    [
        ("en", "1234.50", "USD", "$1,234.50"),
        ("en", "999.99", "GBP", "£999.99"),
        ("en", "1000.00", "EUR", "€1,000.00"),
        ("en", "1234567.05", "USD", "$1,234,567.05"),
        ("en", "-1234.50", "USD", "-$1,234.50"),
        ("en", "1234.50", "CHF", "1,234.50 CHF"),
        ("en", "12345", "", "12,345"),
        ("fr", "1234.50", "EUR", f"1{NNBSP}234,50 €"),
        ("fr", "1234567.05", "EUR", f"1{NNBSP}234{NNBSP}567,05 €"),
        ("fr", "100.00", "EUR", "100,00 €"),
        ("fr", "-2500.00", "CAD", f"-2{NNBSP}500,00 $"),
        ("de", "1234.50", "EUR", "1.234,50 €"),
        ("de", "1234567.05", "EUR", "1.234.567,05 €"),
        ("de", "0012.50", "EUR", "12,50 €"),
        ("de", "0.00", "EUR", "0,00 €"),
        ("de", "12,50", "EUR", "12,50 €"),
    ],
)
def test_amounts_are_grouped_by_thousands_per_language(
    language: str, amount: str, currency: str, written: str
) -> None:
    """en 1,234.50, fr 1 234,50 (narrow no-break space), de 1.234,50; a sign
    goes before the currency, and an amount that is not a number stays as sent."""
    assert written == money(language, amount, currency)


def test_a_large_fee_line_in_each_language() -> None:
    """The account's fee line with an amount over a thousand."""
    presenter = Presenter(Catalogues(["en", "fr", "de"]), Wording.load())

    assert "Fees owed: $1,234.50" == presenter.fees("en", "1234.50", "USD")
    assert f"Frais dus : 1{NNBSP}234,50 €" == presenter.fees("fr", "1234.50", "EUR")
    assert "Offene Gebühren: 1.234,50 €" == presenter.fees("de", "1234.50", "EUR")


def test_the_staff_screen_words_the_email_receipts_line() -> None:
    """The mailer's counts are labelled and worded in the staff's language."""
    presenter = Presenter(Catalogues(["en", "fr", "de"]), Wording.load())
    status = {"email receipts": "3 sent, 1 failed (SMTP 550)"}

    assert "Email receipts: 3 sent, 1 failed (SMTP 550)" == presenter.staff_status(
        "en", status
    )
    assert (
        "Reçus par e-mail : 3 envoyés, 1 en échec (SMTP 550)"
        == presenter.staff_status("fr", status)
    )
    assert (
        "Quittungen per E-Mail: 3 gesendet, 1 fehlgeschlagen (SMTP 550)"
        == presenter.staff_status("de", status)
    )
    assert "Email receipts: ready" == presenter.staff_status(
        "en", {"email receipts": "ready"}
    )
