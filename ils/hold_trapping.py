"""Holds meet items: which hold an item can fill, trapping it for that hold
(hold shelf or transit), ending a hold and passing its item on, and whether an
item is kept for someone else's hold.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy, and never `ils.holds` (which
re-exports these names). It never logs; every function runs inside a unit of
work of `ils.circulation.Circulation`. How holds behave is told in `ils.holds`.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.calendar import due_after_days
from ils.models import (
    Branch,
    Hold,
    HoldStatus,
    Institution,
    Item,
    ItemStatus,
    Loan,
    LoanEvent,
    LoanRule,
    Patron,
)
from ils.results import CheckinAlert, Refusal
from ils.units import log_row

# Item statuses in which a copy does not count towards placing a hold.
_UNHOLDABLE = frozenset(
    {ItemStatus.LOST, ItemStatus.MISSING, ItemStatus.WITHDRAWN, ItemStatus.NOT_FOR_LOAN}
)


def local_today(moment: datetime, branch: Branch) -> date:
    """The date at `moment` in the branch's time zone."""
    return moment.astimezone(queries.branch_zone(branch)).date()


def pickup_deadline(session: Session, branch: Branch, moment: datetime) -> datetime:
    """When a hold trapped at `moment` stops waiting at `branch`: the end of the
    open day `hold_pickup_days` days on, by the branch's calendar."""
    institution = session.get(Institution, branch.institution_id)
    days = 7 if institution is None else institution.hold_pickup_days
    calendar = queries.branch_calendar(session, branch, queries.branch_zone(branch))
    return due_after_days(moment, days, calendar)


def same_institution(session: Session, item: Item, branch_id: int) -> bool:
    """Whether the item's home branch and branch `branch_id` belong to one
    institution: only then may the item fill a hold picked up at that branch
    (title-level holds are queued and filled per institution)."""
    home = session.get(Branch, item.home_branch_id)
    there = session.get(Branch, branch_id)
    return (
        home is not None
        and there is not None
        and home.institution_id == there.institution_id
    )


def hold_policy_refusal(
    session: Session, *, category_id: int, item: Item, pickup: Branch
) -> tuple[Refusal | None, LoanRule | None]:
    """Whether the rule for this category and item at the pickup branch lets it be
    held there: HOLDS_NOT_ALLOWED, PICKUP_BRANCH_NOT_ALLOWED or None, with the rule."""
    if item.status in _UNHOLDABLE:
        return Refusal.HOLDS_NOT_ALLOWED, None
    choice = queries.loan_rule_choice(
        session,
        branch_id=pickup.id,
        category_id=category_id,
        item_type_id=item.item_type_id,
    )
    rule = choice.rule
    if rule is None or not rule.holds_allowed or choice.in_house_only:
        return Refusal.HOLDS_NOT_ALLOWED, rule
    if (
        rule.hold_pickup_branches
        and pickup.code not in rule.hold_pickup_branches.split()
    ):
        return Refusal.PICKUP_BRANCH_NOT_ALLOWED, rule
    return None, rule


def next_hold(
    session: Session,
    item: Item,
    today: date,
    *,
    lock: bool,
    skip_patron_id: int | None = None,
) -> Hold | None:
    """The first hold in the queue this item can fill by its rules, if any. Only
    an AVAILABLE item fills a hold: one that cannot be lent is not trapped, nor
    one of another institution than the hold's pickup branch (`fillable_holds`
    leaves those holds out)."""
    if item.status is not ItemStatus.AVAILABLE:
        return None
    for hold in queries.fillable_holds(session, item, today, lock=lock):
        patron = hold.patron
        if patron is None or patron.id == skip_patron_id:
            continue
        refusal, _rule = hold_policy_refusal(
            session,
            category_id=patron.category_id,
            item=item,
            pickup=hold.pickup_branch,
        )
        if refusal is None:
            return hold
    return None


