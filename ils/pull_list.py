"""The pull list: pending holds that a copy on an open shelf can fill now, with
the copy to pull for each.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy. It only reads.

Holds are taken in queue order (placement time, then id); each is given the first
copy on a shelf (at `branch`, when one is named) that can fill it by the loan
rules and that no earlier hold on the list was given. A title-level hold never
takes a copy that an item-level hold is waiting for. Pulling a copy does not
trap it: checking it in does.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import holds
from ils.models import Branch, Hold, HoldStatus, Item
from ils.results import PullSlip


def pull_list(
    session: Session, moment: datetime, branch: Branch | None = None
) -> list[PullSlip]:
    """The holds to pull for at `moment`, each with its copy (see the module)."""
    wanted_records = sa.select(Hold.record_id).where(Hold.status == HoldStatus.PENDING)
    copies_query = holds.shelf_copies(free_of_item_holds=False).where(
        Item.record_id.in_(wanted_records)
    )
    if branch is not None:
        copies_query = copies_query.where(Item.current_branch_id == branch.id)
    copies: dict[int, list[Item]] = {}
    for copy in session.scalars(copies_query.order_by(Item.id)):
        copies.setdefault(copy.record_id, []).append(copy)
    if not copies:
        return []

    pending = session.scalars(
        sa.select(Hold)
        .where(Hold.status == HoldStatus.PENDING, Hold.record_id.in_(list(copies)))
        .order_by(Hold.placed_at, Hold.id)
    ).all()
    # Copies that an item-level hold waits for are kept for that hold.
    item_held = {hold.item_id for hold in pending if hold.item_id is not None}
    taken: set[int] = set()
    slips: list[PullSlip] = []
    for hold in pending:
        if hold.patron is None:
            continue
        today = holds.local_today(moment, hold.pickup_branch)
        if hold.expires_on is not None and hold.expires_on < today:
            continue
        for copy in copies[hold.record_id]:
            if copy.id in taken:
                continue
            if hold.item_id is not None and copy.id != hold.item_id:
                continue
            if hold.item_id is None and copy.id in item_held:
                continue
            refusal, _rule = holds.hold_policy_refusal(
                session,
                category_id=hold.patron.category_id,
                item=copy,
                pickup=hold.pickup_branch,
            )
            if refusal is not None:
                continue
            taken.add(copy.id)
            slips.append(
                PullSlip(
                    hold_id=hold.id,
                    patron_barcode=hold.patron.barcode,
                    title=hold.record.title,
                    item_barcode=copy.barcode,
                    call_number=copy.call_number,
                    location=copy.location,
                    shelf_branch_code=copy.current_branch.code,
                    pickup_branch_code=hold.pickup_branch.code,
                    placed_at=hold.placed_at,
                )
            )
            break
    return slips
