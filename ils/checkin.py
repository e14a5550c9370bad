"""Checkin: end the loan at the time of return, fine it, and say where the item
goes next: the shelf here, its home branch, or a hold (here or elsewhere).

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy. It never logs; it runs inside a unit
of work of `ils.circulation.Circulation`.

Locks are taken patron, item, hold, as in a checkout: the borrower (and the
patrons whose lost-item fees a found item settles) are read before any lock and
locked first; if the item's loan has changed hands by the time the item is
locked, everything is let go and the checkin starts again.

What happens next, in this order:

1. trapped for a hold already: it waits here if this is the pickup branch (an
   IN_TRANSIT hold turns WAITING, with its pickup deadline), else it goes on to
   the pickup branch;
2. the first hold in the queue it can fill traps it (HOLD_HERE or HOLD_TRANSIT);
3. it belongs to another branch: in transit home (TRANSIT_HOME);
4. it stays on the shelf here.

The loan ends at the time of return given, but never before the loan began nor
before its last renewal: an offline return dated before a renewal that the
server made meanwhile is taken as a return at that renewal's time (the renewal
and any fine it charged stand; the return adds no fine of its own).

The alert is the hold's when there is one; else LOST_FOUND for an item that was
lost or missing; else TRANSIT_HOME; else NOT_ON_LOAN for an item that was
neither on loan nor arriving from a transit; else NONE.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import holds, queries
from ils.fees import charge_fee, lost_item_found, overdue_fine_minor
from ils.item_lookup import current_item_view
from ils.models import (
    Branch,
    CirculationLog,
    Fee,
    FeeKind,
    Hold,
    HoldStatus,
    Item,
    ItemStatus,
    Loan,
    LoanEvent,
    Patron,
)
from ils.results import CheckinAlert, CheckinResult, CirculationRefused, Refusal
from ils.units import SYSTEM, Known, LoanChangedHands, loan_rule_of, log_row, write_log


def overdue_fine(session: Session, loan: Loan, item: Item, at: datetime) -> int:
    """The fine a loan has earned if it ends (or is renewed) at `at`, by the rule
    it was made under and the calendar of the branch that lent it."""
    if at <= loan.due_at:
        return 0
    rule = loan_rule_of(session, loan, item)
    if rule is None:
        return 0
    branch = loan.branch
    calendar = queries.branch_calendar(session, branch, queries.branch_zone(branch))
    return overdue_fine_minor(
        due_at=loan.due_at, returned_at=at, rule=rule, calendar=calendar
    )


def charge_overdue(
    session: Session,
    *,
    patron: Patron,
    loan: Loan,
    item: Item,
    at: datetime,
    terminal: str | None,
) -> int:
    """Charge the loan's overdue fine up to `at`; returns the amount (0 for none)."""
    fine = overdue_fine(session, loan, item, at)
    if fine > 0:
        charge_fee(
            session,
            patron=patron,
            kind=FeeKind.OVERDUE,
            amount_minor=fine,
            description=f"overdue: {item.record.title}",
            by=terminal or SYSTEM,
            moment=at,
            item=item,
            loan=loan,
        )
    return fine


_PATRONS_OF_RETURN = sa.union_all(
    sa.select(sa.true().label("borrows"), Loan.patron_id)
    .join(Item, Item.id == Loan.item_id)
    .where(Item.barcode == sa.bindparam("barcode"), Loan.returned_at.is_(None)),
    sa.select(sa.false(), Fee.patron_id)
    .join(Item, Item.id == Fee.item_id)
    .where(
        Item.barcode == sa.bindparam("barcode"),
        Item.status == ItemStatus.LOST,
        Fee.kind == FeeKind.LOST,
        Fee.patron_id.is_not(None),
    ),
)


def _lock_patrons_first(
    session: Session, item_barcode: str
) -> tuple[int | None, list[Patron]]:
    """Lock, before the item, the borrower and anyone whose lost fee for this item
    a return may settle; returns the borrower's id as read, and the patrons
    locked (kept by the caller, so that the session's identity map, which holds
    objects weakly, still has them when the loan's patron is looked at)."""
    # Both in one statement: (True, borrower) and (False, owing patron) rows.
    rows = session.execute(_PATRONS_OF_RETURN, {"barcode": item_barcode}).all()
    borrower_id = next((patron for borrows, patron in rows if borrows), None)
    owing = {patron for borrows, patron in rows if not borrows}
    # Patrons in id order, so that two such checkins never wait on each other.
    locked = [
        queries.lock_patron(session, patron_id)
        for patron_id in sorted(
            found for found in (borrower_id, *owing) if found is not None
        )
    ]
    return borrower_id, [patron for patron in locked if patron is not None]


def _last_renewed_at(session: Session, loan: Loan) -> datetime:
    """When the loan was last renewed, from its renewal log rows; its checkout
    time when it never was."""
    if loan.renewals == 0:
        return loan.checked_out_at
    renewed = session.scalar(
        sa.select(sa.func.max(CirculationLog.at)).where(
            CirculationLog.event == LoanEvent.RENEWAL,
            CirculationLog.item_id == loan.item_id,
            CirculationLog.patron_id == loan.patron_id,
            CirculationLog.at >= loan.checked_out_at,
        )
    )
    return loan.checked_out_at if renewed is None else max(renewed, loan.checked_out_at)


# How far before a loan's start a return may be dated and still end that loan
# (at its start): terminals' clocks drift, and SIP2 dates drop the fraction.
CLOCK_SLACK = timedelta(minutes=5)


