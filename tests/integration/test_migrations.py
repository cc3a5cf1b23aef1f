"""Migrations from empty to head match the models exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from torghut.db.engine import alembic_config, sync_engine, upgrade
from torghut.db.tables import Base


def _diff(dsn: str) -> list[object]:
    engine = sync_engine(dsn)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(dsn: str) -> set[str]:
    engine = sync_engine(dsn)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_head_matches_the_models(db_dsn: str) -> None:
    # `db_dsn` is an empty database already upgraded to head.
    assert _diff(db_dsn) == []
    assert {
        "strategies",
        "trade_decisions",
        "executions",
        "llm_decision_reviews",
        "signal_cursors",
        "sim_accounts",
        "sim_positions",
        "sim_orders",
    } <= _tables(db_dsn)


def test_downgrade_to_empty_and_up_again(db_dsn: str) -> None:
    command.downgrade(alembic_config(db_dsn), "base")
    assert _tables(db_dsn) <= {"alembic_version"}
    upgrade(db_dsn)
    upgrade(db_dsn)  # at head already: nothing to do, no error
    assert _diff(db_dsn) == []


def test_review_columns_are_the_contracts(db_dsn: str) -> None:
    engine = sync_engine(db_dsn)
    try:
        columns = {c["name"]: c for c in inspect(engine).get_columns("llm_decision_reviews")}
    finally:
        engine.dispose()
    contract = {
        "id",
        "trade_decision_id",
        "provider",
        "model",
        "prompt_version",
        "input_json",
        "response_json",
        "llm_verdict",
        "verdict",
        "reason",
        "confidence",
        "adjusted_qty",
        "adjusted_order_type",
        "rationale",
        "risk_flags",
        "tokens_prompt",
        "tokens_completion",
        "latency_ms",
        "ttft_ms",
        "shadow",
        "fail_mode",
        "effective_action",
        "error_code",
        "error_message",
        "created_at",
    }
    assert contract <= set(columns)
    if db_dsn.startswith("postgresql"):
        assert type(columns["input_json"]["type"]).__name__ == "JSONB"


def test_decision_and_execution_columns_are_the_contracts(db_dsn: str) -> None:
    engine = sync_engine(db_dsn)
    try:
        insp = inspect(engine)
        decisions = {c["name"] for c in insp.get_columns("trade_decisions")}
        executions = {c["name"] for c in insp.get_columns("executions")}
        unique = {tuple(u["column_names"]) for u in insp.get_unique_constraints("trade_decisions")}
    finally:
        engine.dispose()
    assert {
        "id",
        "strategy_id",
        "symbol",
        "timeframe",
        "action",
        "qty",
        "decision_json",
        "decision_hash",
        "status",
        "reason",
        "created_at",
        "executed_at",
    } <= decisions
    assert {
        "id",
        "trade_decision_id",
        "client_order_id",
        "broker_order_id",
        "symbol",
        "side",
        "order_type",
        "time_in_force",
        "submitted_qty",
        "limit_price",
        "filled_qty",
        "avg_fill_price",
        "status",
        "created_at",
        "updated_at",
    } <= executions
    assert ("decision_hash",) in unique


def test_concurrent_upgrades_of_a_fresh_postgres_database() -> None:
    """Two processes starting at once (a rollout, a standby) must not both create the tables."""
    import os
    import subprocess
    import sys

    import pytest

    from tests.conftest import drop_pg_schema, make_pg_schema_dsn, postgres_unavailable

    reason = postgres_unavailable()
    if reason:
        if os.environ.get("TORGHUT_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    dsn, schema = make_pg_schema_dsn()
    try:
        # Processes, not threads: Alembic's context is process-global.
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "torghut.cli", "db", "upgrade"],
                env={**os.environ, "DB_DSN": dsn},
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
        assert [code for code, _ in results] == [0, 0, 0], results
        assert _diff(dsn) == []
    finally:
        drop_pg_schema(schema)