def trap(
    session: Session,
    hold: Hold,
    item: Item,
    *,
    here: Branch,
    moment: datetime,
    terminal: str | None,
) -> CheckinAlert:
    """Trap `item` (at `here`) for `hold`: on the hold shelf if this is the pickup
    branch, else in transit there. The caller has released any other hold on it."""
    hold.trapped_item_id = item.id
    hold.trapped_at = moment
    if hold.pickup_branch_id == here.id:
        hold.status = HoldStatus.WAITING
        hold.pickup_deadline = pickup_deadline(session, here, moment)
        item.transit_to_branch_id = None
        item.transit_since = None
        alert = CheckinAlert.HOLD_HERE
        detail = f"hold {hold.id} waiting until {hold.pickup_deadline.isoformat()}"
    else:
        hold.status = HoldStatus.IN_TRANSIT
        hold.pickup_deadline = None
        item.transit_to_branch_id = hold.pickup_branch_id
        item.transit_since = moment
        alert = CheckinAlert.HOLD_TRANSIT
        detail = f"hold {hold.id} in transit to {hold.pickup_branch.code}"
    session.add(
        log_row(
            at=moment,
            event=LoanEvent.HOLD_TRAPPED,
            terminal=terminal,
            item_id=item.id,
            patron_id=hold.patron_id,
            branch_id=here.id,
            detail=detail,
        )
    )
    # Written now, so the unique index on trapped items judges it at once.
    session.flush()
    return alert


def arrive(session: Session, hold: Hold, item: Item, moment: datetime) -> None:
    """An item trapped in transit reached its hold's pickup branch: it waits there."""
    if hold.status is HoldStatus.IN_TRANSIT:
        hold.status = HoldStatus.WAITING
        hold.pickup_deadline = pickup_deadline(session, hold.pickup_branch, moment)
    item.transit_to_branch_id = None
    item.transit_since = None


def finish(
    session: Session,
    hold: Hold,
    status: HoldStatus,
    moment: datetime,
    terminal: str | None,
    *,
    event: LoanEvent | None,
    branch_id: int | None = None,
) -> None:
    """End a hold (FULFILLED, CANCELLED or EXPIRED), with a log row for `event`."""
    hold.status = status
    hold.finished_at = moment
    if event is not None:
        session.add(
            log_row(
                at=moment,
                event=event,
                terminal=terminal,
                item_id=hold.trapped_item_id or hold.item_id,
                patron_id=hold.patron_id,
                branch_id=branch_id,
                detail=f"hold {hold.id}",
            )
        )
    # Released before anything else is trapped, so the unique index never sees
    # two active holds on the item within one flush.
    session.flush()


def pass_on(
    session: Session, item: Item, moment: datetime, terminal: str | None
) -> Hold | None:
    """After a WAITING hold on `item` ended, trap it for the next hold if that hold
    is picked up where the item is (it stays on the hold shelf); else leave it for
    its next checkin. Returns the hold it passed to."""
    if item.transit_to_branch_id is not None:
        return None
    here = item.current_branch
    following = next_hold(session, item, local_today(moment, here), lock=True)
    if following is None or following.pickup_branch_id != here.id:
        return None
    trap(session, following, item, here=here, moment=moment, terminal=terminal)
    return following


def fulfil_for_checkout(
    session: Session, patron: Patron, item: Item, moment: datetime, today: date
) -> Hold | None:
    """The patron's hold that this checkout fills, marked FULFILLED: the hold the
    item is trapped for, or else their first pending hold it can fill."""
    trapped = queries.trapped_hold(session, item, lock=True)
    if trapped is not None and (
        trapped.patron_id != patron.id
        or not same_institution(session, item, trapped.pickup_branch_id)
    ):
        # Lent to someone else by a staff override: the other patron's hold goes
        # back to its place in the queue rather than wait for an item on loan.
        # So does a hold of another institution the item was trapped for before
        # that was refused: another library's copy never fills it.
        requeue(
            session,
            trapped,
            item,
            moment,
            "its item was lent by override"
            if trapped.patron_id != patron.id
            else "its item belongs to another institution",
        )
        trapped = None
    if trapped is not None:
        finish(session, trapped, HoldStatus.FULFILLED, moment, None, event=None)
        item.transit_to_branch_id = None
        item.transit_since = None
        return trapped
    for hold in queries.fillable_holds(session, item, today, lock=True):
        if hold.patron_id == patron.id:
            finish(session, hold, HoldStatus.FULFILLED, moment, None, event=None)
            return hold
    return None


