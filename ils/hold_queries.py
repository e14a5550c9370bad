"""Reading holds as an item sees them: the statements, built once, and the views.

Layer: `ils`, the bottom; imports none of sip2server, kiosk or drivers, and
not `ils.queries`, which re-exports these names (callers use them as
`queries.trapped_hold` and so on). See `ils.queries` for the row locks
(`FOR NO KEY UPDATE`) and why statements are built when the module is
imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from ils.models import BibRecord, Branch, Hold, HoldStatus, Item
from ils.results import HoldView

# The statements of the hot paths are built once, when the module is imported,
# with named parameters: building a statement anew for every call cost more
# Python than running it (SQLAlchemy's coercions and cache keys, several per
# request). Each look-up that can lock has a plain and a locking form.


_Query = TypeVar("_Query", bound=sa.Select[Any])


def both_forms(query: _Query) -> tuple[_Query, _Query]:
    """`query` as is, and with the row lock `ils.queries` describes.

    The locking form reads its rows afresh over the session's copies: a unit of
    work keeps what it loaded (`ils.db.keep_loaded`), so a row it read before
    locking it would otherwise keep the values from before the lock, which on
    PostgreSQL another transaction may have changed since.
    """
    locking = query.with_for_update(key_share=True).execution_options(
        populate_existing=True
    )
    return query, locking


# Holds, as the item side sees them. A hold row is locked only after the
# patron and item rows a use case needs (the lock order is patron, item, hold).

OPEN_HOLD_STATUSES = (HoldStatus.PENDING, HoldStatus.IN_TRANSIT, HoldStatus.WAITING)
TRAPPED_HOLD_STATUSES = (HoldStatus.IN_TRANSIT, HoldStatus.WAITING)


_TRAPPED_HOLD = both_forms(
    sa.select(Hold).where(
        Hold.trapped_item_id == sa.bindparam("item_id"),
        Hold.status.in_(TRAPPED_HOLD_STATUSES),
    )
)


# Whether any hold could concern an item: one trapped for it, or a pending hold
# on its title (a superset of what `trapped_hold` and `fillable_holds` find).
_HOLDS_TOUCH = (
    sa.select(sa.literal(1))
    .select_from(Hold)
    .where(
        sa.or_(
            sa.and_(
                Hold.trapped_item_id == sa.bindparam("item_id"),
                Hold.status.in_(TRAPPED_HOLD_STATUSES),
            ),
            sa.and_(
                Hold.record_id == sa.bindparam("record_id"),
                Hold.status == HoldStatus.PENDING,
            ),
        )
    )
    .limit(1)
)


def holds_touch(session: Session, item: Item) -> bool:
    """Whether a hold is trapped for `item` or pending on its title: when not,
    `trapped_hold` and `fillable_holds` would both find nothing, and a use case
    that needs both asks this one statement instead. (Unlocked: a hold that
    appears after it was not there to lock, as with the look-ups it spares.)"""
    found = session.scalar(
        _HOLDS_TOUCH, {"item_id": item.id, "record_id": item.record_id}
    )
    return found is not None


def trapped_hold(session: Session, item: Item, *, lock: bool = False) -> Hold | None:
    """The active hold this item is trapped for (in transit or waiting), if any."""
    return session.scalars(_TRAPPED_HOLD[lock], {"item_id": item.id}).first()


def _branches_of_institution_of(branch_id: sa.BindParameter[int]) -> sa.Select[int]:
    """The ids of the branches of the institution of the branch whose id the
    parameter `branch_id` names, as a subquery (no statement of its own)."""
    home = aliased(Branch)
    return sa.select(Branch.id).where(
        Branch.institution_id
        == sa.select(home.institution_id).where(home.id == branch_id).scalar_subquery()
    )


# A title's queue, as an item of it sees it (see `fillable_holds`).
_FILLABLE_HOLDS = both_forms(
    sa.select(Hold)
    .where(
        Hold.record_id == sa.bindparam("record_id"),
        Hold.status == HoldStatus.PENDING,
        sa.or_(Hold.item_id.is_(None), Hold.item_id == sa.bindparam("item_id")),
        sa.or_(Hold.expires_on.is_(None), Hold.expires_on >= sa.bindparam("today")),
        Hold.pickup_branch_id.in_(
            _branches_of_institution_of(sa.bindparam("home_branch_id"))
        ),
    )
    .order_by(Hold.placed_at, Hold.id)
)


def fillable_holds(
    session: Session, item: Item, today: date, *, lock: bool = False
) -> Sequence[Hold]:
    """The PENDING holds on the item's title that this item could fill, in queue
    order: title-level holds and item-level holds on this very item, leaving out
    those whose `expires_on` has passed by `today`, and those picked up at a
    branch of another institution than the item's (its home branch's): a title's
    queue is kept per institution, and one library's copy never fills another's
    hold, whichever institutions a terminal serves.

    Locked holds are taken in queue order, so two checkins of copies of one title
    lock them alike; a hold another transaction trapped meanwhile drops out.
    """
    return session.scalars(
        _FILLABLE_HOLDS[lock],
        {
            "record_id": item.record_id,
            "item_id": item.id,
            "today": today,
            "home_branch_id": item.home_branch_id,
        },
    ).all()


def hold_queue_position(session: Session, hold: Hold) -> int | None:
    """Where a PENDING hold stands among its title's PENDING holds picked up in
    the same institution (see `fillable_holds`), from 1."""
    if hold.status is not HoldStatus.PENDING:
        return None
    ahead = session.scalar(
        _HOLDS_AHEAD,
        {
            "record_id": hold.record_id,
            "pickup_branch_id": hold.pickup_branch_id,
            "placed_at": hold.placed_at,
            "hold_id": hold.id,
        },
    )
    return (ahead or 0) + 1


_HOLDS_AHEAD = (
    sa.select(sa.func.count())
    .select_from(Hold)
    .where(
        Hold.record_id == sa.bindparam("record_id"),
        Hold.status == HoldStatus.PENDING,
        Hold.pickup_branch_id.in_(
            _branches_of_institution_of(sa.bindparam("pickup_branch_id"))
        ),
        sa.or_(
            Hold.placed_at < sa.bindparam("placed_at"),
            sa.and_(
                Hold.placed_at == sa.bindparam("placed_at"),
                Hold.id < sa.bindparam("hold_id"),
            ),
        ),
    )
)


def hold_view(session: Session, hold: Hold) -> HoldView:
    """A hold as a patron or terminal sees it."""
    record: BibRecord = hold.record
    return HoldView(
        hold_id=hold.id,
        patron_barcode=None if hold.patron is None else hold.patron.barcode,
        record_id=hold.record_id,
        title=record.title,
        author=record.author,
        item_barcode=None if hold.item is None else hold.item.barcode,
        pickup_branch_code=hold.pickup_branch.code,
        status=hold.status,
        placed_at=hold.placed_at,
        expires_on=hold.expires_on,
        trapped_item_barcode=(
            None
            if hold.trapped_item is None or hold.status not in TRAPPED_HOLD_STATUSES
            else hold.trapped_item.barcode
        ),
        pickup_deadline=hold.pickup_deadline,
        queue_position=hold_queue_position(session, hold),
    )


# The hold queue an item sees: its institution's (see `fillable_holds`).
_QUEUE_LENGTH = (
    sa.select(sa.func.count())
    .select_from(Hold)
    .where(
        Hold.record_id == sa.bindparam("record_id"),
        Hold.status == HoldStatus.PENDING,
        sa.or_(Hold.item_id.is_(None), Hold.item_id == sa.bindparam("item_id")),
        Hold.pickup_branch_id.in_(
            _branches_of_institution_of(sa.bindparam("home_branch_id"))
        ),
    )
)


def hold_queue_length(session: Session, item: Item) -> int:
    """How many pending holds of the item's institution this item could fill."""
    length = session.scalar(
        _QUEUE_LENGTH,
        {
            "record_id": item.record_id,
            "item_id": item.id,
            "home_branch_id": item.home_branch_id,
        },
    )
    return length or 0
