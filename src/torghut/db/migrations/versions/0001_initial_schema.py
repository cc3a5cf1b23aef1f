"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 14:07:43.319111
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "signal_cursors",
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("event_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_signal_cursors")),
    )
    op.create_table(
        "sim_accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("cash", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sim_accounts")),
    )
    op.create_table(
        "sim_orders",
        sa.Column("client_order_id", sa.String(length=128), nullable=False),
        sa.Column("broker_order_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("time_in_force", sa.String(length=8), nullable=False),
        sa.Column("qty", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("limit_price", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("stop_price", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("filled_qty", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("avg_fill_price", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_order_id", name=op.f("pk_sim_orders")),
        sa.UniqueConstraint("broker_order_id", name=op.f("uq_sim_orders_broker_order_id")),
    )
    op.create_table(
        "sim_positions",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("qty", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("avg_entry_price", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("last_price", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_sim_positions")),
    )
    op.create_table(
        "strategies",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("base_timeframe", sa.String(length=16), nullable=True),
        sa.Column(
            "universe_symbols",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("max_position_pct_equity", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("max_notional_per_trade", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies")),
    )
    op.create_table(
        "trade_decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("strategy_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("timeframe", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("qty", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column(
            "decision_json",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("decision_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_trade_decisions_strategy_id_strategies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trade_decisions")),
        sa.UniqueConstraint("decision_hash", name=op.f("uq_trade_decisions_decision_hash")),
    )
    with op.batch_alter_table("trade_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_trade_decisions_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_trade_decisions_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_trade_decisions_strategy_id"), ["strategy_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_trade_decisions_symbol"), ["symbol"], unique=False)

    op.create_table(
        "executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("trade_decision_id", sa.Uuid(), nullable=False),
        sa.Column("client_order_id", sa.String(length=128), nullable=False),
        sa.Column("broker_order_id", sa.String(length=128), nullable=True),
        sa.Column("broker", sa.String(length=16), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("time_in_force", sa.String(length=8), nullable=False),
        sa.Column("submitted_qty", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("limit_price", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("stop_price", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("filled_qty", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("avg_fill_price", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column(
            "raw_json",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["trade_decision_id"],
            ["trade_decisions.id"],
            name=op.f("fk_executions_trade_decision_id_trade_decisions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_executions_client_order_id")),
        sa.UniqueConstraint("trade_decision_id", name=op.f("uq_executions_trade_decision_id")),
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_executions_broker_order_id"), ["broker_order_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_executions_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_symbol"), ["symbol"], unique=False)

    op.create_table(
        "llm_decision_reviews",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("trade_decision_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("prompt_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "input_json",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "response_json",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("llm_verdict", sa.String(length=16), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("adjusted_qty", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("adjusted_order_type", sa.String(length=16), nullable=True),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column(
            "risk_flags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("tokens_prompt", sa.Integer(), nullable=True),
        sa.Column("tokens_completion", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("fail_mode", sa.String(length=16), nullable=False),
        sa.Column("trading_mode", sa.String(length=8), nullable=False),
        sa.Column("effective_action", sa.String(length=32), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("notional", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["trade_decision_id"],
            ["trade_decisions.id"],
            name=op.f("fk_llm_decision_reviews_trade_decision_id_trade_decisions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_decision_reviews")),
    )
    with op.batch_alter_table("llm_decision_reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_llm_decision_reviews_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_llm_decision_reviews_error_code"), ["error_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_llm_decision_reviews_trade_decision_id"),
            ["trade_decision_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_llm_decision_reviews_verdict"), ["verdict"], unique=False
        )
        batch_op.create_index(
            "ix_llm_decision_reviews_verdict_created", ["verdict", "created_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("llm_decision_reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_llm_decision_reviews_verdict_created")
        batch_op.drop_index(batch_op.f("ix_llm_decision_reviews_verdict"))
        batch_op.drop_index(batch_op.f("ix_llm_decision_reviews_trade_decision_id"))
        batch_op.drop_index(batch_op.f("ix_llm_decision_reviews_error_code"))
        batch_op.drop_index(batch_op.f("ix_llm_decision_reviews_created_at"))

    op.drop_table("llm_decision_reviews")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_executions_symbol"))
        batch_op.drop_index(batch_op.f("ix_executions_status"))
        batch_op.drop_index(batch_op.f("ix_executions_created_at"))
        batch_op.drop_index(batch_op.f("ix_executions_broker_order_id"))

    op.drop_table("executions")
    with op.batch_alter_table("trade_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trade_decisions_symbol"))
        batch_op.drop_index(batch_op.f("ix_trade_decisions_strategy_id"))
        batch_op.drop_index(batch_op.f("ix_trade_decisions_status"))
        batch_op.drop_index(batch_op.f("ix_trade_decisions_created_at"))

    op.drop_table("trade_decisions")
    op.drop_table("strategies")
    op.drop_table("sim_positions")
    op.drop_table("sim_orders")
    op.drop_table("sim_accounts")
    op.drop_table("signal_cursors")
