"""The trading loop: cadence, leadership, status, clean shutdown.

Only one loop trades per database. On PostgreSQL the leader holds a session-level advisory lock
on a dedicated connection; a second `torghut serve` waits as a standby and takes over when the
first one's connection dies. On a SQLite file the same holds through an exclusive lock on a file
beside the database (`db.engine.FileLeaderLock`): a second `serve` on the same file stands by.
Decision-hash uniqueness and client order ids keep double submission impossible
even if two loops ever raced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from torghut.domain import Signal, utcnow
from torghut.errors import BrokerError, redact
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

    _UNLOCK_SQL = "select pg_advisory_unlock(hashtext('torghut-trading:' || current_schema()))"

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
        """Give the lock up now. Closing the connection is not enough: the pool keeps the
        PostgreSQL session, and the session keeps the lock, until the engine is disposed. So
        the lock is unlocked by name, and the connection is dropped from the pool rather than
        returned to it: should the unlock fail, ending the session is what frees the lock."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.execute(text(self._UNLOCK_SQL))
            await conn.commit()
        with contextlib.suppress(Exception):
            await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()


class TradingLock(Protocol):
    """What makes this process the only loop on its database: `LeaderLock` on PostgreSQL,
    `db.engine.FileLeaderLock` beside a SQLite file (chosen in bootstrap)."""

    @property
    def held(self) -> bool: ...

    async def try_acquire(self) -> bool: ...

    async def still_held(self) -> bool: ...

    async def release(self) -> None: ...


# Stores a quarantined batch whole: (source key, its signals, the error, how many failures).
QuarantineRecorder = Callable[[str, Sequence[Signal], str, int], Awaitable[object]]
Key = tuple[datetime, str, int]


def _key(signal: Signal) -> Key:
    return (signal.event_ts, signal.symbol, signal.seq)


