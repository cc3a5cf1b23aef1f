"""Readiness means progress, and poison batches are quarantined (issue 12).

The loop's own logic runs against a real signal source and database (both kinds) with a
pipeline fake behind the scheduler's port; the service's /readyz and /trading/status are read
over a real socket, with the broker a local server answering 500."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import Database
from tests.integration.rawserver import RawServer, respond
from torghut.bootstrap import build_container
from torghut.config import load_settings
from torghut.db.tables import QuarantinedBatch
from torghut.domain import Signal
from torghut.errors import BrokerError
from torghut.main import create_app
from torghut.metrics import Metrics
from torghut.trading import quarantine
from torghut.trading.brokers import SimBroker
from torghut.trading.pipeline import CycleResult
from torghut.trading.scheduler import QUARANTINE_AFTER, READY_AFTER_CYCLES, TradingScheduler
from torghut.trading.signals import ReplaySignalSource


def _signal_file(tmp_path: Path, symbols: list[str]) -> Path:
    path = tmp_path / "signals.jsonl"
    rows = [
        {
            "event_ts": f"2026-03-02T15:{i:02d}:00Z",
            "symbol": symbol,
            "timeframe": "1Min",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 100.0,
        }
        for i, symbol in enumerate(symbols)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


class FakePipeline:
    """Behind the scheduler's port: reads the real source, 'processes' a batch by recording
    it, commits it; `fail(batch)` decides whether (and how) the batch fails instead."""

    def __init__(
        self,
        source: ReplaySignalSource,
        db: Any,
        fail: Callable[[list[Signal]], Exception | None],
        *,
        batch_size: int = 4,
        commit: bool = True,
    ) -> None:
        self.source, self.db, self.fail, self.batch_size = source, db, fail, batch_size
        self.commit = commit
        self.processed: list[str] = []
        self.last_progress = time.monotonic()

    async def run_cycle(self) -> CycleResult:
        batch = await self.source.fetch(self.batch_size)
        if not batch:
            return CycleResult()
        problem = self.fail(batch)
        if problem is not None:
            raise problem
        if not self.commit:
            return CycleResult(signals=len(batch), committed=False)
        self.processed += [s.symbol for s in batch]
        await self.source.commit(batch)
        return CycleResult(signals=len(batch), committed=True)


def _scheduler(pipeline: FakePipeline) -> TradingScheduler:
    scheduler = TradingScheduler(
        pipeline=pipeline,  # type: ignore[arg-type]
        broker=SimpleNamespace(),  # type: ignore[arg-type]
        engine=create_async_engine("sqlite+aiosqlite://"),
        metrics=Metrics(),
        enabled=True,
        poll_interval=1,
        reconcile_interval=1e12,
        quarantine=functools.partial(quarantine.record, pipeline.db),
    )
    scheduler.status.running = scheduler.status.leader = True
    return scheduler


def _nul_error() -> DataError:
    return DataError("INSERT ...", {}, Exception("PostgreSQL text fields cannot contain NUL"))


async def test_a_poison_signal_is_quarantined_and_the_good_ones_still_trade(
    database: Database, tmp_path: Path
) -> None:
    symbols = ["A", "B", "POISON", "D", "E", "F", "G"]
    source = ReplaySignalSource(_signal_file(tmp_path, symbols), database.db)
    pipeline = FakePipeline(
        source,
        database.db,
        lambda batch: _nul_error() if any(s.symbol == "POISON" for s in batch) else None,
    )
    scheduler = _scheduler(pipeline)
    readiness: list[str | None] = []
    for _ in range(2 * QUARANTINE_AFTER + 2):
        await scheduler.run_once()
        readiness.append(scheduler.readiness())

    # Every good signal went through, in order; the poison one did not, and is kept.
    assert pipeline.processed == ["A", "B", "D", "E", "F", "G"]
    async with database.sessions() as session:
        rows = (await session.execute(select(QuarantinedBatch))).scalars().all()
    assert [(r.first_symbol, r.signal_count, r.failures) for r in rows] == [
        ("POISON", 1, QUARANTINE_AFTER)
    ]
    assert (
        rows[0].error == "DataError: (builtins.Exception) PostgreSQL text fields cannot contain NUL"
    )
    assert rows[0].signals_json[0]["symbol"] == "POISON"
    assert scheduler.metrics.quarantined_batches._value.get() == 1
    # Not ready while the batch kept failing; ready again once the loop moved on.
    assert any(r and f"last {READY_AFTER_CYCLES} cycles failed" in r for r in readiness)
    assert readiness[-1] is None
    assert scheduler.status.last_error is None and scheduler.status.failed_cycles == 0
    assert await source.fetch(10) == []
    await source.aclose()


async def test_failures_of_the_database_or_disk_are_never_quarantined(
    database: Database, tmp_path: Path
) -> None:
    """A full disk (SQLite's "database or disk is full", through a fake) fails every cycle:
    not ready, nothing quarantined; once the disk has room, the same signals trade and the
    error is gone from the status at the first good cycle."""
    source = ReplaySignalSource(_signal_file(tmp_path, ["A", "B"]), database.db)
    disk_full = True
    pipeline = FakePipeline(
        source,
        database.db,
        lambda _batch: (
            OperationalError("INSERT", {}, Exception("database or disk is full"))
            if disk_full
            else None
        ),
    )
    scheduler = _scheduler(pipeline)
    for _ in range(QUARANTINE_AFTER * 3):
        await scheduler.run_once()
    problem = scheduler.readiness()
    assert problem is not None and "cycles failed" in problem and "disk is full" in problem
    assert scheduler.status.last_error and "disk is full" in scheduler.status.last_error
    async with database.sessions() as session:
        assert (await session.execute(select(QuarantinedBatch))).first() is None

    disk_full = False
    await scheduler.run_once()
    assert pipeline.processed == ["A", "B"]
    assert scheduler.readiness() is None
    assert scheduler.status.last_error is None and scheduler.status.last_error_at is None
    await source.aclose()


async def test_a_cursor_that_does_not_move_while_signals_wait_is_not_ready(
    database: Database, tmp_path: Path
) -> None:
    source = ReplaySignalSource(_signal_file(tmp_path, ["A"]), database.db)
    pipeline = FakePipeline(source, database.db, lambda _b: None, commit=False)
    scheduler = _scheduler(pipeline)
    for i in range(READY_AFTER_CYCLES):
        assert scheduler.readiness() is None, f"ready until {READY_AFTER_CYCLES} stalls ({i})"
        await scheduler.run_once()
    problem = scheduler.readiness()
    assert problem is not None and problem.startswith("no progress: the cursor has not moved")
    await source.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def _service(env: dict[str, str]) -> AsyncIterator[str]:
    # Reads open: the test reads /trading/status without the API token.
    settings = load_settings({**env, "TORGHUT_API_PUBLIC_READS": "true"}, env_file=None)
    container = await build_container(settings)
    app = create_app(container, run_scheduler=True)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        assert not task.done(), "uvicorn stopped during start-up"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await container.aclose()


async def _wait_not_ready(client: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(300):
        response = await client.get("/readyz")
        if response.status_code == 503:
            body: dict[str, Any] = response.json()
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz stayed {response.status_code}: {response.text}")


async def test_readyz_fails_while_the_broker_answers_500(
    database: Database, tmp_path: Path
) -> None:
    async with RawServer(
        [respond(b'{"message":"internal"}', 500, content_type="application/json", length=True)]
    ) as broker:
        env = {
            "DB_DSN": database.dsn,
            "TRADING_ENABLED": "true",
            "TRADING_POLL_INTERVAL_SECONDS": "0.05",
            "TRADING_SIGNALS_PATH": str(_signal_file(tmp_path, ["AAPL"])),
            "TRADING_BROKER": "alpaca",
            "APCA_API_KEY_ID": "k",
            "APCA_API_SECRET_KEY": "s",
            "APCA_API_BASE_URL": broker.url,
        }
        async with _service(env) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
            assert (await client.get("/readyz")).status_code == 200  # before the first cycle
            body = await _wait_not_ready(client)
            status = (await client.get("/trading/status")).json()
    assert body["failing"] == ["trading_loop"]
    assert body["checks"]["database"] == "ok"
    reason = body["checks"]["trading_loop"]
    assert "cycles failed" in reason and "500" in reason, reason
    assert status["failed_cycles"] >= READY_AFTER_CYCLES
    assert status["quarantine"] == {"batches": 0, "last": None}  # the broker is no poison


class _LosesFirstAnswers(SimBroker):
    """The simulated broker, whose first `n` order requests get no answer (and place
    nothing): the batch is left unfinished and read again."""

    def __init__(self, db: Any, n: int) -> None:
        super().__init__(db, starting_cash=Decimal(1_000_000))
        self.unanswered = n

    async def submit_orders(self, orders: Any) -> Any:
        if self.unanswered > 0:
            self.unanswered -= 1
            raise BrokerError("read timeout after 10s", rejected=False)
        return await super().submit_orders(orders)


async def test_a_batch_read_again_is_counted_once(database: Database, tmp_path: Path) -> None:
    """Issue 12: a retried batch over-counted the status counters (6,100 signals for a
    6,000-line file)."""
    path = _signal_file(tmp_path, [f"S{i}" for i in range(6)])
    settings = load_settings({"DB_DSN": database.dsn, "TRADING_BATCH_SIZE": "4"}, None)
    broker = _LosesFirstAnswers(database.db, 1)
    container = await build_container(
        settings, signals_path=path, trading_enabled=True, broker=broker
    )
    try:
        committed = 0
        for _ in range(10):
            result = await container.pipeline.run_cycle()
            committed += result.committed
            if result.signals == 0:
                break
        totals = container.pipeline.totals
    finally:
        await container.aclose()
    assert broker.unanswered == 0 and committed == 2, totals  # one batch was read twice
    assert (totals.signals, totals.decisions, totals.submitted, totals.duplicates) == (6, 6, 6, 0)


async def test_last_error_clears_at_the_first_batch_done_not_after_the_drain(
    database: Database, tmp_path: Path
) -> None:
    """Issue 12: `last_error` stayed for minutes after PostgreSQL came back, while the loop
    drained the backlog in one long cycle."""
    source = ReplaySignalSource(_signal_file(tmp_path, list("ABCDEF")), database.db)
    down = True
    seen: list[str | None] = []

    def fail(_batch: list[Signal]) -> Exception | None:
        seen.append(scheduler.status.last_error)
        return (
            OperationalError("SELECT", {}, Exception("server closed the connection"))
            if down
            else None
        )

    pipeline = FakePipeline(source, database.db, fail, batch_size=1)
    scheduler = _scheduler(pipeline)
    await scheduler.run_once()
    assert scheduler.status.last_error and "server closed" in scheduler.status.last_error
    down = False
    seen.clear()
    await scheduler.run_once()  # one cycle drains the six signals, a batch at a time
    assert pipeline.processed == list("ABCDEF")
    assert seen[0] is not None  # the first batch of the drain still saw the outage
    assert seen[1:] == [None] * 5  # cleared as soon as a batch was done
    await source.aclose()
