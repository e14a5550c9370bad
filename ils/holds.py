"""Holds: placing, cancelling and moving them, trapping an item for the next hold
in the queue, and expiring holds nobody collected.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy. It never logs; every function runs
inside a unit of work of `ils.circulation.Circulation`, which owns the
transaction and its retries.

How holds behave (docs/loan-rules.md says the same for librarians):

- A hold is for a title (any copy will do) or for one item. A title's queue is
  its PENDING holds in placement order.
- Whether a hold may be placed, and where it may be picked up, is the loan rule's
  (`holds_allowed`, `hold_pickup_branches`) for the patron's category and the
  item's type at the pickup branch. A title-level hold needs one copy whose rule
  allows it.
- A hold is trapped when an item that can fill it is checked in: it waits on the
  hold shelf (WAITING, with a pickup deadline `hold_pickup_days` days on, at the
  end of an open day of the pickup branch) when checked in at the pickup branch,
  or goes in transit there (IN_TRANSIT) and turns WAITING when checked in on
  arrival. A hold placed while a copy is on the open shelf is trapped when staff
  pull that copy and check it in, not at once: nobody has it in hand yet.
- When a WAITING hold is cancelled or expires, the item passes straight to the
  next hold in the queue if that hold is picked up at the same branch (it stays
  on the hold shelf with a fresh deadline). Otherwise the item is released, and
  its next checkin (staff clearing the hold shelf) traps it for the next hold or
  sends it home. An IN_TRANSIT hold that ends leaves its item in transit; the
  checkin on arrival decides what comes next.

Locks are taken in the order patron, item, hold, as everywhere in the core; the
partial unique index `uq_hold_trapped_item` stops one item from ever being
trapped for two active holds, whatever a caller does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.calendar import due_after_days
from ils.fees import charge_fee, institution_of
from ils.models import (
    BibRecord,
    Branch,
    FeeKind,
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
from ils.results import (
    CheckinAlert,
    CirculationRefused,
    HoldView,
    Refusal,
)
from ils.units import SYSTEM, Known, LoanChangedHands, card_refusal, log_row

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
    an AVAILABLE item fills a hold: one that cannot be lent is not trapped."""
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
    if trapped is not None and trapped.patron_id != patron.id:
        # Lent to someone else by a staff override: the other patron's hold goes
        # back to its place in the queue rather than wait for an item on loan.
        requeue(session, trapped, item, moment)
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


def requeue(session: Session, hold: Hold, item: Item, moment: datetime) -> None:
    """Release a trapped hold's item and put the hold back in the queue (it keeps
    its placement time, so its place)."""
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
            detail=f"hold {hold.id} back in the queue: its item was lent by override",
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


# Use cases: each runs inside a unit of work and refuses before it writes.


def _open_holds(session: Session, patron: Patron) -> Sequence[Hold]:
    return session.scalars(
        sa.select(Hold)
        .where(
            Hold.patron_id == patron.id,
            Hold.status.in_(queries.OPEN_HOLD_STATUSES),
        )
        .order_by(Hold.placed_at, Hold.id)
    ).all()


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldRequest:
    """What a patron asks to hold: a title (via a copy's barcode or the record
    id) or, with `item_level`, that one copy."""

    patron_barcode: str
    pickup_branch_code: str
    item_barcode: str | None = None
    record_id: int | None = None
    item_level: bool = False
    expires_on: date | None = None


def _copies(
    session: Session, known: Known, request: HoldRequest
) -> tuple[Item | None, int, Sequence[Item]]:
    """The item named (if any), the title's record id, and the copies that could
    fill the hold."""
    item: Item | None = None
    if request.item_barcode is not None:
        item = queries.item_by_barcode(session, request.item_barcode)
        if item is None:
            raise CirculationRefused(Refusal.UNKNOWN_ITEM)
        known.item_id = item.id
        record_id = item.record_id
    elif request.record_id is not None and not request.item_level:
        if session.get(BibRecord, request.record_id) is None:
            raise CirculationRefused(Refusal.UNKNOWN_ITEM)
        record_id = request.record_id
    else:
        raise ValueError("an item-level hold needs an item barcode")
    if request.item_level and item is not None:
        return item, record_id, [item]
    copies = session.scalars(
        sa.select(Item).where(Item.record_id == record_id).order_by(Item.id)
    ).all()
    return item, record_id, copies


