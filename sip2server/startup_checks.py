"""Start-up checks of a server configuration against its database.

Layer: `sip2server`. Before anything listens, `check_database` refuses a
database without the schema or without the places the accounts name, and
`policy_code_problems` lists codes in the configuration the database lacks;
`ils serve`, `ils check-config` and a reload all use them. It must not import
`sip2server.app`, `kiosk` or `drivers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from ils.db import Database, display_url
from ils.models import Branch, Institution, ItemType, LoanRule, PatronCategory
from ils.schema import current_revision, head_revision
from sip2server.config import ServerConfig, location_problems
from sip2server.listeners import StartupError

__all__ = [
    "LibraryPlaces",
    "check_database",
    "loan_rule_count",
    "policy_code_problems",
]


@dataclass(frozen=True)
class LibraryPlaces:
    """What the server needs to know of the library's institutions and branches."""

    library_names: dict[str, str]
    branch_zones: dict[str, ZoneInfo]


def check_database(database: Database, config: ServerConfig) -> LibraryPlaces:
    """Refuse to start on a database without the schema or the accounts' places
    (each account's institution, and its location a branch of that institution
    or of one its policy serves).

    Raises:
        StartupError: naming what is missing and the command that fixes it.
    """
    if database.is_sqlite:
        path = Path(database.engine.url.database or "")
        if not path.is_file():
            # Opening it would create an empty file; say what to run instead.
            raise StartupError(
                f"there is no SQLite database at {path}; "
                "run `ils init --db URL` (or `ils demo --db URL` for demo data)"
            )
    revision = current_revision(database.url)
    if revision is None:
        raise StartupError(
            f"the database at {display_url(database.url)} has no tables yet; "
            "run `ils init --db URL` (or `ils demo --db URL` for demo data)"
        )
    if revision != head_revision():
        raise StartupError(
            f"the database is at schema revision {revision}, this version needs "
            f"{head_revision()}; run `ils init --db URL` to upgrade it"
        )

    with database.read() as session:
        institutions = {
            row.code: row.name
            for row in session.execute(select(Institution.code, Institution.name))
        }
        branches = {
            row.code: row.timezone
            for row in session.execute(select(Branch.code, Branch.timezone))
        }
        branch_institutions = {
            str(row.branch): str(row.institution)
            for row in session.execute(
                select(
                    Branch.code.label("branch"), Institution.code.label("institution")
                ).join(Institution, Branch.institution_id == Institution.id)
            )
        }
    problems = []
    for index, account in enumerate(config.accounts):
        where = f"accounts[{index}] ({account.login})"
        if account.institution not in institutions:
            problems.append(
                f"{where}: institution {account.institution!r} is not in the "
                f"database (it has: {', '.join(sorted(institutions)) or 'none'})"
            )
        if account.location not in branches:
            problems.append(
                f"{where}: location {account.location!r} is not a branch in the "
                f"database (it has: {', '.join(sorted(branches)) or 'none'})"
            )
    problems += location_problems(config, branch_institutions)
    if problems:
        raise StartupError("\n".join(problems))
    return LibraryPlaces(
        library_names={str(code): str(name) for code, name in institutions.items()},
        branch_zones={
            str(code): ZoneInfo(str(zone)) for code, zone in branches.items()
        },
    )


def policy_code_problems(database: Database, config: ServerConfig) -> list[str]:
    """Codes in the configuration that the database does not have.

    Item types and patron categories in account policies (blocked, in-house,
    security markers by type) and `[institution.CODE]` tables for an
    institution the database lacks: each would silently never apply.
    """
    with database.read() as session:
        known = {
            "item type": set(session.scalars(select(ItemType.code))),
            "patron category": set(session.scalars(select(PatronCategory.code))),
            "institution": set(session.scalars(select(Institution.code))),
        }
    problems = []

    def check(key: str, codes: Any, kind: str) -> None:
        for code in codes:
            if code not in known[kind]:
                have = ", ".join(sorted(known[kind])) or "none"
                problems.append(
                    f"{key}: {code!r} is not {'an' if kind[0] in 'aeiou' else 'a'} "
                    f"{kind} in the database (it has: {have}); it would never apply"
                )

    check("institution", config.institution, "institution")
    for index, account in enumerate(config.accounts):
        where = f"accounts[{index}] ({account.login}).policy"
        policy = account.policy
        check(f"{where}.blocked_item_types", policy.blocked_item_types, "item type")
        check(f"{where}.inhouse_item_types", policy.inhouse_item_types, "item type")
        check(f"{where}.security_markers", policy.security_markers, "item type")
        check(
            f"{where}.inhouse_patron_categories",
            policy.inhouse_patron_categories,
            "patron category",
        )
    return problems


def loan_rule_count(database: Database) -> int:
    """How many loan rules the database has: with none, nothing can be lent."""
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(LoanRule)) or 0)
