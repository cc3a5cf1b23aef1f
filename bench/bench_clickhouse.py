"""Benchmark the ClickHouse signal source's catch-up after an outage, on chdb (in-process).

Run: `python bench/bench_clickhouse.py` (or `--quick` for a smaller backlog).

A backlog of `SYMBOLS` symbols x `SECONDS` seconds of 1-second signals and bars sits in two
ReplacingMergeTrees (index granularity 32, so that, as on a big production table, a
symbol's rows span many granules), every key with an unmerged older version. It is read
page by page (`--page` rows), cursor after cursor, to the end:

  baseline  the query before this change, kept below verbatim: no upper bound (every page reads
            the bars and signals from the cursor to the present), `any(c)`, no `FINAL`;
  torghut   `ClickHouseSignalSource` itself, fetch + commit, its HTTP requests answered by chdb
            (httpx's MockTransport), so its paging (the horizon) is what is measured.

Reported: rows the server read per page (mean, max), the whole catch-up's time, and signals
returned (the baseline returns each unmerged version again). Targets: torghut reads at most
`--target` times fewer rows per page (mean) than the baseline, and returns each signal once.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

try:
    from torghut.db.engine import Database, upgrade
    from torghut.trading.signals import (
        ClickHouseConfig,
        ClickHouseSignalSource,
        CursorKey,
        parse_clickhouse_row,
    )
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torghut.db.engine import Database, upgrade
    from torghut.trading.signals import (
        ClickHouseConfig,
        ClickHouseSignalSource,
        CursorKey,
        parse_clickhouse_row,
    )

# Imported untyped on purpose: chdb's annotations vary between releases (some untyped).
chdb_session: Any = importlib.import_module("chdb.session")

START = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)

# The fetch query before bounded pages and FINAL (signals.py at c25799d), the baseline.
BASELINE_SQL = """\
SELECT
    s.event_ts AS event_ts, s.seq AS seq, s.symbol AS symbol, s.window_size AS window_size,
    s.macd AS macd, s.macd_signal AS macd_signal, s.rsi14 AS rsi14, b.c AS price
FROM torghut.ta_signals AS s
LEFT JOIN
(
    SELECT symbol, event_ts, any(c) AS c
    FROM torghut.ta_microbars
    WHERE event_ts >= {cursor_ts:DateTime64(6, 'UTC')}
    GROUP BY symbol, event_ts
) AS b ON b.symbol = s.symbol AND b.event_ts = s.event_ts
WHERE s.event_ts >= {cursor_ts:DateTime64(6, 'UTC')}
  AND (s.event_ts, s.symbol, s.seq)
      > ({cursor_ts:DateTime64(6, 'UTC')}, {cursor_symbol:String}, {cursor_seq:UInt64})
  AND s.event_ts <= now64(6) - toIntervalMillisecond({settle_ms:UInt32})
