"""What a self-service terminal may change besides loans: block a patron's card,
lift the blocks terminals placed, and store notes about an item.

Layer: `ils`, the bottom. Knows nothing of SIP2: the server's mapping layer
calls these for its block patron, patron enable and item status update requests.

A block placed here is a manual block (`PatronBlock`) marked with the terminal
that placed it, so staff see where it came from. A terminal keeps at most one
block row per card: asking again updates its open block's note and time, and
once that block has been lifted (a patron enable, 25) the next request opens
the same row again instead of adding another, so a looping or hostile terminal
cannot grow the table, not even by alternating block and enable. Each request
still writes its circulation log row, which keeps the history. A terminal's
note is stored without control characters (escape sequences, NUL), since staff
tools print it.
Lifting works only on blocks a terminal placed: a block staff placed stays
until staff lift it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils.db import Database
from ils.models import CirculationLog, LoanEvent, PatronBlock, utcnow
from ils.queries import item_by_barcode, patron_by_barcode
from ils.results import CirculationRefused, Refusal

# Marks the blocks a terminal placed: `placed_by` starts with this.
TERMINAL_PREFIX = "terminal:"

# Longest note kept from a terminal; SIP2's AL is free text of any length.
_MAX_NOTE = 500
_MAX_PROPERTIES = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockResult:
    """A block placed (or renewed) on a patron's card."""

    patron_barcode: str
    note: str
    card_retained: bool
    placed_at: datetime
    # False when the terminal's open block on the card was renewed instead
    # (True when a block is put in force, whether in a new row or in the
    # terminal's lifted one opened again).
    added: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class EnableResult:
    """Blocks lifted from a patron's card; `still_blocked` counts staff blocks left."""

    patron_barcode: str
    lifted: int
    still_blocked: int


# TODO(#5): a terminal's 01 reopens its newest lifted block whoever lifted it
# (a 25 or staff): the block rows do not record who lifted them.
def place_block(
    session: Session,
    patron_barcode: str,
    *,
    note: str,
    placed_by: str,
    moment: datetime,
    logged_by: str,
    detail: str | None,
    renew_own: bool = False,
) -> bool:
    """Block a card inside the caller's transaction, with its log row.

    With `renew_own`, the newest block on the card that `placed_by` placed
    gets the new note and `moment` instead of a second block being added:
    renewed when it is open, opened again (`lifted_at` cleared) when it was
    lifted. Blocks anyone else placed are not touched. The patron row is
    locked first, so two such requests at once still leave one block.

    Returns:
        True when a block was put in force (added, or a lifted one opened
        again), False when an open one was renewed.

    Raises:
        CirculationRefused: UNKNOWN_PATRON.
    """
    patron = patron_by_barcode(session, patron_barcode, lock=True)
    if patron is None:
        raise CirculationRefused(Refusal.UNKNOWN_PATRON)
    own = (
        session.scalars(
            sa.select(PatronBlock)
            .where(
                PatronBlock.patron_id == patron.id,
                PatronBlock.placed_by == placed_by,
            )
            # An open block first (there may be lifted ones from before this
            # row was reused), then the newest.
            .order_by(
                PatronBlock.lifted_at.is_not(None),
                PatronBlock.placed_at.desc(),
                PatronBlock.id.desc(),
            )
            .limit(1)
        ).first()
        if renew_own
        else None
    )
    reopened = own is not None and own.lifted_at is not None
    if own is None:
        session.add(
            PatronBlock(
                patron_id=patron.id, note=note, placed_by=placed_by, placed_at=moment
            )
        )
    else:
        own.note = note
        own.placed_at = moment
        own.lifted_at = None
    session.add(
        CirculationLog(
            at=moment,
            event=LoanEvent.PATRON_BLOCKED,
            patron_id=patron.id,
            terminal=logged_by,
            detail=(
                detail
                if own is None
                else _reused(
                    detail,
                    "lifted block placed again" if reopened else "open block renewed",
                )
            ),
        )
    )
    return own is None or reopened


def _reused(detail: str | None, how: str) -> str:
    """The log detail of a block a terminal asked for again."""
    return how if detail is None else f"{detail}; {how}"


