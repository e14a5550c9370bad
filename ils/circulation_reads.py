"""The read-only look-ups behind `ils.circulation.Circulation`: patrons, items,
a patron's loans and holds, a title's hold queue and the pull list, each in one
read transaction.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy, and never `ils.circulation` (which
imports this module). Nothing here writes.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ils import holds, queries
from ils.db import Database, keep_loaded
from ils.item_lookup import item_view_by_barcode
from ils.models import BibRecord, Item, Loan
from ils.pull_list import pull_list
from ils.queries import branch_zone
from ils.results import (
    CirculationRefused,
    HoldView,
    ItemView,
    PatronHolds,
    PatronView,
    PullSlip,
    Refusal,
)
from ils.storable import is_code

__all__ = [
    "hold_queue",
    "holds_of",
    "item_view",
    "open_loans",
    "patron_view",
    "pull_slips",
]


def patron_view(
    database: Database, barcode: str, moment: datetime, pin_valid: bool | None
) -> PatronView | None:
    """A patron's account, or None when no card has this barcode."""
    with database.read() as session:
        keep_loaded(session)
        patron = queries.patron_by_barcode(session, barcode)
        if patron is None:
            return None
        zone = branch_zone(patron.home_branch)
        return queries.patron_view(session, patron, moment, zone, pin_valid=pin_valid)


def item_view(database: Database, barcode: str) -> ItemView | None:
    """An item, its loan and its holds, or None when no item has this barcode."""
    if not is_code(barcode):
        return None
    with database.read_rows() as connection:
        return item_view_by_barcode(connection, barcode)


def open_loans(
    database: Database, patron_barcode: str
) -> list[tuple[str, str, datetime]]:
    """(item barcode, title, due time) of each open loan of a patron, soonest due
    first.

    Raises:
        CirculationRefused: UNKNOWN_PATRON.
    """
    with database.read() as session:
        keep_loaded(session)
        patron = queries.patron_by_barcode(session, patron_barcode)
        if patron is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        rows = session.execute(
            sa.select(Item.barcode, BibRecord.title, Loan.due_at)
            .join(Item, Item.id == Loan.item_id)
            .join(BibRecord, BibRecord.id == Item.record_id)
            .where(Loan.patron_id == patron.id, Loan.returned_at.is_(None))
            .order_by(Loan.due_at, Loan.id)
        ).all()
    return [(barcode, title, due_at) for barcode, title, due_at in rows]


def holds_of(database: Database, patron_barcode: str) -> PatronHolds:
    """A patron's open holds: those waiting for pickup apart from those still
    in the queue or in transit.

    Raises:
        CirculationRefused: UNKNOWN_PATRON.
    """
    if not is_code(patron_barcode):
        raise CirculationRefused(Refusal.UNKNOWN_PATRON)
    with database.read() as session:
        keep_loaded(session)
        patron = queries.patron_by_barcode(session, patron_barcode)
        if patron is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        views = holds.holds_of(session, patron)
    return PatronHolds(
        available=tuple(view for view in views if view.available),
        pending=tuple(view for view in views if view.pending),
    )


def hold_queue(
    database: Database, record_id: int | None, item_barcode: str | None
) -> tuple[HoldView, ...]:
    """A title's open holds, trapped ones first and then the queue in order;
    with `item_barcode`, those that item could fill or is trapped for.

    Raises:
        CirculationRefused: UNKNOWN_ITEM for a barcode or record nobody has.
        ValueError: neither is named.
    """
    with database.read() as session:
        keep_loaded(session)
        item: Item | None = None
        if item_barcode is not None:
            if not is_code(item_barcode):
                raise CirculationRefused(Refusal.UNKNOWN_ITEM)
            item = queries.item_by_barcode(session, item_barcode)
            if item is None:
                raise CirculationRefused(Refusal.UNKNOWN_ITEM)
            record_id = item.record_id
        elif record_id is None:
            raise ValueError("name a record id or an item barcode")
        elif session.get(BibRecord, record_id) is None:
            raise CirculationRefused(Refusal.UNKNOWN_ITEM)
        return tuple(holds.queue(session, record_id, item))


def pull_slips(
    database: Database, moment: datetime, branch_code: str | None
) -> tuple[PullSlip, ...]:
    """The pending holds a copy on an open shelf can fill at `moment` (see
    `ils.pull_list`).

    Raises:
        CirculationRefused: UNKNOWN_BRANCH for a branch nobody has.
    """
    with database.read() as session:
        keep_loaded(session)
        branch = None
        if branch_code is not None:
            if not is_code(branch_code):
                raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
            branch = queries.branch_by_code(session, branch_code)
            if branch is None:
                raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
        return tuple(pull_list(session, moment, branch))
