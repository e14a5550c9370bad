"""Checking a patron's PIN, and locking it after repeated wrong guesses.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy. It never logs: a wrong PIN and a lock
are written as `CirculationLog` rows, which never hold the PIN itself.

PINs are stored only as scrypt hashes (`ils.secrets`). Verifying one is slow on
purpose, so `check_pin` does it in a read unit, outside any write lock, and
then records the outcome in a short write unit with the patron's row locked.

The lockout: after `Institution.pin_max_failures` wrong PINs in a row, the
patron's PIN is locked for `Institution.pin_lock_minutes`. While it is locked,
every PIN, the right one included, is LOCKED without being verified, so a
guesser learns nothing. A right PIN resets the count; when a lock ends the
count starts again from nothing.

A patron without a PIN (NO_PIN_SET) cannot prove who they are at a terminal
that asks for one. The checkout treats it as a wrong PIN (refused with
WRONG_PIN, so the patron is sent to staff to set one) but it is not counted
towards the lockout: nobody guessed anything. A terminal that sends no PIN at
all is a different case, decided by the terminal's `pin_required` setting.

Remembering a PIN that matched (`PinMemory`). A kiosk sends the patron's PIN
with every request of a session (each checkout, renewal and look-up), so
verifying each with scrypt would cost tens of milliseconds a scan. A
`PinMemory` remembers, for a card, that a PIN matched a stored hash, so the
same PIN against the same hash is a MATCH without scrypt. Why this is safe:

- It only ever answers MATCH for the exact PIN that already matched, by
  scrypt, the very hash the patron's row holds now. It holds an HMAC of the
  card and the PIN under a key made at random for this process and never
  stored, not the PIN. (Whoever can read the process's memory has the key
  too and could try every short PIN against a digest quickly; but such a
  reader already sees the PINs arriving in requests.)
- A guesser gains nothing: a PIN it has not seen match goes to scrypt as
  before and is counted when wrong; a wrong PIN also makes the memory forget
  the card, so the next right PIN is verified again.
- The lockout still applies: the lock is read first, and a locked PIN is
  LOCKED (and forgotten) before the memory is asked.
- A changed PIN gives a new hash (a fresh salt each time), which no longer
  equals the remembered one, so the old PIN is verified (and refused) again.
- An entry lasts a bounded time (15 minutes by default) from the scrypt
  check that made it, and at most `size` cards are remembered (the least
  recently used go first), so memory stays bounded.

The memory belongs to one process (`Circulation` owns one): every answer
still starts from the patron's row as the database has it now, so several
processes sharing one database need nothing shared between them.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ils import queries
from ils.db import Database
from ils.fees import institution_of
from ils.models import CirculationLog, LoanEvent, Patron
from ils.secrets import verify_secret

# The detail of the log row written for each wrong PIN.
WRONG_PIN_DETAIL = "wrong_pin"


class PinOutcome(enum.Enum):
    """What checking a PIN found."""

    MATCH = "match"
    WRONG = "wrong"
    # Too many wrong PINs in a row: nothing is verified until the lock ends.
    LOCKED = "locked"
    # The patron has no PIN, so none can match; not counted as a wrong guess.
    NO_PIN_SET = "no_pin_set"
    UNKNOWN_PATRON = "unknown_patron"


def pin_locked(patron: Patron, moment: datetime) -> bool:
    """Whether the patron's PIN is locked at `moment`."""
    until = patron.pin_locked_until
    return until is not None and until > moment


# How many cards a PinMemory remembers, and for how long, unless told otherwise.
DEFAULT_MEMORY_SIZE = 10_000
DEFAULT_MEMORY_LIFETIME = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class _Remembered:
    """What is kept for one card: never the PIN itself."""

    # HMAC-SHA256 of the card and the PIN under the memory's own key.
    digest: bytes
    # The stored hash the PIN matched.
    pin_hash: str
    # When scrypt found the match, in seconds of the memory's clock.
    at: float


