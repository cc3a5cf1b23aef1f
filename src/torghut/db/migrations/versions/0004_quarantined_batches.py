"""quarantined_batches: signal batches the loop skipped after repeated identical failures.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quarantined_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("first_event_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_symbol", sa.String(length=32), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_event_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_symbol", sa.String(length=32), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("signal_count", sa.Integer(), nullable=False),
        sa.Column(
            "signals_json",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_batches")),
    )
    op.create_index(
        op.f("ix_quarantined_batches_quarantined_at"),
        "quarantined_batches",
        ["quarantined_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_quarantined_batches_quarantined_at"), table_name="quarantined_batches")
    op.drop_table("quarantined_batches")
