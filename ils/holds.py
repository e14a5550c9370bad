"""Holds: placing, cancelling and changing them (pickup branch, expiry date),
trapping an item for the next hold in the queue, and expiring holds nobody
collected.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy. It never logs; every function runs
inside a unit of work of `ils.circulation.Circulation`, which owns the
transaction and its retries.

How holds behave (docs/loan-rules.md says the same for librarians):

- A hold is for a title (any copy will do) or for one item. A title's queue is
  its PENDING holds in placement order, kept per institution: a hold belongs to
  the institution of its pickup branch, and only that institution's copies (by
  their home branch) may be held for it, fill it or be trapped for it, even
  when one terminal serves several institutions. A hold for pickup at a branch
  of A is refused (PICKUP_BRANCH_NOT_ALLOWED) when the title has copies only in
  other institutions, and a hold cannot be moved to such a branch.
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
- A hold's last day (`expires_on`, the patron's "not wanted after") may be at
  most `LONGEST_EXPIRY_DAYS` (about three years) after the pickup branch's
  today, when placed or changed: a last day of 9999-12-31 is a typing or
  terminal mistake, not a wish, and would keep the hold in the queue for ever.

Locks are taken in the order patron, item, hold, as everywhere in the core; the
partial unique index `uq_hold_trapped_item` stops one item from ever being
trapped for two active holds, whatever a caller does.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.fees import charge_fee, institution_of
from ils.hold_trapping import (
    _UNHOLDABLE,
    _holds_ahead,
    _spare_copies,
    arrive,
    finish,
    fulfil_for_checkout,
    hold_for_other,
    hold_policy_refusal,
    local_today,
    next_hold,
    pass_on,
    pickup_deadline,
    requeue,
    same_institution,
    shelf_copies,
    trap,
)
from ils.hold_views import _open_holds, holds_of, queue
from ils.models import (
    BibRecord,
    Branch,
    FeeKind,
    Hold,
    HoldStatus,
    Item,
    LoanEvent,
    Patron,
)
from ils.results import (
    CirculationRefused,
    HoldView,
    Refusal,
)
from ils.units import SYSTEM, Known, LoanChangedHands, card_refusal, log_row

# Moved to ils.hold_trapping and ils.hold_views; still importable from here.
__all__ = [
    "KEEP",
    "_UNHOLDABLE",
    "HoldRequest",
    "Keep",
    "_holds_ahead",
    "_open_holds",
    "_spare_copies",
    "arrive",
    "cancel",
    "change",
    "expire",
    "expiry_candidates",
    "finish",
    "fulfil_for_checkout",
    "hold_for_other",
    "hold_policy_refusal",
    "holds_of",
    "local_today",
    "next_hold",
    "pass_on",
    "pickup_deadline",
    "place",
    "queue",
    "requeue",
    "same_institution",
    "shelf_copies",
    "trap",
]


# Use cases: each runs inside a unit of work and refuses before it writes.


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


# How far ahead a hold's last day may be, from the pickup branch's today:
# three years and a leap day. There is no institution setting for it (a hold
# with no last day at all stays possible: it lasts until it is filled or
# cancelled).
LONGEST_EXPIRY_DAYS: Final = 3 * 365 + 1

EXPIRY_TOO_FAR = (
    "That last date is too far ahead; please give one within three years of today."
)


# TODO(#5): the horizon is fixed at three years, not an institution setting.
def _check_expiry_horizon(expires_on: date | None, today: date) -> None:
    """Refuse a last day more than `LONGEST_EXPIRY_DAYS` after `today`.

    Raises:
        CirculationRefused: HOLDS_NOT_ALLOWED with `EXPIRY_TOO_FAR`.
    """
    if expires_on is not None and expires_on > today + timedelta(
        days=LONGEST_EXPIRY_DAYS
    ):
        raise CirculationRefused(Refusal.HOLDS_NOT_ALLOWED, EXPIRY_TOO_FAR)


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
        CirculationRefused: UNKNOWN_BRANCH, HOLDS_NOT_ALLOWED (a last day too
            far ahead), UNKNOWN_PATRON, a card refusal, UNKNOWN_ITEM,
            HOLDS_NOT_ALLOWED, PICKUP_BRANCH_NOT_ALLOWED, ALREADY_ON_HOLD or
            MAX_HOLDS_REACHED, in that order.
    """
    pickup = queries.branch_by_code(session, request.pickup_branch_code)
    if pickup is None:
        raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
    known.branch_id = pickup.id
    _check_expiry_horizon(request.expires_on, local_today(moment, pickup))

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

    # Only the pickup institution's own copies can ever fill the hold.
    if copies:
        copies = [c for c in copies if same_institution(session, c, pickup.id)]
        if not copies:
            raise CirculationRefused(Refusal.PICKUP_BRANCH_NOT_ALLOWED)

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


