"""The offline journal: committed at once, replayed once, safe if killed mid-way."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from kiosk.journal import EntryKind, EntryState, Journal, JournalError

AT = datetime(2026, 12, 4, 15, 30, tzinfo=timezone(timedelta(hours=-5)))


def test_a_recorded_return_is_on_disk_before_record_returns(tmp_path: Path) -> None:
    """Another connection sees the entry as soon as `record` has returned."""
    journal = Journal(tmp_path / "j.sqlite3")
    journal.record(EntryKind.RETURN, item="31234000000016", at=AT)

    with sqlite3.connect(tmp_path / "j.sqlite3") as other:
        rows = other.execute(
            "SELECT kind, item, happened_at, state FROM journal"
        ).fetchall()
    journal.close()

    assert [
        ("return", "31234000000016", "2026-12-04T15:30:00-05:00", "pending")
    ] == rows


def test_a_killed_process_leaves_every_committed_entry(tmp_path: Path) -> None:
    """A process killed right after recording loses nothing it reported done."""
    path = tmp_path / "j.sqlite3"
    script = (
        "import os, datetime as d\n"
        "from kiosk.journal import Journal, EntryKind\n"
        f"j = Journal({str(path)!r})\n"
        "for n in range(5):\n"
        "    j.record(EntryKind.RETURN, item=f'item{n}',"
        " at=d.datetime.now(d.UTC))\n"
        "os._exit(9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script], check=False)
    assert 9 == killed.returncode

    journal = Journal(path)
    assert ["item0", "item1", "item2", "item3", "item4"] == [
        entry.item for entry in journal.pending()
    ]
    journal.close()


def test_an_entry_in_flight_at_a_crash_becomes_unknown_not_resent(
    tmp_path: Path,
) -> None:
    """After a crash mid-replay the entry is reported unknown and left unsent."""
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    first = journal.record(EntryKind.CHECKOUT, item="a", patron="p", at=AT)
    journal.record(EntryKind.RETURN, item="b", at=AT)
    journal.mark_in_flight(first)
    journal.close()

    reopened = Journal(path)

    assert 1 == reopened.recovered
    assert ["b"] == [entry.item for entry in reopened.pending()]
    (unknown,) = reopened.results()
    assert EntryState.UNKNOWN is unknown.state
    assert 1 == unknown.attempts
    assert "check it by hand" in unknown.result
    reopened.close()


def test_results_are_kept_with_their_replay_time(tmp_path: Path) -> None:
    """Each result is stored with what the server said and when it was sent."""
    journal = Journal(tmp_path / "j.sqlite3")
    entry = journal.record(EntryKind.RETURN, item="a", at=AT)
    journal.mark_in_flight(entry)
    replayed = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
    journal.mark_result(
        entry, EntryState.REFUSED, "This item is not recognised.", replayed
    )

    (result,) = journal.results()
    journal.close()

    assert EntryState.REFUSED is result.state
    assert AT == result.happened_at
    assert replayed == result.replayed_at
    assert {**dict.fromkeys(EntryState, 0), EntryState.REFUSED: 1} == journal_counts(
        tmp_path
    )


def test_times_without_a_zone_are_refused(tmp_path: Path) -> None:
    """A naive time would be ambiguous at replay, so it is not accepted."""
    journal = Journal(tmp_path / "j.sqlite3")
    with pytest.raises(ValueError, match="zone"):
        journal.record(EntryKind.RETURN, item="a", at=datetime(2026, 12, 4, 9, 0))
    journal.close()


def test_offline_checkouts_are_counted_per_patron(tmp_path: Path) -> None:
    """The offline limit counts only this patron's unsent checkouts."""
    journal = Journal(tmp_path / "j.sqlite3")
    journal.record(EntryKind.CHECKOUT, item="a", patron="p1", at=AT)
    journal.record(EntryKind.CHECKOUT, item="b", patron="p1", at=AT)
    journal.record(EntryKind.CHECKOUT, item="c", patron="p2", at=AT)
    journal.record(EntryKind.RETURN, item="d", at=AT)

    assert 2 == journal.checkouts_for("p1")
    assert 1 == journal.checkouts_for("p2")
    journal.close()


def journal_counts(tmp_path: Path) -> dict[EntryState, int]:
    """The counts of a journal opened afresh."""
    journal = Journal(tmp_path / "j.sqlite3")
    try:
        return journal.counts()
    finally:
        journal.close()


def test_a_corrupt_journal_is_named_in_the_error(tmp_path: Path) -> None:
    """A file that is not a SQLite database fails with its name and the key."""
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"not a journal at all " * 200)
    with pytest.raises(JournalError) as raised:
        Journal(path)
    assert str(raised.value).startswith(f"{path}: cannot open the offline journal")
    assert "offline.journal" in str(raised.value)
    assert "not a database" in str(raised.value)


def test_entries_to_check_by_hand_are_listed_first(tmp_path: Path) -> None:
    """An older entry of unknown outcome comes before newer replayed ones."""
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    lost = journal.record(EntryKind.RETURN, item="lost", at=AT)
    journal.mark_in_flight(lost)
    journal.close()
    journal = Journal(path)
    for item in ("b", "c"):
        entry = journal.record(EntryKind.RETURN, item=item, at=AT)
        journal.mark_in_flight(entry)
        journal.mark_result(entry, EntryState.DONE, "ok", AT)

    assert ["lost", "c", "b"] == [entry.item for entry in journal.results()]
    journal.close()
