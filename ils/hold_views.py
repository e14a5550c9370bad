"""Reading holds: a patron's open holds, a title's queue, and where each of a
patron's holds stands in its queue, as views.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy, and never `ils.holds` (which
re-exports these names). It only reads; it never logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from ils import queries
from ils.models import Branch, Hold, HoldStatus, Item, Patron
from ils.results import HoldView


def _open_holds(session: Session, patron: Patron) -> Sequence[Hold]:
    return session.scalars(
        sa.select(Hold)
        .where(
            Hold.patron_id == patron.id,
            Hold.status.in_(queries.OPEN_HOLD_STATUSES),
        )
        .order_by(Hold.placed_at, Hold.id)
    ).all()


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


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuePlace:
    """Where one PENDING hold stands in its title's queue.

    The queue is the title's PENDING holds, title-level and item-level alike, in
    placement order (`placed_at`, then id), picked up in the institution of
    this hold's pickup branch (queues are kept per institution), as
    `queries.hold_queue_position` counts it: `position` 1 is next. Holds
    already trapped (WAITING or IN_TRANSIT) are out of the queue and counted in
    neither number.
    """

    hold_id: int
    position: int
    length: int


def queue_places(session: Session, patron_barcode: str) -> dict[int, QueuePlace]:
    """The queue place of each of a patron's PENDING holds, by hold id, read in
    one statement whatever the number of holds (empty for an unknown card)."""
    mine = aliased(Hold)
    other = aliased(Hold)
    mine_pickup = aliased(Branch)
    other_pickup = aliased(Branch)
    # `other` is at or ahead of `mine`: placed earlier, or at the same moment
    # with a smaller id (the hold itself included, so the count is a position).
    at_or_ahead = sa.or_(
        other.placed_at < mine.placed_at,
        sa.and_(other.placed_at == mine.placed_at, other.id <= mine.id),
    )
    rows = session.execute(
        sa.select(
            mine.id,
            sa.func.count(sa.case((at_or_ahead, other.id))),
            sa.func.count(other.id),
        )
        .join(Patron, Patron.id == mine.patron_id)
        .join(mine_pickup, mine_pickup.id == mine.pickup_branch_id)
        .join(
            other,
            sa.and_(
                other.record_id == mine.record_id,
                other.status == HoldStatus.PENDING,
            ),
        )
        .join(
            other_pickup,
            sa.and_(
                other_pickup.id == other.pickup_branch_id,
                other_pickup.institution_id == mine_pickup.institution_id,
            ),
        )
        .where(Patron.barcode == patron_barcode, mine.status == HoldStatus.PENDING)
        .group_by(mine.id)
    ).all()
    return {
        hold_id: QueuePlace(hold_id=hold_id, position=position, length=length)
        for hold_id, position, length in rows
    }
