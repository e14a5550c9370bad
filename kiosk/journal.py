"""The offline journal: returns (and, by policy, checkouts) taken while the server
was out of reach, kept in SQLite until they are replayed.

Layer: `kiosk`, plain Python and the standard library's sqlite3 (no Kivy, no
Twisted, never `ils`).

Durability rules:
- every write is committed (WAL, `synchronous=FULL`) before the method
  returns, so the patron is told "done" only for what is on disk;
- an entry is marked `in_flight` and committed before it is sent to the server,
  and `done`/`refused` after the reply; an entry found `in_flight` when the
  journal opens (the kiosk died mid-replay) becomes `unknown`, which is shown
  to staff and never sent again by itself, so nothing is silently doubled.
"""

from __future__ import annotations

import enum
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('return', 'checkout')),
    patron TEXT,
    item TEXT NOT NULL,
    happened_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT '',
    replayed_at TEXT
)
"""


_SELECT = (
    "SELECT id, uuid, kind, patron, item, happened_at, state, attempts,"
    " result, replayed_at FROM journal "
)


#: How long a write waits for a lock held by another process, in milliseconds.
WRITE_TIMEOUT_MS = 250


class JournalError(Exception):
    """The journal could not be written or read; the message names the file."""


class EntryKind(enum.StrEnum):
    """What the patron did while the server was away."""

    RETURN = "return"
    CHECKOUT = "checkout"


class EntryState(enum.StrEnum):
    """Where an entry is on its way to the server."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    REFUSED = "refused"
    # Sent, and then the kiosk stopped or the link broke before the reply.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEntry:
    """One recorded transaction and what became of it."""

    id: int
    uuid: str
    kind: EntryKind
    patron: str | None
    item: str
    happened_at: datetime
    state: EntryState
    attempts: int
    result: str
    replayed_at: datetime | None


class Journal:
    """An append-only SQLite journal of offline transactions."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(_SCHEMA)
            #: Entries found in flight when the journal was opened.
            self.recovered = self._recover()
        except (OSError, sqlite3.Error) as error:
            raise JournalError(
                f"{self.path}: cannot open the offline journal (offline.journal):"
                f" {error}"
            ) from error
        # From now on a write runs on the event loop while a patron waits: a
        # locked file is a fault to report, not something to wait out.
        self._db.execute(f"PRAGMA busy_timeout={WRITE_TIMEOUT_MS}")

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    def _write(self, sql: str, parameters: tuple[object, ...]) -> int:
        # One statement, one committed transaction.
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                cursor = self._db.execute(sql, parameters)
                return int(cursor.lastrowid or 0)
        except sqlite3.Error as error:
            raise JournalError(f"{self.path}: cannot write: {error}") from error

    def _recover(self) -> int:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "UPDATE journal SET state = ?, result = ? WHERE state = ?",
                (
                    EntryState.UNKNOWN,
                    "the kiosk stopped while this was being sent; check it by hand",
                    EntryState.IN_FLIGHT,
                ),
            )
            return cursor.rowcount

    # -- recording -------------------------------------------------------------

    def record(
        self, kind: EntryKind, *, item: str, at: datetime, patron: str | None = None
    ) -> JournalEntry:
        """Write one transaction, committed before this returns.

        `at` must carry its zone (the kiosk's local time, as the patron saw it).
        """
        if at.tzinfo is None:
            raise ValueError("journal times must carry their zone")
        entry_id = self._write(
            "INSERT INTO journal (uuid, kind, patron, item, happened_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, kind, patron, item, at.isoformat()),
        )
        return self.entry(entry_id)

    def record_unknown(
        self, kind: EntryKind, *, item: str, at: datetime, why: str
    ) -> None:
        """Write a transaction sent online whose reply never came, for staff.

        It is never replayed: the server may have done it already, and doing
        it again later could undo what happened since (a return replayed
        after the book was lent again closes the new loan). It is written in
        one statement as UNKNOWN, so no crash can leave it pending.
        """
        if at.tzinfo is None:
            raise ValueError("journal times must carry their zone")
        self._write(
            "INSERT INTO journal (uuid, kind, patron, item, happened_at, state,"
            " attempts, result, replayed_at) VALUES (?, ?, NULL, ?, ?, ?, 1, ?, ?)",
            (
                uuid.uuid4().hex,
                kind,
                item,
                at.isoformat(),
                EntryState.UNKNOWN,
                f"sent online, no reply ({why}); check it by hand",
                at.isoformat(),
            ),
        )

    def checkouts_for(self, patron: str) -> int:
        """How many checkouts this patron has in the journal, not yet replayed."""
        row = self._db.execute(
            "SELECT count(*) FROM journal WHERE kind = ? AND patron = ? AND state = ?",
            (EntryKind.CHECKOUT, patron, EntryState.PENDING),
        ).fetchone()
        return int(row[0])

    # -- replaying -------------------------------------------------------------

    def pending(self) -> list[JournalEntry]:
        """Entries still to send, oldest first."""
        return self._select("WHERE state = ? ORDER BY id", (EntryState.PENDING,))

    def mark_in_flight(self, entry: JournalEntry) -> None:
        """Committed before the request is written to the server."""
        self._write(
            "UPDATE journal SET state = ?, attempts = attempts + 1 WHERE id = ?",
            (EntryState.IN_FLIGHT, entry.id),
        )

    def mark_result(
        self, entry: JournalEntry, state: EntryState, result: str, at: datetime
    ) -> None:
        """Store what the server answered (or that the answer is unknown)."""
        self._write(
            "UPDATE journal SET state = ?, result = ?, replayed_at = ? WHERE id = ?",
            (state, result, at.isoformat(), entry.id),
        )

    def mark_not_sent(self, entry: JournalEntry) -> None:
        """The request never left the kiosk: back to pending."""
        self._write(
            "UPDATE journal SET state = ? WHERE id = ?",
            (EntryState.PENDING, entry.id),
        )

    # -- for staff -------------------------------------------------------------

    def entry(self, entry_id: int) -> JournalEntry:
        """One entry by its id."""
        return self._select("WHERE id = ?", (entry_id,))[0]

    def results(self, limit: int = 50) -> list[JournalEntry]:
        """Replayed (or unknown) entries: the unknown ones (staff must check
        them by hand) first, then the rest, newest first."""
        return self._select(
            "WHERE state != ? ORDER BY state = ? DESC, id DESC LIMIT ?",
            (EntryState.PENDING, EntryState.UNKNOWN, limit),
        )

    def counts(self) -> dict[EntryState, int]:
        """How many entries are in each state."""
        counts = dict.fromkeys(EntryState, 0)
        for state, count in self._db.execute(
            "SELECT state, count(*) FROM journal GROUP BY state"
        ):
            counts[EntryState(state)] = int(count)
        return counts

    def _select(self, where: str, parameters: tuple[object, ...]) -> list[JournalEntry]:
        # `where` is always one of this module's fixed clauses.
        rows = self._db.execute(_SELECT + where, parameters).fetchall()
        return [
            JournalEntry(
                id=row[0],
                uuid=row[1],
                kind=EntryKind(row[2]),
                patron=row[3],
                item=row[4],
                happened_at=datetime.fromisoformat(row[5]),
                state=EntryState(row[6]),
                attempts=row[7],
                result=row[8],
                replayed_at=None if row[9] is None else datetime.fromisoformat(row[9]),
            )
            for row in rows
        ]
