"""Loan rules per branch, with hourly loans, fines, holds and in-house items;
branch opening hours and closed days.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-11

Written by hand. Existing rules keep their meaning: they become rules for any
branch (`branch_id` NULL), daily loans, with no fine, holds allowed and items
free to leave the building. The unique constraint on (category, item type)
becomes one on (branch, category, item type). Like 0001, it imports nothing from
ils.models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode copies the table on SQLite, which cannot drop a constraint;
    # PostgreSQL alters it in place.
    with op.batch_alter_table("loan_rule") as batch:
        batch.drop_constraint("uq_loan_rule_category_type", type_="unique")
        batch.add_column(sa.Column("branch_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("loan_hours", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "in_house_only", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(
            sa.Column("fine_minor", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column(
                "fine_unit", sa.String(length=32), nullable=False, server_default="day"
            )
        )
        batch.add_column(
            sa.Column("fine_grace", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("fine_cap_minor", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "fines_skip_closed_days",
                sa.Boolean(),
                nullable=False,
                server_default=sa.true(),
            )
        )
        batch.add_column(
            sa.Column(
                "holds_allowed", sa.Boolean(), nullable=False, server_default=sa.true()
            )
        )
        batch.add_column(sa.Column("hold_pickup_branches", sa.Text(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_loan_rule_branch_id_branch"), "branch", ["branch_id"], ["id"]
        )
        batch.create_unique_constraint(
            "uq_loan_rule_branch_category_type",
            ["branch_id", "patron_category_id", "item_type_id"],
        )

    op.create_table(
        "branch_hours",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("opens", sa.Time(), nullable=False),
        sa.Column("closes", sa.Time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branch.id"], name=op.f("fk_branch_hours_branch_id_branch")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branch_hours")),
        sa.UniqueConstraint("branch_id", "weekday", name="uq_branch_hours_weekday"),
    )
    op.create_table(
        "branch_closed_day",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branch.id"],
            name=op.f("fk_branch_closed_day_branch_id_branch"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branch_closed_day")),
        sa.UniqueConstraint("branch_id", "day", name="uq_branch_closed_day_day"),
    )


def downgrade() -> None:
    op.drop_table("branch_closed_day")
    op.drop_table("branch_hours")
    with op.batch_alter_table("loan_rule") as batch:
        batch.drop_constraint("uq_loan_rule_branch_category_type", type_="unique")
        batch.drop_constraint(op.f("fk_loan_rule_branch_id_branch"), type_="foreignkey")
        for column in (
            "hold_pickup_branches",
            "holds_allowed",
            "fines_skip_closed_days",
            "fine_cap_minor",
            "fine_grace",
            "fine_unit",
            "fine_minor",
            "in_house_only",
            "loan_hours",
            "branch_id",
        ):
            batch.drop_column(column)
        batch.create_unique_constraint(
            "uq_loan_rule_category_type", ["patron_category_id", "item_type_id"]
        )
