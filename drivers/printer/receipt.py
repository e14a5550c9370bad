"""Receipt contents and their layout in ESC/POS: checkout, return, account.

Layer: `drivers`. Imports the standard library and python-escpos; never
`ils`, the server or the kiosk.

Language-neutral: every word printed comes from `ReceiptLabels` (English
defaults the kiosk replaces with its translations) or from the caller's data
(titles, opening hours, already formatted money). The patron's card number is
always masked; only its last few characters are printed.

The layout is rendered into python-escpos's `Dummy` printer, so a receipt is
plain bytes before it goes near a device (the same bytes the snapshot tests
check). Styles are written as the ESC/POS commands themselves:

- `ESC @` (1B 40) initialise the printer;
- `ESC a n` (1B 61 n) justification, 0 left and 1 centre;
- `ESC ! n` (1B 21 n) print mode, bit 3 (0x08) emphasised, bit 4 (0x10)
  double height;
- text through python-escpos (`textln`), which selects a code page with
  `ESC t n` before the first text and whenever a character needs another;
- `ESC d 6` then `GS V 0` (1D 56 00): feed and full cut (python-escpos `cut`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, time
from typing import Any

from escpos.printer import Dummy

__all__ = [
    "ALIGN_CENTRE",
    "ALIGN_LEFT",
    "INIT",
    "MODE_BOLD",
    "MODE_HEADING",
    "MODE_NORMAL",
    "ReceiptData",
    "ReceiptItem",
    "ReceiptLabels",
    "mask_card_number",
    "render_account_slip",
    "render_checkout",
    "render_return",
]

ESC = b"\x1b"
INIT = ESC + b"@"
ALIGN_LEFT = ESC + b"a\x00"
ALIGN_CENTRE = ESC + b"a\x01"
MODE_NORMAL = ESC + b"!\x00"
MODE_BOLD = ESC + b"!\x08"
MODE_HEADING = ESC + b"!\x18"  # emphasised and double height

_TITLE_LINES = 3

# C0 controls, DEL and C1 controls: in a title or a name they would reach the
# printer as commands (ESC, GS, a cut); only the layout sends commands.
_CONTROLS = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)])


def mask_card_number(card: str, *, visible: int = 4, mask: str = "*") -> str:
    """The card number with all but its last `visible` characters masked.

    Never more than half of the card is shown, so a short card number is
    not printed almost whole: "12345678901234" -> "**********1234",
    "123456" -> "***456".
    """
    card = card.strip()
    shown = max(0, min(visible, len(card) // 2))
    return mask * (len(card) - shown) + card[len(card) - shown :]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptLabels:
    """Every word a receipt prints, with English defaults.

    The kiosk passes its translations (`ReceiptLabels.from_mapping(dict)`);
    `date_format` and `time_format` are `strftime` formats.
    """

    checkout_title: str = "Checkout receipt"
    return_title: str = "Return receipt"
    account_title: str = "Your account"
    date: str = "Date"
    card: str = "Card"
    due: str = "Due"
    returned: str = "Returned"
    not_done: str = "Not done"
    items_total: str = "Items"
    loans: str = "Loans"
    fees_due: str = "Fees due"
    holds_ready: str = "Holds ready"
    hours: str = "Opening hours"
    date_format: str = "%Y-%m-%d"
    time_format: str = "%H:%M"

    @classmethod
    def from_mapping(cls, labels: Mapping[str, object]) -> ReceiptLabels:
        """Defaults replaced by the given labels.

        Raises:
            ValueError: an unknown label name, or a label that is not a string;
                the message names it.
        """
        known = {f.name for f in fields(cls)}
        chosen: dict[str, str] = {}
        for name, value in labels.items():
            if name not in known:
                raise ValueError(
                    f"labels.{name}: unknown label; known: {sorted(known)}"
                )
            if not isinstance(value, str):
                raise ValueError(f"labels.{name}: must be a string, not {value!r}")
            chosen[name] = value
        return replace(cls(), **chosen)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptItem:
    """One item on a receipt.

    `due` is the due date (a `datetime` for hourly loans, printed with its
    time); `ok` False means the action failed for this item, and `note` then
    says why (already translated). On a return receipt `returned` is when.
    """

    title: str
    barcode: str | None = None
    due: date | datetime | None = None
    returned: date | datetime | None = None
    ok: bool = True
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptData:
    """What one receipt says; the kiosk fills it from its session.

    `hours` and `footer` are lines printed as given (already translated);
    `fees_due` is money already formatted ("EUR 2.50"); `card_number` is
    masked when printed and never printed whole.
    """

    library_name: str
    card_number: str
    printed_at: datetime
    items: Sequence[ReceiptItem] = ()
    branch: str | None = None
    hours: Sequence[str] = ()
    fees_due: str | None = None
    holds_ready: int | None = None
    footer: Sequence[str] = ()


class _Layout:
    """Writes one receipt into a Dummy printer, line by line."""

    def __init__(
        self, width: int, labels: ReceiptLabels, profile: str | None, mask_visible: int
    ) -> None:
        self.width = width
        self.labels = labels
        self.mask_visible = mask_visible
        self.out: Any = Dummy(profile=profile) if profile else Dummy()

    def raw(self, command: bytes) -> None:
        # Dummy's `_raw` appends to its buffer: the way to send a command
        # python-escpos has no method for.
        self.out._raw(command)

    def line(self, text: str = "") -> None:
        self.out.textln(text.translate(_CONTROLS)[: self.width])

    def wrapped(self, text: str, indent: str = "", limit: int | None = None) -> None:
        lines = textwrap.wrap(
            text,
            self.width,
            initial_indent=indent,
            subsequent_indent=indent,
            max_lines=limit,
            placeholder="...",
        ) or [indent]
        for text_line in lines:
            self.line(text_line)

    def rule(self) -> None:
        self.line("-" * self.width)

    def when(self, value: date | datetime) -> str:
        text = value.strftime(self.labels.date_format)
        if isinstance(value, datetime) and value.time() != time(0, 0):
            text += " " + value.strftime(self.labels.time_format)
        return text

    def header(self, data: ReceiptData, title: str) -> None:
        self.raw(INIT)
        self.raw(ALIGN_CENTRE)
        self.raw(MODE_HEADING)
        self.wrapped(data.library_name)
        self.raw(MODE_NORMAL)
        if data.branch:
            self.wrapped(data.branch)
        self.raw(MODE_BOLD)
        self.line(title)
        self.raw(MODE_NORMAL)
        self.raw(ALIGN_LEFT)
        stamp = data.printed_at.strftime(
            f"{self.labels.date_format} {self.labels.time_format}"
        )
        self.line(f"{self.labels.date}: {stamp}")
        if data.card_number:
            # A return made without a card has none to show (no empty line).
            masked = mask_card_number(data.card_number, visible=self.mask_visible)
            self.line(f"{self.labels.card}: {masked}")
        self.rule()

    def item(self, item: ReceiptItem, detail: str | None) -> None:
        self.wrapped(item.title, limit=_TITLE_LINES)
        if item.barcode:
            self.line(f"  {item.barcode}")
        if not item.ok:
            note = f": {item.note}" if item.note else ""
            self.wrapped(f"{self.labels.not_done}{note}", indent="  ")
        elif detail is not None:
            self.line(f"  {detail}")

    def totals(self, label: str, count: int, data: ReceiptData) -> None:
        self.rule()
        self.line(f"{label}: {count}")
        if data.fees_due:
            self.line(f"{self.labels.fees_due}: {data.fees_due}")
        if data.holds_ready:
            self.line(f"{self.labels.holds_ready}: {data.holds_ready}")

    def footer(self, data: ReceiptData) -> bytes:
        if data.hours or data.footer:
            self.raw(ALIGN_CENTRE)
            self.line()
            if data.hours:
                self.raw(MODE_BOLD)
                self.line(self.labels.hours)
                self.raw(MODE_NORMAL)
                for hours_line in data.hours:
                    self.wrapped(hours_line)
            for footer_line in data.footer:
                self.wrapped(footer_line)
            self.raw(ALIGN_LEFT)
        self.out.cut()
        output: bytes = self.out.output
        return output


def _count_ok(items: Iterable[ReceiptItem]) -> int:
    return sum(1 for item in items if item.ok)


def render_checkout(
    data: ReceiptData,
    *,
    width: int = 42,
    labels: ReceiptLabels | None = None,
    profile: str | None = None,
    mask_visible: int = 4,
) -> bytes:
    """The ESC/POS bytes of a checkout receipt: items with their due dates."""
    labels = labels or ReceiptLabels()
    layout = _Layout(width, labels, profile, mask_visible)
    layout.header(data, labels.checkout_title)
    for item in data.items:
        due = f"{labels.due}: {layout.when(item.due)}" if item.due else None
        layout.item(item, due)
    layout.totals(labels.items_total, _count_ok(data.items), data)
    return layout.footer(data)


def render_return(
    data: ReceiptData,
    *,
    width: int = 42,
    labels: ReceiptLabels | None = None,
    profile: str | None = None,
    mask_visible: int = 4,
) -> bytes:
    """The ESC/POS bytes of a return receipt: items with when they were returned."""
    labels = labels or ReceiptLabels()
    layout = _Layout(width, labels, profile, mask_visible)
    layout.header(data, labels.return_title)
    for item in data.items:
        returned = item.returned or data.printed_at
        layout.item(item, f"{labels.returned}: {layout.when(returned)}")
    layout.totals(labels.items_total, _count_ok(data.items), data)
    return layout.footer(data)


def render_account_slip(
    data: ReceiptData,
    *,
    width: int = 42,
    labels: ReceiptLabels | None = None,
    profile: str | None = None,
    mask_visible: int = 4,
) -> bytes:
    """The ESC/POS bytes of an account slip: loans with due dates, fees, holds."""
    labels = labels or ReceiptLabels()
    layout = _Layout(width, labels, profile, mask_visible)
    layout.header(data, labels.account_title)
    for item in data.items:
        due = f"{labels.due}: {layout.when(item.due)}" if item.due else None
        layout.item(item, due)
    layout.totals(labels.loans, len(data.items), data)
    return layout.footer(data)
