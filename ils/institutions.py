"""Which institution a patron, an item or a branch belongs to.

Layer: `ils`, the bottom; imports none of sip2server, kiosk or drivers. A
patron belongs to the institution of its home branch, an item to that of its
home branch, a branch to its own institution. Callers that serve several
institutions from one database (a SIP2 account of one library in a consortium)
read these codes to keep each terminal to the institutions it serves.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ils.db import Database
from ils.models import Branch, Institution, Item, Patron


def _owner_of(table: type[Patron] | type[Item]) -> sa.Select[Any]:
    return (
        sa.select(Institution.code)
        .join(Branch, Branch.institution_id == Institution.id)
        .join(table, table.home_branch_id == Branch.id)
        .where(table.barcode == sa.bindparam("barcode"))
        .limit(1)
    )


# Built once: every SIP2 request that names a patron or an item asks these.
_PATRON_OWNER = _owner_of(Patron)
_ITEM_OWNER = _owner_of(Item)


def owners(
    database: Database, *, patron: str | None = None, item: str | None = None
) -> tuple[str | None, str | None]:
    """The institution codes of the patron with barcode `patron` and of the item
    with barcode `item`, in one read unit; None for one not given or unknown."""
    if not patron and not item:
        return None, None
    with database.read_rows() as connection:

        def owner(statement: sa.Select[Any], barcode: str | None) -> str | None:
            if not barcode:
                return None
            row = connection.execute(statement, {"barcode": barcode}).first()
            return None if row is None else row[0]

        return owner(_PATRON_OWNER, patron), owner(_ITEM_OWNER, item)


def branch_institutions(database: Database) -> dict[str, str]:
    """Every branch code with the code of its institution."""
    query = sa.select(
        Branch.code.label("branch"), Institution.code.label("institution")
    ).join(Institution, Branch.institution_id == Institution.id)
    with database.read() as session:
        return {row.branch: row.institution for row in session.execute(query)}
