"""Receipt layouts as ESC/POS bytes, from python-escpos's Dummy printer: a
byte-exact checkout snapshot written out by hand, masking, labels, encodings."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from drivers.printer import (
    ReceiptData,
    ReceiptItem,
    ReceiptLabels,
    mask_card_number,
    render_account_slip,
    render_checkout,
    render_return,
)

CARD = "21234000567890"
MASKED = "**********7890"

# ESC/POS commands, from the command reference, written out by hand.
ESC_AT = b"\x1b\x40"  # ESC @: initialise
CENTRE = b"\x1b\x61\x01"  # ESC a 1
LEFT = b"\x1b\x61\x00"  # ESC a 0
HEADING = b"\x1b\x21\x18"  # ESC ! 0x18: emphasised + double height
BOLD = b"\x1b\x21\x08"  # ESC ! 0x08: emphasised
NORMAL = b"\x1b\x21\x00"  # ESC ! 0
CODE_PAGE_437 = b"\x1b\x74\x00"  # ESC t 0: PC437, chosen before the first text
FEED_AND_CUT = b"\x1b\x64\x06" + b"\x1d\x56\x00"  # ESC d 6, then GS V 0 (full cut)


def receipt_data() -> ReceiptData:
    return ReceiptData(
        library_name="City Library",
        branch="Harbour branch",
        card_number=CARD,
        printed_at=datetime(2026, 12, 4, 10, 30, tzinfo=UTC),
        items=[
            ReceiptItem(
                title="The Left Hand of Darkness",
                barcode="39999000123453",
                due=date(2026, 12, 18),
            ),
            ReceiptItem(
                title="A very long title that needs wrapping across lines on a "
                "narrow slip",
                due=datetime(2026, 12, 4, 18, 0),
            ),
            ReceiptItem(title="Held Book", ok=False, note="on hold for another patron"),
        ],
        hours=["Mon-Fri 09:00-20:00", "Sat 10:00-16:00"],
        fees_due="EUR 2.50",
        footer=["Renew at library.example"],
    )


def lines(*texts: str) -> bytes:
    return b"".join(text.encode("ascii") + b"\n" for text in texts)


def test_checkout_receipt_is_byte_exact() -> None:
    """A 32-column checkout receipt is exactly: init, centred bold heading, the
    date and masked card, items wrapped to 32 columns with due dates (an hourly
    loan with its time), the failed item's reason, totals, hours, feed and cut."""
    expected = (
        ESC_AT
        + CENTRE
        + HEADING
        + CODE_PAGE_437
        + lines("City Library")
        + NORMAL
        + lines("Harbour branch")
        + BOLD
        + lines("Checkout receipt")
        + NORMAL
        + LEFT
        + lines(
            "Date: 2026-12-04 10:30",
            "Card: **********7890",
            "-" * 32,
            "The Left Hand of Darkness",
            "  39999000123453",
            "  Due: 2026-12-18",
            "A very long title that needs",
            "wrapping across lines on a",
            "narrow slip",
            "  Due: 2026-12-04 18:00",
            "Held Book",
            "  Not done: on hold for another",
            "  patron",
            "-" * 32,
            "Items: 2",
            "Fees due: EUR 2.50",
        )
        + CENTRE
        + lines("")
        + BOLD
        + lines("Opening hours")
        + NORMAL
        + lines("Mon-Fri 09:00-20:00", "Sat 10:00-16:00", "Renew at library.example")
        + LEFT
        + FEED_AND_CUT
    )

    assert expected == render_checkout(receipt_data(), width=32)


@pytest.mark.parametrize(
    "render", [render_checkout, render_return, render_account_slip]
)
def test_every_receipt_masks_the_card_and_never_prints_it_whole(render: object) -> None:
    """Each receipt starts with ESC @, ends with the cut, shows the card as
    **********7890 and contains the full card number nowhere."""
    output = render(receipt_data())  # type: ignore[operator]

    assert output.startswith(ESC_AT)
    assert output.endswith(FEED_AND_CUT)
    assert MASKED.encode() in output
    assert CARD.encode() not in output
    assert b"1234000567890" not in output


def test_return_receipt_says_when_each_item_came_back() -> None:
    """A return receipt prints "Returned:" with the item's own return date, or
    the receipt's date when none is given, and counts the items."""
    data = ReceiptData(
        library_name="City Library",
        card_number=CARD,
        printed_at=datetime(2026, 12, 4, 10, 30),
        items=[
            ReceiptItem(title="Dune", returned=date(2026, 12, 3)),
            ReceiptItem(title="Emma"),
        ],
    )

    output = render_return(data, width=32)

    assert lines("Return receipt") in output
    assert lines("Dune", "  Returned: 2026-12-03", "Emma") in output
    assert lines("  Returned: 2026-12-04 10:30", "-" * 32, "Items: 2") in output


