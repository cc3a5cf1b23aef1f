"""Counters that the alert rules read, fed from where the events happen."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import Database
from tests.integration.test_reconcile import FakeBroker, add_execution
from torghut.domain import BrokerOrder
from torghut.metrics import Metrics
from torghut.trading.pipeline import CycleResult
from torghut.trading.scheduler import TradingScheduler


def broker_rejections(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "torghut_decision_rejections_total", {"reason": "broker_rejected"}
    )
    assert value is not None  # primed at start
    return value


async def test_a_rejection_found_by_reconciliation_is_counted(database: Database) -> None:
    """The broker took the order, then rejected it: the TorghutBrokerRejectedOrders alert's
    counter moves, once."""
    broker = FakeBroker()
    await add_execution(database, "c-late")
    broker.answers["c-late"] = BrokerOrder(
        broker_order_id="b1",
        client_order_id="c-late",
        symbol="AAPL",
        status="rejected",
        reject_reason="insufficient buying power",
    )

    async def no_signals() -> CycleResult:
        return CycleResult()

    pipeline = SimpleNamespace(
        run_cycle=no_signals, batch_size=500, db=database.db, last_progress=0.0
    )
    metrics = Metrics()
    scheduler = TradingScheduler(
        pipeline=pipeline,  # type: ignore[arg-type]
        broker=broker,  # type: ignore[arg-type]
        engine=create_async_engine("sqlite+aiosqlite://"),
        metrics=metrics,
        enabled=True,
        poll_interval=5,
        reconcile_interval=0.0,
        work_deadline=20,
    )
    assert broker_rejections(metrics) == 0
    await scheduler.run_once()
    assert broker_rejections(metrics) == 1
    await scheduler.run_once()  # the rejected order is final: not polled, not counted again
    assert broker_rejections(metrics) == 1