class PinMemory:
    """Remembers, per card, that a PIN matched a stored hash, so that the same
    PIN against the same hash need not be verified with scrypt again.

    Safe to share between threads. See the module docstring for why it is safe
    to trust.

    Args:
        size: the most cards remembered; the least recently used go first.
        lifetime: how long a match is trusted after scrypt found it.
        clock: seconds that never go back (`time.monotonic`); tests pass their own.
    """

    def __init__(
        self,
        *,
        size: int = DEFAULT_MEMORY_SIZE,
        lifetime: timedelta = DEFAULT_MEMORY_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        if lifetime <= timedelta(0):
            raise ValueError(f"lifetime must be positive, not {lifetime}")
        self._size = size
        self._lifetime = lifetime.total_seconds()
        self._clock = clock
        # Made afresh in every process and never stored or shown.
        self._key = os.urandom(32)
        self._entries: OrderedDict[str, _Remembered] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _digest(self, barcode: str, pin: str) -> bytes:
        # The card's length first, so no two (card, PIN) pairs read the same.
        card = barcode.encode("utf-8", "surrogatepass")
        message = b"%d:%s%s" % (len(card), card, pin.encode("utf-8", "surrogatepass"))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def recall(self, barcode: str, pin: str, pin_hash: str) -> bool:
        """Whether `pin` is the PIN that matched `pin_hash` for this card, less
        than `lifetime` ago."""
        digest = self._digest(barcode, pin)
        with self._lock:
            entry = self._entries.get(barcode)
            if entry is None:
                return False
            if self._clock() - entry.at >= self._lifetime:
                del self._entries[barcode]
                return False
            if entry.pin_hash != pin_hash or not hmac.compare_digest(
                entry.digest, digest
            ):
                return False
            self._entries.move_to_end(barcode)
            return True

    def remember(self, barcode: str, pin: str, pin_hash: str) -> None:
        """Note that scrypt found `pin` to match `pin_hash` for this card just now."""
        entry = _Remembered(self._digest(barcode, pin), pin_hash, self._clock())
        with self._lock:
            self._entries[barcode] = entry
            self._entries.move_to_end(barcode)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def forget(self, barcode: str) -> None:
        """Forget the card's PIN, if it was remembered."""
        with self._lock:
            self._entries.pop(barcode, None)


def check_pin(
    database: Database,
    barcode: str,
    pin: str,
    moment: datetime,
    *,
    terminal: str | None = None,
    memory: PinMemory | None = None,
) -> PinOutcome:
    """Verify a PIN outside any write lock (scrypt is slow), then, in a short write
    transaction, count a wrong PIN (locking the PIN for pin_lock_minutes after
    pin_max_failures in a row, with a PIN_LOCKED log row) or reset the count on a
    match. A locked PIN is LOCKED without verifying. Never logs or stores the PIN.

    Every wrong PIN writes a REFUSAL log row with the detail "wrong_pin".

    With a `memory`, a PIN it remembers matching the patron's stored hash is a
    MATCH without scrypt, and without the write transaction when there is no
    count to reset and no ended lock to clear. A match is remembered; a wrong
    PIN, a locked PIN or a changed one makes it forget the card.
    """
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    moment = moment.astimezone(UTC)

    remembered = False
    with database.read() as session:
        found = queries.patron_by_barcode(session, barcode)
        if found is None:
            return PinOutcome.UNKNOWN_PATRON
        locked = pin_locked(found, moment)
        if locked or found.pin_hash is None:
            if memory is not None:
                memory.forget(barcode)
            return PinOutcome.LOCKED if locked else PinOutcome.NO_PIN_SET
        stored = found.pin_hash
        if memory is not None and memory.recall(barcode, pin, stored):
            remembered = True
            # Nothing to write: the write unit below would change nothing.
            if not found.pin_failures and found.pin_locked_until is None:
                return PinOutcome.MATCH
    matches = remembered or verify_secret(pin, stored)
    if memory is not None and not matches:
        memory.forget(barcode)

    outcome = _record(
        database, barcode, moment, stored=stored, matches=matches, terminal=terminal
    )
    if memory is not None:
        _learn(memory, barcode, pin, stored, outcome=outcome, remembered=remembered)
    return outcome


def _learn(
    memory: PinMemory,
    barcode: str,
    pin: str,
    stored: str,
    *,
    outcome: PinOutcome,
    remembered: bool,
) -> None:
    """Remember a PIN scrypt has just found to match; forget the card otherwise."""
    if outcome is not PinOutcome.MATCH:
        memory.forget(barcode)
    elif not remembered:
        memory.remember(barcode, pin, stored)


def _record(
    database: Database,
    barcode: str,
    moment: datetime,
    *,
    stored: str,
    matches: bool,
    terminal: str | None,
) -> PinOutcome:
    """Judge a verified PIN under the patron's row lock and write what it changes:
    a reset count on a match, a counted failure (and perhaps a lock) otherwise."""
    # Even a match is judged under the patron's row lock: guesses sent in
    # parallel all pass the unlocked read above, and the one right guess
    # must still be refused if the wrong ones have locked the PIN meanwhile.
    # A match on a clean card writes nothing.
    with database.transaction() as session:
        patron = queries.patron_by_barcode(session, barcode, lock=True)
        if patron is None:
            return PinOutcome.UNKNOWN_PATRON
        # Another terminal may have locked the card while we verified.
        if pin_locked(patron, moment):
            return PinOutcome.LOCKED
        if patron.pin_hash != stored:
            # The PIN was changed while we verified: count nothing; the patron
            # tries again against the new one.
            return (
                PinOutcome.NO_PIN_SET if patron.pin_hash is None else PinOutcome.WRONG
            )
        if patron.pin_locked_until is not None:
            # The last lock has ended: a fresh count.
            patron.pin_locked_until = None
            patron.pin_failures = 0
        if matches:
            if patron.pin_failures:
                patron.pin_failures = 0
            return PinOutcome.MATCH

        institution = institution_of(session, patron)
        patron.pin_failures += 1
        session.add(
            CirculationLog(
                at=moment,
                event=LoanEvent.REFUSAL,
                patron_id=patron.id,
                terminal=terminal,
                detail=WRONG_PIN_DETAIL,
            )
        )
        if patron.pin_failures >= institution.pin_max_failures:
            minutes = institution.pin_lock_minutes
            patron.pin_locked_until = moment + timedelta(minutes=minutes)
            patron.pin_failures = 0
            session.add(
                CirculationLog(
                    at=moment,
                    event=LoanEvent.PIN_LOCKED,
                    patron_id=patron.id,
                    terminal=terminal,
                    detail=(
                        f"{institution.pin_max_failures} wrong PINs in a row;"
                        f" locked for {minutes} minutes"
                    ),
                )
            )
        return PinOutcome.WRONG
