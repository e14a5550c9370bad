"""Why something was refused, and how to say it to a patron in their language.

Layer: `kiosk`, plain Python (no Kivy, no Twisted, never `ils`).

SIP2 carries few structured reasons: a patron's status flags, `valid_patron`,
`valid_patron_password`, and otherwise only the server's screen message (AF).
`Refusal` names every reason the kiosk explains. A site-editable catalogue
(TOML, `kiosk/messages.toml` unless the configuration names another) gives,
per refusal, phrases of AF that identify it and the words to show in each
language. When nothing matches, the server's own screen message is shown;
patrons never see a raw code.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sip2server.protocol import PatronStatus

SHIPPED_CATALOGUE = Path(__file__).with_name("messages.toml")


class Refusal(enum.StrEnum):
    """Every reason the kiosk tells a patron why something did not happen."""

    CARD_NOT_RECOGNISED = "card_not_recognised"
    NOT_A_CARD = "not_a_card"
    PIN_WRONG = "pin_wrong"
    PIN_TRIES_EXHAUSTED = "pin_tries_exhausted"
    CARD_BLOCKED = "card_blocked"
    CARD_EXPIRED = "card_expired"
    CARD_LOST = "card_lost"
    FINES = "fines"
    OVERDUE_ITEMS = "overdue_items"
    TOO_MANY_ITEMS = "too_many_items"
    ITEM_ON_HOLD_FOR_OTHER = "item_on_hold_for_other"
    ITEM_ON_LOAN_TO_OTHER = "item_on_loan_to_other"
    ITEM_NOT_FOR_LOAN = "item_not_for_loan"
    ITEM_UNKNOWN = "item_unknown"
    NOT_AN_ITEM = "not_an_item"
    SCAN_UNREADABLE = "scan_unreadable"
    SET_INCOMPLETE = "set_incomplete"
    RENEWAL_LIMIT = "renewal_limit"
    RENEWAL_TOO_SOON = "renewal_too_soon"
    RENEWAL_UNAVAILABLE = "renewal_unavailable"
    SERVER_UNREACHABLE = "server_unreachable"
    OFFLINE_LIMIT = "offline_limit"
    NOT_RECORDED = "not_recorded"
    # A return sent while online whose reply never came: it may have been done.
    RETURN_UNCONFIRMED = "return_unconfirmed"
    PIN_NOT_SCANNED = "pin_not_scanned"
    SESSION_ENDED = "session_ended"
    OTHER = "other"


class CatalogueError(ValueError):
    """A message catalogue that cannot be used, naming the file, key and problem."""


@dataclass(frozen=True)
class _Entry:
    match: tuple[str, ...] = ()
    text: dict[str, str] = field(default_factory=dict)


class Wording:
    """The refusal catalogue: recognise a refusal from AF, and word it."""

    def __init__(self, entries: dict[Refusal, _Entry], source: Path) -> None:
        self._entries = entries
        self.source = source

    @classmethod
    def load(cls, path: Path | str | None = None) -> Wording:
        """Read a catalogue; the shipped one when `path` is empty.

        Raises:
            CatalogueError: the file is missing or not TOML, a key is not a
                refusal, or a value is not text.
        """
        source = Path(path) if path else SHIPPED_CATALOGUE
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CatalogueError(f"{source}: (file): no such file") from None
        except tomllib.TOMLDecodeError as error:
            raise CatalogueError(f"{source}: (syntax): {error}") from None

        entries: dict[Refusal, _Entry] = {}
        for key, table in data.items():
            try:
                refusal = Refusal(key)
            except ValueError:
                known = ", ".join(r.value for r in Refusal)
                raise CatalogueError(
                    f"{source}: {key}: not a refusal; use one of {known}"
                ) from None
            if not isinstance(table, dict):
                raise CatalogueError(f"{source}: {key}: expected a table")
            match = table.get("match", [])
            if not isinstance(match, list) or not all(
                isinstance(m, str) for m in match
            ):
                raise CatalogueError(f"{source}: {key}.match: expected a list of text")
            text: dict[str, str] = {}
            for language, words in table.items():
                if language == "match":
                    continue
                if not isinstance(words, str):
                    raise CatalogueError(f"{source}: {key}.{language}: expected text")
                text[language] = words
            entries[refusal] = _Entry(tuple(m.casefold() for m in match), text)
        return cls(entries, source)

    def recognise(self, screen_message: str) -> Refusal | None:
        """The refusal whose `match` phrases occur in AF (first in file order)."""
        folded = screen_message.casefold()
        for refusal, entry in self._entries.items():
            if any(phrase in folded for phrase in entry.match):
                return refusal
        return None

    def text(self, refusal: Refusal, language: str, screen_message: str = "") -> str:
        """What to tell the patron: the catalogue's words in `language`, else in
        English, else the server's screen message, else the words for OTHER."""
        entry = self._entries.get(refusal)
        if refusal is not Refusal.OTHER and entry is not None:
            words = entry.text.get(language) or entry.text.get("en")
            if words:
                return words
        if screen_message.strip():
            return screen_message.strip()
        other = self._entries.get(Refusal.OTHER)
        if other is not None:
            return other.text.get(language) or other.text.get("en") or ""
        return ""


def patron_refusal(
    *,
    valid_patron: bool | None,
    valid_pin: bool | None,
    status: PatronStatus,
    screen_message: str,
    wording: Wording,
) -> Refusal | None:
    """Why this patron may not borrow, from a 24 or 64; None when they may."""
    if valid_patron is False:
        return Refusal.CARD_NOT_RECOGNISED
    if valid_pin is False:
        # The server may have locked the PIN after too many tries elsewhere.
        locked = wording.recognise(screen_message) is Refusal.PIN_TRIES_EXHAUSTED
        return Refusal.PIN_TRIES_EXHAUSTED if locked else Refusal.PIN_WRONG
    if status.card_reported_lost:
        return Refusal.CARD_LOST
    if status.excessive_outstanding_fines or status.excessive_outstanding_fees:
        return Refusal.FINES
    if status.too_many_items_charged:
        return Refusal.TOO_MANY_ITEMS
    if status.too_many_items_overdue:
        return Refusal.OVERDUE_ITEMS
    if status.charge_privileges_denied:
        # The flag says "no", the screen message says why (expired, blocked...).
        return wording.recognise(screen_message) or Refusal.CARD_BLOCKED
    return None


def item_refusal(screen_message: str, wording: Wording) -> Refusal:
    """Why a checkout, checkin or renewal with ok=0 was refused."""
    return wording.recognise(screen_message) or Refusal.OTHER
