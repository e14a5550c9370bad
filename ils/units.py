"""Pieces every circulation use case shares: what a refused request had found,
the card checks, staff overrides, log rows and the loan's own rule.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules (queries, fees, results, models); never SIP2, Twisted or Kivy. It
never logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.fees import borrowing_block
from ils.models import (
    CirculationLog,
    Item,
    Loan,
    LoanEvent,
    LoanRule,
    Patron,
    PatronBlock,
)
from ils.results import Refusal
from ils.storable import is_code

# What a staff override may waive, when the applicable rule's `staff_override`
# is true: the rule's own limits, and the holds, transit and automatic blocks
# that a member of staff at the desk can see for themselves. Card problems
# (lost, expired, PIN, a manual block) are never waived: staff fix the card.
OVERRIDABLE = frozenset(
    {
        Refusal.MAX_LOANS_REACHED,
        Refusal.RENEWAL_LIMIT_REACHED,
        Refusal.ITEM_IN_HOUSE_ONLY,
        Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON,
        Refusal.ITEM_IN_TRANSIT,
        Refusal.FEES_OVER_LIMIT,
        Refusal.OVERDUES_OVER_LIMIT,
    }
)

# What a checkout a terminal already made offline (it lent the item while it
# could not reach the library system) is recorded over: the borrowing policy's
# limits and blocks, and the PIN the terminal could not check. The patron has
# the item; refusing would only lose the record of where it is. Unknown patrons
# and items, the item's own status, a missing loan rule and a newer loan of the
# item to someone else still refuse (see `ils.checkout`).
OFFLINE_WAIVABLE = frozenset(
    {
        # A PIN the terminal could not check offline; a wrong or locked one it
        # sends is still refused.
        Refusal.PIN_REQUIRED,
        Refusal.CARD_LOST,
        Refusal.CARD_EXPIRED,
        Refusal.PATRON_BLOCKED,
        Refusal.FEES_OVER_LIMIT,
        Refusal.OVERDUES_OVER_LIMIT,
        Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON,
        Refusal.ITEM_IN_TRANSIT,
        Refusal.ITEM_IN_HOUSE_ONLY,
        Refusal.MAX_LOANS_REACHED,
    }
)

# Who is named as having charged a fee when no terminal is given.
SYSTEM = "system"


def aware(moment: datetime, name: str) -> datetime:
    """`moment` in UTC; a naive time is a programming error, not a guess.

    Raises:
        ValueError: `moment` has no time zone.
    """
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, not naive")
    return moment.astimezone(UTC)


# The earliest time a request may say it happened. Nothing a library lends
# today was lent before it, and times near year 1 cannot be moved into a branch's
# time zone (the date would fall before 1 January of year 1).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)


def request_time(at: datetime | None, name: str, now: datetime) -> datetime:
    """When a request happened, in UTC: `now` when `at` is not given, and `now`
    as well when `at` is later than now. A terminal whose clock runs ahead (or
    a mistyped year) must not lend or fine by a time that has not come: a
    return dated in the future would be fined for every day up to it.

    Raises:
        ValueError: `at` has no time zone, or is before `EARLIEST`.
    """
    if at is None:
        return now
    moment = aware(at, name)
    if moment < EARLIEST:
        raise ValueError(
            f"{name} is {moment.isoformat()}, before {EARLIEST.date().isoformat()}"
        )
    return min(moment, now)


@dataclass(slots=True)
class Known:
    """What a refused request had identified, for its log row."""

    patron_id: int | None = None
    item_id: int | None = None
    branch_id: int | None = None


class LoanChangedHands(Exception):  # noqa: N818 - a signal to retry, not an error
    """Rows read before locking changed before they were locked: start again."""


@dataclass(slots=True)
class Overrides:
    """The refusals a member of staff asked to waive, and those actually waived;
    for a checkout made offline, also those recorded over (`OFFLINE_WAIVABLE`).

    Raises:
        ValueError: a reason that can never be waived was asked for.
    """

    asked: frozenset[Refusal]
    used: list[Refusal] = field(default_factory=list)
    # The terminal lent the item offline: OFFLINE_WAIVABLE reasons are recorded
    # over, whatever the rule's `staff_override` says.
    offline: bool = False
    # Reasons the caller's own policy (not the core's) recorded over offline,
    # named in the log row with the core's own.
    offline_policy: tuple[str, ...] = ()
    offline_used: list[Refusal] = field(default_factory=list)

    def __post_init__(self) -> None:
        never = self.asked - OVERRIDABLE
        if never:
            names = ", ".join(sorted(reason.name for reason in never))
            raise ValueError(f"these refusals cannot be overridden: {names}")

    def clear(self) -> None:
        """Forget what was waived (a unit of work starting again)."""
        self.used.clear()
        self.offline_used.clear()

    def may_waive(self, reason: Refusal) -> bool:
        """Whether `reason` could be waived once the rule is known."""
        return reason in self.asked or (self.offline and reason in OFFLINE_WAIVABLE)

    def waive(self, reason: Refusal, rule: LoanRule | None) -> bool:
        """Whether `reason` is waived: asked for and allowed by `rule`, or
        recorded over for a checkout made offline."""
        if reason in self.asked and rule is not None and rule.staff_override:
            if reason not in self.used:
                self.used.append(reason)
            return True
        if self.offline and reason in OFFLINE_WAIVABLE:
            if reason not in self.offline_used:
                self.offline_used.append(reason)
            return True
        return False

    def note(self) -> str:
        """The words the log row carries for what was waived ("" for nothing)."""
        words = ""
        if self.used:
            words += "; staff override: " + " ".join(r.value for r in self.used)
        offline = [*self.offline_policy, *(r.value for r in self.offline_used)]
        if offline:
            words += "; offline, recorded over: " + " ".join(offline)
        elif self.offline:
            words += "; offline"
        return words


def bad_code_refusal(
    *, branch: str | None, patron: str | None, item: str | None
) -> Refusal | None:
    """The refusal of a request whose branch code or barcodes hold characters no
    scanner sends (NUL, line breaks, lone surrogates: `ils.storable.is_code`),
    which the database would turn away with an error (PostgreSQL stores no NUL);
    None when every code given is usable."""
    if branch is not None and not is_code(branch):
        return Refusal.UNKNOWN_BRANCH
    if patron is not None and not is_code(patron):
        return Refusal.UNKNOWN_PATRON
    if item is not None and not is_code(item):
        return Refusal.UNKNOWN_ITEM
    return None


def card_refusal(
    session: Session,
    patron: Patron,
    moment: datetime,
    zone: ZoneInfo,
    *,
    pin_valid: bool | None,
    pin_locked: bool = False,
    pin_required: bool = False,
    blocks: Sequence[PatronBlock] | None = None,
) -> Refusal | None:
    """Why the patron's card may not borrow, in the order the checks are made:
    PIN, lost, expired, manual block, then the automatic blocks (fees, overdues).

    `blocks` are the patron's open blocks when the caller has read them."""
    if pin_locked:
        return Refusal.PIN_LOCKED
    if pin_valid is False:
        return Refusal.WRONG_PIN
    if pin_valid is None and pin_required and patron.pin_hash is not None:
        return Refusal.PIN_REQUIRED
    if patron.card_lost:
        return Refusal.CARD_LOST
    if queries.card_expired(patron, moment, zone):
        return Refusal.CARD_EXPIRED
    if blocks is None:
        blocks = queries.open_blocks(session, patron)
    if blocks:
        return Refusal.PATRON_BLOCKED
    return borrowing_block(session, patron, moment)


