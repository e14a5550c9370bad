"""An item's view in one statement: the fast path of gates, sorters and kiosks.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy. Nothing here writes.

`ils.queries.item_view` builds the same `ItemView` from ORM objects a use case
already holds, following relationships one row at a time (the record, the item
type, three branches, the institution, the loan and its patron, the trapped
hold and its patron and branch, the queue length): about ten statements, each
built and loaded by the ORM. A gate asks about every item that passes it and a
sorter about every item it sorts, so here the whole view is one Core statement,
built once when the module is imported, with the item's open loan and trapped
hold joined in and the hold queue counted in a scalar subquery. The two must
agree on every item: `tests/ils/test_item_lookup.py` compares them item by item
over a library with items in every state.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ils.models import (
    BibRecord,
    Branch,
    Hold,
    HoldStatus,
    Institution,
    Item,
    ItemType,
    Loan,
    Patron,
)
from ils.queries import TRAPPED_HOLD_STATUSES
from ils.results import ItemView

# The currency of an item whose institution names none (as `queries.currency_of`).
_FALLBACK_CURRENCY = "USD"


def _view_statement() -> sa.Select[Any]:
    item = sa.inspect(Item).local_table
    record = sa.inspect(BibRecord).local_table
    item_type = sa.inspect(ItemType).local_table
    institution = sa.inspect(Institution).local_table
    branch = sa.inspect(Branch).local_table
    loan = sa.inspect(Loan).local_table
    patron = sa.inspect(Patron).local_table
    hold = sa.inspect(Hold).local_table

    home = branch.alias("home")
    current = branch.alias("current_branch")
    transit = branch.alias("transit_branch")
    pickup = branch.alias("pickup_branch")
    borrower = patron.alias("borrower")
    holder = patron.alias("holder")
    queue = hold.alias("queue")
    queue_pickup = branch.alias("queue_pickup")

    # Pending holds this copy could fill, picked up in its own institution
    # (a title's queue is kept per institution: `queries.fillable_holds`).
    queue_length = (
        sa.select(sa.func.count())
        .select_from(queue)
        .join(queue_pickup, queue_pickup.c.id == queue.c.pickup_branch_id)
        .where(
            queue.c.record_id == item.c.record_id,
            queue.c.status == HoldStatus.PENDING,
            sa.or_(queue.c.item_id.is_(None), queue.c.item_id == item.c.id),
            queue_pickup.c.institution_id == home.c.institution_id,
        )
        .scalar_subquery()
    )
    return (
        sa.select(
            item.c.barcode,
            item.c.call_number,
            item.c.location,
            item.c.collection,
            item.c.status,
            item.c.price_minor,
            record.c.title,
            record.c.author,
            item_type.c.code.label("item_type_code"),
            item_type.c.media_type,
            home.c.code.label("home_branch_code"),
            current.c.code.label("current_branch_code"),
            transit.c.code.label("transit_code"),
            institution.c.currency,
            loan.c.id.label("loan_id"),
            loan.c.due_at,
            borrower.c.barcode.label("borrower_barcode"),
            hold.c.id.label("trapped_id"),
            hold.c.status.label("trapped_status"),
            hold.c.pickup_deadline,
            holder.c.barcode.label("holder_barcode"),
            pickup.c.code.label("pickup_code"),
            queue_length.label("queue_length"),
        )
        .select_from(item)
        .join(record, record.c.id == item.c.record_id)
        .join(item_type, item_type.c.id == item.c.item_type_id)
        .join(home, home.c.id == item.c.home_branch_id)
        .join(current, current.c.id == item.c.current_branch_id)
        .outerjoin(institution, institution.c.id == home.c.institution_id)
        .outerjoin(transit, transit.c.id == item.c.transit_to_branch_id)
        .outerjoin(
            loan, sa.and_(loan.c.item_id == item.c.id, loan.c.returned_at.is_(None))
        )
        .outerjoin(borrower, borrower.c.id == loan.c.patron_id)
        .outerjoin(
            hold,
            sa.and_(
                hold.c.trapped_item_id == item.c.id,
                hold.c.status.in_(TRAPPED_HOLD_STATUSES),
            ),
        )
        .outerjoin(holder, holder.c.id == hold.c.patron_id)
        .outerjoin(pickup, pickup.c.id == hold.c.pickup_branch_id)
        .where(item.c.barcode == sa.bindparam("barcode"))
        .limit(1)
    )


_VIEW = _view_statement()


def item_view_by_barcode(
    session: Session | Connection, barcode: str
) -> ItemView | None:
    """The item with `barcode` as a terminal sees it, or None when there is none.

    Reads what the session's (or connection's) transaction sees, so a use case
    that changed the item flushes first (`session.flush()`), as the ORM's own
    queries would.
    """
    connection = session.connection() if isinstance(session, Session) else session
    row = connection.execute(_VIEW, {"barcode": barcode}).first()
    if row is None:
        return None
    trapped = row.trapped_id is not None
    return ItemView(
        hold_queue_length=row.queue_length or 0,
        in_transit_to=row.transit_code,
        on_hold_shelf=trapped and row.trapped_status is HoldStatus.WAITING,
        hold_patron_barcode=row.holder_barcode if trapped else None,
        hold_pickup_branch_code=row.pickup_code if trapped else None,
        hold_pickup_deadline=row.pickup_deadline if trapped else None,
        barcode=row.barcode,
        title=row.title,
        author=row.author,
        call_number=row.call_number,
        item_type_code=row.item_type_code,
        media_type=row.media_type,
        home_branch_code=row.home_branch_code,
        current_branch_code=row.current_branch_code,
        location=row.location,
        collection=row.collection,
        status=row.status,
        on_loan=row.loan_id is not None,
        due_at=row.due_at,
        borrower_barcode=row.borrower_barcode,
        price_minor=row.price_minor,
        currency=row.currency or _FALLBACK_CURRENCY,
    )


def current_item_view(session: Session, item: Item) -> ItemView:
    """The view of an item a use case holds, after its changes so far: they are
    flushed first, then read back in one statement."""
    session.flush()
    view = item_view_by_barcode(session, item.barcode)
    assert view is not None, "the item is a row of this unit of work"
    return view
