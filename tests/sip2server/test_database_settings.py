"""The server's [database] section: SQLite's commit durability setting."""

from __future__ import annotations

from typing import Any

import pytest

from sip2server.config import ConfigError, parse_config


def _document(**database: Any) -> dict[str, Any]:
    return {
        "database": {"url": "sqlite:///unused.sqlite3", **database},
        "accounts": [
            {
                "login": "kiosk1",
                "password": "p",
                "institution": "CITY",
                "location": "NORTH",
            }
        ],
    }


def test_commits_are_synced_to_disk_unless_the_site_says_otherwise() -> None:
    """sqlite_synchronous is "full" when absent and "normal" when set so."""
    assert parse_config(_document(), "f.toml").database.sqlite_synchronous == "full"
    chosen = parse_config(_document(sqlite_synchronous="normal"), "f.toml")
    assert chosen.database.sqlite_synchronous == "normal"


def test_an_unknown_durability_setting_is_refused_at_its_key() -> None:
    """The value off (which could corrupt the database on a crash) is refused."""
    with pytest.raises(ConfigError) as raised:
        parse_config(_document(sqlite_synchronous="off"), "f.toml")

    [(key, problem)] = raised.value.problems
    assert key == "database.sqlite_synchronous"
    assert "'full'" in problem
    assert "'normal'" in problem
