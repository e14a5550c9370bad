"""Reading holds: a patron's open holds and a title's queue, as views.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy, and never `ils.holds` (which
re-exports these names). It only reads; it never logs.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.models import Hold, HoldStatus, Item, Patron
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
