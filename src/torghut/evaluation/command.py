"""`torghut llm eval`: the audit rows of `DB_DSN` against a price source."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from torghut.db.engine import Database
from torghut.errors import InputError
from torghut.evaluation.evaluate import evaluate
from torghut.evaluation.prices import PricePaths, parse_horizons, read_signal_file
from torghut.evaluation.rows import load_reviewed


def _sqlite_path(dsn: str) -> Path | None:
    if not dsn.startswith("sqlite"):
        return None
    path = dsn.split("///", 1)[-1].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


async def run_eval(
    dsn: str,
    signals: Path,
    *,
    horizons: str,
    cost_bps: float,
    since: datetime | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    parsed = parse_horizons(horizons)
    if not math.isfinite(cost_bps) or cost_bps < 0:
        raise InputError(f"--cost-bps: must be a number >= 0 (got {cost_bps})")
    path = _sqlite_path(dsn)
    if path is not None and not path.exists():
        # Opening it would create an empty database: say what is wrong instead.
        raise InputError(f"DB_DSN: no such SQLite database: {path}")
    price_signals = await asyncio.to_thread(read_signal_file, signals)
    if not price_signals:
        raise InputError(f"--signals: no valid signal in {signals}")
    paths = PricePaths.from_signals(price_signals)
    db = Database(dsn)
    try:
        decisions = await load_reviewed(db, since)
    finally:
        await db.aclose()
    return await asyncio.to_thread(
        evaluate, decisions, paths, parsed, cost_bps=cost_bps, seed=seed
    )
