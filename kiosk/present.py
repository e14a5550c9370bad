"""The words a screen shows for the view model's state, in the patron's language.

Layer: `kiosk` view model (plain Python: no Kivy, never `ils`). The .kv files
only bind to strings and flags this module produces, so what a patron reads
can be tested without a window. No code (SIP2 or refusal key) is ever shown:
refusals go through the site's catalogue, everything else through gettext.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sip2server.protocol import FeeDetail

from .i18n import Catalogues
from .model import Notice
from .session import SelfCheck
from .transactions import Action, Hold, ItemOutcome, Loan, Result, ReturnNote
from .wording import Wording


def N_(message: str) -> str:
    """Mark a message for translation without translating it here."""
    return message


_DONE = {
    Action.BORROW: N_("Borrowed. Due back {date}."),
    Action.RENEW: N_("Renewed. Due back {date}."),
    Action.RETURN: N_("Returned. Thank you."),
}
# A loan or renewal done whose due date (AH) the kiosk could not read: the
# patron is told so, never left with a bare "Done."
_DONE_DUE_UNKNOWN = {
    Action.BORROW: N_(
        "Borrowed. We could not read the due date: please ask at the desk."
    ),
    Action.RENEW: N_(
        "Renewed. We could not read the new due date: please ask at the desk."
    ),
}
#: The account's and the receipts' line for a loan whose due date is unknown.
DUE_UNKNOWN = N_("Due date not known: please ask at the desk.")
_NOTES = {
    ReturnNote.HOLD_SHELF: N_("Returned. Please put it on the holds trolley."),
    ReturnNote.OTHER_BRANCH: N_("Returned. Please put it in the transfer bin."),
}
_QUEUED = {
    Action.RETURN: N_("Returned. It will be recorded when the library system is back."),
    Action.BORROW: N_(
        "Borrowed. It will be recorded when the library system is back; "
        "ask at the desk for the due date."
    ),
}
# The staff screen's status lines: their labels, and the words of their values
# (link, device and journal states; anything else, like a device's own
# problem, is shown as it is).
_STAFF_LABELS = {
    "server": N_("Server"),
    "scanner": N_("Scanner"),
    "rfid": N_("RFID pad"),
    "printer": N_("Printer"),
    "offline queue": N_("Offline queue"),
    "offline journal": N_("Offline journal"),
    "email receipts": N_("Email receipts"),
}
_STAFF_WORDS = {
    word: word
    for word in (
        N_("online"),
        N_("connecting"),
        N_("out of order"),
        N_("keyboard wedge"),
        N_("none"),
        N_("empty"),
        N_("ready"),
        N_("starting"),
        N_("lost"),
        N_("unknown"),
        N_("offline"),
        N_("paper low"),
        N_("paper out"),
        N_("spool file"),
        N_("pending"),
        N_("in flight"),
        N_("done"),
        N_("refused"),
        N_("sent"),
        N_("failed"),
    )
}
# Money as each language writes it (CLDR's conventions for en, fr and de): the
# decimal separator, the separator of thousands, and where the currency goes.
# French groups with a narrow no-break space (U+202F), so an amount never
# breaks across lines. Symbols for the currencies libraries here use; any
# other currency is written with its ISO 4217 code. No process locale
# (locale.setlocale) is involved: the patron's language may change per session.
_MONEY_STYLE = {
    "en": (".", ",", "{symbol}{amount}"),
    "fr": (",", "\u202f", "{amount} {symbol}"),
    "de": (",", ".", "{amount} {symbol}"),
}
_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "$", "AUD": "$"}
# An amount as SIP2 sends it: an optional sign, digits, optional decimals.
_AMOUNT = re.compile(r"([+-]?)(\d+)(?:\.(\d+))?")


def _grouped(digits: str, separator: str) -> str:
    """Whole units in groups of three from the right: "1234567" -> "1,234,567"."""
    head = len(digits) % 3 or 3
    groups = [digits[:head]] + [
        digits[start : start + 3] for start in range(head, len(digits), 3)
    ]
    return separator.join(groups)


def money(language: str, amount: str, currency: str) -> str:
    """`amount` (as SIP2 sends it, "1234.50") written for `language`, with its
    currency's symbol where known ("$1,234.50", "1\u202f234,50 €",
    "1.234,50 CHF"). An amount that is not a plain number is shown as sent."""
    decimal, group, shape = _MONEY_STYLE.get(language, _MONEY_STYLE["en"])
    sign, text = "", amount.strip()
    number = _AMOUNT.fullmatch(text)
    if number is not None:
        # The sign goes before the currency too: "-$1,234.50", a credit.
        sign, units, cents = number.groups()
        units = units.lstrip("0") or "0"  # a zero-padded "0012.50" too
        text = _grouped(units, group) + (decimal + cents if cents else "")
    code = currency.strip().upper()
    if not code:
        return sign + text
    symbol = _CURRENCY_SYMBOLS.get(code)
    if symbol is None:
        return f"{sign}{text} {code}"
    return sign + shape.format(symbol=symbol, amount=text)


# The kinds of fee our server names in FF (its own words, in English), as a
# patron reads them; another server's words are shown as sent.
_FEE_KINDS = {
    "overdue": N_("Overdue fine"),
    "lost": N_("Lost item"),
    "damage": N_("Damage charge"),
    "processing": N_("Processing fee"),
    "rental": N_("Rental fee"),
    "hold": N_("Hold fee"),
    "manual": N_("Fee"),
}

_MODE_TITLES = {
    Action.BORROW: N_("Borrow: scan each item"),
    Action.RETURN: N_("Return: scan each item"),
    Action.RENEW: N_("Renew: scan each item"),
}


@dataclass(frozen=True, slots=True)
class RowText:
    """One line of the item list: what, what happened, and whether it went well."""

    barcode: str
    title: str
    detail: str
    good: bool
    renewable: bool


class Presenter:
    """Turns the view model's state into text for one language at a time."""

    def __init__(self, catalogues: Catalogues, wording: Wording) -> None:
        self.catalogues = catalogues
        self.wording = wording

    def t(self, language: str, message: str, **values: object) -> str:
        """A message in `language`, with `{names}` filled in."""
        text = self.catalogues.gettext(language, message)
        return text.format(**values) if values else text

    def row(self, language: str, outcome: ItemOutcome) -> RowText:
        """The item list's line for one outcome."""
        title = outcome.title or self.t(
            language, "Item {barcode}", barcode=outcome.barcode
        )
        text = self._row_text(language, outcome, title)
        if outcome.security_failed:
            warning = self.t(
                language,
                "The tag could not be updated: please show this item at the desk.",
            )
            return RowText(
                text.barcode, title, f"{text.detail} {warning}", False, False
            )
        return text

    def _row_text(self, language: str, outcome: ItemOutcome, title: str) -> RowText:
        if outcome.result is Result.DONE:
            if outcome.action is Action.RETURN and outcome.note in _NOTES:
                detail = self.t(language, _NOTES[outcome.note])
            elif outcome.due is not None or outcome.action is Action.RETURN:
                day = self.catalogues.date(language, outcome.due) if outcome.due else ""
                detail = self.t(language, _DONE[outcome.action], date=day)
            else:
                detail = self.t(language, _DONE_DUE_UNKNOWN[outcome.action])
            return RowText(outcome.barcode, title, detail, True, False)
        if outcome.result is Result.QUEUED:
            detail = self.t(language, _QUEUED[outcome.action])
            return RowText(outcome.barcode, title, detail, True, False)
        if outcome.result is Result.OFFER_RENEW:
            detail = self.t(language, "You already have this item. Renew it?")
            return RowText(outcome.barcode, title, detail, True, True)
        assert outcome.refusal is not None
        detail = self.wording.text(outcome.refusal, language, outcome.screen_message)
        return RowText(outcome.barcode, title, detail, False, False)

    def notice(self, language: str, notice: Notice | None) -> str:
        """The banner text for a refusal (empty when there is none)."""
        if notice is None:
            return ""
        return self.wording.text(notice.refusal, language, notice.screen_message)

    def items_title(self, language: str, mode: Action | None) -> str:
        """The heading of the item loop."""
        return "" if mode is None else self.t(language, _MODE_TITLES[mode])

    def greeting(self, language: str, check: SelfCheck) -> str:
        """The menu's greeting, with the patron's first name when known."""
        name = check.patron.name if check.patron else ""
        if name:
            first = name.split(",")[-1].strip().split(" ")[0] or name
            return self.t(language, "Hello, {name}", name=first)
        return self.t(language, "Hello")

    def countdown(self, language: str, seconds: int | None) -> str:
        """The timeout warning (empty when not counting down)."""
        if seconds is None:
            return ""
        return self.t(
            language,
            "Your session ends in {seconds} s. Touch the screen to continue.",
            seconds=seconds,
        )

    def summary(self, language: str, rows: list[ItemOutcome]) -> str:
        """The finish screen's count of what was done."""
        done = sum(1 for row in rows if row.result in {Result.DONE, Result.QUEUED})
        return self.t(
            language,
            "Done: {done}. Not done: {not_done}.",
            done=done,
            not_done=len(rows) - done,
        )

    @staticmethod
    def told_apart(titles: list[tuple[str, str]]) -> list[str]:
        """The titles of (title, barcode) pairs, each title held by more than
        one barcode followed by its barcode, so that two copies of one book
        on an account (a renewal refused above them) can be told apart."""
        barcodes: dict[str, set[str]] = {}
        for title, barcode in titles:
            barcodes.setdefault(title, set()).add(barcode)
        return [
            f"{title} ({barcode})" if len(barcodes[title]) > 1 else title
            for title, barcode in titles
        ]

    def loan(self, language: str, loan: Loan) -> tuple[str, str]:
        """An account loan as (title, due line)."""
        if loan.due is None:
            return loan.title, self.t(language, DUE_UNKNOWN)
        day = self.catalogues.date(language, loan.due)
        if loan.overdue:
            return loan.title, self.t(language, "Overdue: was due {date}", date=day)
        return loan.title, self.t(language, "Due back {date}", date=day)

    def hold(self, language: str, hold: Hold) -> tuple[str, str]:
        """An account hold as (title, state line)."""
        if hold.ready:
            return hold.title, self.t(language, "Ready for pickup")
        if hold.queue_position is not None and hold.queue_length:
            return hold.title, self.t(
                language,
                "Waiting: position {position} of {count}",
                position=hold.queue_position,
                count=hold.queue_length,
            )
        if hold.queue_length:
            return hold.title, self.t(
                language, "Waiting: {count} in the queue", count=hold.queue_length
            )
        return hold.title, self.t(language, "Waiting")

    def fees(self, language: str, total: str, currency: str) -> str:
        """The account's fee line, the amount written as `language` writes money."""
        return self.t(
            language,
            "Fees owed: {amount} {currency}",
            amount=money(language, total, currency),
            currency="",
        ).strip()

    def fee(self, language: str, fee: FeeDetail, currency: str) -> tuple[str, str]:
        """One fee of the account as (what it is for, how much is owed): the
        item's title or the kind of fee, then the amount and the day."""
        kind = (fee.fee_type or "").strip()
        words = _FEE_KINDS.get(kind.casefold())
        what = fee.title or (self.t(language, words) if words else kind)
        amount = money(language, fee.fee_remaining or "0.00", currency)
        if fee.creation_date is None:
            return what or self.t(language, "Fee"), amount
        day = self.catalogues.date(language, fee.creation_date)
        return what or self.t(language, "Fee"), self.t(
            language, "{amount}, since {date}", amount=amount, date=day
        )

    def staff_status(self, language: str, status: dict[str, str]) -> str:
        """The staff screen's status lines, labels and state words translated."""
        lines = []
        for key, value in status.items():
            label = self.catalogues.gettext(language, _STAFF_LABELS.get(key, key))
            pieces = [self._staff_value(language, piece) for piece in value.split(", ")]
            lines.append(
                self.t(
                    language,
                    N_("{label}: {value}"),
                    label=label,
                    value=", ".join(pieces),
                )
            )
        return "\n".join(lines)

    def _staff_value(self, language: str, piece: str) -> str:
        # "ready", "3 pending", "feig lost (timeout)", "out_of_order (refused)".
        main, opening, detail = piece.partition(" (")
        main = main.replace("_", " ")
        if main in _STAFF_WORDS:
            main = self.catalogues.gettext(language, main)
        else:
            head, space, rest = main.partition(" ")
            if rest in _STAFF_WORDS:
                main = head + space + self.catalogues.gettext(language, rest)
        return main + opening + detail
