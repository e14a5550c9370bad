"""The memory of PINs that matched: scrypt once per card and PIN, never past a
change of PIN, a wrong PIN, a lock or its lifetime; on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import ils.pins
from ils.circulation import Circulation
from ils.models import CirculationLog, LoanEvent, Patron
from ils.pins import PinMemory, PinOutcome, check_pin
from ils.secrets import hash_secret, verify_secret
from tests.ils.factories import PIN, Library
from tests.ils.fees_support import library_copy

NOW = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)
# Long enough that no random byte string or base64 text holds it by chance.
LONG_PIN = "86420975"


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """The test library on each engine in turn, with patron P1 whose PIN is PIN."""
    for built in library_copy(request.param, tmp_path):
        built.add_patron("P1", pin=PIN)
        yield built


class Counter:
    """How many times something was called."""

    def __init__(self) -> None:
        self.calls = 0


@pytest.fixture
def scrypt(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts the PIN verifications `ils.pins` runs, each one still real scrypt."""
    counter = Counter()

    def counting(secret: str, stored: str) -> bool:
        counter.calls += 1
        return verify_secret(secret, stored)

    monkeypatch.setattr(ils.pins, "verify_secret", counting)
    return counter


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch, library: Library) -> Counter:
    """Counts the write units opened on the library's database."""
    counter = Counter()
    opening: Callable[[], AbstractContextManager[Session]] = (
        library.database.transaction
    )

    def counting() -> AbstractContextManager[Session]:
        counter.calls += 1
        return opening()

    monkeypatch.setattr(library.database, "transaction", counting)
    return counter


class Seconds:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _patron(library: Library, barcode: str = "P1") -> tuple[int, bool]:
    """(pin_failures, locked) of a patron."""
    with library.database.read() as session:
        patron = session.scalar(sa.select(Patron).where(Patron.barcode == barcode))
        assert patron is not None
        return patron.pin_failures, patron.pin_locked_until is not None


def _wrong_pin_rows(library: Library) -> int:
    with library.database.read() as session:
        count = session.scalar(
            sa.select(sa.func.count())
            .select_from(CirculationLog)
            .where(CirculationLog.event == LoanEvent.REFUSAL)
            .where(CirculationLog.detail == ils.pins.WRONG_PIN_DETAIL)
        )
    assert count is not None
    return count


def _set_pin(library: Library, barcode: str, pin: str) -> None:
    """Give the patron a new PIN, as staff would (a fresh salt, so a new hash)."""
    with library.database.transaction() as session:
        session.execute(
            sa.update(Patron)
            .where(Patron.barcode == barcode)
            .values(pin_hash=hash_secret(pin))
        )


def test_a_second_check_of_the_right_pin_runs_no_scrypt_and_writes_nothing(
    library: Library, scrypt: Counter, writes: Counter
) -> None:
    """The right PIN twice: scrypt and the write unit run for the first only."""
    memory = PinMemory()
    first = check_pin(library.database, "P1", PIN, NOW, memory=memory)
    assert (PinOutcome.MATCH, 1, 1) == (first, scrypt.calls, writes.calls)

    second = check_pin(library.database, "P1", PIN, NOW, memory=memory)
    assert (PinOutcome.MATCH, 1, 1) == (second, scrypt.calls, writes.calls)


def test_without_a_memory_every_check_runs_scrypt(
    library: Library, scrypt: Counter
) -> None:
    """Callers that pass no memory verify every PIN, as before."""
    for _ in range(2):
        assert PinOutcome.MATCH is check_pin(library.database, "P1", PIN, NOW)
    assert 2 == scrypt.calls


def test_the_circulation_service_remembers_a_pin_between_requests(
    library: Library, scrypt: Counter
) -> None:
    """Two look-ups with the PIN through one Circulation verify it once."""
    circulation = Circulation(library.database, clock=lambda: NOW)
    for _ in range(2):
        view = circulation.patron("P1", pin=PIN)
        assert view is not None
        assert view.pin_valid is True
    assert 1 == scrypt.calls


