"""What a unit of work reads when it keeps the objects it loaded
(`ils.db.keep_loaded`): a row it locks is read afresh, not taken from its copy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ils import queries
from ils.db import keep_loaded
from ils.models import Item, Patron
from tests.ils.factories import Library, build_library


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library on PostgreSQL, whose row locks let another transaction
    commit between a unit's first read and its lock (SQLite's write unit holds
    the whole database from its start)."""
    if database_url.startswith("sqlite"):
        pytest.skip("a SQLite write unit holds the database from its start")
    built = build_library(database_url)
    built.add_patron("P1", surname="Okafor")
    built.add_item("B1", title="Salt Roads")
    yield built
    built.database.dispose()


def test_a_patron_and_an_item_locked_after_a_plain_read_show_the_committed_values(
    library: Library,
) -> None:
    """A unit reads a patron and an item, another transaction changes and commits
    both, then the unit locks them: the locked objects carry the new values."""
    database = library.database
    with database.transaction() as session:
        keep_loaded(session)
        patron = queries.patron_by_barcode(session, "P1")
        item = queries.item_by_barcode(session, "B1")
        assert patron is not None
        assert item is not None
        assert "Okafor" == patron.surname

        with database.transaction() as other:
            other.execute(
                sa.update(Patron).where(Patron.id == patron.id).values(surname="Eze")
            )
            other.execute(
                sa.update(Item).where(Item.id == item.id).values(location="Stack 9")
            )

        by_barcode = queries.patron_by_barcode(session, "P1", lock=True)
        by_id = queries.lock_patron(session, patron.id)
        locked_item = queries.item_by_barcode(session, "B1", lock=True)

        assert by_barcode is patron
        assert by_id is patron
        assert "Eze" == patron.surname
        assert locked_item is item
        assert "Stack 9" == item.location