def place(
    session: Session,
    known: Known,
    request: HoldRequest,
    *,
    pin_valid: bool | None,
    pin_locked: bool,
    moment: datetime,
    terminal: str | None,
) -> HoldView:
    """Place a hold, charging the rule's hold fee.

    Raises:
        CirculationRefused: UNKNOWN_BRANCH, UNKNOWN_PATRON, a card refusal,
            UNKNOWN_ITEM, HOLDS_NOT_ALLOWED, PICKUP_BRANCH_NOT_ALLOWED,
            ALREADY_ON_HOLD or MAX_HOLDS_REACHED, in that order.
    """
    pickup = queries.branch_by_code(session, request.pickup_branch_code)
    if pickup is None:
        raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
    known.branch_id = pickup.id

    patron = queries.patron_by_barcode(session, request.patron_barcode, lock=True)
    if patron is None:
        raise CirculationRefused(Refusal.UNKNOWN_PATRON)
    known.patron_id = patron.id
    refusal = card_refusal(
        session,
        patron,
        moment,
        queries.branch_zone(pickup),
        pin_valid=pin_valid,
        pin_locked=pin_locked,
    )
    if refusal is not None:
        raise CirculationRefused(refusal)

    item, record_id, copies = _copies(session, known, request)

    # The rule: a copy whose rule allows the hold, picked up here.
    outcomes = [
        hold_policy_refusal(
            session, category_id=patron.category_id, item=copy, pickup=pickup
        )
        for copy in copies
    ]
    allowed = [rule for refusal, rule in outcomes if refusal is None]
    if not allowed:
        reasons = {refusal for refusal, _rule in outcomes}
        raise CirculationRefused(
            Refusal.PICKUP_BRANCH_NOT_ALLOWED
            if Refusal.PICKUP_BRANCH_NOT_ALLOWED in reasons
            else Refusal.HOLDS_NOT_ALLOWED
        )
    rule = allowed[0]
    assert rule is not None

    open_holds = _open_holds(session, patron)
    if any(hold.record_id == record_id for hold in open_holds):
        raise CirculationRefused(Refusal.ALREADY_ON_HOLD)
    institution = institution_of(session, patron)
    if institution.max_holds is not None and len(open_holds) >= institution.max_holds:
        raise CirculationRefused(Refusal.MAX_HOLDS_REACHED)

    hold = Hold(
        patron_id=patron.id,
        record_id=record_id,
        item_id=item.id if request.item_level and item is not None else None,
        pickup_branch_id=pickup.id,
        status=HoldStatus.PENDING,
        placed_at=moment,
        expires_on=request.expires_on,
        placed_by=terminal or SYSTEM,
    )
    session.add(hold)
    session.flush()
    session.add(
        log_row(
            at=moment,
            event=LoanEvent.HOLD_PLACED,
            terminal=terminal,
            item_id=hold.item_id,
            patron_id=patron.id,
            branch_id=pickup.id,
            detail=f"hold {hold.id} for pickup at {pickup.code}",
        )
    )
    record = session.get(BibRecord, record_id)
    charge_fee(
        session,
        patron=patron,
        kind=FeeKind.HOLD,
        amount_minor=rule.hold_fee_minor,
        description=f"hold: {'' if record is None else record.title}",
        by=terminal or SYSTEM,
        moment=moment,
        item=item if request.item_level else None,
    )
    session.flush()
    return queries.hold_view(session, hold)


