"""`torghut replay`: recorded signals through the full pipeline on the simulated broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from torghut.bootstrap import build_container
from torghut.config import BrokerKind, Settings
from torghut.db.engine import FileLeaderLock, normalize_dsn, upgrade
from torghut.db.results_query import current_results
from torghut.errors import InputError
from torghut.ports import AuditStore, Broker, ReviewProvider
from torghut.trading.pipeline import CycleResult

_BATCH_RETRIES = 3
# The newest migration's revision (tests/integration/test_replay_schema.py keeps it so): a
# database that holds it needs no upgrade, and Alembic's no-op run (it loads every migration
# script) cost more than replaying a small file.
SCHEMA_HEAD = "0006"


def _schema_at_head(dsn: str) -> bool:
    """Whether the database's stored revision is `SCHEMA_HEAD`. Any doubt (no database yet,
    no revision table, an unreachable server, a DSN that is not one) says no, and the
    upgrade then runs, or fails, as it always did."""
    try:
        engine = create_engine(normalize_dsn(dsn, asynchronous=False), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        finally:
            engine.dispose()
    except Exception:
        return False
    return [tuple(row) for row in rows] == [(SCHEMA_HEAD,)]


def ensure_schema(dsn: str) -> None:
    """Bring the schema to head, skipping Alembic when it is there already."""
    if not _schema_at_head(dsn):
        upgrade(dsn)


async def run_replay(
    settings: Settings,
    path: Path,
    *,
    on_cycle: Callable[[CycleResult], None] | None = None,
    provider: ReviewProvider | None = None,
    wrap_broker: Callable[[Broker], Broker] | None = None,
    wrap_store: Callable[[AuditStore], AuditStore] | None = None,
) -> dict[str, Any]:
    """The full pipeline over a signal file on the simulated broker; returns the summary.
    `wrap_broker`, `wrap_store`: see `build_container`."""
    if settings.trading_broker is not BrokerKind.SIM:
        # Replay never trades on a real broker, whatever TRADING_BROKER says.
        settings = settings.model_copy(update={"trading_broker": BrokerKind.SIM})
    started = time.perf_counter()
    await asyncio.to_thread(ensure_schema, settings.db_dsn)
    container = await build_container(
        settings,
        signals_path=path,
        trading_enabled=True,
        provider=provider,
        wrap_broker=wrap_broker,
        wrap_store=wrap_store,
    )
    try:
        lock = container.scheduler.lock
        if isinstance(lock, FileLeaderLock) and not await lock.try_acquire():
            # A `serve` (or another replay) trades on this file: two loops would both lead.
            raise InputError(
                f"DB_DSN: another torghut process is trading on this database ({lock.path} "
                "is locked); stop it or use another database"
            )
        pipeline = container.pipeline
        retries = 0
        complete = True
        while True:
            result = await pipeline.run_cycle()
            if on_cycle is not None:
                on_cycle(result)
            if not result.committed and result.signals:
                # Some decision could not be finished (database or broker trouble): the same
                # batch is read again, a few times, before giving up with an incomplete run.
                retries += 1
                if retries > _BATCH_RETRIES:
                    complete = False
                    break
                await asyncio.sleep(0.2 * retries)
                continue
            retries = 0
            if result.signals < pipeline.batch_size:
                break
        await pipeline.drain()
        totals = pipeline.totals
        skipped = getattr(container.source, "skipped", 0)
        results = await current_results(container.db, await container.broker.get_book())
        first_skipped = getattr(container.source, "skipped_lines", [])
        return {
            "signals": totals.signals,
            "decisions": totals.decisions,
            "submitted": totals.submitted,
            "rejected": dict(sorted(totals.rejected.items())),
            "reviews": dict(sorted(totals.reviews.items())),
            "duplicates": totals.duplicates,
            "skipped_lines": skipped,
            # The first few, with their line numbers and why (the log has them too).
            "skipped": [{"line": n, "reason": why} for n, why in first_skipped],
            "duration_ms": int((time.perf_counter() - started) * 1000),
            "complete": complete,
            "halted": container.halt.halted,  # an operator's halt: no signal was read
            "results": results.as_dict(),
        }
    finally:
        await container.scheduler.lock.release()
        await container.aclose()
