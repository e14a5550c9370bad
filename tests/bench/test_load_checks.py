"""The after-run checks of `bench/load.py`: committed loan changes against log lines.

Test layer: imports `bench.load_servers` (a script module, found from the
repository root); starts no server and opens no database.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bench.load_servers import committed, logged, unlogged

BEFORE = {
    1: ("31234000770001", True, 0),  # on loan, will be returned
    2: ("31234000770003", True, 0),  # on loan, will be renewed twice
    3: ("31234000770005", False, 0),  # returned long ago, untouched
}
AFTER = {
    1: ("31234000770001", False, 0),
    2: ("31234000770003", True, 2),
    3: ("31234000770005", False, 0),
    4: ("31234000770002", False, 0),  # lent and returned during the run
    5: ("31234000770004", True, 1),  # lent, then renewed by a second checkout
}


def _write_log(path: Path, entries: list[tuple[str, str, str]]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"command": command, "outcome": outcome, "item": item}) + "\n"
            for command, outcome, item in entries
        )
    )
    return path


def test_committed_counts_new_loans_returns_and_renewals_by_masked_item() -> None:
    """New loans, closed loans and renewal increments are counted per masked item."""
    changes = committed(BEFORE, AFTER)
    assert changes["checkout"] == Counter({"...0002": 1, "...0004": 1})
    assert changes["checkin"] == Counter({"...0001": 1, "...0002": 1})
    assert changes["renew"] == Counter({"...0003": 2, "...0004": 1})


def test_logs_of_two_processes_that_hold_every_change_leave_nothing_unlogged(
    tmp_path: Path,
) -> None:
    """Lines split over two files, refusals aside, account for every change."""
    first = _write_log(
        tmp_path / "transactions-1.log",
        [
            ("checkout", "ok", "...0002"),
            ("checkin", "ok", "...0002"),
            ("renew", "ok", "...0003"),
            ("checkout", "refused", "...0009"),
        ],
    )
    second = _write_log(
        tmp_path / "transactions-2.log",
        [
            ("checkin", "ok", "...0001"),
            ("renew", "ok", "...0003"),
            ("checkout", "ok", "...0004"),
            ("checkout", "ok", "...0004"),  # the renewal by checkout
        ],
    )
    found, lines = logged([first, second, tmp_path / "transactions-3.log"])
    assert lines == [4, 4, 0]
    missing = unlogged(committed(BEFORE, AFTER), found)
    assert not any(missing.values())


def test_a_missing_line_or_a_refusal_in_its_place_is_reported(tmp_path: Path) -> None:
    """A return with no line, and a renewal logged only as refused, are unlogged."""
    log = _write_log(
        tmp_path / "transactions-1.log",
        [
            ("checkout", "ok", "...0002"),
            ("checkin", "ok", "...0002"),
            ("renew", "ok", "...0003"),
            ("renew", "refused", "...0003"),
            ("checkout", "ok", "...0004"),
            ("checkout", "ok", "...0004"),
        ],
    )
    found, _ = logged([log])
    missing = unlogged(committed(BEFORE, AFTER), found)
    assert missing["checkout"] == Counter()
    assert missing["checkin"] == Counter({"...0001": 1})
    assert missing["renew"] == Counter({"...0003": 1})