def _patrons_hold(
    session: Session, known: Known, patron_barcode: str, hold_id: int
) -> tuple[Patron, Hold, Item | None]:
    """The patron (locked), their open hold (locked after its trapped item)."""
    patron = queries.patron_by_barcode(session, patron_barcode, lock=True)
    if patron is None:
        raise CirculationRefused(Refusal.UNKNOWN_PATRON)
    known.patron_id = patron.id
    seen = session.get(Hold, hold_id)
    if (
        seen is None
        or seen.patron_id != patron.id
        or seen.status not in queries.OPEN_HOLD_STATUSES
    ):
        raise CirculationRefused(Refusal.HOLD_NOT_FOUND)
    seen_status, seen_item_id = seen.status, seen.trapped_item_id
    item: Item | None = None
    if seen_status in queries.TRAPPED_HOLD_STATUSES and seen_item_id is not None:
        item = queries.item_by_id(session, seen_item_id, lock=True)
        known.item_id = seen_item_id
    hold = session.scalars(
        sa.select(Hold)
        .where(Hold.id == hold_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()
    if hold.status is not seen_status or hold.trapped_item_id != seen_item_id:
        # Trapped or released between our reads: take the locks again.
        raise LoanChangedHands
    return patron, hold, item


def cancel(
    session: Session,
    known: Known,
    *,
    patron_barcode: str,
    hold_id: int,
    moment: datetime,
    terminal: str | None,
) -> HoldView:
    """Cancel a patron's open hold; an item waiting for it passes on (see above).

    Raises:
        CirculationRefused: UNKNOWN_PATRON, or HOLD_NOT_FOUND when the patron has
            no open hold with this id.
    """
    _patron, hold, item = _patrons_hold(session, known, patron_barcode, hold_id)
    was_waiting = hold.status is HoldStatus.WAITING
    finish(
        session,
        hold,
        HoldStatus.CANCELLED,
        moment,
        terminal,
        event=LoanEvent.HOLD_CANCELLED,
        branch_id=hold.pickup_branch_id,
    )
    if was_waiting and item is not None:
        pass_on(session, item, moment, terminal)
    return queries.hold_view(session, hold)


def change_pickup(
    session: Session,
    known: Known,
    *,
    patron_barcode: str,
    hold_id: int,
    pickup_branch_code: str,
    moment: datetime,
    terminal: str | None,
) -> HoldView:
    """Move a hold's pickup to another branch; an item already trapped for it goes
    in transit there (or waits, if it is there already).

    Raises:
        CirculationRefused: UNKNOWN_BRANCH, UNKNOWN_PATRON, HOLD_NOT_FOUND, or
            PICKUP_BRANCH_NOT_ALLOWED by the rule for the hold's copies.
    """
    pickup = queries.branch_by_code(session, pickup_branch_code)
    if pickup is None:
        raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
    known.branch_id = pickup.id
    patron, hold, item = _patrons_hold(session, known, patron_barcode, hold_id)

    copies: Sequence[Item]
    if item is not None:
        copies = [item]
    elif hold.item is not None:
        copies = [hold.item]
    else:
        copies = session.scalars(
            sa.select(Item).where(Item.record_id == hold.record_id).order_by(Item.id)
        ).all()
    if not any(
        hold_policy_refusal(
            session, category_id=patron.category_id, item=copy, pickup=pickup
        )[0]
        is None
        for copy in copies
    ):
        raise CirculationRefused(Refusal.PICKUP_BRANCH_NOT_ALLOWED)
    if hold.pickup_branch_id == pickup.id:
        return queries.hold_view(session, hold)

    hold.pickup_branch = pickup
    if item is not None:
        if item.current_branch_id == pickup.id and item.transit_to_branch_id is None:
            hold.status = HoldStatus.WAITING
            hold.pickup_deadline = pickup_deadline(session, pickup, moment)
        else:
            hold.status = HoldStatus.IN_TRANSIT
            hold.pickup_deadline = None
            item.transit_to_branch_id = pickup.id
            item.transit_since = moment
    session.add(
        log_row(
            at=moment,
            event=LoanEvent.HOLD_CHANGED,
            terminal=terminal,
            item_id=None if item is None else item.id,
            patron_id=patron.id,
            branch_id=pickup.id,
            detail=f"hold {hold.id} pickup at {pickup.code}",
        )
    )
    session.flush()
    return queries.hold_view(session, hold)


def expiry_candidates(session: Session, now: datetime) -> list[int]:
    """Ids of open holds that may have expired by `now`: waiting past their
    pickup deadline, or past their `expires_on` (checked per branch by `expire`)."""
    # The latest date anywhere is at most a day ahead of UTC's.
    latest = now.date()
    return list(
        session.scalars(
            sa.select(Hold.id)
            .where(
                Hold.status.in_(queries.OPEN_HOLD_STATUSES),
                sa.or_(
                    sa.and_(
                        Hold.status == HoldStatus.WAITING,
                        Hold.pickup_deadline < now,
                    ),
                    Hold.expires_on <= latest,
                ),
            )
            .order_by(Hold.id)
        )
    )


def _expired(hold: Hold, now: datetime) -> bool:
    if (
        hold.status is HoldStatus.WAITING
        and hold.pickup_deadline is not None
        and hold.pickup_deadline < now
    ):
        return True
    return hold.expires_on is not None and hold.expires_on < local_today(
        now, hold.pickup_branch
    )


def expire(
    session: Session, hold_id: int, now: datetime, terminal: str | None
) -> tuple[HoldView, HoldView | None] | None:
    """Expire one hold if it has expired by `now`; a waiting item passes on.

    Returns the expired hold and the hold its item passed to, or None when the
    hold had not expired (or had ended) after all.
    """
    seen = session.get(Hold, hold_id)
    if (
        seen is None
        or seen.status not in queries.OPEN_HOLD_STATUSES
        or not _expired(seen, now)
    ):
        return None
    seen_status, seen_item_id = seen.status, seen.trapped_item_id
    item: Item | None = None
    if seen_status in queries.TRAPPED_HOLD_STATUSES and seen_item_id is not None:
        item = queries.item_by_id(session, seen_item_id, lock=True)
    hold = session.scalars(
        sa.select(Hold)
        .where(Hold.id == hold_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()
    if hold.status is not seen_status or hold.trapped_item_id != seen_item_id:
        raise LoanChangedHands
    finish(
        session,
        hold,
        HoldStatus.EXPIRED,
        now,
        terminal,
        event=LoanEvent.HOLD_EXPIRED,
        branch_id=hold.pickup_branch_id,
    )
    following = None
    if seen_status is HoldStatus.WAITING and item is not None:
        following = pass_on(session, item, now, terminal)
    return (
        queries.hold_view(session, hold),
        None if following is None else queries.hold_view(session, following),
    )


def holds_of(session: Session, patron: Patron) -> list[HoldView]:
    """A patron's open holds, oldest first."""
    return [queries.hold_view(session, hold) for hold in _open_holds(session, patron)]


def queue(session: Session, record_id: int, item: Item | None) -> list[HoldView]:
    """A title's open holds: trapped ones first, then the queue in order. With
    `item`, only the holds that copy could fill or is trapped for."""
    query = sa.select(Hold).where(
        Hold.record_id == record_id, Hold.status.in_(queries.OPEN_HOLD_STATUSES)
    )
    if item is not None:
        query = query.where(
            sa.or_(
                Hold.trapped_item_id == item.id,
                sa.and_(
                    Hold.status == HoldStatus.PENDING,
                    sa.or_(Hold.item_id.is_(None), Hold.item_id == item.id),
                ),
            )
        )
    holds = session.scalars(query.order_by(Hold.placed_at, Hold.id)).all()
    ordered = [h for h in holds if h.status is not HoldStatus.PENDING] + [
        h for h in holds if h.status is HoldStatus.PENDING
    ]
    return [queries.hold_view(session, hold) for hold in ordered]