def test_return_receipt_without_a_card_prints_no_card_line() -> None:
    """Returns made without identifying: the receipt has no "Card:" line at all,
    the date line is followed by the rule."""
    data = ReceiptData(
        library_name="City Library",
        card_number="",
        printed_at=datetime(2026, 12, 4, 10, 30),
        items=[ReceiptItem(title="Dune")],
    )

    output = render_return(data, width=32)

    assert b"Card" not in output
    assert lines("Date: 2026-12-04 10:30", "-" * 32) in output


def test_account_slip_lists_loans_fees_and_holds() -> None:
    """An account slip counts loans and prints fees due and holds ready."""
    data = ReceiptData(
        library_name="City Library",
        card_number=CARD,
        printed_at=datetime(2026, 12, 4, 10, 30),
        items=[ReceiptItem(title="Dune", due=date(2026, 12, 20), note="overdue")],
        fees_due="EUR 1.00",
        holds_ready=2,
    )

    output = render_account_slip(data, width=32)

    assert lines("Your account") in output
    assert lines("Dune", "  Due: 2026-12-20") in output
    assert lines("Loans: 1", "Fees due: EUR 1.00", "Holds ready: 2") in output


def test_translated_labels_and_date_format_replace_every_english_word() -> None:
    """With Danish labels and a day-first date, no English label is printed."""
    labels = ReceiptLabels.from_mapping(
        {
            "checkout_title": "Udlaanskvittering",
            "date": "Dato",
            "card": "Kort",
            "due": "Afleveres",
            "not_done": "Ikke udlaant",
            "items_total": "Materialer",
            "fees_due": "Gebyrer",
            "hours": "Aabningstider",
            "date_format": "%d.%m.%Y",
        }
    )

    output = render_checkout(receipt_data(), width=32, labels=labels)

    assert lines("Dato: 04.12.2026 10:30", "Kort: **********7890") in output
    assert lines("  Afleveres: 18.12.2026") in output
    for english in (b"Due", b"Card", b"Date", b"Items", b"Checkout", b"Opening"):
        assert english not in output


def test_unknown_label_is_refused_by_name() -> None:
    """A misspelt label name is refused naming it, rather than ignored."""
    with pytest.raises(ValueError, match=r"labels\.duee: unknown label"):
        ReceiptLabels.from_mapping({"duee": "Due"})


def test_accented_titles_are_sent_in_the_printers_code_page() -> None:
    """ "Café" is sent with é as 0x82, its code in code page 437."""
    data = ReceiptData(
        library_name="L",
        card_number=CARD,
        printed_at=datetime(2026, 12, 4),
        items=[ReceiptItem(title="Café")],
    )

    assert b"Caf\x82\n" in render_checkout(data)


@pytest.mark.parametrize(
    ("card", "visible", "masked"),
    [
        ("21234000567890", 4, "**********7890"),
        ("123456", 4, "***456"),
        ("12", 4, "*2"),
        ("", 4, ""),
        ("21234000567890", 0, "**************"),
    ],
)
def test_mask_shows_at_most_the_last_few_and_never_half(
    card: str, visible: int, masked: str
) -> None:
    """Only the last `visible` characters show, and never more than half."""
    assert masked == mask_card_number(card, visible=visible)


def test_a_very_long_title_is_cut_to_three_lines() -> None:
    """A title longer than three lines is cut after a word with "..." on the
    third line."""
    data = ReceiptData(
        library_name="L",
        card_number=CARD,
        printed_at=datetime(2026, 12, 4),
        items=[ReceiptItem(title="word " * 40)],
    )

    output = render_checkout(data, width=16)

    assert lines("word word word", "word word word", "word word...") in output
    assert 8 == output.count(b"word")


def test_control_bytes_in_titles_never_reach_the_printer() -> None:
    """ESC, GS (a cut), BEL and C1 controls inside a title or the library's
    name are dropped; the layout's own commands are all that remain."""
    data = ReceiptData(
        library_name="City\x1b@ Library",
        card_number=CARD,
        printed_at=datetime(2026, 12, 4, 10, 30, tzinfo=UTC),
        items=[ReceiptItem(title="Dune\x1dV\x00\x07\x9b")],
    )
    clean = ReceiptData(
        library_name="City@ Library",
        card_number=CARD,
        printed_at=datetime(2026, 12, 4, 10, 30, tzinfo=UTC),
        items=[ReceiptItem(title="DuneV")],
    )

    assert render_checkout(clean) == render_checkout(data)
