"""Holds, fees and payments; PIN lockout, credit, transit and circulation settings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

Written by hand. Existing institutions get the defaults the models declare (no fee
or overdue limit, overpayment refused, lost fees refunded when found, five wrong
PINs lock the PIN for 30 minutes, loan history kept 30 days, holds wait 7 days).
Existing rules charge no rental or hold fee and allow staff overrides. Like 0001,
it imports nothing from ils.models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=32)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def _not_null(name: str, kind: sa.types.TypeEngine[Any], default: str) -> sa.Column[Any]:
    return sa.Column(name, kind, nullable=False, server_default=sa.text(default))


def upgrade() -> None:
    _create_hold()
    _create_fees_and_payments()

    with op.batch_alter_table("institution") as batch:
        batch.add_column(sa.Column("fee_limit_minor", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("overdue_limit", sa.Integer(), nullable=True))
        batch.add_column(_not_null("overpayment_as_credit", sa.Boolean(), "false"))
        batch.add_column(_not_null("refund_lost_when_found", sa.Boolean(), "true"))
        batch.add_column(_not_null("lost_processing_fee_minor", sa.Integer(), "0"))
        batch.add_column(_not_null("pin_max_failures", sa.Integer(), "5"))
        batch.add_column(_not_null("pin_lock_minutes", sa.Integer(), "30"))
        batch.add_column(
            sa.Column(
                "loan_history_days",
                sa.Integer(),
                nullable=True,
                server_default=sa.text("30"),
            )
        )
        batch.add_column(_not_null("hold_pickup_days", sa.Integer(), "7"))
        batch.add_column(sa.Column("max_holds", sa.Integer(), nullable=True))

    with op.batch_alter_table("item") as batch:
        batch.add_column(sa.Column("transit_to_branch_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("transit_since", sa.DateTime(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_item_transit_to_branch_id_branch"),
            "branch",
            ["transit_to_branch_id"],
            ["id"],
        )

    with op.batch_alter_table("loan") as batch:
        batch.add_column(sa.Column("patron_category_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_loan_patron_category_id_patron_category"),
            "patron_category",
            ["patron_category_id"],
            ["id"],
        )

    # Loans already made keep their borrower's category for the statistics.
    op.execute(
        "UPDATE loan SET patron_category_id = (SELECT category_id FROM patron"
        " WHERE patron.id = loan.patron_id) WHERE patron_id IS NOT NULL"
    )

    with op.batch_alter_table("loan_rule") as batch:
        batch.add_column(_not_null("rental_fee_minor", sa.Integer(), "0"))
        batch.add_column(_not_null("hold_fee_minor", sa.Integer(), "0"))
        batch.add_column(_not_null("staff_override", sa.Boolean(), "true"))

    with op.batch_alter_table("patron") as batch:
        batch.add_column(_not_null("pin_failures", sa.Integer(), "0"))
        batch.add_column(sa.Column("pin_locked_until", sa.DateTime(), nullable=True))
        batch.add_column(_not_null("credit_minor", sa.Integer(), "0"))


def _create_hold() -> None:
    op.create_table(
        "hold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patron_id", sa.Integer(), nullable=True),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("pickup_branch_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            _enum(
                "holdstatus",
                "pending",
                "in_transit",
                "waiting",
                "fulfilled",
                "cancelled",
                "expired",
            ),
            nullable=False,
        ),
        sa.Column("placed_at", sa.DateTime(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("trapped_item_id", sa.Integer(), nullable=True),
        sa.Column("trapped_at", sa.DateTime(), nullable=True),
        sa.Column("pickup_deadline", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("placed_by", sa.String(length=100), nullable=False),
        _fk("hold", "item_id", "item"),
        _fk("hold", "patron_id", "patron"),
        sa.ForeignKeyConstraint(
            ["pickup_branch_id"],
            ["branch.id"],
            name=op.f("fk_hold_pickup_branch_id_branch"),
        ),
        _fk("hold", "record_id", "bib_record"),
        sa.ForeignKeyConstraint(
            ["trapped_item_id"], ["item.id"], name=op.f("fk_hold_trapped_item_id_item")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hold")),
    )
    op.create_index("ix_hold_patron_status", "hold", ["patron_id", "status"])
    op.create_index(
        "ix_hold_record_status", "hold", ["record_id", "status", "placed_at"]
    )
    trapped = sa.text("status IN ('in_transit', 'waiting')")
    op.create_index(
        "uq_hold_trapped_item",
        "hold",
        ["trapped_item_id"],
        unique=True,
        sqlite_where=trapped,
        postgresql_where=trapped,
    )


def _create_fees_and_payments() -> None:
    op.create_table(
        "payment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patron_id", sa.Integer(), nullable=True),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "method",
            _enum(
                "paymentmethod",
                "cash",
                "card",
                "credit_card",
                "other",
                "credit",
                "write_off",
            ),
            nullable=False,
        ),
        sa.Column("terminal", sa.String(length=100), nullable=False),
        sa.Column("transaction_id", sa.String(length=100), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _fk("payment", "patron_id", "patron"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment")),
    )
    op.create_index("ix_payment_patron", "payment", ["patron_id"])
    op.create_table(
        "fee",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patron_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            _enum(
                "feekind",
                "overdue",
                "lost",
                "damage",
                "processing",
                "rental",
                "hold",
                "manual",
            ),
            nullable=False,
        ),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("balance_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("loan_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _fk("fee", "item_id", "item"),
        _fk("fee", "loan_id", "loan"),
        _fk("fee", "patron_id", "patron"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee")),
    )
    op.create_index("ix_fee_patron_open", "fee", ["patron_id", "balance_minor"])
    op.create_table(
        "payment_allocation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("fee_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        _fk("payment_allocation", "fee_id", "fee"),
        _fk("payment_allocation", "payment_id", "payment"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_allocation")),
    )
    op.create_index(
        op.f("ix_payment_allocation_fee_id"), "payment_allocation", ["fee_id"]
    )
    op.create_index(
        op.f("ix_payment_allocation_payment_id"), "payment_allocation", ["payment_id"]
    )


def downgrade() -> None:
    with op.batch_alter_table("patron") as batch:
        for column in ("credit_minor", "pin_locked_until", "pin_failures"):
            batch.drop_column(column)
    with op.batch_alter_table("loan_rule") as batch:
        for column in ("staff_override", "hold_fee_minor", "rental_fee_minor"):
            batch.drop_column(column)
    with op.batch_alter_table("loan") as batch:
        batch.drop_constraint(
            op.f("fk_loan_patron_category_id_patron_category"), type_="foreignkey"
        )
        batch.drop_column("patron_category_id")
    with op.batch_alter_table("item") as batch:
        batch.drop_constraint(
            op.f("fk_item_transit_to_branch_id_branch"), type_="foreignkey"
        )
        batch.drop_column("transit_since")
        batch.drop_column("transit_to_branch_id")
    with op.batch_alter_table("institution") as batch:
        for column in (
            "max_holds",
            "hold_pickup_days",
            "loan_history_days",
            "pin_lock_minutes",
            "pin_max_failures",
            "lost_processing_fee_minor",
            "refund_lost_when_found",
            "overpayment_as_credit",
            "overdue_limit",
            "fee_limit_minor",
        ):
            batch.drop_column(column)
    op.drop_table("payment_allocation")
    op.drop_table("fee")
    op.drop_index("ix_payment_patron", table_name="payment")
    op.drop_table("payment")
    op.drop_table("hold")
