"""/readyz's loop check: a long batch that keeps making progress is healthy; silence is not."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from torghut.metrics import Metrics
from torghut.trading.scheduler import TradingScheduler


def _scheduler(pipeline: Any) -> TradingScheduler:
    engine = create_async_engine("sqlite+aiosqlite://")
    scheduler = TradingScheduler(
        pipeline=pipeline,
        broker=SimpleNamespace(),
        engine=engine,
        metrics=Metrics(),
        enabled=True,
        poll_interval=5,
        reconcile_interval=15,
        work_deadline=20,
    )
    scheduler.status.running = True
    scheduler.status.leader = True
    return scheduler


def test_progress_inside_a_long_cycle_counts() -> None:
    pipeline = SimpleNamespace(last_progress=time.monotonic())
    scheduler = _scheduler(pipeline)
    assert scheduler.stale_after == 3 * 5 + 20 + 1
    assert scheduler.fresh()
    pipeline.last_progress = time.monotonic() - (scheduler.stale_after - 2)
    assert scheduler.fresh(), "a review may take up to its deadline"
    pipeline.last_progress = time.monotonic() - (scheduler.stale_after + 2)
    assert not scheduler.fresh()


def test_standby_and_stopped_loops() -> None:
    pipeline = SimpleNamespace(last_progress=0.0)
    scheduler = _scheduler(pipeline)
    scheduler.status.leader = False
    assert scheduler.fresh(), "a standby waiting for the lock is healthy"
    scheduler.status.running = False
    assert not scheduler.fresh()
