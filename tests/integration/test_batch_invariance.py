"""Point-in-time, batch-independent results (issue 11): without the gate, the bundled sample
gives the same decisions, statuses, quantities and orders whatever `TRADING_BATCH_SIZE` is
(before the batch ledger, batch 500 differed from batch 1 on 10 decisions, one batch holding
the whole file on 58). On both databases, each size on a fresh one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import drop_pg_schema, make_pg_schema_dsn, postgres_unavailable
from torghut.bootstrap import bundled_signals
from torghut.config import load_settings
from torghut.db.engine import Database, upgrade
from torghut.db.tables import ExecutionRow, SimPosition, TradeDecisionRow
from torghut.replay import run_replay

SIZES = (1, 7, 500, 6000)  # 6000: one batch holds the whole file (5,850 lines)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_dsns(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """One empty, migrated database per batch size."""
    if request.param == "sqlite":
        dsns = [f"sqlite:///{tmp_path / f'b{size}.db'}" for size in SIZES]
        for dsn in dsns:
            upgrade(dsn)
        yield dsns
        return
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    made = [make_pg_schema_dsn() for _ in SIZES]
    try:
        for dsn, _schema in made:
            upgrade(dsn)
        yield [dsn for dsn, _ in made]
    finally:
        for _dsn, schema in made:
            drop_pg_schema(schema)


async def outcome(dsn: str) -> dict[str, Any]:
    db = Database(dsn)
    try:

        def read(session: Any) -> dict[str, Any]:
            decisions = session.execute(
                select(
                    TradeDecisionRow.decision_hash,
                    TradeDecisionRow.action,
                    TradeDecisionRow.qty,
                    TradeDecisionRow.status,
                    TradeDecisionRow.reason,
                ).order_by(TradeDecisionRow.decision_hash)
            ).all()
            orders = session.execute(
                select(
                    ExecutionRow.client_order_id,
                    ExecutionRow.side,
                    ExecutionRow.submitted_qty,
                    ExecutionRow.status,
                    ExecutionRow.avg_fill_price,
                ).order_by(ExecutionRow.client_order_id)
            ).all()
            positions = session.execute(
                select(SimPosition.symbol, SimPosition.qty, SimPosition.last_price).order_by(
                    SimPosition.symbol
                )
            ).all()
            return {
                "decisions": [tuple(r) for r in decisions],
                "orders": [tuple(r) for r in orders],
                "positions": [tuple(r) for r in positions],
            }

        return await db.run(read)
    finally:
        await db.aclose()


async def test_the_sample_gives_the_same_results_whatever_the_batch_size(
    fresh_dsns: list[str],
) -> None:
    results = []
    for size, dsn in zip(SIZES, fresh_dsns, strict=True):
        settings = load_settings({"DB_DSN": dsn, "TRADING_BATCH_SIZE": str(size)}, None)
        summary = await run_replay(settings, bundled_signals())
        assert summary["complete"] and summary["signals"] == 5850
        results.append(await outcome(dsn))
    first = results[0]
    assert len(first["decisions"]) == 165 and first["orders"]
    for size, other in zip(SIZES[1:], results[1:], strict=True):
        for key in ("decisions", "orders", "positions"):
            assert other[key] == first[key], f"batch {size} differs from batch 1 in {key}"
