"""What staff do to a card or an item at the desk, outside a loan: unlock a PIN,
block and unblock a card, mark an item lost, missing or found.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy. It never logs; each use case runs
in one transaction and writes its circulation log row, naming the member of
staff (`by`, such as "staff:jo").

An item on loan is marked lost through `ils.fees.FeeService.mark_lost`, which
bills the borrower; here an item on the shelf that cannot be found is marked
lost or missing with no fee. Marking an item found puts it back on the shelf
and, for a lost one, settles its lost fee by the institution's setting
(`ils.fees.lost_item_found`); an item still on loan is checked in instead, which
ends the loan as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ils import queries
from ils.fees import lost_item_found
from ils.models import (
    Branch,
    CirculationLog,
    Institution,
    ItemStatus,
    LoanEvent,
    PatronBlock,
)
from ils.results import CirculationRefused, Refusal
from ils.terminal_requests import TransactionalService, place_block

# Longest block note kept.
_MAX_NOTE = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemChange:
    """An item's status as it was and as it is now; `settled_minor` is the lost
    fee cancelled or credited when a lost item was found."""

    item_barcode: str
    before: ItemStatus
    after: ItemStatus
    settled_minor: int = 0
    # The currency of the item's institution, in which `settled_minor` is.
    currency: str = "USD"


class StaffDesk(TransactionalService):
    """Staff actions on cards and items, each in its own transaction.

    Args:
        database: where the library's data lives.
        clock: the current time, timezone-aware; tests pass a fixed one.
    """

    def unlock_pin(self, patron_barcode: str, *, by: str) -> bool:
        """Lift a PIN lock and forget the wrong PINs counted so far; returns
        whether the PIN was locked.

        Raises:
            CirculationRefused: UNKNOWN_PATRON.
        """
        moment = self._clock()
        with self._database.transaction() as session:
            patron = queries.patron_by_barcode(session, patron_barcode, lock=True)
            if patron is None:
                raise CirculationRefused(Refusal.UNKNOWN_PATRON)
            until = patron.pin_locked_until
            was_locked = until is not None and until > moment
            patron.pin_locked_until = None
            patron.pin_failures = 0
            session.add(
                CirculationLog(
                    at=moment,
                    event=LoanEvent.PATRON_ENABLED,
                    patron_id=patron.id,
                    terminal=by,
                    detail="PIN unlocked",
                )
            )
        return was_locked

    def block(self, patron_barcode: str, *, note: str, by: str) -> None:
        """Block a card from borrowing, with the note staff give for it.

        Raises:
            CirculationRefused: UNKNOWN_PATRON.
            ValueError: an empty note (say why, for the next member of staff).
        """
        text = " ".join(note.split())[:_MAX_NOTE]
        if not text:
            raise ValueError("a block needs a note saying why")
        moment = self._clock()
        with self._database.transaction() as session:
            place_block(
                session,
                patron_barcode,
                note=text,
                placed_by=by,
                moment=moment,
                logged_by=by,
                detail=text,
            )

    def unblock(self, patron_barcode: str, *, by: str) -> int:
        """Lift every block on a card, staff's and terminals' alike; returns how
        many were lifted. Automatic blocks (fees, overdues) are not blocks to
        lift: they end when the fees are paid or the items returned.

        Raises:
            CirculationRefused: UNKNOWN_PATRON.
        """
        moment = self._clock()
        with self._database.transaction() as session:
            patron = queries.patron_by_barcode(session, patron_barcode, lock=True)
            if patron is None:
                raise CirculationRefused(Refusal.UNKNOWN_PATRON)
            blocks = session.scalars(
                sa.select(PatronBlock).where(
                    PatronBlock.patron_id == patron.id,
                    PatronBlock.lifted_at.is_(None),
                )
            ).all()
            for block in blocks:
                block.lifted_at = moment
            if blocks:
                session.add(
                    CirculationLog(
                        at=moment,
                        event=LoanEvent.PATRON_ENABLED,
                        patron_id=patron.id,
                        terminal=by,
                        detail=f"{len(blocks)} block(s) lifted",
                    )
                )
        return len(blocks)

    def mark(self, item_barcode: str, status: ItemStatus, *, by: str) -> ItemChange:
        """Mark an item on the shelf LOST or MISSING (no fee: nobody had it), or
        AVAILABLE again when it is found (see the module).

        Raises:
            CirculationRefused: UNKNOWN_ITEM; ITEM_ON_LOAN_TO_OTHER_PATRON for an
                item on loan (bill a lost loan with `FeeService.mark_lost`, check
                a found one in).
            ValueError: a status other than LOST, MISSING or AVAILABLE, or an
                item already in the status asked for.
        """
        if status not in (ItemStatus.LOST, ItemStatus.MISSING, ItemStatus.AVAILABLE):
            raise ValueError(f"staff do not mark items {status.value} here")
        moment = self._clock()
        with self._database.transaction() as session:
            item = queries.item_by_barcode(session, item_barcode, lock=True)
            if item is None:
                raise CirculationRefused(Refusal.UNKNOWN_ITEM)
            before = item.status
            if queries.open_loan(session, item) is not None:
                raise CirculationRefused(
                    Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON,
                    "This item is on loan: check it in if it is back, or mark the"
                    " loan lost to bill the borrower.",
                )
            if status is ItemStatus.AVAILABLE and before not in (
                ItemStatus.LOST,
                ItemStatus.MISSING,
            ):
                raise ValueError(
                    f"{item_barcode} is {before.value}, not lost or missing"
                )
            if before is status:
                raise ValueError(f"{item_barcode} is already {status.value}")
            item.status = status
            settled = 0
            if before is ItemStatus.LOST and status is ItemStatus.AVAILABLE:
                settled = lost_item_found(session, item=item, moment=moment, by=by)
            currency = session.scalar(
                sa.select(Institution.currency)
                .join(Branch, Branch.institution_id == Institution.id)
                .where(Branch.id == item.home_branch_id)
            )
            session.add(
                CirculationLog(
                    at=moment,
                    event=(
                        LoanEvent.ITEM_FOUND
                        if status is ItemStatus.AVAILABLE
                        else LoanEvent.ITEM_UPDATED
                    ),
                    item_id=item.id,
                    terminal=by,
                    detail=f"{before.value} -> {status.value}",
                )
            )
        return ItemChange(
            item_barcode=item_barcode,
            before=before,
            after=status,
            settled_minor=settled,
            currency=currency or "USD",
        )