ORDER BY s.event_ts, s.symbol, s.seq
LIMIT {limit:UInt32}
SETTINGS join_use_nulls = 1, date_time_output_format = 'iso'
"""


def load(sess: Any, symbols: int, seconds: int) -> int:
    sess.query("CREATE DATABASE IF NOT EXISTS torghut")
    for table in ("ta_signals", "ta_microbars"):
        sess.query(f"DROP TABLE IF EXISTS torghut.{table}")
    sess.query(
        "CREATE TABLE torghut.ta_signals (event_ts DateTime64(3, 'UTC'), seq UInt64, "
        "symbol String, window_size String, macd Nullable(Float64), "
        "macd_signal Nullable(Float64), rsi14 Nullable(Float64), version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY (symbol, event_ts, seq) "
        "SETTINGS index_granularity = 32"
    )
    sess.query(
        "CREATE TABLE torghut.ta_microbars (event_ts DateTime64(3, 'UTC'), symbol String, "
        "c Float64, version UInt64) ENGINE = ReplacingMergeTree(version) "
        "ORDER BY (symbol, event_ts) SETTINGS index_granularity = 32"
    )
    for table in ("ta_signals", "ta_microbars"):
        sess.query(f"SYSTEM STOP MERGES torghut.{table}")
    base = START.strftime("%Y-%m-%d %H:%M:%S")
    for version in (1, 2):  # two parts: every key has an unmerged older version
        sess.query(
            "INSERT INTO torghut.ta_signals SELECT "
            f"toDateTime64('{base}', 3, 'UTC') + toIntervalSecond(intDiv(number, {symbols})), "
            f"number, concat('S', toString(number % {symbols})), 'PT1M', 0.5, 0.2, 30, "
            f"{version} FROM numbers({symbols * seconds})"
        )
        sess.query(
            "INSERT INTO torghut.ta_microbars SELECT "
            f"toDateTime64('{base}', 3, 'UTC') + toIntervalSecond(intDiv(number, {symbols})), "
            f"concat('S', toString(number % {symbols})), 100 + {version}, {version} "
            f"FROM numbers({symbols * seconds})"
        )
    return symbols * seconds


def _params(cursor: CursorKey, limit: int) -> dict[str, str]:
    return {
        "cursor_ts": cursor[0].strftime("%Y-%m-%d %H:%M:%S.%f"),
        "cursor_symbol": cursor[1],
        "cursor_seq": str(cursor[2]),
        "limit": str(limit),
        "settle_ms": "0",
    }


def run_baseline(sess: Any, page: int) -> tuple[list[int], float, int]:
    cursor: CursorKey = (START - timedelta(seconds=1), "", 0)
    reads: list[int] = []
    returned = 0
    started = time.perf_counter()
    while True:
        result = sess.query(BASELINE_SQL, "JSONEachRow", params=_params(cursor, page))
        reads.append(int(result.storage_rows_read()))
        lines = [line for line in str(result).splitlines() if line.strip()]
        if not lines:
            break
        returned += len(lines)
        key, _signal, _reason = parse_clickhouse_row(lines[-1])
        assert key is not None
        cursor = key
    return reads, time.perf_counter() - started, returned


async def run_torghut(sess: Any, page: int, workdir: Path) -> tuple[list[int], float, int]:
    reads: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        query = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
        params = {k.removeprefix("param_"): v for k, v in query.items() if k.startswith("param_")}
        sql = request.content.decode().replace("FORMAT JSONEachRow", "")
        result = sess.query(sql, "JSONEachRow", params=params)
        reads.append(int(result.storage_rows_read()))
        return httpx.Response(200, text=str(result))

    dsn = f"sqlite:///{workdir / 'bench-clickhouse.db'}"
    upgrade(dsn)
    db = Database(dsn)
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    config = ClickHouseConfig(
        url="http://clickhouse.invalid:8123",
        initial_lookback=datetime.now(UTC) - START + timedelta(seconds=1),
        settle_seconds=0,
    )
    source = ClickHouseSignalSource(config, db, http_client=client)
    returned = 0
    started = time.perf_counter()
    try:
        while signals := await source.fetch(page):
            returned += len(signals)
            await source.commit(signals)
    finally:
        await source.aclose()
        await client.aclose()
        await db.aclose()
    return reads, time.perf_counter() - started, returned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller backlog")
    parser.add_argument("--page", type=int, default=500, help="rows per fetch")
    parser.add_argument("--target", type=float, default=5.0, help="rows-read ratio to reach")
    args = parser.parse_args(argv)
    symbols, seconds = (20, 1200) if args.quick else (40, 3600)

    sess = chdb_session.Session()
    try:
        total = load(sess, symbols, seconds)
        print(
            f"backlog: {total:,} signals and {total:,} bars, each twice (unmerged versions); "
            f"pages of {args.page}"
        )
        base_reads, base_s, base_n = run_baseline(sess, args.page)
        with tempfile.TemporaryDirectory() as workdir:
            new_reads, new_s, new_n = asyncio.run(run_torghut(sess, args.page, Path(workdir)))
    finally:
        sess.close()

    def line(name: str, reads: list[int], seconds: float, returned: int) -> None:
        mean = sum(reads) / len(reads)
        print(
            f"{name:9} queries {len(reads):5}  rows read/query mean {mean:>10,.0f} "
            f"max {max(reads):>10,}  total {sum(reads):>12,}  {seconds:6.2f} s  "
            f"signals returned {returned:,}"
        )

    line("baseline", base_reads, base_s, base_n)
    line("torghut", new_reads, new_s, new_n)
    base_mean = sum(base_reads) / len(base_reads)
    new_mean = sum(new_reads) / len(new_reads)
    ratio = base_mean / new_mean
    ok = ratio >= args.target and new_n == total
    print(
        f"rows read per query: {ratio:.1f}x fewer (target {args.target:g}x); "
        f"each signal once: {new_n == total}  {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
