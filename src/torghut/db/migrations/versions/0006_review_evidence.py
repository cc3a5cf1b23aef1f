"""Review evidence: the real request beside the one sent (anonymised reviews), and an index
for the reviewer's earlier decisions of a symbol by signal time.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "llm_decision_reviews",
        sa.Column(
            "real_request_json",
            sa.JSON(none_as_null=True).with_variant(
                postgresql.JSONB(astext_type=sa.Text(), none_as_null=True), "postgresql"
            ),
            nullable=True,
        ),
    )
    with op.batch_alter_table("trade_decisions") as batch:
        batch.create_index("ix_trade_decisions_symbol_event_ts", ["symbol", "event_ts"])


def downgrade() -> None:
    with op.batch_alter_table("trade_decisions") as batch:
        batch.drop_index("ix_trade_decisions_symbol_event_ts")
    with op.batch_alter_table("llm_decision_reviews") as batch:
        batch.drop_column("real_request_json")
