"""`torghut llm eval`: the audit rows of `DB_DSN` against a price source."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torghut.db.engine import Database
from torghut.errors import InputError
from torghut.evaluation.clickhouse import ClickHouseAccess, clickhouse_prices
from torghut.evaluation.evaluate import evaluate
from torghut.evaluation.prices import PricePaths, parse_horizons
from torghut.evaluation.rows import load_reviewed
from torghut.evaluation.signal_file import read_signal_file, sqlite_path

if TYPE_CHECKING:
    from torghut.config import Settings


def clickhouse_access(settings: Settings) -> ClickHouseAccess | None:
    """The ClickHouse bars as a price source, when `CLICKHOUSE_URL` is set."""
    if not settings.clickhouse_url:
        return None
    password = settings.clickhouse_password
    return ClickHouseAccess(
        url=settings.clickhouse_url,
        username=settings.clickhouse_username,
        password=password.get_secret_value() if password else None,
        timeout_seconds=max(30.0, settings.clickhouse_timeout_seconds),
    )


async def run_eval(
    dsn: str,
    signals: Path | None,
    *,
    horizons: str,
    cost_bps: float,
    since: datetime | None = None,
    seed: int = 0,
    clickhouse: ClickHouseAccess | None = None,
) -> dict[str, Any]:
    """The evaluation of the reviews in `dsn`; prices from `signals`, else from `clickhouse`."""
    _check_arguments(signals, clickhouse, horizons, cost_bps)
    path = sqlite_path(dsn)
    if path is not None and not path.exists():
        # Opening it would create an empty database: say what is wrong instead.
        raise InputError(f"DB_DSN: no such SQLite database: {path}")
    db = Database(dsn)
    try:
        return await evaluate_reviews(
            db,
            signals,
            horizons=horizons,
            cost_bps=cost_bps,
            since=since,
            seed=seed,
            clickhouse=clickhouse,
        )
    finally:
        await db.aclose()


def _check_arguments(
    signals: Path | None, clickhouse: ClickHouseAccess | None, horizons: str, cost_bps: float
) -> list[tuple[str, timedelta]]:
    parsed = parse_horizons(horizons)
    if not math.isfinite(cost_bps) or cost_bps < 0:
        raise InputError(f"--cost-bps: must be a number >= 0 (got {cost_bps})")
    if signals is None and clickhouse is None:
        raise InputError(
            "--signals: a price source is required (a JSON Lines signal file, "
            "or CLICKHOUSE_URL for the ClickHouse bars)"
        )
    return parsed


async def evaluate_reviews(
    db: Database,
    signals: Path | None,
    *,
    horizons: str,
    cost_bps: float,
    since: datetime | None = None,
    seed: int = 0,
    clickhouse: ClickHouseAccess | None = None,
) -> dict[str, Any]:
    """`run_eval` on an open `Database` (the service's own, for `GET /llm/eval`)."""
    parsed = _check_arguments(signals, clickhouse, horizons, cost_bps)
    paths: PricePaths | None = None
    if signals is not None:
        price_signals = await asyncio.to_thread(read_signal_file, signals)
        if not price_signals:
            raise InputError(f"--signals: no valid signal in {signals}")
        paths = PricePaths.from_signals(price_signals)
    decisions = await load_reviewed(db, since)
    if paths is None:
        assert clickhouse is not None
        longest = max(delta for _, delta in parsed)
        symbols = sorted({d.symbol for d in decisions})
        start = min((d.event_ts for d in decisions), default=datetime.now(UTC))
        end = max((d.event_ts for d in decisions), default=start) + longest + timedelta(days=3)
        paths = await clickhouse_prices(clickhouse, symbols, start, end)
    return await asyncio.to_thread(evaluate, decisions, paths, parsed, cost_bps=cost_bps, seed=seed)
