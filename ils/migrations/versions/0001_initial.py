"""The initial core schema: institutions, branches, patrons, catalogue, loans, log.

Revision ID: 0001
Revises:
Create Date: 2026-12-04

Drafted with autogenerate and then reviewed by hand. It imports nothing from
ils.models, so that later changes to the models cannot change what this
revision does: timestamps are plain DateTime (the models store naive UTC) and
enum columns are VARCHAR(32) holding the enum's value, as the models declare.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The partial index that allows one open loan per item, on both engines.
OPEN_LOAN = sa.text("returned_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "institution",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_institution")),
        sa.UniqueConstraint("code", name=op.f("uq_institution_code")),
    )
    op.create_table(
        "item_type",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("media_type", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_type")),
        sa.UniqueConstraint("code", name=op.f("uq_item_type_code")),
    )
    op.create_table(
        "patron_category",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patron_category")),
        sa.UniqueConstraint("code", name=op.f("uq_patron_category_code")),
    )
    op.create_table(
        "bib_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("control_number", sa.String(length=64), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("isbn", sa.String(length=32), nullable=True),
        sa.Column("publisher", sa.Text(), nullable=True),
        sa.Column("publication_year", sa.String(length=16), nullable=True),
        sa.Column("marc", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bib_record")),
    )
    op.create_index(
        op.f("ix_bib_record_control_number"), "bib_record", ["control_number"]
    )
    op.create_table(
        "branch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_branch_institution_id_institution"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branch")),
        sa.UniqueConstraint("code", name=op.f("uq_branch_code")),
    )
    op.create_table(
        "loan_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patron_category_id", sa.Integer(), nullable=True),
        sa.Column("item_type_id", sa.Integer(), nullable=True),
        sa.Column("loan_days", sa.Integer(), nullable=False),
        sa.Column("renewals_allowed", sa.Integer(), nullable=False),
        sa.Column("max_loans", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_type_id"],
            ["item_type.id"],
            name=op.f("fk_loan_rule_item_type_id_item_type"),
        ),
        sa.ForeignKeyConstraint(
            ["patron_category_id"],
            ["patron_category.id"],
            name=op.f("fk_loan_rule_patron_category_id_patron_category"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_rule")),
        sa.UniqueConstraint(
            "patron_category_id", "item_type_id", name="uq_loan_rule_category_type"
        ),
    )
    op.create_table(
        "item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("barcode", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("home_branch_id", sa.Integer(), nullable=False),
        sa.Column("current_branch_id", sa.Integer(), nullable=False),
        sa.Column("item_type_id", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=80), nullable=True),
        sa.Column("collection", sa.String(length=80), nullable=True),
        sa.Column("call_number", sa.String(length=120), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["current_branch_id"],
            ["branch.id"],
            name=op.f("fk_item_current_branch_id_branch"),
        ),
        sa.ForeignKeyConstraint(
            ["home_branch_id"],
            ["branch.id"],
            name=op.f("fk_item_home_branch_id_branch"),
        ),
        sa.ForeignKeyConstraint(
            ["item_type_id"],
            ["item_type.id"],
            name=op.f("fk_item_item_type_id_item_type"),
        ),
        sa.ForeignKeyConstraint(
            ["record_id"], ["bib_record.id"], name=op.f("fk_item_record_id_bib_record")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item")),
        sa.UniqueConstraint("barcode", name=op.f("uq_item_barcode")),
    )
    op.create_index(op.f("ix_item_record_id"), "item", ["record_id"])
    op.create_table(
        "patron",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("barcode", sa.String(length=64), nullable=False),
        sa.Column("surname", sa.String(length=200), nullable=False),
        sa.Column("firstname", sa.String(length=200), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("home_branch_id", sa.Integer(), nullable=False),
        sa.Column("pin_hash", sa.String(length=255), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("card_lost", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["patron_category.id"],
            name=op.f("fk_patron_category_id_patron_category"),
        ),
        sa.ForeignKeyConstraint(
            ["home_branch_id"],
            ["branch.id"],
            name=op.f("fk_patron_home_branch_id_branch"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patron")),
        sa.UniqueConstraint("barcode", name=op.f("uq_patron_barcode")),
    )
    op.create_table(
        "patron_block",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patron_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(length=100), nullable=False),
        sa.Column("placed_at", sa.DateTime(), nullable=False),
        sa.Column("lifted_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["patron_id"],
            ["patron.id"],
            name=op.f("fk_patron_block_patron_id_patron"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patron_block")),
    )
    op.create_index(op.f("ix_patron_block_patron_id"), "patron_block", ["patron_id"])
    op.create_table(
        "loan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("patron_id", sa.Integer(), nullable=True),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("checked_out_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("returned_at", sa.DateTime(), nullable=True),
        sa.Column("renewals", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branch.id"], name=op.f("fk_loan_branch_id_branch")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["item.id"], name=op.f("fk_loan_item_id_item")
        ),
        sa.ForeignKeyConstraint(
            ["patron_id"], ["patron.id"], name=op.f("fk_loan_patron_id_patron")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan")),
    )
    op.create_index("ix_loan_patron_open", "loan", ["patron_id", "returned_at"])
    op.create_index(
        "uq_loan_open_item",
        "loan",
        ["item_id"],
        unique=True,
        sqlite_where=OPEN_LOAN,
        postgresql_where=OPEN_LOAN,
    )
    op.create_table(
        "circulation_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("patron_id", sa.Integer(), nullable=True),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("terminal", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branch.id"],
            name=op.f("fk_circulation_log_branch_id_branch"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["item.id"], name=op.f("fk_circulation_log_item_id_item")
        ),
        sa.ForeignKeyConstraint(
            ["patron_id"],
            ["patron.id"],
            name=op.f("fk_circulation_log_patron_id_patron"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_circulation_log")),
    )
    op.create_index(op.f("ix_circulation_log_at"), "circulation_log", ["at"])


def downgrade() -> None:
    # Dropping a table drops its indexes with it, on both engines.
    for table in (
        "circulation_log",
        "loan",
        "patron_block",
        "patron",
        "item",
        "loan_rule",
        "branch",
        "bib_record",
        "patron_category",
        "item_type",
        "institution",
    ):
        op.drop_table(table)
