"""PIN checks and the lockout after repeated wrong PINs, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ils.models import CirculationLog, LoanEvent, Patron
from ils.pins import PinOutcome, check_pin
from tests.ils.factories import PIN, Library
from tests.ils.fees_support import library_copy, set_institution

NOW = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine in turn, with patron P1 whose PIN is PIN."""
    for built in library_copy(request.param, tmp_path):
        built.add_patron("P1", pin=PIN)
        yield built


def _failures(library: Library) -> int:
    with library.database.read() as session:
        count = session.scalar(
            sa.select(Patron.pin_failures).where(Patron.barcode == "P1")
        )
    assert count is not None
    return count


def test_the_right_pin_matches(library: Library) -> None:
    """The PIN the card was given is a MATCH."""
    assert PinOutcome.MATCH is check_pin(library.database, "P1", PIN, NOW)


def test_an_unknown_card_is_unknown(library: Library) -> None:
    """A barcode no patron has is UNKNOWN_PATRON."""
    assert PinOutcome.UNKNOWN_PATRON is check_pin(library.database, "NOPE", PIN, NOW)


def test_a_card_without_a_pin_has_none_to_match(library: Library) -> None:
    """A patron with no PIN is NO_PIN_SET, and nothing is counted against them."""
    library.add_patron("P2")
    assert PinOutcome.NO_PIN_SET is check_pin(library.database, "P2", "0000", NOW)


def test_five_wrong_pins_lock_the_card_for_thirty_minutes(library: Library) -> None:
    """After five wrong PINs the right one is LOCKED until 30 minutes have passed,
    and then matches again."""
    outcomes = [
        check_pin(library.database, "P1", "0000", NOW + timedelta(seconds=n))
        for n in range(5)
    ]
    assert [PinOutcome.WRONG] * 5 == outcomes
    locked_at = NOW + timedelta(seconds=4)

    just_before_end = locked_at + timedelta(minutes=30) - timedelta(seconds=1)
    assert PinOutcome.LOCKED is check_pin(library.database, "P1", PIN, just_before_end)
    assert PinOutcome.LOCKED is check_pin(library.database, "P1", "0000", NOW)

    at_end = locked_at + timedelta(minutes=30)
    assert PinOutcome.MATCH is check_pin(library.database, "P1", PIN, at_end)


def test_a_right_pin_resets_the_count(library: Library) -> None:
    """Four wrong, one right, four wrong again: never locked."""
    for _ in range(4):
        check_pin(library.database, "P1", "0000", NOW)
    assert PinOutcome.MATCH is check_pin(library.database, "P1", PIN, NOW)
    assert 0 == _failures(library)
    outcomes = [check_pin(library.database, "P1", "0000", NOW) for _ in range(4)]
    assert [PinOutcome.WRONG] * 4 == outcomes
    assert PinOutcome.MATCH is check_pin(library.database, "P1", PIN, NOW)


def test_the_institution_sets_the_failures_and_the_lock_time(library: Library) -> None:
    """With 2 failures and a 10-minute lock, the third try is LOCKED for 10 minutes."""
    set_institution(library, pin_max_failures=2, pin_lock_minutes=10)
    check_pin(library.database, "P1", "1", NOW)
    check_pin(library.database, "P1", "2", NOW)
    later = NOW + timedelta(minutes=9)
    assert PinOutcome.LOCKED is check_pin(library.database, "P1", PIN, later)
    later = NOW + timedelta(minutes=10)
    assert PinOutcome.MATCH is check_pin(library.database, "P1", PIN, later)


def test_wrong_pins_are_logged_without_the_pin(library: Library) -> None:
    """Each wrong PIN writes a row and the lock another; no row holds the PIN."""
    for attempt in ("9999", "8888", "7777", "6666", "5555"):
        check_pin(library.database, "P1", attempt, NOW, terminal="sip:kiosk1")

    with library.database.read() as session:
        rows = session.execute(
            sa.select(
                CirculationLog.event, CirculationLog.detail, CirculationLog.terminal
            ).order_by(CirculationLog.id)
        ).all()
    events = [event for event, _detail, _terminal in rows]
    assert [LoanEvent.REFUSAL] * 5 + [LoanEvent.PIN_LOCKED] == events
    assert {"sip:kiosk1"} == {terminal for _e, _d, terminal in rows}
    text = " ".join(detail or "" for _event, detail, _terminal in rows)
    for attempt in ("9999", "8888", "7777", "6666", "5555", PIN):
        assert attempt not in text


def test_guesses_sent_at_once_still_lock_after_five(library: Library) -> None:
    """Twelve wrong PINs from twelve terminals at the same moment: exactly five
    are counted as wrong, the other seven find the PIN locked, and the right PIN
    sent next is refused."""
    start = threading.Barrier(12)
    outcomes: list[PinOutcome] = []
    lock = threading.Lock()

    def terminal(pin: str) -> None:
        start.wait()
        outcome = check_pin(library.database, "P1", pin, NOW)
        with lock:
            outcomes.append(outcome)

    guesses = [f"{n:04d}" for n in range(12)]
    threads = [threading.Thread(target=terminal, args=(pin,)) for pin in guesses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert (5, 7) == (
        outcomes.count(PinOutcome.WRONG),
        outcomes.count(PinOutcome.LOCKED),
    )
    assert PinOutcome.LOCKED is check_pin(library.database, "P1", PIN, NOW)