def requeue(
    session: Session,
    hold: Hold,
    item: Item,
    moment: datetime,
    why: str = "its item was lent by override",
) -> None:
    """Release a trapped hold's item and put the hold back in the queue (it keeps
    its placement time, so its place); `why` ends the log row's detail."""
    hold.status = HoldStatus.PENDING
    hold.trapped_item_id = None
    hold.trapped_at = None
    hold.pickup_deadline = None
    session.add(
        log_row(
            at=moment,
            event=LoanEvent.HOLD_CHANGED,
            terminal=None,
            item_id=item.id,
            patron_id=hold.patron_id,
            branch_id=hold.pickup_branch_id,
            detail=f"hold {hold.id} back in the queue: {why}",
        )
    )
    session.flush()


def hold_for_other(
    session: Session,
    patron: Patron,
    item: Item,
    today: date,
    *,
    from_shelf: bool = False,
) -> bool:
    """Whether the item is held for someone else: trapped for another patron's
    hold, or wanted by pending holds of other patrons ahead of this patron's own.

    With `from_shelf` (a copy taken from the open shelf to be lent), pending
    title-level holds keep it only when the title has too few spare copies on
    the shelf at the same branch to fill them all: one copy on the shelf does
    not stop every other copy from being lent.
    """
    trapped = queries.trapped_hold(session, item)
    if trapped is not None:
        return trapped.patron_id != patron.id
    wanting = _holds_ahead(session, patron, item, today)
    if not wanting:
        return False
    if not from_shelf or any(hold.item_id == item.id for hold in wanting):
        return True
    return len(_spare_copies(session, item, wanting[0], need=len(wanting))) < len(
        wanting
    )


def _holds_ahead(
    session: Session, patron: Patron, item: Item, today: date
) -> list[Hold]:
    """Other patrons' pending holds this item could fill, in queue order, up to
    this patron's own first hold on the title."""
    if item.status is not ItemStatus.AVAILABLE:
        return []
    ahead: list[Hold] = []
    for hold in queries.fillable_holds(session, item, today):
        if hold.patron_id == patron.id:
            break
        if hold.patron is None:
            continue
        refusal, _rule = hold_policy_refusal(
            session,
            category_id=hold.patron.category_id,
            item=item,
            pickup=hold.pickup_branch,
        )
        if refusal is None:
            ahead.append(hold)
    return ahead


def shelf_copies(*, free_of_item_holds: bool = True) -> sa.Select[Item]:
    """Copies on an open shelf now: available, not on loan, not in transit, not
    trapped for a hold, and (with `free_of_item_holds`) wanted by no pending
    item-level hold."""
    query = sa.select(Item).where(
        Item.status == ItemStatus.AVAILABLE,
        Item.transit_to_branch_id.is_(None),
        ~sa.exists().where(Loan.item_id == Item.id, Loan.returned_at.is_(None)),
        ~sa.exists().where(
            Hold.trapped_item_id == Item.id,
            Hold.status.in_(queries.TRAPPED_HOLD_STATUSES),
        ),
    )
    if free_of_item_holds:
        query = query.where(
            ~sa.exists().where(
                Hold.item_id == Item.id, Hold.status == HoldStatus.PENDING
            )
        )
    return query


def _spare_copies(session: Session, item: Item, hold: Hold, *, need: int) -> list[Item]:
    """Up to `need` other copies of the item's title on the shelf at its branch
    that could fill `hold` by the rules."""
    spare: list[Item] = []
    candidates = session.scalars(
        shelf_copies()
        .where(
            Item.record_id == item.record_id,
            Item.id != item.id,
            Item.current_branch_id == item.current_branch_id,
        )
        .order_by(Item.id)
    )
    for copy in candidates:
        if hold.patron is None:
            break
        refusal, _rule = hold_policy_refusal(
            session,
            category_id=hold.patron.category_id,
            item=copy,
            pickup=hold.pickup_branch,
        )
        if refusal is None:
            spare.append(copy)
            if len(spare) >= need:
                break
    return spare
