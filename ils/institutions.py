"""Which institution a patron, an item or a branch belongs to.

Layer: `ils`, the bottom; imports none of sip2server, kiosk or drivers. A
patron belongs to the institution of its home branch, an item to that of its
home branch, a branch to its own institution. Callers that serve several
institutions from one database (a SIP2 account of one library in a consortium)
read these codes to keep each terminal to the institutions it serves.
"""

from __future__ import annotations

import sqlalchemy as sa

from ils.db import Database
from ils.models import Branch, Institution, Item, Patron


def patron_institution(database: Database, barcode: str) -> str | None:
    """The institution code of the patron with `barcode`; None when unknown."""
    query = (
        sa.select(Institution.code)
        .join(Branch, Branch.institution_id == Institution.id)
        .join(Patron, Patron.home_branch_id == Branch.id)
        .where(Patron.barcode == barcode)
    )
    with database.read() as session:
        return session.scalars(query).first()


def item_institution(database: Database, barcode: str) -> str | None:
    """The institution code of the item with `barcode`; None when unknown."""
    query = (
        sa.select(Institution.code)
        .join(Branch, Branch.institution_id == Institution.id)
        .join(Item, Item.home_branch_id == Branch.id)
        .where(Item.barcode == barcode)
    )
    with database.read() as session:
        return session.scalars(query).first()


def branch_institutions(database: Database) -> dict[str, str]:
    """Every branch code with the code of its institution."""
    query = sa.select(
        Branch.code.label("branch"), Institution.code.label("institution")
    ).join(Institution, Branch.institution_id == Institution.id)
    with database.read() as session:
        return {row.branch: row.institution for row in session.execute(query)}