# The sentences for an expiry change a patron may not make.
EXPIRY_PASSED = "That last date has already passed; please give a later one."
EXPIRY_OF_TRAPPED = (
    "A copy is already set aside for this reservation; it waits until its pickup"
    " deadline, and that cannot be changed here."
)


class Keep(enum.Enum):
    """A setting that a change leaves as it is (where None has a meaning of its
    own: a hold's expiry of None means it never expires)."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


def _pickup_allowed(
    session: Session, patron: Patron, hold: Hold, item: Item | None, pickup: Branch
) -> bool:
    """Whether the rule lets the hold's copies (its trapped item, its named item,
    or any copy of the title) be picked up at `pickup`."""
    copies: Sequence[Item]
    if item is not None:
        copies = [item]
    elif hold.item is not None:
        copies = [hold.item]
    else:
        copies = session.scalars(
            sa.select(Item).where(Item.record_id == hold.record_id).order_by(Item.id)
        ).all()
    return any(
        same_institution(session, copy, pickup.id)
        and hold_policy_refusal(
            session, category_id=patron.category_id, item=copy, pickup=pickup
        )[0]
        is None
        for copy in copies
    )


def _move(
    session: Session, hold: Hold, item: Item | None, pickup: Branch, moment: datetime
) -> None:
    """Point the hold at `pickup`; a trapped item waits there if it is there
    already, otherwise it goes in transit there."""
    hold.pickup_branch = pickup
    if item is None:
        return
    if item.current_branch_id == pickup.id and item.transit_to_branch_id is None:
        hold.status = HoldStatus.WAITING
        hold.pickup_deadline = pickup_deadline(session, pickup, moment)
    else:
        hold.status = HoldStatus.IN_TRANSIT
        hold.pickup_deadline = None
        item.transit_to_branch_id = pickup.id
        item.transit_since = moment


def change(
    session: Session,
    known: Known,
    *,
    patron_barcode: str,
    hold_id: int,
    pickup_branch_code: str | None,
    expires_on: date | Literal[Keep.KEEP] | None,
    moment: datetime,
    terminal: str | None,
) -> HoldView:
    """Change an open hold's pickup branch, its expiry date, or both: all of it or,
    when anything is refused, none of it. One HOLD_CHANGED log row says what
    changed; a change to what the hold already has writes nothing.

    A new pickup branch sends an item already trapped for the hold in transit
    there (or leaves it waiting, if it is there already). A new expiry (the last
    day the patron wants the hold, a date in the pickup branch's time zone; None
    for none) is only for a PENDING hold: once a copy is trapped, the hold lasts
    until its pickup deadline instead.

    Raises:
        CirculationRefused: UNKNOWN_BRANCH, UNKNOWN_PATRON, HOLD_NOT_FOUND (no
            open hold of this patron's with this id), HOLDS_NOT_ALLOWED (an
            expiry for a hold no longer PENDING, a day before today, or one
            more than `LONGEST_EXPIRY_DAYS` ahead), or
            PICKUP_BRANCH_NOT_ALLOWED by the rule for the hold's copies, in that
            order.
    """
    pickup: Branch | None = None
    if pickup_branch_code is not None:
        pickup = queries.branch_by_code(session, pickup_branch_code)
        if pickup is None:
            raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
        known.branch_id = pickup.id
    patron, hold, item = _patrons_hold(session, known, patron_barcode, hold_id)
    destination = hold.pickup_branch if pickup is None else pickup

    # Every check comes before the first write.
    if expires_on is not KEEP:
        if hold.status is not HoldStatus.PENDING:
            raise CirculationRefused(Refusal.HOLDS_NOT_ALLOWED, EXPIRY_OF_TRAPPED)
        today = local_today(moment, destination)
        if expires_on is not None and expires_on < today:
            raise CirculationRefused(Refusal.HOLDS_NOT_ALLOWED, EXPIRY_PASSED)
        _check_expiry_horizon(expires_on, today)
    if pickup is not None and not _pickup_allowed(session, patron, hold, item, pickup):
        raise CirculationRefused(Refusal.PICKUP_BRANCH_NOT_ALLOWED)

    changes: list[str] = []
    if pickup is not None and hold.pickup_branch_id != pickup.id:
        _move(session, hold, item, pickup, moment)
        changes.append(f"pickup at {pickup.code}")
    if expires_on is not KEEP and expires_on != hold.expires_on:
        hold.expires_on = expires_on
        changes.append(
            "no expiry" if expires_on is None else f"expires {expires_on:%Y-%m-%d}"
        )
    if changes:
        session.add(
            log_row(
                at=moment,
                event=LoanEvent.HOLD_CHANGED,
                terminal=terminal,
                item_id=None if item is None else item.id,
                patron_id=patron.id,
                branch_id=destination.id,
                detail=f"hold {hold.id} {', '.join(changes)}",
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
