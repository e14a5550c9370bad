"""A terminal that blocks the same card again renews its one open block instead
of adding rows (issue #5, trial 2 F14), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ils.models import CirculationLog, LoanEvent, PatronBlock
from ils.staff import StaffDesk
from ils.terminal_requests import TerminalRequests
from tests.ils.factories import Library, SettableClock, build_library

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library on each engine in turn, with one patron."""
    built = build_library(database_url)
    built.add_patron("P1")
    yield built
    built.database.dispose()


def blocks(library: Library) -> list[tuple[str, str, datetime, bool]]:
    """Every block row: (placed_by, note, placed_at, lifted), in id order."""
    with library.database.read() as session:
        rows = session.execute(
            sa.select(
                PatronBlock.placed_by,
                PatronBlock.note,
                PatronBlock.placed_at,
                PatronBlock.lifted_at,
            ).order_by(PatronBlock.id)
        ).all()
    return [(by, note, at, lifted is not None) for by, note, at, lifted in rows]


def test_a_repeated_block_renews_the_terminals_open_block(library: Library) -> None:
    """Three blocks from kiosk1 leave one row, with the last note and time; each
    request is still logged, the repeats as renewals."""
    clock = SettableClock(NOW)
    requests = TerminalRequests(library.database, clock=clock)

    first = requests.block_patron("P1", note="seen twice", terminal="kiosk1")
    clock.now = NOW + timedelta(minutes=5)
    second = requests.block_patron("P1", note="again", terminal="kiosk1")
    clock.now = NOW + timedelta(minutes=9)
    third = requests.block_patron(
        "P1", note="kept it", terminal="kiosk1", card_retained=True
    )

    assert (True, False, False) == (first.added, second.added, third.added)
    assert [
        (
            "terminal:kiosk1",
            "kept it (card retained by the terminal)",
            NOW + timedelta(minutes=9),
            False,
        )
    ] == blocks(library)
    with library.database.read() as session:
        logged = session.execute(
            sa.select(CirculationLog.event, CirculationLog.detail).order_by(
                CirculationLog.id
            )
        ).all()
    assert [
        (LoanEvent.PATRON_BLOCKED, None),
        (LoanEvent.PATRON_BLOCKED, "open block renewed"),
        (LoanEvent.PATRON_BLOCKED, "card retained; open block renewed"),
    ] == [tuple(row) for row in logged]


def test_staff_blocks_and_other_terminals_blocks_are_not_touched(
    library: Library,
) -> None:
    """kiosk1's repeats renew only kiosk1's block: staff's block and kiosk2's
    keep their notes and times."""
    staff = StaffDesk(library.database, clock=SettableClock(NOW))
    staff.block("P1", note="unpaid replacement card", by="alice")
    clock = SettableClock(NOW)
    requests = TerminalRequests(library.database, clock=clock)
    requests.block_patron("P1", note="from the east kiosk", terminal="kiosk2")
    clock.now = NOW + timedelta(hours=1)
    requests.block_patron("P1", note="first", terminal="kiosk1")
    clock.now = NOW + timedelta(hours=2)
    requests.block_patron("P1", note="second", terminal="kiosk1")

    assert [
        ("alice", "unpaid replacement card", NOW, False),
        ("terminal:kiosk2", "from the east kiosk", NOW, False),
        ("terminal:kiosk1", "second", NOW + timedelta(hours=2), False),
    ] == blocks(library)


def test_staff_blocks_are_still_added_each_time(library: Library) -> None:
    """Staff who block a card twice get two blocks, as before: only terminals'
    repeats are folded."""
    staff = StaffDesk(library.database, clock=SettableClock(NOW))
    staff.block("P1", note="one", by="alice")
    staff.block("P1", note="two", by="alice")

    assert ["one", "two"] == [note for _by, note, _at, _lifted in blocks(library)]


def test_a_block_after_enable_opens_the_same_row_again(library: Library) -> None:
    """Once the terminal's block is lifted (25), the next 01 opens that row
    again with the new note and time (issue #5, trial 3 B1) instead of adding
    one; the log says so."""
    clock = SettableClock(NOW)
    requests = TerminalRequests(library.database, clock=clock)
    requests.block_patron("P1", note="first", terminal="kiosk1")
    clock.now = NOW + timedelta(minutes=1)
    requests.enable_patron("P1", terminal="kiosk1")
    clock.now = NOW + timedelta(minutes=2)
    result = requests.block_patron("P1", note="second", terminal="kiosk1")

    assert result.added
    assert [
        ("terminal:kiosk1", "second", NOW + timedelta(minutes=2), False),
    ] == blocks(library)
    with library.database.read() as session:
        last = session.scalar(
            sa.select(CirculationLog.detail).order_by(CirculationLog.id.desc())
        )
    assert "lifted block placed again" == last


def test_item_properties_lose_control_characters(library: Library) -> None:
    """A 19's item properties are stored as 19 sends them, less ESC and NUL."""
    library.add_item("I1")
    requests = TerminalRequests(library.database, clock=SettableClock(NOW))

    stored = requests.store_item_properties(
        "I1", "\x1b]0;x\x07shelf\x00 3", terminal="kiosk1"
    )

    assert "]0;xshelf 3" == stored


def test_blocks_sent_at_once_still_leave_one_open_block(library: Library) -> None:
    """Six threads blocking the card together (the patron row is locked first)
    leave exactly one open block from that terminal, and six log rows."""
    requests = TerminalRequests(library.database, clock=SettableClock(NOW))
    start = threading.Barrier(6)
    failures: list[BaseException] = []

    def block(n: int) -> None:
        start.wait()
        try:
            requests.block_patron("P1", note=f"try {n}", terminal="kiosk1")
        except BaseException as error:  # reported below
            failures.append(error)

    workers = [threading.Thread(target=block, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert [] == failures
    assert 1 == len(blocks(library))
    with library.database.read() as session:
        logged = session.scalar(sa.select(sa.func.count()).select_from(CirculationLog))
    assert 6 == logged
