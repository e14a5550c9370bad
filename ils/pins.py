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
"""

from __future__ import annotations

import enum
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


def check_pin(
    database: Database,
    barcode: str,
    pin: str,
    moment: datetime,
    *,
    terminal: str | None = None,
) -> PinOutcome:
    """Verify a PIN outside any write lock (scrypt is slow), then, in a short write
    transaction, count a wrong PIN (locking the PIN for pin_lock_minutes after
    pin_max_failures in a row, with a PIN_LOCKED log row) or reset the count on a
    match. A locked PIN is LOCKED without verifying. Never logs or stores the PIN.

    Every wrong PIN writes a REFUSAL log row with the detail "wrong_pin".
    """
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    moment = moment.astimezone(UTC)

    with database.read() as session:
        found = queries.patron_by_barcode(session, barcode)
        if found is None:
            return PinOutcome.UNKNOWN_PATRON
        if pin_locked(found, moment):
            return PinOutcome.LOCKED
        if found.pin_hash is None:
            return PinOutcome.NO_PIN_SET
        stored = found.pin_hash
    matches = verify_secret(pin, stored)

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
