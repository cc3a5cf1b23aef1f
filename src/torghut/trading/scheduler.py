"""The trading loop: cadence, leadership, status, clean shutdown.

Only one loop trades per database. On PostgreSQL the leader holds a session-level advisory lock
on a dedicated connection; a second `torghut serve` waits as a standby and takes over when the
first one's connection dies. SQLite is the embedded single-process database: there the loop
simply runs. Decision-hash uniqueness and client order ids keep double submission impossible
even if two loops ever raced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from torghut.domain import utcnow
from torghut.metrics import Metrics
from torghut.ports import Broker
from torghut.trading.pipeline import TradingPipeline
from torghut.trading.reconcile import reconcile

log = logging.getLogger("torghut.scheduler")

# The lock id is derived from the schema name, so separate schemas (tests, staging) on one
# server elect separate leaders.
_LOCK_SQL = "select pg_try_advisory_lock(hashtext('torghut-trading:' || current_schema()))"


class LeaderLock:
    """PostgreSQL advisory lock held on its own connection for as long as we lead."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def try_acquire(self) -> bool:
        if self.engine.dialect.name != "postgresql":
            return True
        if self._conn is not None:
            return await self.still_held()
        conn = await self.engine.connect()
        try:
            got = (await conn.execute(text(_LOCK_SQL))).scalar()
            await conn.commit()
        except Exception:
            await conn.close()
            raise
        if got:
            self._conn = conn
            return True
        await conn.close()
        return False

    async def still_held(self) -> bool:
        """A lost connection means a lost lock: stop trading until we win it again."""
        if self.engine.dialect.name != "postgresql":
            return True
        if self._conn is None:
            return False
        try:
            await self._conn.execute(text("select 1"))
            await self._conn.commit()
            return True
        except Exception:
            log.warning("lost the trading lock's connection; standing by")
            await self.release()
            return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()  # closing the session releases the advisory lock


@dataclass
class LoopStatus:
    enabled: bool
    running: bool = False
    leader: bool = False
    last_run_at: datetime | None = None
    last_error: str | None = None
    last_reconcile_at: datetime | None = None
    cycles: int = 0


class TradingScheduler:
    def __init__(
        self,
        *,
        pipeline: TradingPipeline,
        broker: Broker,
        engine: AsyncEngine,
        metrics: Metrics,
        enabled: bool,
        poll_interval: float,
        reconcile_interval: float,
        work_deadline: float = 0.0,
    ) -> None:
        self.pipeline = pipeline
        self.broker = broker
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.reconcile_interval = reconcile_interval
        # How long the loop may go without a sign of life before /readyz calls it stuck: three
        # polls, plus the longest single step it may legitimately wait on (one review).
        self.stale_after = 3 * poll_interval + work_deadline + 1
        self.lock = LeaderLock(engine)
        self.status = LoopStatus(enabled=enabled)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_reconcile = 0.0
        self._last_beat = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="torghut-trading-loop")

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Take no new work, finish the cycle in progress, then drain shadow reviews."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        # Nothing of a cancelled cycle may reach the broker once the lock is released.
        still_sending = await self.pipeline.quiesce(grace_seconds)
        if await self.pipeline.drain(grace_seconds):
            cancelled = await self.pipeline.cancel_shadow_reviews(grace_seconds)
            log.error("shutdown: %d shadow reviews still running were cancelled", cancelled)
            # An audit row already handed to the database is written whatever happens:
            # like a broker request, it must not land after another leader took over.
            still_sending += await self.pipeline.settle_writes(grace_seconds)
        if still_sending:
            # A request still on its way could place an order after another leader looked
            # for it: the lock goes with this process (its database connection), not before.
            log.error("shutdown: broker requests or database writes still running; the "
                      "leader lock is kept until this process exits")
        else:
            await self.lock.release()
        self.status.running = False
        self.status.leader = False
        self.metrics.leader.set(0)

    def fresh(self) -> bool:
        """Has the loop shown progress recently? (`/readyz`) A long batch that keeps finishing
        decisions is fresh; a loop stuck on one call is not."""
        if not self.status.enabled:
            return True
        if not self.status.running:
            return False
        if not self.status.leader:
            return True  # a standby is healthy while it waits
        last = max(self._last_beat, self.pipeline.last_progress)
        return time.monotonic() - last <= self.stale_after

    async def _run(self) -> None:
        self.status.running = True
        try:
            while not self._stop.is_set():
                if await self._lead():
                    await self.run_once()
                await self._sleep(self.poll_interval)
        finally:
            self.status.running = False

    async def _lead(self) -> bool:
        try:
            leader = await self.lock.try_acquire()
        except Exception as exc:
            self.status.last_error = f"leader lock: {type(exc).__name__}: {exc}"[:500]
            leader = False
        if leader and not self.status.leader:
            log.info("this process now leads the trading loop")
        self.status.leader = leader
        self.metrics.leader.set(1 if leader else 0)
        return leader

    async def run_once(self) -> None:
        start = time.perf_counter()
        try:
            # Drain the source: keep cycling while batches come back full and finished. A
            # batch left unfinished (a write or the broker failing) is read again at the next
            # poll, not at once: retrying in a tight loop would hammer what is failing.
            unfinished = False
            while not self._stop.is_set():
                result = await self.pipeline.run_cycle()
                if result.signals and not result.committed:
                    unfinished = True
                    break
                if result.signals < self.pipeline.batch_size:
                    break
            if time.monotonic() - self._last_reconcile >= self.reconcile_interval:
                done = await reconcile(self.pipeline.db, self.broker)
                self.metrics.rejections.labels(reason="broker_rejected").inc(done.broker_rejected)
                self._last_reconcile = time.monotonic()
                self.status.last_reconcile_at = utcnow()
            self.status.last_error = (
                "a batch left decisions unfinished; it is read again at the next poll"
                if unfinished
                else None
            )
        except Exception as exc:
            log.exception("trading cycle failed")
            self.metrics.cycle_errors.inc()
            self.status.last_error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            self.status.cycles += 1
            self.status.last_run_at = utcnow()
            self._last_beat = time.monotonic()
            self.metrics.last_cycle.set(time.time())
            self.metrics.cycle_seconds.observe(time.perf_counter() - start)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def snapshot(self) -> dict[str, Any]:
        s = self.status
        return {
            "enabled": s.enabled,
            "running": s.running,
            "leader": s.leader,
            "last_run_at": s.last_run_at.isoformat() if s.last_run_at else None,
            "last_error": s.last_error,
            "last_reconcile_at": s.last_reconcile_at.isoformat() if s.last_reconcile_at else None,
            "cycles": s.cycles,
        }

