"""The circulation service: look-ups, checkout (with renewal) and checkin.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy. It never logs: it returns results
or raises `CirculationRefused`.

Each use case is one database transaction. Concurrent requests are made safe by
the database, not by Python locks, so that several server processes can share
one PostgreSQL:

- on PostgreSQL the patron row and then the item row are locked with
  `SELECT ... FOR NO KEY UPDATE` (always in that order, so two checkouts cannot
  deadlock), which serialises checkouts of one item and counts of one
  patron's loans; unlike `FOR UPDATE`, it lets the foreign-key checks of other
  transactions' inserts through (see `ils.queries`);
- a checkin locks the borrower it read before the item, and starts again if the
  loan changed hands before the item was locked, rather than lock a patron
  after an item;
- on SQLite every write unit starts with `BEGIN IMMEDIATE` (see `ils.db`), which
  serialises all writers;
- the partial unique index `uq_loan_open_item` is the last line: if two open
  loans of one item are ever attempted, the loser is retried and then sees the
  winner's loan.

A use case that keeps meeting deadlocks or a changing loan is refused with
`Refusal.TRY_AGAIN` once its attempts are used up, so that a caller gets a
refusal, not a database error, for a deadlock. (A SQLite writer that outwaits
its busy timeout still raises `OperationalError`; see `ils.db`.)

Every checkout, renewal, checkin and refusal writes a `CirculationLog` row; a
repeated checkout that does not renew changes nothing and writes none. A
refusal's row is written in the refused transaction itself, which is committed:
every check is made before anything else is written, so the row is all it holds.
Table look-ups and the views handed to callers live in `ils.queries`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ils import queries
from ils.db import Database
from ils.models import (
    Branch,
    CirculationLog,
    Item,
    ItemStatus,
    Loan,
    LoanEvent,
    Patron,
    utcnow,
)
from ils.results import (
    CheckinResult,
    CheckoutResult,
    CirculationRefused,
    ItemView,
    PatronView,
    Refusal,
)
from ils.rules.matrix import due_at as rule_due_at
from ils.secrets import verify_secret

# Statuses that refuse a checkout, and the reason each gives.
_STATUS_REFUSALS: dict[ItemStatus, Refusal] = {
    ItemStatus.NOT_FOR_LOAN: Refusal.ITEM_NOT_FOR_LOAN,
    ItemStatus.LOST: Refusal.ITEM_LOST,
    ItemStatus.MISSING: Refusal.ITEM_MISSING,
    ItemStatus.WITHDRAWN: Refusal.ITEM_WITHDRAWN,
    ItemStatus.DAMAGED: Refusal.ITEM_NOT_FOR_LOAN,
    ItemStatus.IN_PROCESSING: Refusal.ITEM_NOT_FOR_LOAN,
}

# How often a use case that hit the open-loan index, a deadlock or a loan that
# changed hands is tried; the retry normally sees the other transaction's work
# and answers by itself.
_ATTEMPTS = 5

# PostgreSQL's SQLSTATEs for a deadlock and a serialization failure: the
# transaction was rolled back and may simply be run again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

_Result = TypeVar("_Result", CheckoutResult, CheckinResult)


def branch_zone(branch: Branch) -> ZoneInfo:
    """The time zone a branch reckons its dates in; UTC if its name is unknown."""
    try:
        return ZoneInfo(branch.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        # TODO(#4): refuse a bad time zone when the branch is saved, not here.
        return ZoneInfo("UTC")


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, not naive")
    return moment.astimezone(UTC)


@dataclass(slots=True)
class _Known:
    """What a refused request had identified, for its log row."""

    patron_id: int | None = None
    item_id: int | None = None
    branch_id: int | None = None


class _LoanChangedHands(Exception):  # noqa: N818 - a signal to retry, not an error
    """A checkin found the item's loan with another borrower than the one it locked."""


def _is_retryable(error: OperationalError) -> bool:
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def _is_open_loan_conflict(error: IntegrityError) -> bool:
    text = str(error.orig)
    return "uq_loan_open_item" in text or "loan.item_id" in text