def terminal_text(text: str, longest: int) -> str:
    """A terminal's free text as stored: control characters (escape, NUL, ...)
    dropped, whitespace runs folded to one space, cut to `longest` characters."""
    # Whitespace controls (tab, CR, LF) part words; the others are dropped.
    words = text.split()
    kept = (
        "".join(c for c in word if unicodedata.category(c) != "Cc") for word in words
    )
    return " ".join(word for word in kept if word)[:longest]


class TransactionalService:
    """Use cases on the library's data, each run in its own transaction at the
    time `clock` gives; the base of `StaffDesk` and `TerminalRequests`.

    Args:
        database: where the library's data lives.
        clock: the current time, timezone-aware; tests pass a fixed one.
    """

    def __init__(
        self, database: Database, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._database = database
        self._clock = clock


class TerminalRequests(TransactionalService):
    """Blocking, enabling and item notes, each in its own transaction.

    Args:
        database: where the library's data lives.
        clock: the current time, timezone-aware; tests pass a fixed one.
    """

    def block_patron(
        self,
        patron_barcode: str,
        *,
        note: str,
        terminal: str,
        card_retained: bool = False,
    ) -> BlockResult:
        """Block a patron's card at a terminal's request (a kiosk kept the card, or
        saw it used by someone else).

        A terminal that already has an open block on the card renews it (the
        new note, placed now) rather than adding a second; `BlockResult.added`
        says which.

        Raises:
            CirculationRefused: UNKNOWN_PATRON.
        """
        moment = self._clock()
        text = terminal_text(note, _MAX_NOTE)
        if card_retained:
            text = f"{text} (card retained by the terminal)".strip()
        with self._database.transaction() as session:
            added = place_block(
                session,
                patron_barcode,
                note=text,
                placed_by=f"{TERMINAL_PREFIX}{terminal}",
                moment=moment,
                logged_by=terminal,
                detail="card retained" if card_retained else None,
                renew_own=True,
            )
        return BlockResult(
            patron_barcode=patron_barcode,
            note=text,
            card_retained=card_retained,
            placed_at=moment,
            added=added,
        )

    def enable_patron(self, patron_barcode: str, *, terminal: str) -> EnableResult:
        """Lift the blocks that terminals placed on a patron's card.

        Blocks staff placed are left; `still_blocked` says how many remain.

        Raises:
            CirculationRefused: UNKNOWN_PATRON.
        """
        moment = self._clock()
        with self._database.transaction() as session:
            patron = patron_by_barcode(session, patron_barcode, lock=True)
            if patron is None:
                raise CirculationRefused(Refusal.UNKNOWN_PATRON)
            open_blocks = session.scalars(
                sa.select(PatronBlock).where(
                    PatronBlock.patron_id == patron.id,
                    PatronBlock.lifted_at.is_(None),
                )
            ).all()
            lifted = [
                block
                for block in open_blocks
                if block.placed_by.startswith(TERMINAL_PREFIX)
            ]
            for block in lifted:
                block.lifted_at = moment
            if lifted:
                session.add(
                    CirculationLog(
                        at=moment,
                        event=LoanEvent.PATRON_ENABLED,
                        patron_id=patron.id,
                        terminal=terminal,
                        detail=f"{len(lifted)} block(s) lifted",
                    )
                )
        return EnableResult(
            patron_barcode=patron_barcode,
            lifted=len(lifted),
            still_blocked=len(open_blocks) - len(lifted),
        )

    def store_item_properties(
        self, item_barcode: str, properties: str, *, terminal: str
    ) -> str:
        """Keep a terminal's note about an item, replacing the one before.

        Returns:
            The text stored (control characters dropped, whitespace runs
            folded, cut to 2000 characters).

        Raises:
            CirculationRefused: UNKNOWN_ITEM.
        """
        moment = self._clock()
        text = terminal_text(properties, _MAX_PROPERTIES)
        with self._database.transaction() as session:
            item = item_by_barcode(session, item_barcode, lock=True)
            if item is None:
                raise CirculationRefused(Refusal.UNKNOWN_ITEM)
            item.properties = text or None
            session.add(
                CirculationLog(
                    at=moment,
                    event=LoanEvent.ITEM_UPDATED,
                    item_id=item.id,
                    terminal=terminal,
                    detail="properties stored",
                )
            )
        return text