def test_a_changed_pin_is_verified_again_and_the_old_one_no_longer_matches(
    library: Library, scrypt: Counter
) -> None:
    """After staff set a new PIN, the remembered old one is WRONG (verified) and
    the new one is verified once, then remembered."""
    memory = PinMemory()
    check_pin(library.database, "P1", PIN, NOW, memory=memory)
    _set_pin(library, "P1", "2468")

    assert PinOutcome.WRONG is check_pin(
        library.database, "P1", PIN, NOW, memory=memory
    )
    assert 2 == scrypt.calls
    for _ in range(2):
        outcome = check_pin(library.database, "P1", "2468", NOW, memory=memory)
        assert PinOutcome.MATCH is outcome
    assert 3 == scrypt.calls


def test_the_same_pin_set_again_is_verified_again(
    library: Library, scrypt: Counter
) -> None:
    """Setting the same PIN again makes a new hash, which is verified anew."""
    memory = PinMemory()
    check_pin(library.database, "P1", PIN, NOW, memory=memory)
    _set_pin(library, "P1", PIN)

    assert PinOutcome.MATCH is check_pin(
        library.database, "P1", PIN, NOW, memory=memory
    )
    assert 2 == scrypt.calls


def test_a_wrong_pin_after_a_remembered_right_one_is_counted_and_forgets_it(
    library: Library, scrypt: Counter
) -> None:
    """A wrong PIN is WRONG, counted and logged even though the right one is
    remembered, and the right one is then verified again (resetting the count)."""
    memory = PinMemory()
    check_pin(library.database, "P1", PIN, NOW, memory=memory)

    assert PinOutcome.WRONG is check_pin(
        library.database, "P1", "0000", NOW, memory=memory
    )
    assert (1, False) == _patron(library)
    assert 1 == _wrong_pin_rows(library)
    assert 0 == len(memory)

    assert PinOutcome.MATCH is check_pin(
        library.database, "P1", PIN, NOW, memory=memory
    )
    assert 3 == scrypt.calls
    assert (0, False) == _patron(library)


def test_a_wrong_pin_is_never_remembered(library: Library, scrypt: Counter) -> None:
    """The same wrong PIN twice is verified twice and counted twice."""
    memory = PinMemory()
    for _ in range(2):
        outcome = check_pin(library.database, "P1", "0000", NOW, memory=memory)
        assert PinOutcome.WRONG is outcome
    assert (2, 2, 0) == (scrypt.calls, _wrong_pin_rows(library), len(memory))


def test_a_locked_pin_is_locked_even_when_remembered(
    library: Library, scrypt: Counter
) -> None:
    """Another process's five wrong PINs lock the card: the remembered right PIN
    is LOCKED without scrypt, and forgotten."""
    memory = PinMemory()
    check_pin(library.database, "P1", PIN, NOW, memory=memory)
    for _ in range(5):
        check_pin(library.database, "P1", "0000", NOW)
    assert (0, True) == _patron(library)
    verified = scrypt.calls

    assert PinOutcome.LOCKED is check_pin(
        library.database, "P1", PIN, NOW, memory=memory
    )
    assert verified == scrypt.calls
    assert 0 == len(memory)


def test_a_remembered_pin_still_resets_the_count_of_wrong_ones(
    library: Library, scrypt: Counter, writes: Counter
) -> None:
    """Two wrong PINs from another process, then the remembered right one: a
    MATCH without scrypt whose write unit sets the count back to nothing."""
    memory = PinMemory()
    check_pin(library.database, "P1", PIN, NOW, memory=memory)
    for _ in range(2):
        check_pin(library.database, "P1", "0000", NOW)
    assert (2, False) == _patron(library)
    verified, written = scrypt.calls, writes.calls

    assert PinOutcome.MATCH is check_pin(
        library.database, "P1", PIN, NOW, memory=memory
    )
    assert (verified, written + 1) == (scrypt.calls, writes.calls)
    assert (0, False) == _patron(library)


