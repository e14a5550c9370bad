"""The unit of work under `ils.circulation`: one use case in one database
transaction, its refusal logged in it, and the retries of what the database
turned away (unique-index conflicts, deadlocks, rows that changed).

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy, and never `ils.circulation` (which
imports this module).

Concurrent requests are made safe by the database, not by Python locks, so that
several server processes can share one PostgreSQL:

- on PostgreSQL rows are locked with `SELECT ... FOR NO KEY UPDATE` in one order
  everywhere: patrons (several in id order), then the item, then holds. Unlike
  `FOR UPDATE`, it lets the foreign-key checks of other transactions' inserts
  through (see `ils.queries`);
- a use case that must lock a patron it can only find through the item (a
  checkin's borrower, a cancelled hold's trapped item) reads it first, locks in
  order, and starts again if what it read changed before the lock was held,
  rather than lock out of order;
- on SQLite every write unit starts with `BEGIN IMMEDIATE` (see `ils.db`), which
  serialises all writers;
- the partial unique indexes `uq_loan_open_item` and `uq_hold_trapped_item` are
  the last line: two open loans of one item, or one item trapped for two active
  holds, are never stored; the loser is retried and then sees the winner's work.

A use case that keeps meeting deadlocks or changing rows is retried after a
short random pause that doubles with each retry (`retry_pause`), and refused
with `Refusal.TRY_AGAIN` once its attempts are used up, so that a caller gets a
refusal, not a database error. (A SQLite writer that outwaits its busy timeout
still raises `OperationalError`; see `ils.db`.)

Every checkout, renewal, checkin, hold change and refusal writes a
`CirculationLog` row; a repeated checkout that does not renew changes nothing
and writes none. A refusal's row is written in the refused transaction itself,
which is committed: every check is made before anything else is written, so the
row is all it holds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ils.db import Database, keep_loaded
from ils.models import CirculationLog, LoanEvent
from ils.results import CirculationRefused, Refusal
from ils.units import Known, LoanChangedHands, log_row

__all__ = ["retry_pause", "run_unit"]

# How often a use case that hit a unique index, a deadlock or rows that changed
# under it is tried; the retry normally sees the other transaction's work and
# answers by itself.
_ATTEMPTS = 5

# PostgreSQL's SQLSTATEs for a deadlock and a serialization failure: the
# transaction was rolled back and may simply be run again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

# The longest pause before the first retry, in seconds; it doubles for each
# retry after it. Each pause is drawn at random up to that bound, so that
# terminals that collided do not collide again in step (about 0.15 s at most
# over all the retries).
_FIRST_PAUSE = 0.01

_Result = TypeVar("_Result")


def retry_pause(attempt: int, draw: Callable[[float, float], float]) -> float:
    """How long to wait before retry number `attempt` (0 for the first): a
    random time up to `_FIRST_PAUSE` doubled `attempt` times."""
    return draw(0.0, _FIRST_PAUSE * 2**attempt)


def _is_retryable(error: OperationalError) -> bool:
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def _is_open_loan_conflict(error: IntegrityError) -> bool:
    text = str(error.orig)
    return "uq_loan_open_item" in text or "loan.item_id" in text


def _is_trapped_item_conflict(error: IntegrityError) -> bool:
    text = str(error.orig)
    return "uq_hold_trapped_item" in text or "hold.trapped_item_id" in text


def run_unit(
    database: Database,
    pause: Callable[[float], None],
    work: Callable[[Session, Known], _Result],
    *,
    terminal: str | None,
    moment: datetime,
) -> _Result:
    """Run one use case in its own transaction, logging a refusal in it.

    A use case makes every check before it writes, so a refusal leaves the
    transaction clean, and the refusal's log row is committed in it. That
    transaction already holds the rows the log row refers to; taking them
    afresh in another could deadlock on PostgreSQL, where a foreign key
    check takes a share lock on the referenced row (and a savepoint would
    not do: rolling one back releases the row locks taken inside it). A
    conflict on a unique index, a deadlock or rows that changed under the
    use case are retried; the retry sees what the other transaction
    committed. Before each retry the unit waits a short random time (see
    `retry_pause`), so that terminals fighting over one row spread out.
    """
    last_error: Exception | None = None
    known = Known()
    for attempt in range(_ATTEMPTS):
        if attempt:
            pause(retry_pause(attempt - 1, random.uniform))
        known = Known()
        refusal: CirculationRefused | None = None
        try:
            with database.transaction() as session:
                keep_loaded(session)
                try:
                    return work(session, known)
                except CirculationRefused as raised:
                    # A use case refuses before it writes anything.
                    if session.new or session.dirty or session.deleted:
                        raise RuntimeError(
                            "a use case changed data before refusing"
                        ) from raised
                    refusal = raised
                    session.add(_refusal_row(raised, known, terminal, moment))
        except IntegrityError as error:
            if not (_is_open_loan_conflict(error) or _is_trapped_item_conflict(error)):
                raise
            last_error = error
            continue
        except OperationalError as error:
            if not _is_retryable(error):
                raise
            last_error = error
            continue
        except LoanChangedHands as error:
            last_error = error
            continue
        raise refusal
    raise _out_of_attempts(database, last_error, known, terminal, moment)


def _out_of_attempts(
    database: Database,
    last_error: Exception | None,
    known: Known,
    terminal: str | None,
    moment: datetime,
) -> CirculationRefused:
    """The refusal, logged, for a unit of work that used up its attempts."""
    # A lost race for the open-loan index means someone else has the item;
    # anything else left nothing changed, and the request may be sent again.
    if isinstance(last_error, IntegrityError) and _is_open_loan_conflict(last_error):
        refusal = CirculationRefused(Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON)
    else:
        refusal = CirculationRefused(Refusal.TRY_AGAIN)
    try:
        with database.transaction() as session:
            session.add(_refusal_row(refusal, known, terminal, moment))
    except OperationalError as error:
        # The log row is not worth a fault the caller cannot answer.
        if not _is_retryable(error):
            raise
    refusal.__cause__ = last_error
    return refusal


def _refusal_row(
    refusal: CirculationRefused,
    known: Known,
    terminal: str | None,
    moment: datetime,
) -> CirculationLog:
    return log_row(
        at=moment,
        event=LoanEvent.REFUSAL,
        terminal=terminal,
        item_id=known.item_id,
        patron_id=known.patron_id,
        branch_id=known.branch_id,
        detail=refusal.reason.value,
    )