def error_signature(exc: BaseException) -> str:
    """What "failed the same way" compares: the error's type and the first line of its text,
    NUL-free and bounded (it is stored as text, and PostgreSQL refuses NUL)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text.replace("\x00", "\\0")[:500]


# /readyz fails after this many failed cycles in a row, or this many cycles in a row that had
# signals waiting and did not move the cursor.
READY_AFTER_CYCLES = 3
# A batch that fails the same way this many times in a row is narrowed to single signals, and
# a single signal that does is quarantined (trading/quarantine.py).
QUARANTINE_AFTER = 3


def _transient(exc: BaseException) -> bool:
    """Errors of what the loop talks to (the database or disk, the network, the broker, the
    signal source being away), not of the signals: retried for ever, never quarantined."""
    return isinstance(
        exc,
        (
            OSError,  # disk full, connection refused, ... (TimeoutError is one too)
            MemoryError,
            OperationalError,  # SQLite "database or disk is full", a lost PostgreSQL server
            InterfaceError,
            DisconnectionError,
            SQLAlchemyTimeoutError,
            BrokerError,
        ),
    ) or bool(
        # A source that cannot be reached says so (trading/signals.py: SignalSourceError).
        getattr(exc, "transient", False) or getattr(exc, "connection_invalidated", False)
    )


@dataclass
class LoopStatus:
    enabled: bool
    running: bool = False
    leader: bool = False
    last_run_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_reconcile_at: datetime | None = None
    cycles: int = 0
    failed_cycles: int = 0  # in a row
    stalled_cycles: int = 0  # in a row: signals waiting, cursor not moved
    quarantined: int = 0  # batches quarantined by this process


@dataclass
class _Failing:
    """The batch that keeps failing: its first signal's key, and how."""

    first_key: Key
    last_key: Key
    signature: str
    count: int = 1


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
        secrets: Sequence[str] = (),
        lock: TradingLock | None = None,
        quarantine: QuarantineRecorder | None = None,
    ) -> None:
        self.pipeline = pipeline
        # Errors of the database and the broker are peer text: redacted before they are shown.
        self.secrets = tuple(secrets)
        self.broker = broker
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.reconcile_interval = reconcile_interval
        # How long the loop may go without a sign of life before /readyz calls it stuck: three
        # polls, plus the longest single step it may legitimately wait on (one review).
        self.stale_after = 3 * poll_interval + work_deadline + 1
        self.lock: TradingLock = lock or LeaderLock(engine)
        self._quarantine = quarantine
        self.status = LoopStatus(enabled=enabled)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing: _Failing | None = None
        # While a failing batch is narrowed down, the pipeline reads one signal at a time up
        # to this key; its own batch size is put back afterwards.
        self._narrow_until: Key | None = None
        self._batch_size = getattr(pipeline, "batch_size", 1)
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
            log.error(
                "shutdown: broker requests or database writes still running; the "
                "leader lock is kept until this process exits"
            )
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

    def readiness(self) -> str | None:
        """None when the loop is ready; otherwise why not, in words (`/readyz`). Ready means
        progress: a loop that ticks but fails every cycle, or never moves its cursor while
        signals wait, is not."""
        s = self.status
        if not s.enabled:
            return None
        if not s.running:
            return "the trading loop is not running"
        if not s.leader:
            return None  # a standby is healthy while it waits
        if s.failed_cycles >= READY_AFTER_CYCLES:
            return f"the last {s.failed_cycles} cycles failed: {s.last_error}"
        if s.stalled_cycles >= READY_AFTER_CYCLES:
            return (
                f"no progress: the cursor has not moved for {s.stalled_cycles} cycles while "
                f"signals were waiting ({s.last_error})"
            )
        if not self.fresh():
            return f"no sign of life within {self.stale_after:g}s"
        return None

    def _set_error(self, message: str | None) -> None:
        # Errors of the database and the broker are peer text: the one redaction first.
        if message is not None:
            message = redact(message, self.secrets, limit=500, one_line=True)
        self.status.last_error = message
        self.status.last_error_at = utcnow() if message else None

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
            self._set_error(f"leader lock: {type(exc).__name__}: {exc}"[:500])
            leader = False
        if leader and not self.status.leader:
            log.info("this process now leads the trading loop")
        if leader and (self.status.last_error or "").startswith("leader lock:"):
            self._set_error(None)  # the lock answers again: its old error is not news
        self.status.leader = leader
        self.metrics.leader.set(1 if leader else 0)
        return leader

    async def run_once(self) -> None:
        start = time.perf_counter()
        had_work = moved = False
        try:
            # Drain the source: keep cycling while batches come back full and finished. A
            # batch left unfinished (a write or the broker failing) is read again at the next
            # poll, not at once: retrying in a tight loop would hammer what is failing.
            unfinished = False
            while not self._stop.is_set():
                result = await self.pipeline.run_cycle()
                had_work = had_work or result.signals > 0
                if result.signals and not result.committed:
                    unfinished = True
                    break
                if result.signals:
                    moved = True
                    self._failing = None
                    # Recovered as of this batch, not at the end of a drain that may take
                    # minutes: the status must not go on showing an error that is over.
                    self.status.failed_cycles = 0
                    if self.status.last_error is not None:
                        self._set_error(None)
                    await self._widen_after()
                if result.signals < self.pipeline.batch_size:
                    break
            if time.monotonic() - self._last_reconcile >= self.reconcile_interval:
                done = await reconcile(self.pipeline.db, self.broker)
                self.metrics.rejections.labels(reason="broker_rejected").inc(done.broker_rejected)
                self._last_reconcile = time.monotonic()
                self.status.last_reconcile_at = utcnow()
            self.status.failed_cycles = 0
            self.status.stalled_cycles = (
                self.status.stalled_cycles + 1 if had_work and not moved else 0
            )
            self._set_error(
                "a batch left decisions unfinished; it is read again at the next poll"
                if unfinished
                else None
            )
        except Exception as exc:
            log.exception("trading cycle failed")
            self.metrics.cycle_errors.inc()
            self.status.failed_cycles += 1
            self._set_error(error_signature(exc))  # one line: /readyz quotes it
            try:
                await self._after_failure(exc)
            except Exception:
                log.exception("could not look at the failing batch")
        finally:
            self.status.cycles += 1
            self.status.last_run_at = utcnow()
            self._last_beat = time.monotonic()
            self.metrics.last_cycle.set(time.time())
            self.metrics.cycle_seconds.observe(time.perf_counter() - start)

    # ------------------------------------------------------------------ poison batches
    async def _after_failure(self, exc: Exception) -> None:
        """Count identical failures of the batch at the cursor. After `QUARANTINE_AFTER`, a
        batch of several signals is narrowed to single signals (the good ones still trade);
        a single signal is quarantined and the cursor moves past it, so one poison signal
        cannot stop the loop for good. Failures of what the loop talks to are not counted."""
        if _transient(exc):
            self._failing = None
            return
        source = self.pipeline.source
        batch = await source.fetch(self.pipeline.batch_size)
        if not batch:
            return
        first, last = _key(batch[0]), _key(batch[-1])
        signature = error_signature(exc)
        failing = self._failing
        if failing and failing.first_key == first and failing.signature == signature:
            failing.count += 1
        else:
            failing = self._failing = _Failing(first, last, signature)
        if failing.count < QUARANTINE_AFTER:
            return
        self._failing = None
        if len(batch) > 1:
            log.error(
                "a batch of %d signals failed %d times the same way (%s); trying its "
                "signals one at a time",
                len(batch),
                failing.count,
                signature,
            )
            self._narrow_until = last
            self.pipeline.batch_size = 1
            return
        if self._quarantine is None:
            log.error(
                "signal %s keeps failing (%s); no quarantine store: retrying", first, signature
            )
            return
        key = getattr(source, "source_key", type(source).__name__)
        await self._quarantine(key, batch, signature, failing.count)
        await source.commit(batch)
        self.status.quarantined += 1
        self.metrics.quarantined_batches.inc()
        log.error(
            "signal %s quarantined after %d identical failures: %s", first, failing.count, signature
        )
        await self._widen_after(passed=first)

    async def _widen_after(self, passed: Key | None = None) -> None:
        """Back to the configured batch size once the narrowed batch is behind the cursor
        (`passed`: the key just quarantined; otherwise the next signal is looked at)."""
        if self._narrow_until is None:
            return
        if passed is None:
            batch = await self.pipeline.source.fetch(1)
            behind = not batch or _key(batch[0]) > self._narrow_until
        else:
            behind = passed >= self._narrow_until
        if behind:
            self._narrow_until = None
            self.pipeline.batch_size = self._batch_size

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
            "last_error_at": s.last_error_at.isoformat() if s.last_error_at else None,
            "failed_cycles": s.failed_cycles,
            "stalled_cycles": s.stalled_cycles,
            "last_reconcile_at": s.last_reconcile_at.isoformat() if s.last_reconcile_at else None,
            "cycles": s.cycles,
        }