def test_a_remembered_pin_expires_after_its_lifetime(
    library: Library, scrypt: Counter
) -> None:
    """With a 15-minute lifetime, a PIN is trusted 899 seconds after scrypt
    found it and verified again at 900, however often it was used between."""
    seconds = Seconds()
    memory = PinMemory(lifetime=timedelta(minutes=15), clock=seconds)
    check_pin(library.database, "P1", PIN, NOW, memory=memory)

    seconds.now += 899
    assert PinOutcome.MATCH is check_pin(
        library.database, "P1", PIN, NOW, memory=memory
    )
    assert 1 == scrypt.calls

    seconds.now += 1
    assert PinOutcome.MATCH is check_pin(
        library.database, "P1", PIN, NOW, memory=memory
    )
    assert 2 == scrypt.calls


def test_the_memory_keeps_only_the_most_recently_used_cards(
    library: Library, scrypt: Counter
) -> None:
    """With room for two cards: P1, P2, P1 again, then P3 pushes out P2 (the least
    recently used), so P1 and P3 need no scrypt and P2 does."""
    for barcode in ("P2", "P3"):
        library.add_patron(barcode, pin=PIN)
    memory = PinMemory(size=2)
    for barcode in ("P1", "P2", "P1", "P3"):
        check_pin(library.database, barcode, PIN, NOW, memory=memory)
    assert (3, 2) == (scrypt.calls, len(memory))

    for barcode in ("P1", "P3"):
        check_pin(library.database, barcode, PIN, NOW, memory=memory)
    assert 3 == scrypt.calls
    check_pin(library.database, "P2", PIN, NOW, memory=memory)
    assert 4 == scrypt.calls


def test_a_remembered_pin_matches_only_its_own_card(
    library: Library, scrypt: Counter
) -> None:
    """P1's remembered PIN does not spare P2's check, though the PIN is the same."""
    library.add_patron("P2", pin=PIN)
    memory = PinMemory()
    for barcode in ("P1", "P2"):
        assert PinOutcome.MATCH is check_pin(
            library.database, barcode, PIN, NOW, memory=memory
        )
    assert 2 == scrypt.calls


def _everything_in(thing: object, seen: set[int]) -> Iterator[object]:
    """`thing` and every value reachable from its attributes and containers."""
    if id(thing) in seen:
        return
    seen.add(id(thing))
    yield thing
    if isinstance(thing, str | bytes | int | float):
        return
    if isinstance(thing, dict):
        for key, value in thing.items():
            yield from _everything_in(key, seen)
            yield from _everything_in(value, seen)
    elif isinstance(thing, list | tuple | set | frozenset):
        for value in thing:
            yield from _everything_in(value, seen)
    elif dataclasses.is_dataclass(thing):
        for field in dataclasses.fields(thing):
            yield from _everything_in(getattr(thing, field.name), seen)
    elif hasattr(thing, "__dict__"):
        yield from _everything_in(vars(thing), seen)


def test_nothing_in_the_memory_is_or_holds_the_pin(library: Library) -> None:
    """After remembering a PIN, no string or bytes reachable from the memory
    equals or contains it, in text or UTF-8."""
    library.add_patron("P2", pin=LONG_PIN)
    memory = PinMemory()
    assert PinOutcome.MATCH is check_pin(
        library.database, "P2", LONG_PIN, NOW, memory=memory
    )
    assert 1 == len(memory)

    held = list(_everything_in(memory, set()))
    texts = [value for value in held if isinstance(value, str)]
    raw = [value for value in held if isinstance(value, bytes)]
    assert "P2" in texts
    assert raw
    assert not [text for text in texts if LONG_PIN in text]
    assert not [value for value in raw if LONG_PIN.encode("utf-8") in value]
    assert LONG_PIN not in repr(memory)


def test_a_memory_needs_room_and_time() -> None:
    """A memory of no cards, or with no lifetime, is refused with a clear error."""
    with pytest.raises(ValueError, match="size must be at least 1"):
        PinMemory(size=0)
    with pytest.raises(ValueError, match="lifetime must be positive"):
        PinMemory(lifetime=timedelta(0))
