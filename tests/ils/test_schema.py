"""Creating and upgrading the schema through Alembic, and `ils init`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from ils.db import Database
from ils.models import Base
from ils.schema import current_revision, head_revision, init_command, upgrade_database

# The newest migration in ils/migrations/versions; bump it with each new one.
HEAD = "0005"


def test_upgrade_creates_the_schema_and_is_idempotent(database_url: str) -> None:
    """An empty database has no revision; upgrading twice leaves it at the head."""
    assert current_revision(database_url) is None

    first = upgrade_database(database_url)
    second = upgrade_database(database_url)

    assert first == HEAD
    assert second == first == head_revision()
    assert current_revision(database_url) == HEAD


def test_migrations_match_the_models_exactly(database_url: str) -> None:
    """After upgrading, autogenerate finds no difference between models and tables."""
    upgrade_database(database_url)
    database = Database(database_url)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    database.dispose()
    assert differences == []


def test_tables_and_partial_index_exist(database_url: str) -> None:
    """Every model table is created, and the open-loan index is unique and partial."""
    upgrade_database(database_url)
    database = Database(database_url)
    inspector = sa.inspect(database.engine)
    assert set(Base.metadata.tables) <= set(inspector.get_table_names())
    indexes = {index["name"]: index for index in inspector.get_indexes("loan")}
    assert indexes["uq_loan_open_item"]["unique"]
    assert indexes["uq_loan_open_item"]["column_names"] == ["item_id"]
    database.dispose()


def test_one_open_loan_per_item_is_enforced_by_the_database(database_url: str) -> None:
    """A second open loan of an item is refused; a returned one beside it is not."""
    upgrade_database(database_url)
    database = Database(database_url)
    when = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    with database.transaction() as session:
        for statement in (
            "INSERT INTO institution (id, code, name, currency)"
            " VALUES (1, 'I', 'I', 'GBP')",
            "INSERT INTO branch (id, institution_id, code, name, timezone)"
            " VALUES (1, 1, 'B', 'B', 'UTC')",
            "INSERT INTO item_type (id, code, name, media_type)"
            " VALUES (1, 'T', 'T', '001')",
            "INSERT INTO patron_category (id, code, name) VALUES (1, 'C', 'C')",
            "INSERT INTO bib_record (id, title, created_at) VALUES (1, 'R', :when)",
            "INSERT INTO item (id, barcode, record_id, home_branch_id,"
            " current_branch_id, item_type_id, status, created_at)"
            " VALUES (1, 'X', 1, 1, 1, 1, 'available', :when)",
            "INSERT INTO patron (id, barcode, surname, firstname, category_id,"
            " home_branch_id, card_lost, created_at)"
            " VALUES (1, 'P', 'S', 'F', 1, 1, false, :when)",
        ):
            session.execute(sa.text(statement), {"when": when})

    insert_loan = sa.text(
        "INSERT INTO loan (item_id, patron_id, branch_id, checked_out_at, due_at,"
        " returned_at, renewals) VALUES (1, 1, 1, :when, :when, :returned, 0)"
    )
    with database.transaction() as session:
        session.execute(insert_loan, {"when": when, "returned": when})
        session.execute(insert_loan, {"when": when, "returned": None})
    with pytest.raises(sa.exc.IntegrityError), database.transaction() as session:
        session.execute(insert_loan, {"when": when, "returned": None})
    database.dispose()


def test_init_command_reports_the_revision_without_the_password(
    database_url: str,
) -> None:
    """`ils init` upgrades and prints the URL with any password masked."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "postgresql":
        # The test server trusts loopback, so any password is accepted.
        url = url.set(password="hunter2")
    given = url.render_as_string(hide_password=False)

    result = CliRunner().invoke(init_command, ["--db", given])

    assert result.exit_code == 0, result.output
    shown = url.render_as_string(hide_password=True)
    assert result.output == f"database at {shown} is at revision {HEAD}\n"
    assert "hunter2" not in result.output


def test_init_command_reads_the_environment(sqlite_url: str) -> None:
    """Without --db, `ils init` uses ILS_DATABASE_URL."""
    result = CliRunner().invoke(init_command, [], env={"ILS_DATABASE_URL": sqlite_url})
    assert result.exit_code == 0, result.output
    assert current_revision(sqlite_url) == HEAD


def test_init_command_without_a_database_says_how_to_give_one() -> None:
    """With neither --db nor ILS_DATABASE_URL, `ils init` explains both."""
    result = CliRunner().invoke(init_command, [], env={"ILS_DATABASE_URL": ""})
    assert result.exit_code == 2
    assert "--db" in result.output
    assert "ILS_DATABASE_URL" in result.output


def test_upgrade_to_0003_keeps_loans_and_records_the_borrowers_category(
    database_url: str,
) -> None:
    """A loan made before 0003 keeps its patron and gains the patron's category."""
    upgrade_database(database_url, revision="0002")
    engine = sa.create_engine(database_url)
    now = datetime(2026, 1, 5, 12, 0)
    rows: list[tuple[str, dict[str, object]]] = [
        ("institution", {"id": 1, "code": "I", "name": "I", "currency": "EUR"}),
        (
            "branch",
            {"id": 1, "institution_id": 1, "code": "B", "name": "B", "timezone": "UTC"},
        ),
        ("patron_category", {"id": 7, "code": "ADULT", "name": "Adult"}),
        ("item_type", {"id": 1, "code": "BOOK", "name": "Book", "media_type": "001"}),
        (
            "patron",
            {
                "id": 1,
                "barcode": "P1",
                "surname": "S",
                "firstname": "F",
                "category_id": 7,
                "home_branch_id": 1,
                "card_lost": False,
                "created_at": now,
            },
        ),
        ("bib_record", {"id": 1, "title": "T", "created_at": now}),
        (
            "item",
            {
                "id": 1,
                "barcode": "I1",
                "record_id": 1,
                "home_branch_id": 1,
                "current_branch_id": 1,
                "item_type_id": 1,
                "status": "available",
                "created_at": now,
            },
        ),
        (
            "loan",
            {
                "id": 1,
                "item_id": 1,
                "patron_id": 1,
                "branch_id": 1,
                "checked_out_at": now,
                "due_at": now,
                "renewals": 0,
            },
        ),
    ]
    with engine.begin() as connection:
        for table, values in rows:
            columns = ", ".join(values)
            marks = ", ".join(f":{name}" for name in values)
            connection.execute(
                sa.text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), values
            )
    engine.dispose()

    upgrade_database(database_url)

    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        loan = connection.execute(
            sa.text("SELECT patron_id, patron_category_id FROM loan")
        ).one()
        institution = connection.execute(
            sa.text("SELECT pin_max_failures, loan_history_days FROM institution")
        ).one()
    engine.dispose()
    assert (1, 7) == tuple(loan)
    assert (5, 30) == tuple(institution)