class Circulation:
    """The circulation use cases over one library database.

    Args:
        database: where the library's data lives.
        clock: the current time, timezone-aware; tests pass a fixed one.
    """

    def __init__(
        self, database: Database, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._database = database
        self._clock = clock

    def _now(self) -> datetime:
        return _aware(self._clock(), "the clock's time")

    # Look-ups.

    def patron(self, barcode: str, *, pin: str | None = None) -> PatronView | None:
        """A patron's account, or None when no card has this barcode.

        If `pin` is given, `pin_valid` says whether it matches.
        """
        now = self._now()
        with self._database.read() as session:
            patron = queries.patron_by_barcode(session, barcode)
            if patron is None:
                return None
            pin_valid = None if pin is None else _pin_matches(patron, pin)
            zone = branch_zone(patron.home_branch)
            return queries.patron_view(session, patron, now, zone, pin_valid=pin_valid)

    def item(self, barcode: str) -> ItemView | None:
        """An item and its loan, or None when no item has this barcode."""
        with self._database.read() as session:
            item = queries.item_by_barcode(session, barcode)
            return None if item is None else queries.item_view(session, item)

    # Checkout and renewal.

    def checkout(
        self,
        patron_barcode: str,
        item_barcode: str,
        *,
        branch_code: str,
        pin: str | None = None,
        pin_required: bool = False,
        terminal: str | None = None,
        at: datetime | None = None,
        renew_if_on_loan: bool = True,
    ) -> CheckoutResult:
        """Lend an item to a patron, or renew it if they already have it.

        Args:
            patron_barcode: the patron's card.
            item_barcode: the item's barcode.
            branch_code: where the checkout happens; its time zone sets the due day.
            pin: the PIN the patron gave; if given it must match.
            pin_required: refuse when no PIN is given and the patron has one.
            terminal: the terminal or login, for the log.
            at: when it happened, for checkouts recorded offline; default now.
            renew_if_on_loan: whether an item already on loan to this patron is
                renewed. When False (a terminal that does not allow renewal at
                checkout), such a checkout is taken as a repeat of the one
                already made, e.g. a retry after a lost answer: nothing is
                changed or logged, and the existing loan is returned with
                `renewal=False` and its current due date.

        Raises:
            CirculationRefused: for any reason in `Refusal` that applies, checked
                in the order patron, PIN, card, block, item, loan, rule, limit;
                TRY_AGAIN when the database kept turning it away.
        """
        moment = self._now() if at is None else _aware(at, "at")

        # Verify the PIN before taking any lock: scrypt is slow on purpose, and
        # on SQLite a write unit holds the whole database.
        pin_valid: bool | None = None
        if pin is not None:
            with self._database.read() as session:
                found = queries.patron_by_barcode(session, patron_barcode)
                pin_valid = found is not None and _pin_matches(found, pin)

        def work(session: Session, known: _Known) -> CheckoutResult:
            return self._checkout(
                session,
                known,
                patron_barcode=patron_barcode,
                item_barcode=item_barcode,
                branch_code=branch_code,
                pin_valid=pin_valid,
                pin_required=pin_required,
                terminal=terminal,
                moment=moment,
                renew_if_on_loan=renew_if_on_loan,
            )

        return self._unit(work, terminal=terminal, moment=moment)

    def _unit(
        self,
        work: Callable[[Session, _Known], _Result],
        *,
        terminal: str | None,
        moment: datetime,
    ) -> _Result:
        """Run one use case in its own transaction, logging a refusal in it.

        A use case makes every check before it writes, so a refusal leaves the
        transaction clean, and the refusal's log row is committed in it. That
        transaction already holds the rows the log row refers to; taking them
        afresh in another could deadlock on PostgreSQL, where a foreign key
        check takes a share lock on the referenced row (and a savepoint would
        not do: rolling one back releases the row locks taken inside it). A
        conflict on the open-loan index, a deadlock or a loan that changed hands
        is retried; the retry sees what the other transaction committed.
        """
        last_error: Exception | None = None
        known = _Known()
        for _attempt in range(_ATTEMPTS):
            known = _Known()
            refusal: CirculationRefused | None = None
            try:
                with self._database.transaction() as session:
                    try:
                        return work(session, known)
                    except CirculationRefused as raised:
                        # A use case refuses before it writes anything.
                        if session.new or session.dirty or session.deleted:
                            raise RuntimeError(
                                "a use case changed data before refusing"
                            ) from raised
                        refusal = raised
                        session.add(_refusal_row(raised, known, terminal, moment))
            except IntegrityError as error:
                if not _is_open_loan_conflict(error):
                    raise
                last_error = error
                continue
            except OperationalError as error:
                if not _is_retryable(error):
                    raise
                last_error = error
                continue
            except _LoanChangedHands as error:
                last_error = error
                continue
            raise refusal

        # Out of attempts: a lost race for the open-loan index means someone else
        # has the item; deadlocks or a loan that kept changing hands leave
        # nothing changed, and the request may be sent again.
        if isinstance(last_error, IntegrityError):
            refusal = CirculationRefused(Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON)
        else:
            refusal = CirculationRefused(Refusal.TRY_AGAIN)
        try:
            with self._database.transaction() as session:
                session.add(_refusal_row(refusal, known, terminal, moment))
        except OperationalError as error:
            # The log row is not worth a fault the caller cannot answer.
            if not _is_retryable(error):
                raise
        raise refusal from last_error

    def _checkout(
        self,
        session: Session,
        known: _Known,
        *,
        patron_barcode: str,
        item_barcode: str,
        branch_code: str,
        pin_valid: bool | None,
        pin_required: bool,
        terminal: str | None,
        moment: datetime,
        renew_if_on_loan: bool,
    ) -> CheckoutResult:
        branch = queries.branch_by_code(session, branch_code)
        if branch is None:
            raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
        known.branch_id = branch.id
        zone = branch_zone(branch)

        # The patron, locked first: their loan count must not move under us.
        patron = queries.patron_by_barcode(session, patron_barcode, lock=True)
        if patron is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        known.patron_id = patron.id

        def refuse(reason: Refusal, item: Item | None = None) -> CirculationRefused:
            return CirculationRefused(
                reason,
                patron=queries.patron_view(
                    session,
                    patron,
                    moment,
                    zone,
                    pin_valid=pin_valid,
                    branch_id=branch.id,
                ),
                item=None if item is None else queries.item_view(session, item),
            )

        # The card.
        card_refusal = _card_refusal(
            session,
            patron,
            moment,
            zone,
            pin_valid=pin_valid,
            pin_required=pin_required,
        )
        if card_refusal is not None:
            raise refuse(card_refusal)

        # The item, locked second.
        item = queries.item_by_barcode(session, item_barcode, lock=True)
        if item is None:
            raise refuse(Refusal.UNKNOWN_ITEM)
        known.item_id = item.id
        status_refusal = _STATUS_REFUSALS.get(item.status)
        if status_refusal is not None:
            raise refuse(status_refusal, item)

        # A loan already open: someone else's is a refusal, the patron's own a
        # renewal.
        loan = queries.open_loan(session, item, lock=True)
        choice = queries.loan_rule_choice(
            session,
            branch_id=branch.id,
            category_id=patron.category_id,
            item_type_id=item.item_type_id,
        )
        rule = choice.rule
        if loan is not None and loan.patron_id != patron.id:
            raise refuse(Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON, item)

        # Renewal not allowed: the patron has the item, so this checkout was
        # already made; answer it again without using up a renewal.
        if loan is not None and not renew_if_on_loan:
            return CheckoutResult(
                item=queries.item_view(session, item),
                patron=queries.patron_view(
                    session,
                    patron,
                    moment,
                    zone,
                    pin_valid=pin_valid,
                    branch_id=branch.id,
                ),
                due_at=loan.due_at,
                renewal=False,
            )

        # No rule, or one that keeps the item in the building.
        if rule is None or choice.in_house_only:
            reason = (
                Refusal.NO_LOAN_RULE if rule is None else Refusal.ITEM_IN_HOUSE_ONLY
            )
            raise refuse(reason, item)
        # TODO(#4): the rule's fine settings are stored but no fine is charged yet.
        due_at = rule_due_at(
            rule, moment, queries.branch_calendar(session, branch, zone)
        )

        if loan is not None:
            if loan.renewals >= rule.renewals_allowed:
                raise refuse(Refusal.RENEWAL_LIMIT_REACHED, item)
            loan.renewals += 1
            loan.due_at = due_at
            event = LoanEvent.RENEWAL
        else:
            if queries.over_limit(session, patron, branch.id, rule):
                raise refuse(Refusal.MAX_LOANS_REACHED, item)
            session.add(
                Loan(
                    item_id=item.id,
                    patron_id=patron.id,
                    branch_id=branch.id,
                    checked_out_at=moment,
                    due_at=due_at,
                    renewals=0,
                )
            )
            event = LoanEvent.CHECKOUT

        session.add(
            CirculationLog(
                at=moment,
                event=event,
                item_id=item.id,
                patron_id=patron.id,
                branch_id=branch.id,
                terminal=terminal,
                detail=f"due {due_at.isoformat()}",
            )
        )
        session.flush()
        return CheckoutResult(
            item=queries.item_view(session, item),
            patron=queries.patron_view(
                session,
                patron,
                moment,
                zone,
                pin_valid=pin_valid,
                branch_id=branch.id,
            ),
            due_at=due_at,
            renewal=event is LoanEvent.RENEWAL,
        )

    # Checkin.

    def checkin(
        self,
        item_barcode: str,
        *,
        branch_code: str,
        terminal: str | None = None,
        returned_at: datetime | None = None,
    ) -> CheckinResult:
        """Take an item back at a branch, whether or not it was on loan.

        Args:
            item_barcode: the item's barcode.
            branch_code: where it was returned; the item is now there.
            terminal: the terminal or login, for the log.
            returned_at: when it was returned, for returns recorded offline;
                default now. A time before the checkout is taken as the checkout
                time.

        Raises:
            CirculationRefused: UNKNOWN_BRANCH or UNKNOWN_ITEM; TRY_AGAIN when the
                database kept turning it away.
        """
        now = self._now()
        moment = now if returned_at is None else _aware(returned_at, "returned_at")

        def work(session: Session, known: _Known) -> CheckinResult:
            return self._checkin(
                session,
                known,
                item_barcode=item_barcode,
                branch_code=branch_code,
                terminal=terminal,
                moment=moment,
            )

        return self._unit(work, terminal=terminal, moment=now)

    def _checkin(
        self,
        session: Session,
        known: _Known,
        *,
        item_barcode: str,
        branch_code: str,
        terminal: str | None,
        moment: datetime,
    ) -> CheckinResult:
        branch = queries.branch_by_code(session, branch_code)
        if branch is None:
            raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
        known.branch_id = branch.id

        # Lock in the checkout's order, the borrower before the item, so that a
        # return and a renewal of the same item cannot deadlock each other.
        borrower_id = session.scalar(
            sa.select(Loan.patron_id)
            .join(Item, Item.id == Loan.item_id)
            .where(Item.barcode == item_barcode, Loan.returned_at.is_(None))
        )
        if borrower_id is not None:
            queries.lock_patron(session, borrower_id)
        item = queries.item_by_barcode(session, item_barcode, lock=True)
        if item is None:
            raise CirculationRefused(Refusal.UNKNOWN_ITEM)
        known.item_id = item.id

        # The borrower was read before any lock was held. If the item has since
        # gone out to someone else, locking them now would take a patron after
        # an item, against the checkout's order: let go of everything and start
        # again instead.
        loan = queries.open_loan(session, item, lock=True)
        if loan is not None and loan.patron_id not in (None, borrower_id):
            raise _LoanChangedHands
        patron_barcode: str | None = None
        patron_id: int | None = None
        if loan is not None:
            moment = max(moment, loan.checked_out_at)
            loan.returned_at = moment
            if loan.patron is not None:
                patron_barcode = loan.patron.barcode
                patron_id = loan.patron.id
        item.current_branch = branch

        session.add(
            CirculationLog(
                at=moment,
                event=LoanEvent.CHECKIN,
                item_id=item.id,
                patron_id=patron_id,
                branch_id=branch.id,
                terminal=terminal,
                detail=None if loan is not None else "not on loan",
            )
        )
        session.flush()
        return CheckinResult(
            item=queries.item_view(session, item),
            was_on_loan=loan is not None,
            patron_barcode=patron_barcode,
            returned_at=moment,
            return_branch_code=branch.code,
        )


def _refusal_row(
    refusal: CirculationRefused,
    known: _Known,
    terminal: str | None,
    moment: datetime,
) -> CirculationLog:
    return CirculationLog(
        at=moment,
        event=LoanEvent.REFUSAL,
        item_id=known.item_id,
        patron_id=known.patron_id,
        branch_id=known.branch_id,
        terminal=terminal,
        detail=refusal.reason.value,
    )


def _pin_matches(patron: Patron, pin: str) -> bool:
    # TODO(#4): a patron with no PIN set cannot match any PIN given; decide whether
    # libraries want such cards to pass when a terminal always asks for one.
    return patron.pin_hash is not None and verify_secret(pin, patron.pin_hash)


def _card_refusal(
    session: Session,
    patron: Patron,
    moment: datetime,
    zone: ZoneInfo,
    *,
    pin_valid: bool | None,
    pin_required: bool,
) -> Refusal | None:
    """Why the patron's card may not borrow, in the order the checks are made."""
    if pin_valid is False:
        return Refusal.WRONG_PIN
    if pin_valid is None and pin_required and patron.pin_hash is not None:
        return Refusal.PIN_REQUIRED
    if patron.card_lost:
        return Refusal.CARD_LOST
    if queries.card_expired(patron, moment, zone):
        return Refusal.CARD_EXPIRED
    if queries.open_blocks(session, patron):
        return Refusal.PATRON_BLOCKED
    return None