def check_in(
    session: Session,
    known: Known,
    *,
    item_barcode: str,
    branch_code: str,
    terminal: str | None,
    returned_at: datetime,
    now: datetime,
) -> CheckinResult:
    """Take an item back at a branch (see the module's docstring).

    Raises:
        CirculationRefused: UNKNOWN_BRANCH or UNKNOWN_ITEM.
        LoanChangedHands: the loan moved between reading and locking; retry.
    """
    branch = queries.branch_by_code(session, branch_code)
    if branch is None:
        raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
    known.branch_id = branch.id

    borrower_id, _locked = _lock_patrons_first(session, item_barcode)
    item = queries.item_by_barcode(session, item_barcode, lock=True)
    if item is None:
        # TODO(#4): an unknown barcode is a refusal, not a CheckinResult with
        # alert UNKNOWN, because the result carries an ItemView of a known item.
        raise CirculationRefused(Refusal.UNKNOWN_ITEM)
    known.item_id = item.id
    loan = queries.open_loan(session, item, lock=True)
    if loan is not None and loan.patron_id not in (None, borrower_id):
        raise LoanChangedHands
    if loan is not None and returned_at < loan.checked_out_at - CLOCK_SLACK:
        # A return recorded offline, sent after the item was lent again: it
        # ended an earlier loan, never this one. Nothing changes; the refusal
        # (logged) tells staff to look at the item. (Within CLOCK_SLACK it is
        # this loan's return: SIP2 dates have whole seconds, and a terminal's
        # clock may be a little behind the server's.)
        raise CirculationRefused(Refusal.RETURN_BEFORE_LOAN)

    # The loan ends at the time of return, never before it began or was last
    # renewed.
    by = terminal or SYSTEM
    patron_barcode: str | None = None
    patron_id: int | None = None
    fine = 0
    moment = returned_at
    if loan is not None:
        moment = max(returned_at, _last_renewed_at(session, loan))
        loan.returned_at = moment
        if loan.patron is not None:
            patron_barcode = loan.patron.barcode
            patron_id = loan.patron.id
            fine = charge_overdue(
                session,
                patron=loan.patron,
                loan=loan,
                item=item,
                at=moment,
                terminal=terminal,
            )

    # Found again.
    found = item.status in (ItemStatus.LOST, ItemStatus.MISSING)
    if item.status is ItemStatus.LOST:
        lost_item_found(session, item=item, moment=now, by=by)
    if found:
        item.status = ItemStatus.AVAILABLE
        session.add(
            log_row(
                at=now,
                event=LoanEvent.ITEM_FOUND,
                terminal=terminal,
                item_id=item.id,
                branch_id=branch.id,
            )
        )

    arriving = item.transit_to_branch_id is not None
    item.current_branch = branch
    # The item's and loan's changes so far decide nothing `_route` reads (the
    # holds and rules), so they are written once, with its own, at the end.
    with session.no_autoflush:
        alert, hold = _route(session, item, branch, now, terminal)
    if alert is CheckinAlert.NONE:
        if found:
            alert = CheckinAlert.LOST_FOUND
        elif loan is None and not arriving:
            alert = CheckinAlert.NOT_ON_LOAN
    elif alert is CheckinAlert.TRANSIT_HOME and found:
        alert = CheckinAlert.LOST_FOUND

    write_log(
        session,
        log_row(
            at=moment,
            event=LoanEvent.CHECKIN,
            terminal=terminal,
            item_id=item.id,
            patron_id=patron_id,
            branch_id=branch.id,
            detail=None if loan is not None else "not on loan",
        ),
    )
    # The item's new state (its loan ended, its hold trapped or not, its
    # transit), read back in one statement.
    view = current_item_view(session, item)
    return CheckinResult(
        item=view,
        was_on_loan=loan is not None,
        patron_barcode=patron_barcode,
        returned_at=moment,
        return_branch_code=branch.code,
        alert=alert,
        permanent_location=item.location,
        home_branch_code=view.home_branch_code,
        destination_branch_code=view.in_transit_to,
        hold_patron_barcode=(
            None if hold is None or hold.patron is None else hold.patron.barcode
        ),
        hold_pickup_deadline=None if hold is None else hold.pickup_deadline,
        fine_minor=fine,
    )


def _route(
    session: Session,
    item: Item,
    here: Branch,
    now: datetime,
    terminal: str | None,
) -> tuple[CheckinAlert, Hold | None]:
    """Decide where the item goes from `here`: a hold, home, or the shelf."""
    touched = queries.holds_touch(session, item)
    trapped = queries.trapped_hold(session, item, lock=True) if touched else None
    if trapped is not None and not holds.same_institution(
        session, item, trapped.pickup_branch_id
    ):
        # Trapped for another institution's hold before holds were kept per
        # institution: the hold goes back to its queue, the item home.
        holds.requeue(
            session, trapped, item, now, "its item belongs to another institution"
        )
        trapped = None
    if trapped is not None:
        if trapped.pickup_branch_id == here.id:
            holds.arrive(session, trapped, item, now)
            return CheckinAlert.HOLD_HERE, trapped
        trapped.status = HoldStatus.IN_TRANSIT
        trapped.pickup_deadline = None
        item.transit_to_branch_id = trapped.pickup_branch_id
        if item.transit_since is None:
            item.transit_since = now
        return CheckinAlert.HOLD_TRANSIT, trapped

    following = (
        holds.next_hold(session, item, holds.local_today(now, here), lock=True)
        if touched
        else None
    )
    if following is not None:
        alert = holds.trap(
            session, following, item, here=here, moment=now, terminal=terminal
        )
        return alert, following

    if item.home_branch_id != here.id and item.status is not ItemStatus.WITHDRAWN:
        if item.transit_to_branch_id != item.home_branch_id:
            item.transit_since = now
        item.transit_to_branch_id = item.home_branch_id
        return CheckinAlert.TRANSIT_HOME, None
    item.transit_to_branch_id = None
    item.transit_since = None
    return CheckinAlert.NONE, None
