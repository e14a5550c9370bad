"""Indexes for finding an item's holds and fees without scanning their history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Written by hand. The partial unique index on trapped items stays; SQLite cannot
use it for a query whose status list is bound as parameters, so every checkin
read the whole hold table (measured with bench/core.py on 500,000 finished
holds).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_hold_trapped_item", "hold", ["trapped_item_id"])
    op.create_index("ix_hold_item", "hold", ["item_id"])
    op.create_index("ix_fee_item", "fee", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_fee_item", table_name="fee")
    op.drop_index("ix_hold_item", table_name="hold")
    op.drop_index("ix_hold_trapped_item", table_name="hold")
