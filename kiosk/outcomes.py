"""What the server's answers mean for a patron: the outcomes the screens show.

Layer: `kiosk`, plain Python values (no Kivy, never `ils`); it must not import
`kiosk.transactions` or `kiosk.journal_replay` (they import it). Holds the
outcome and account values `SipDesk` returns, and the readers of reply fields
they are built from: due dates (AH), hold queue places (HQ) and screen
messages (AF).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from datetime import date, datetime
from typing import Any

from sip2server.protocol import FeeDetail, PatronInformationResponse

from .wording import Refusal


class Action(enum.StrEnum):
    """What the patron asked for with an item."""

    BORROW = "borrow"
    RETURN = "return"
    RENEW = "renew"


class Result(enum.StrEnum):
    """How it went."""

    DONE = "done"
    REFUSED = "refused"
    # Written to the offline journal; the server will hear of it later.
    QUEUED = "queued"
    # Already on loan to this patron: renewing is offered instead.
    OFFER_RENEW = "offer_renew"


class ReturnNote(enum.StrEnum):
    """Extra words for a return, from the server's routing fields."""

    NONE = ""
    HOLD_SHELF = "hold_shelf"
    OTHER_BRANCH = "other_branch"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ItemOutcome:
    """One row of the item list on screen."""

    action: Action
    barcode: str
    result: Result
    title: str = ""
    due: date | None = None
    refusal: Refusal | None = None
    #: The server's screen message, the fallback wording of a refusal.
    screen_message: str = ""
    note: ReturnNote = ReturnNote.NONE
    #: The server agreed to the loan and did not say to keep the tag secured
    #: (desensitize not N): the pad may unsecure it.
    release_security: bool = True
    #: The tag's security could not be written (or read back) after the loan
    #: or return; the patron is sent to the desk with the item.
    security_failed: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Patron:
    """The identified patron, for the length of one session."""

    barcode: str
    pin: str | None
    name: str
    #: Why borrowing is refused (returns and the account stay allowed).
    borrow_refusal: Refusal | None
    screen_message: str
    email: str | None
    loans: frozenset[str]
    #: True when identified while the server was out of reach (not checked).
    offline: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Identified:
    """The outcome of identifying: a patron, or why not."""

    patron: Patron | None
    refusal: Refusal | None = None
    screen_message: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Loan:
    """A loan on the account screen."""

    barcode: str
    title: str
    due: date | None
    overdue: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """A hold on the account screen."""

    barcode: str
    title: str
    ready: bool
    #: How many are waiting: the title's queue when the server sends HQ, else
    #: the holds the item could fill (18's CF).
    queue_length: int | None
    #: The patron's place in that queue (from 1), when the server sends HQ.
    queue_position: int | None = None


#: Our server's extension field of 64, one per unavailable hold still queued:
#: "<position>/<queue length> <the hold's CD entry>" (docs/sip2-conformance.md,
#: "Hold queue places in 64"). Other servers do not send it.
QUEUE_PLACE_FIELD = "HQ"
# At most 9 digits each: no queue is longer, and no huge number is ever read.
_QUEUE_PLACE = re.compile(r"([0-9]{1,9})/([0-9]{1,9}) (.*)", re.DOTALL)
# A value this long may have been cut short by the server (SIP2's field limit).
_FIELD_LIMIT = 255


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueuePlace:
    """One HQ field: where the patron stands in the queue of the hold `entry`."""

    position: int
    length: int
    entry: str
    #: The value reached the field limit, so `entry` may be a cut-off start.
    cut: bool = False


def queue_places(reply: PatronInformationResponse) -> list[QueuePlace]:
    """The HQ fields of a 64, in order; a value not in that form is skipped."""
    places = []
    for code, value in reply.extra_fields:
        if code != QUEUE_PLACE_FIELD:
            continue
        found = _QUEUE_PLACE.fullmatch(value)
        if found is None:
            continue
        position, length = int(found[1]), int(found[2])
        if 1 <= position <= length:
            places.append(
                QueuePlace(
                    position=position,
                    length=length,
                    entry=found[3],
                    cut=len(value) >= _FIELD_LIMIT,
                )
            )
    return places


def take_place(entry: str, places: list[QueuePlace]) -> QueuePlace | None:
    """The first of `places` naming the CD `entry`, removed from the list so that
    two alike entries get a place each, in order; None when there is none."""
    for index, place in enumerate(places):
        if place.entry == entry or (place.cut and entry.startswith(place.entry)):
            return places.pop(index)
    return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """The patron's account: loans, holds, fees."""

    loans: tuple[Loan, ...]
    holds_ready: tuple[Hold, ...]
    holds_pending: tuple[Hold, ...]
    fee_total: str
    currency: str
    fees: tuple[FeeDetail, ...]


def parse_due(text: str | None) -> date | None:
    """The day of a due date (AH) in the forms servers write, or None."""
    if not text:
        return None
    cleaned = text.strip()
    for form, width in (("%Y%m%d", 8), ("%Y-%m-%d", 10), ("%m/%d/%Y", 10)):
        try:
            return datetime.strptime(cleaned[:width], form).date()
        except ValueError:
            continue
    return None


def _screen(reply: Any) -> str:
    return " ".join(getattr(reply, "screen_message", ()) or ())