def log_row(
    *,
    at: datetime,
    event: LoanEvent,
    terminal: str | None,
    item_id: int | None = None,
    patron_id: int | None = None,
    branch_id: int | None = None,
    detail: str | None = None,
) -> CirculationLog:
    """One row of the circulation log."""
    return CirculationLog(
        at=at,
        event=event,
        item_id=item_id,
        patron_id=patron_id,
        branch_id=branch_id,
        terminal=terminal,
        detail=detail,
    )


_LOG_INSERT = sa.insert(cast(sa.Table, CirculationLog.__table__))


def write_log(session: Session, row: CirculationLog) -> None:
    """Write one row of the circulation log (made by `log_row`) now, as a plain
    insert on the session's connection: on the hot paths an ORM object's part
    in the flush cost more than the insert. (The row refers to items, patrons
    and branches that exist already, so it need not wait for the flush.)"""
    session.connection().execute(
        _LOG_INSERT, {name: getattr(row, name) for name in _LOG_FIELDS}
    )


_LOG_FIELDS = ("at", "event", "terminal", "item_id", "patron_id", "branch_id", "detail")


def loan_rule_of(session: Session, loan: Loan, item: Item) -> LoanRule | None:
    """The rule a loan was made under: at its branch, for the borrower's category
    (as recorded on the loan, else the patron's) and the item's type."""
    category_id = loan.patron_category_id
    if category_id is None and loan.patron is not None:
        category_id = loan.patron.category_id
    if category_id is None:
        return None
    return queries.loan_rule_choice(
        session,
        branch_id=loan.branch_id,
        category_id=category_id,
        item_type_id=item.item_type_id,
    ).rule
