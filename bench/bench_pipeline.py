"""Benchmarks of the whole trading pipeline, through `torghut.replay.run_replay`, each against a
baseline measured in the same run.

(a) Review concurrency: one batch of 50 buy decisions (50 symbols, one event_ts), each reviewed
    by a local Jangar-compatible gateway (`DevGateway`) that takes 1 s per review, with the gate
    enforced (LLM_SHADOW_MODE=false, LLM_FAIL_MODE=veto). Wall time with LLM_MAX_CONCURRENCY=16
    against LLM_MAX_CONCURRENCY=1. Target: at least 8x.
(b) The durable floor, on SQLite and on PostgreSQL: torghut's replay without the gate
    (LLM_ENABLED=false, simulated broker, TRADING_BATCH_SIZE=500) against the same rows written
    with the bare driver (`floor_db.py`: what it writes, in which transactions and statements,
    with which durability). Two files: the bundled sample (about 3 % of its signals fire a
    decision) and a generated one where every line fires a buy (100 symbols per minute).
    Target: torghut at least 0.5x the floor (floor wall / torghut wall) on each. The floor's
    database must hold, table by table, as many rows as torghut's, or the bench fails.
(c) Attribution of (b)'s best torghut runs (`floor_meter.py`): process CPU, time inside the
    database transactions, and of it inside the driver (the database itself), beside torghut's
    statement census (transactions, reads, writes) and the floor's.
(d) The read path: a file where no signal fires, against a loop that only reads the file and
    `json.loads` each line (best of 5). Target: at least 0.3x. For attribution, a loop that
    parses lines into `Signal`s, and the two files of (b) against their own plain loops.
(e) Scaling, on files where one line in 20 fires a buy: the process's CPU time per signal at
    two lengths (2,500 and 10,000 lines, 100 symbols) and at two numbers of symbols (5 and 500,
    5,000 lines; each file spans the same 50 minutes of the session, so that every decision
    of both is submitted). Target: each pair within 1.5x of each other.
(f) A cycle's fixed cost: the CPU time of the whole process (every thread:
    `getrusage(RUSAGE_SELF)`) replaying the sample with TRADING_BATCH_SIZE=1 against =500.
    Target: at most 3x. `--quick` replays the sample's first 600 lines only.
(g) Limits, shown and not targets (they leave the exit code alone): the best ratio each of
    (b), (d), (e) and (f) could reach at all, measured in the same run. (f): the per-cycle
    durable floor (`limits.py`: one transaction moving the cursor row per cycle, bare sqlite3,
    torghut's pragmas; alone, and with each commit handed to a thread and awaited from asyncio
    as `Database.run` does; for attribution, through `Database.run` itself) against torghut's
    batch-500 CPU. (b), (d): torghut's fixed per-run cost (replays of an empty and of a
    one-line file) plus the parse loop of (d), against (b)'s floor and (d)'s plain loop: the
    ratio if all else were free. (e): the floor's own CPU per signal on the 5- and 500-symbol
    files. (b) again (g4): torghut's own deciding code, as it is, run in memory on (b)'s files
    (`limits.decision_work`: parse, strategy, CONTRACT §8's checks and risk against the batch
    ledger, the simulated broker's fills; no pipeline, no rows, no database), so that the
    limit says what (b) could reach were only the deciding left, and what the plumbing
    (pipeline, rows, database access) costs on top of floor + deciding. (g5), in the same
    table: the floor's very rows written through SQLAlchemy Core, the library the standards
    name for the database, used as documented (`floor_db.write_library`), and the ratio (b)
    could reach were torghut only to decide and hand its rows to that library. The summary
    shows each missed target's limit under it.

Every replay gets a fresh database (a SQLite file in a temporary directory, or a fresh schema
on the PostgreSQL server, dropped at the end), migrated before its clock starts; timings are
the best of several runs. PostgreSQL is `--postgres` (default postgresql://postgres@127.0.0.1:
5432/test); when it does not answer its rows are skipped, saying so. The heap is frozen after
the imports as `torghut replay` does. A run whose work did not happen as expected fails before
any ratio is printed. The summary at the end lists every target; the exit code is 1 when one
is missed.

    python bench/bench_pipeline.py            # full run
    python bench/bench_pipeline.py --quick    # smaller files, fewer runs
    python bench/bench_pipeline.py --profile  # also cProfile (b)'s replays: main + db threads
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

try:
    from torghut.config import load_settings
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torghut.config import load_settings

import floor_db  # bench/floor_db.py (scripts run from bench/)
import limits  # bench/limits.py
from floor_meter import Measurement, Meter
from tables import table
from torghut.bootstrap import bundled_signals, freeze_startup_heap
from torghut.db.engine import upgrade
from torghut.devgateway import DevGateway, DevGatewayConfig
from torghut.replay import run_replay
from torghut.trading.session import SessionCalendar
from torghut.trading.signals import parse_signal_line

CONCURRENCY_TARGET = 8.0
FLOOR_TARGET = 0.5
QUIET_TARGET = 0.3
SCALING_TOLERANCE = 1.5
CYCLE_TARGET = 3.0
SYMBOLS_PER_TS = 100
BASE_TS = 1_741_012_200  # 2025-03-03T14:30:00Z
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


# --------------------------------------------------------------------------------------------
# Signal files


def _line(symbol: str, ts: int, *, buy: bool) -> str:
    # Buy: macd above its signal and RSI under 35, so the default strategy buys; at price 100
    # with the default $1,000 notional cap it sizes 10 shares. Otherwise RSI 50 and MACD under
    # its signal: the default strategy does nothing.
    return json.dumps(
        {
            "event_ts": ts,
            "symbol": symbol,
            "timeframe": "1Min",
            "macd": 0.25 if buy else 0.01,
            "macd_signal": 0.05,
            "rsi14": 30.0 if buy else 50.0,
            "price": 100,
        },
        separators=(",", ":"),
    )


def one_batch_file(path: Path, n: int) -> Path:
    """`n` buy signals on `n` different symbols, all at the same event_ts (one batch)."""
    path.write_text("".join(_line(f"B{i:03d}", BASE_TS, buy=True) + "\n" for i in range(n)))
    return path


def generated_file(
    path: Path, n: int, symbols: int, fire: Callable[[int, int], bool], step: int = 60
) -> Path:
    """`n` signals, `symbols` symbols per instant, instants `step` seconds apart from the
    open; `fire(instant, line)` says which buy."""
    lines = (
        _line(f"S{i % symbols:03d}", BASE_TS + step * (i // symbols), buy=fire(i // symbols, i))
        + "\n"
        for i in range(n)
    )
    path.write_text("".join(lines))
    return path


def quiet_file(path: Path, n: int) -> Path:
    """No line fires a decision."""
    return generated_file(path, n, SYMBOLS_PER_TS, lambda _t, _i: False)


def many_batches_file(path: Path, n: int) -> Path:
    """Every line fires a buy, `SYMBOLS_PER_TS` symbols per minute."""
    return generated_file(path, n, SYMBOLS_PER_TS, lambda _t, _i: True)


def mixed_file(path: Path, n: int, symbols: int) -> Path:
    """One line in 20 fires a buy, spread over the symbols and the instants. The instants are
    `60 * symbols / SYMBOLS_PER_TS` seconds apart, so that files of the same length span the
    same stretch of the session whatever their number of symbols (5,000 lines: 50 minutes).
    With a minute apart, 5 symbols would run 1,000 minutes, past the close: 154 of their 250
    decisions were rejected `market_closed`, a cheaper path, and (e) compared unlike work."""
    step = max(1, 60 * symbols // SYMBOLS_PER_TS)
    return generated_file(path, n, symbols, lambda t, i: (t + i % symbols) % 20 == 0, step)


def head_file(path: Path, source: Path, lines: int) -> Path:
    with source.open("rb") as handle:
        path.write_bytes(b"".join(line for _, line in zip(range(lines), handle, strict=False)))
    return path


# --------------------------------------------------------------------------------------------
# Databases


class Databases:
    """Fresh, migrated databases: SQLite files in `workdir`, PostgreSQL schemas on `url`."""

    def __init__(self, workdir: Path, postgres: str | None) -> None:
        self.workdir = workdir
        self.schemas = floor_db.PostgresSchemas(postgres) if postgres else None
        self._n = 0

    def fresh(self, kind: str) -> str:
        self._n += 1
        if kind == "sqlite":
            path = self.workdir / f"db-{self._n}.db"
            for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            dsn = f"sqlite:///{path}"
        else:
            assert self.schemas is not None
            dsn = self.schemas.fresh()
        upgrade(dsn)  # schema creation is not replay work: before any clock starts
        return dsn

    def close(self) -> None:
        if self.schemas is not None:
            self.schemas.drop_all()


def _settings(dsn: str, **extra: str) -> Any:
    env = {"DB_DSN": dsn, "TRADING_BATCH_SIZE": "500", **extra}
    return load_settings(env, env_file=None)


# Cash enough that no order is refused: every decision takes the full path to the broker.
SIM_CASH = Decimal(1_000_000_000)


def _ungated(dsn: str, batch_size: int = 500) -> Any:
    return _settings(
        dsn,
        LLM_ENABLED="false",
        TRADING_SIM_CASH=str(SIM_CASH),
        TRADING_BATCH_SIZE=str(batch_size),
    )


def _replay(dsn: str, signals: Path, batch_size: int = 500) -> dict[str, Any]:
    return asyncio.run(run_replay(_ungated(dsn, batch_size), signals))


def _timed_replays(
    dbs: Databases,
    kind: str,
    signals: Path,
    reps: int,
    meter: Meter,
    batch_size: int = 500,
    *,
    by_cpu: bool = False,
) -> tuple[Measurement, dict[str, Any], str]:
    """The best (by wall time, or process CPU time) of `reps` replays, each on a fresh
    database; its database."""
    best: tuple[Measurement, dict[str, Any], str] | None = None
    for _ in range(reps):
        dsn = dbs.fresh(kind)
        gc.collect()
        measured, summary = meter.measure(
            lambda dsn=dsn: _replay(dsn, signals, batch_size)  # type: ignore[misc]
        )
        if not summary["complete"]:
            raise AssertionError(f"replay of {signals.name} on {kind} incomplete: {summary}")
        if best is None or (measured.cpu < best[0].cpu if by_cpu else measured.wall < best[0].wall):
            best = (measured, summary, dsn)
    assert best is not None
    return best


# --------------------------------------------------------------------------------------------
# (a) review concurrency


async def _gated_replay(
    dsn: str, signals: Path, concurrency: int, latency: float
) -> tuple[float, dict[str, Any]]:
    config = DevGatewayConfig(latency_seconds=latency, keepalive_seconds=0.5)
    async with DevGateway(config) as gateway:
        settings = _settings(
            dsn,
            JANGAR_BASE_URL=gateway.base_url,
            LLM_ENABLED="true",
            LLM_SHADOW_MODE="false",
            LLM_FAIL_MODE="veto",
            LLM_MAX_CONCURRENCY=str(concurrency),
            LLM_TIMEOUT_SECONDS="30",
            LLM_FIRST_TOKEN_TIMEOUT_SECONDS="30",
        )
        started = time.perf_counter()
        summary = await run_replay(settings, signals)
        wall = time.perf_counter() - started
        summary["gateway_requests"] = gateway.request_count
    return wall, summary


def _check_gated(summary: dict[str, Any], n: int, label: str) -> None:
    problems = []
    if summary["decisions"] != n:
        problems.append(f"{summary['decisions']} decisions, expected {n}")
    if summary["reviews"] != {"approve": n}:
        problems.append(f"reviews {summary['reviews']}, expected {{'approve': {n}}}")
    if summary["submitted"] != n:
        problems.append(f"{summary['submitted']} submitted, expected {n}")
    if summary["rejected"]:
        problems.append(f"rejected {summary['rejected']}")
    if problems:
        raise AssertionError(f"{label}: " + "; ".join(problems) + f" (summary {summary})")


def bench_concurrency(dbs: Databases, n: int, latency: float) -> tuple[list[list[str]], float]:
    signals = one_batch_file(dbs.workdir / "one_batch.jsonl", n)
    results = {}
    for concurrency in (16, 1):
        dsn = dbs.fresh("sqlite")
        wall, summary = asyncio.run(_gated_replay(dsn, signals, concurrency, latency))
        _check_gated(summary, n, f"LLM_MAX_CONCURRENCY={concurrency}")
        results[concurrency] = (wall, summary)
    ratio = results[1][0] / results[16][0]
    rows = []
    for concurrency, label in (
        (16, "torghut LLM_MAX_CONCURRENCY=16"),
        (1, "torghut LLM_MAX_CONCURRENCY=1 (baseline)"),
    ):
        wall, summary = results[concurrency]
        rows.append(
            [
                label,
                str(summary["decisions"]),
                str(summary["reviews"].get("approve", 0)),
                str(summary["submitted"]),
                f"{wall:.2f}",
                f"{n * latency / wall:.2f}",
                f"{results[1][0] / wall:.2f}",
            ]
        )
    return rows, ratio


# --------------------------------------------------------------------------------------------
# (b) and (c) the durable floor


@dataclass
class FloorResult:
    kind: str
    label: str
    path: Path
    summary: dict[str, Any]
    torghut: Measurement
    floor_wall: float
    census: floor_db.Census
    floor_transactions: int
    floor_statements: int
    # (g5): the floor's rows through SQLAlchemy Core's own executemany (floor_db.write_library)
    library_wall: float = float("inf")
    profile: str | None = None
    target: Target | None = None  # set by _part_b, for (g)'s limit

    @property
    def ratio(self) -> float:
        return self.floor_wall / self.torghut.wall


def bench_floor(
    dbs: Databases, kind: str, label: str, signals: Path, reps: int, profile: bool
) -> FloorResult:
    # Untimed: torghut's own replay, every write statement recorded (floor_db.Census).
    census = floor_db.Census()
    census_dsn = dbs.fresh(kind)
    with census.installed():
        census_summary = _replay(census_dsn, signals)
    floor_plan = floor_db.plan(census.transactions)
    torghut_rows = floor_db.row_counts(census_dsn)
    torghut_contents = floor_db.contents(census_dsn)

    measured, summary, dsn = _timed_replays(dbs, kind, signals, reps, Meter())
    for key in ("signals", "decisions", "submitted", "rejected"):
        if summary[key] != census_summary[key]:
            raise AssertionError(
                f"{label} on {kind}: two replays differ: {summary} / {census_summary}"
            )
    floor_db.check_same_rows(torghut_rows, floor_db.row_counts(dsn), f"{label} on {kind} (twice)")

    floor_wall = float("inf")
    for _ in range(reps):
        floor_dsn = dbs.fresh(kind)
        gc.collect()
        if kind == "sqlite":
            wall = floor_db.write_sqlite(
                signals, Path(floor_dsn.removeprefix("sqlite:///")), floor_plan
            )
        else:
            wall = floor_db.write_postgres(signals, floor_dsn, floor_plan)
        floor_db.check_same_rows(torghut_rows, floor_db.row_counts(floor_dsn), f"{label}, {kind}")
        if floor_wall == float("inf"):  # once: the census's database, row for row
            floor_db.check_same_contents(
                torghut_contents, floor_db.contents(floor_dsn), f"{label}, {kind}"
            )
        floor_wall = min(floor_wall, wall)

    # (g5): the same plan through the library torghut must use for its database.
    library_wall = float("inf")
    cache: dict[Any, Any] = {}  # compiled statements, shared by the runs
    for _ in range(reps):
        library_dsn = dbs.fresh(kind)
        gc.collect()
        wall = floor_db.write_library(signals, library_dsn, floor_plan, cache)
        where = f"{label}, {kind} (library)"
        floor_db.check_same_rows(torghut_rows, floor_db.row_counts(library_dsn), where)
        if library_wall == float("inf"):
            floor_db.check_same_contents(torghut_contents, floor_db.contents(library_dsn), where)
        library_wall = min(library_wall, wall)

    report = _profile_replay(dbs, kind, signals) if profile else None
    return FloorResult(
        kind,
        label,
        signals,
        summary,
        measured,
        floor_wall,
        census,
        len(floor_plan),
        floor_db.statements(floor_plan),
        library_wall,
        report,
    )


def _profile_replay(dbs: Databases, kind: str, signals: Path) -> str:
    dsn = dbs.fresh(kind)
    meter = Meter(profile=True)
    profiler = cProfile.Profile(time.thread_time)

    def run() -> dict[str, Any]:
        profiler.enable()
        try:
            return _replay(dsn, signals)
        finally:
            profiler.disable()

    measured, _ = meter.measure(run)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(15)
    return (
        f"under cProfile (CPU time per thread): wall {measured.wall:.3f} s, process CPU "
        f"{measured.cpu:.3f} s, main thread {measured.main_cpu:.3f} s, in transactions "
        f"{_s(measured.db_wall)} s (CPU {_s(measured.db_cpu)}), in the driver "
        f"{_s(measured.driver_wall)} s\n"
        f"main thread (event loop), top 15 by own CPU time:\n{out.getvalue()}\n"
        f"database threads, top 15 by own CPU time:\n{meter.thread_stats(True, 15)}\n"
        f"other threads (signal file), top 15 by own CPU time:\n{meter.thread_stats(False, 15)}"
    )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _floor_rows(results: list[FloorResult]) -> list[list[str]]:
    return [
        [
            r.kind,
            r.label,
            str(r.summary["signals"]),
            f"{r.summary['decisions']} ({r.summary['submitted']} sent)",
            f"{r.torghut.wall:.3f}",
            f"{r.floor_wall:.3f}",
            f"{r.ratio:.3f}",
            "PASS" if r.ratio >= FLOOR_TARGET else "MISS",
        ]
        for r in results
    ]


def _attribution_rows(results: list[FloorResult]) -> list[list[str]]:
    rows = []
    for r in results:
        m, c = r.torghut, r.census
        share = "-" if m.driver_wall is None else f"{m.driver_wall / m.wall:.0%}"
        others = None if m.db_cpu is None else m.cpu - m.main_cpu - m.db_cpu
        rows.append(
            [
                r.kind,
                r.label,
                f"{m.wall:.3f}",
                f"{m.cpu:.3f} = {m.main_cpu:.3f} + {_s(m.db_cpu)} + {_s(others)}",
                _s(m.db_wall),
                f"{_s(m.driver_wall)} ({share})",
                f"{c.commits} / {c.write_transactions}",
                f"{c.reads} / {c.writes}",
                f"{r.floor_transactions} / {r.floor_statements}",
            ]
        )
    return rows


# --------------------------------------------------------------------------------------------
# (d) the read path


def plain_loop(path: Path) -> int:
    """The baseline: read the file and `json.loads` each line, nothing else."""
    return floor_db.read_input(path)


def parse_loop(path: Path) -> int:
    """For attribution only: read the file and build torghut `Signal`s (no pipeline)."""
    count = 0
    with path.open("rb") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                parse_signal_line(line.decode("utf-8"), lineno)
                count += 1
    return count


def decide_loop(path: Path) -> int:
    """For (g): `parse_loop`, then each signal through what any replay must do with a line
    before it can know that nothing fires: its price through the band (CONTRACT §8: a batch
    ledger per 500 lines, as (b)'s batch size) and the built-in strategy asked; still nothing
    written."""
    from torghut.domain import Account, Book
    from torghut.trading.ledger import BatchLedger
    from torghut.trading.risk import RiskLimits
    from torghut.trading.strategy import DEFAULT_STRATEGY, StrategyDefaults, fire

    count = 0
    sizing, limits_, move = StrategyDefaults(), RiskLimits(), Decimal("0.10")
    empty = Book(Account(Decimal(0), Decimal(0), Decimal(0)), [], [])
    ledger: BatchLedger | None = None
    references: dict[str, Any] = {}
    with path.open("rb") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                if count % 500 == 0:
                    if ledger is not None:
                        references = ledger.references
                    ledger = BatchLedger.open(
                        empty,
                        limits=limits_,
                        max_price_move=move,
                        fills_at_once=True,
                        references=references,
                        last_trade_at={},
                    )
                assert ledger is not None
                signal = parse_signal_line(line.decode("utf-8"), lineno)
                price = signal.price
                if price is not None and price.is_finite() and price > 0:
                    ledger.mark(signal.symbol, price)
                fire(DEFAULT_STRATEGY, signal, sizing)
                count += 1
    return count


def _best(fn: Callable[[Path], int], path: Path, reps: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(reps):
        gc.collect()
        started = time.perf_counter()
        count = fn(path)
        best = min(best, time.perf_counter() - started)
    return best, count


def bench_read_path(
    dbs: Databases, quiet: Path, others: list[tuple[str, Path, float, int]], reps: int
) -> tuple[list[list[str]], float, float]:
    """(d)'s rows, its ratio, and its baseline's seconds (the plain loop on `quiet`)."""
    rows: list[list[str]] = []
    measured, summary, _ = _timed_replays(dbs, "sqlite", quiet, reps, Meter())
    plain_s, plain_n = _best(plain_loop, quiet, 5)
    if summary["signals"] != plain_n or summary["decisions"] != 0:
        raise AssertionError(f"no-fire file: read {plain_n} lines, replay says {summary}")
    ratio = plain_s / measured.wall
    parse_s, parse_n = _best(parse_loop, quiet, 3)
    for label, n, wall, base in (
        ("torghut replay, no signal fires", plain_n, measured.wall, plain_s),
        ("  plain loop: read + json.loads (baseline)", plain_n, plain_s, plain_s),
        ("  (attribution) parse_signal_line loop", parse_n, parse_s, plain_s),
    ):
        rows.append([label, str(n), f"{wall:.3f}", f"{n / wall:,.0f}", f"{base / wall:.4f}"])
    for label, path, wall, n in others:  # (b)'s SQLite replays, for the record
        base, _ = _best(plain_loop, path, 5)
        rows.append(
            [
                f"  (attribution) {label}",
                str(n),
                f"{wall:.3f}",
                f"{n / wall:,.0f}",
                f"{base / wall:.4f}",
            ]
        )
    return rows, ratio, plain_s


# --------------------------------------------------------------------------------------------
# (e) scaling and (f) a cycle's fixed cost


@dataclass
class Pair:
    name: str
    rows: list[list[str]] = field(default_factory=list)
    per_signal: list[float] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)  # the files, in per_signal's order

    @property
    def spread(self) -> float:
        return max(self.per_signal) / min(self.per_signal)


def bench_scaling(
    dbs: Databases, lengths: tuple[int, int], symbols: tuple[int, int], at: int, reps: int
) -> list[Pair]:
    pairs = [
        Pair(f"length {lengths[0]:,} vs {lengths[1]:,} lines"),
        Pair(f"{symbols[0]} vs {symbols[1]} symbols"),
    ]
    cases = [(pairs[0], n, SYMBOLS_PER_TS) for n in lengths] + [(pairs[1], at, k) for k in symbols]
    for pair, n, k in cases:
        path = mixed_file(dbs.workdir / f"mixed-{n}-{k}.jsonl", n, k)
        # CPU time, not wall: on this shared 2-core machine a run's wall time swings with the
        # load more than with its length, and the cost is what is being compared.
        measured, summary, _ = _timed_replays(dbs, "sqlite", path, reps, Meter(), by_cpu=True)
        # Like for like: every decision takes the full path to the broker, none is refused.
        if (
            summary["signals"] != n
            or summary["decisions"] == 0
            or summary["submitted"] != summary["decisions"]
        ):
            raise AssertionError(f"mixed file {n} lines, {k} symbols: {summary}")
        per = measured.cpu / n
        pair.per_signal.append(per)
        pair.paths.append(path)
        pair.rows.append(
            [
                pair.name,
                f"{n:,}",
                str(k),
                str(summary["decisions"]),
                f"{measured.wall:.3f}",
                f"{measured.cpu:.3f}",
                f"{per * 1e6:.1f}",
                f"{measured.wall / n * 1e6:.1f}",
            ]
        )
    return pairs


def bench_cycle_cost(
    dbs: Databases, signals: Path
) -> tuple[list[list[str]], float, dict[int, tuple[Measurement, dict[str, Any]]]]:
    results = {}
    for batch in (500, 1):
        measured, summary, _ = _timed_replays(dbs, "sqlite", signals, 1, Meter(), batch)
        results[batch] = (measured, summary)
    if results[1][1]["decisions"] != results[500][1]["decisions"]:
        raise AssertionError(f"batch sizes disagree: {results[1][1]} / {results[500][1]}")
    rows = []
    for batch in (1, 500):
        m, summary = results[batch]
        cycles = -(-summary["signals"] // batch)
        rows.append(
            [
                f"TRADING_BATCH_SIZE={batch}",
                str(summary["signals"]),
                str(cycles),
                f"{m.wall:.2f}",
                f"{m.cpu:.2f}",
                f"{_s(m.db_cpu)}",
                f"{m.cpu / cycles * 1000:.2f}",
            ]
        )
    return rows, results[1][0].cpu / results[500][0].cpu, results


# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    measured: str
    target: str
    status: str  # PASS, MISS or SKIP
    # (g)'s figure for it: (what it is, the figure); shown under the target when it is missed
    limit: tuple[str, str] | None = None


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller files, fewer runs")
    parser.add_argument("--decisions", type=int, default=None, help="decisions in (a)")
    parser.add_argument("--latency", type=float, default=None, help="seconds per review in (a)")
    parser.add_argument("--signals", type=int, default=None, help="lines of the generated files")
    parser.add_argument("--reps", type=int, default=None, help="runs per timing in (b)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL server URL")
    parser.add_argument("--profile", action="store_true", help="cProfile (b)'s replays")
    parser.add_argument("--skip-concurrency", action="store_true", help="leave (a) out")
    args = parser.parse_args(argv)
    freeze_startup_heap()  # as `torghut replay` does, after its imports
    # The exchange calendar of the session check is loaded once per process, on first use
    # (about 0.4 s: pandas); load it before any clock starts, as a serving process has.
    SessionCalendar().load()

    quick = args.quick
    decisions = args.decisions or (20 if quick else 50)
    latency = args.latency if args.latency is not None else (0.5 if quick else 1.0)
    n_signals = args.signals or (600 if quick else 5000)
    reps = args.reps or (2 if quick else 3)
    lengths = (1000, 4000) if quick else (2500, 10000)
    symbols, symbols_at = (5, 500), (2000 if quick else 5000)
    cycle_lines = 600 if quick else None

    print(
        f"python {sys.version.split()[0]} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, pid {os.getpid()}"
    )
    postgres = floor_db.reachable_postgres(args.postgres)
    if postgres is not None:
        settings = floor_db.postgres_settings(args.postgres)
        print(
            f"PostgreSQL {settings['server_version']} at {args.postgres}: synchronous_commit="
            f"{settings['synchronous_commit']}, fsync={settings['fsync']}, "
            f"wal_sync_method={settings['wal_sync_method']}"
        )
    print()
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="torghut-bench-") as tmp:
        dbs = Databases(Path(tmp), postgres)
        try:
            targets += _part_a(dbs, args.skip_concurrency, decisions, latency)
            floors = _part_b(dbs, n_signals, reps, args.profile, targets)
            _part_c(floors)
            read = _part_d(dbs, n_signals, reps, floors, targets)
            pairs = _part_e(dbs, lengths, symbols, symbols_at, reps, targets)
            cycle = _part_f(dbs, cycle_lines, targets)
            _part_g(dbs, reps + 2, floors, read, pairs[1], cycle)
        finally:
            dbs.close()

    print("summary: every target of this benchmark")
    print(
        table(
            ["target", "measured", "target", "result"],
            _summary_rows(targets),
        )
    )
    missed = [t.name for t in targets if t.status == "MISS"]
    print(
        f"{len(targets) - len(missed)} of {len(targets)} met"
        + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    return 1 if missed else 0


def _part_a(dbs: Databases, skip: bool, decisions: int, latency: float) -> list[Target]:
    name = f"(a) {decisions} reviews, concurrency 16 vs 1"
    if skip:
        return [Target(name, "-", f">= {CONCURRENCY_TARGET:g}x", "SKIP")]
    print(
        f"(a) one batch of {decisions} buy decisions, enforced review by a gateway taking "
        f"{latency:g} s per review"
    )
    rows, ratio = bench_concurrency(dbs, decisions, latency)
    print(
        table(
            [
                "run",
                "decisions",
                "approved",
                "submitted",
                "wall s",
                "review-s / wall-s",
                "speed-up vs =1",
            ],
            rows,
        )
    )
    rounds = -(-decisions // 16)
    print(
        f"at most {decisions / rounds:.1f}x with zero overhead: {decisions} reviews in "
        f"{rounds} rounds of 16"
    )
    print()
    return [
        Target(
            name,
            f"{ratio:.2f}x",
            f">= {CONCURRENCY_TARGET:g}x",
            _verdict(ratio >= CONCURRENCY_TARGET),
        )
    ]


def _part_b(
    dbs: Databases, n_signals: int, reps: int, profile: bool, targets: list[Target]
) -> list[FloorResult]:
    every = many_batches_file(dbs.workdir / "every.jsonl", n_signals)
    files = (
        ("bundled sample", bundled_signals()),
        (f"every line a decision ({n_signals:,})", every),
    )
    print(
        "(b) the durable floor: torghut's replay (LLM_ENABLED=false, simulated broker, "
        f"TRADING_BATCH_SIZE=500) against its rows written with the bare driver; best of {reps}"
    )
    print(
        "    floor: the same rows, one transaction per commit point of a batch, one statement "
        "per table and kind of write (executemany; psycopg's in pipeline mode); "
        "SQLite WAL synchronous=NORMAL as torghut's connections, PostgreSQL as the server is set"
    )
    results: list[FloorResult] = []
    for kind in ("sqlite", "postgresql"):
        for label, path in files:
            name = f"(b) {label}, {kind}: torghut / floor"
            if kind == "postgresql" and dbs.schemas is None:
                targets.append(Target(name, "-", f">= {FLOOR_TARGET:g}x", "SKIP"))
                continue
            result = bench_floor(dbs, kind, label, path, reps, profile)
            results.append(result)
            result.target = Target(
                name,
                f"{result.ratio:.3f}x (floor {result.floor_wall:.3f} s, "
                f"torghut {result.torghut.wall:.3f} s)",
                f">= {FLOOR_TARGET:g}x",
                _verdict(result.ratio >= FLOOR_TARGET),
            )
            targets.append(result.target)
    print(
        table(
            [
                "database",
                "file",
                "signals",
                "decisions",
                "torghut s",
                "floor s",
                "floor / torghut",
                f">= {FLOOR_TARGET:g}",
            ],
            _floor_rows(results),
        )
    )
    print(
        "the floor's database held as many rows as torghut's timed replay in every table, "
        "every run, and the very rows of the untimed replay it was derived from"
    )
    print()
    for r in results:
        if r.profile:
            print(f"--profile: {r.label}, {r.kind}")
            print(r.profile)
    return results


def _part_c(results: list[FloorResult]) -> None:
    print(
        "(c) attribution of (b)'s best torghut runs; torghut's statements counted in an "
        "untimed replay"
    )
    print(
        table(
            [
                "database",
                "file",
                "wall s",
                "process CPU s = main + db threads + others",
                "in transactions wall s",
                "of it in driver + database s",
                "torghut commits / with writes",
                "torghut reads / writes",
                "floor transactions / statements",
            ],
            _attribution_rows(results),
        )
    )
    print(
        "main: the event loop's thread (strategy, risk, pipeline, asyncio); db threads: CPU "
        "inside torghut's transactions (SQLAlchemy, driver, SQLite's engine); others: reading "
        "the signal file. driver + database: wall time inside the driver's calls (statements, "
        "commits, pings, connects): the database's part of the run"
    )
    print()


@dataclass
class ReadPath:
    """What (g) takes from (d)."""

    quiet: Path
    plain_s: float  # the plain loop (read + json.loads) on `quiet`
    ratio: float  # plain loop / torghut
    target: Target


def _part_d(
    dbs: Databases, n_signals: int, reps: int, floors: list[FloorResult], targets: list[Target]
) -> ReadPath:
    quiet = quiet_file(dbs.workdir / "quiet.jsonl", n_signals)
    print(f"(d) the read path: {n_signals:,} lines, no signal fires, SQLite; best of {reps}")
    others = [
        (f"torghut replay, {r.label}", r.path, r.torghut.wall, r.summary["signals"])
        for r in floors
        if r.kind == "sqlite"
    ]
    rows, ratio, plain_s = bench_read_path(dbs, quiet, others, reps)
    print(table(["run", "signals", "wall s", "signals/s", "plain loop wall / wall"], rows))
    print()
    target = Target(
        f"(d) no signal fires ({n_signals:,} lines) vs json.loads loop",
        f"{ratio:.3f}x",
        f">= {QUIET_TARGET:g}x",
        _verdict(ratio >= QUIET_TARGET),
    )
    targets.append(target)
    return ReadPath(quiet, plain_s, ratio, target)


def _part_e(
    dbs: Databases,
    lengths: tuple[int, int],
    symbols: tuple[int, int],
    at: int,
    reps: int,
    targets: list[Target],
) -> list[tuple[Pair, Target]]:
    print(
        "(e) scaling: one line in 20 fires a buy, SQLite, TRADING_BATCH_SIZE=500; process CPU "
        f"(every thread), best of {reps}"
    )
    pairs = bench_scaling(dbs, lengths, symbols, at, reps)
    print(
        table(
            [
                "pair",
                "lines",
                "symbols",
                "decisions",
                "wall s",
                "process CPU s",
                "CPU us per signal",
                "wall us per signal",
            ],
            [row for pair in pairs for row in pair.rows],
        )
    )
    print()
    out = []
    for pair in pairs:
        target = Target(
            f"(e) CPU per signal, {pair.name}",
            f"{pair.spread:.2f}x apart",
            f"<= {SCALING_TOLERANCE:g}x",
            _verdict(pair.spread <= SCALING_TOLERANCE),
        )
        targets.append(target)
        out.append((pair, target))
    return out


@dataclass
class CycleCost:
    """What (g) takes from (f)."""

    cycles: int  # at batch size 1: one per signal
    cpu_1: float  # process CPU, batch size 1
    cpu_500: float
    ratio: float
    target: Target


def _part_f(dbs: Databases, lines: int | None, targets: list[Target]) -> CycleCost:
    signals = bundled_signals()
    what = "the bundled sample"
    if lines is not None:
        signals = head_file(dbs.workdir / "sample-head.jsonl", signals, lines)
        what = f"the bundled sample's first {lines} lines (--quick)"
    print(f"(f) a cycle's fixed cost: {what}, SQLite, process CPU (every thread)")
    rows, ratio, results = bench_cycle_cost(dbs, signals)
    print(
        table(
            [
                "run",
                "signals",
                "cycles",
                "wall s",
                "process CPU s",
                "database threads CPU s",
                "CPU ms per cycle",
            ],
            rows,
        )
    )
    print()
    target = Target(
        f"(f) CPU, batch size 1 vs 500, {'sample head' if lines else 'sample'}",
        f"{ratio:.2f}x",
        f"<= {CYCLE_TARGET:g}x",
        _verdict(ratio <= CYCLE_TARGET),
    )
    targets.append(target)
    return CycleCost(
        results[1][1]["signals"], results[1][0].cpu, results[500][0].cpu, ratio, target
    )


# --------------------------------------------------------------------------------------------
# (g) limits: the best ratio each target could reach at all


def bench_cursor_floor(dbs: Databases, cycles: int, reps: int) -> dict[str, limits.Cost]:
    """The best (by process CPU) of `reps` runs of `cycles` cursor commits, each on a fresh
    database: bare, with a thread hop per commit, through torghut's `Database.run`."""
    ways: dict[str, Callable[[Path], limits.Cost]] = {
        "bare": lambda path: limits.cursor_commits(path, cycles, hop=False),
        "hop": lambda path: limits.cursor_commits(path, cycles, hop=True),
        "run": lambda path: limits.database_run_commits(path, cycles),
    }
    best: dict[str, limits.Cost] = {}
    for way, commits in ways.items():
        for _ in range(reps):
            path = Path(dbs.fresh("sqlite").removeprefix("sqlite:///"))
            gc.collect()
            cost = commits(path)
            if way not in best or cost.cpu < best[way].cpu:
                best[way] = cost
    return best


def bench_fixed_cost(dbs: Databases, kind: str, reps: int) -> tuple[float, float]:
    """torghut's fixed per-run cost on `kind`: the best wall time of a replay of an empty
    file and of a one-line file (the sample's first line), each on a fresh database."""
    empty = dbs.workdir / "empty.jsonl"
    empty.write_bytes(b"")
    one = head_file(dbs.workdir / "one-line.jsonl", bundled_signals(), 1)
    walls = []
    for path, n in ((empty, 0), (one, 1)):
        measured, summary, _ = _timed_replays(dbs, kind, path, reps, Meter())
        if summary["signals"] != n:
            raise AssertionError(f"{path.name} on {kind}: {n} signals expected, {summary}")
        walls.append(measured.wall)
    return walls[0], walls[1]


@dataclass
class SymbolsFloor:
    symbols: int
    signals: int
    cpu: float  # process CPU of floor_db.write_sqlite's timed region, best of the runs
    rows: int  # rows the floor writes (each row once per transaction)
    transactions: int

    @property
    def per_signal(self) -> float:
        return self.cpu / self.signals


def bench_symbols_floor(dbs: Databases, pair: Pair, reps: int) -> list[SymbolsFloor]:
    """floor_db's durable floor on (e)'s two files of different numbers of symbols, timed on
    the process's CPU clock, as (e) times torghut."""
    out = []
    for path in pair.paths:
        census = floor_db.Census()
        census_dsn = dbs.fresh("sqlite")
        with census.installed():
            summary = _replay(census_dsn, path)
        floor_plan = floor_db.plan(census.transactions)
        torghut_rows = floor_db.row_counts(census_dsn)
        best = float("inf")
        for _ in range(reps):
            floor_dsn = dbs.fresh("sqlite")
            gc.collect()
            cpu = floor_db.write_sqlite(
                path,
                Path(floor_dsn.removeprefix("sqlite:///")),
                floor_plan,
                clock=limits.process_cpu,
            )
            floor_db.check_same_rows(
                torghut_rows, floor_db.row_counts(floor_dsn), f"{path.name} floor"
            )
            best = min(best, cpu)
        symbols = len({json.loads(line)["symbol"] for line in path.read_text().splitlines()})
        rows = sum(len(op.rows) for ops in floor_plan for op in ops)
        out.append(SymbolsFloor(symbols, summary["signals"], best, rows, len(floor_plan)))
    return out


def _part_g(
    dbs: Databases,
    reps: int,
    floors: list[FloorResult],
    read: ReadPath,
    symbols: tuple[Pair, Target],
    cycle: CycleCost,
) -> None:
    print(
        "(g) limits: the best ratio each target could reach at all, measured in this run "
        f"(shown, not targets); best of {reps}, fresh databases"
    )
    _limit_cycle(dbs, reps, cycle)
    fixed, plain = _limit_read(dbs, reps, floors, read)
    _limit_decisions(reps, floors, fixed, plain)
    _limit_symbols(dbs, reps, *symbols)


def _limit_cycle(dbs: Databases, reps: int, cycle: CycleCost) -> None:
    best = bench_cursor_floor(dbs, cycle.cycles, reps)
    print(
        f"(g1) (f)'s per-cycle durable floor: {cycle.cycles:,} cycles, each one transaction "
        "moving the one row of signal_cursors, bare sqlite3, torghut's pragmas (WAL, "
        "synchronous=NORMAL); process CPU (every thread)"
    )
    rows = [
        [
            "torghut TRADING_BATCH_SIZE=1 (from (f))",
            f"{cycle.cpu_1:.3f}",
            f"{cycle.cpu_1 / cycle.cycles * 1e6:.0f}",
            "-",
            f"{cycle.ratio:.2f}",
            "-",
        ],
        ["torghut TRADING_BATCH_SIZE=500 (from (f))", f"{cycle.cpu_500:.3f}", "-", "-", "1", "-"],
    ]
    for way, label in (
        ("bare", "floor: one cursor commit per cycle"),
        ("hop", "floor: the same, each handed to a thread and awaited (as Database.run)"),
        ("run", "  (attribution) the same through torghut's Database.run (a session each)"),
    ):
        cost = best[way]
        rows.append(
            [
                label,
                f"{cost.cpu:.3f}",
                f"{cost.cpu_per_cycle_us:.0f}",
                f"{cost.wall:.3f}",
                f"{cost.cpu / cycle.cpu_500:.2f}",
                f"{(cost.cpu + cycle.cpu_500) / cycle.cpu_500:.2f}",
            ]
        )
    print(
        table(
            [
                "run",
                "process CPU s",
                "CPU us per cycle",
                "wall s",
                "/ torghut batch-500 CPU",
                "(+ batch-500 CPU) / batch-500 CPU",
            ],
            rows,
        )
    )
    bare, hop, run = best["bare"], best["hop"], best["run"]
    alone = bare.cpu / cycle.cpu_500
    with_work = (bare.cpu + cycle.cpu_500) / cycle.cpu_500
    print(
        f"target <= {CYCLE_TARGET:g}x, torghut {cycle.ratio:.2f}x. The lowest (f) any design "
        f"that durably commits its cursor once per cycle can reach: {alone:.2f}x if everything "
        f"but the commits were free, {with_work:.2f}x if a cycle cost only its commit on top "
        f"of batch-500's work; a thread hop per commit costs "
        f"{(hop.cpu - bare.cpu) / hop.cycles * 1e6:.0f} us CPU more per cycle, torghut's "
        f"Database.run {(run.cpu - bare.cpu) / run.cycles * 1e6:.0f} us more"
    )
    print()
    cycle.target.limit = (
        "limit with one durable commit per cycle",
        f"{alone:.2f}x (commits alone); {with_work:.2f}x (+ batch-500's work); "
        f"{(hop.cpu + cycle.cpu_500) / cycle.cpu_500:.2f}x (+ a thread hop per commit)",
    )


def _limit_read(
    dbs: Databases, reps: int, floors: list[FloorResult], read: ReadPath
) -> tuple[dict[str, tuple[float, float]], dict[Path, float]]:
    """Prints (g2); returns the fixed per-run costs by database and the plain loops by file."""
    kinds = ["sqlite"] + (["postgresql"] if dbs.schemas is not None else [])
    # Short runs, swung by the load of this shared machine: twice the runs.
    fixed = {kind: bench_fixed_cost(dbs, kind, 2 * reps) for kind in kinds}
    print(
        "(g2) (b) and (d)'s read floors: torghut's fixed per-run cost (a replay of an empty "
        "file, of a one-line file: TRADING_BATCH_SIZE=500, no gate, fresh database) and the "
        f"parse loop of (d) (lines into validated Signals); best of {2 * reps} and 10"
    )
    print(
        table(
            ["database", "empty file replay s", "one-line file replay s"],
            [[kind, f"{e:.4f}", f"{o:.4f}"] for kind, (e, o) in fixed.items()],
        )
    )
    parse: dict[Path, float] = {}
    plain: dict[Path, float] = {}
    for path in [*dict.fromkeys(r.path for r in floors), read.quiet]:
        parse[path], _ = _best(parse_loop, path, 10)
        plain[path], _ = _best(plain_loop, path, 10)
    decide, _ = _best(decide_loop, read.quiet, 10)
    cases: list[tuple[str, str, Path, float, float, float, Target | None]] = [
        (r.kind, f"(b) {r.label}", r.path, r.torghut.wall, r.floor_wall, r.ratio, r.target)
        for r in floors
    ]
    cases.append(
        (
            "sqlite",
            "(d) no signal fires",
            read.quiet,
            read.plain_s / read.ratio,
            read.plain_s,
            read.ratio,
            read.target,
        )
    )
    rows = []
    for kind, label, path, torghut_s, base, ratio, target in cases:
        least = parse[path] + fixed[kind][0]
        limit = base / least
        quiet = label.startswith("(d)")
        goal = QUIET_TARGET if quiet else FLOOR_TARGET
        # The tighter limit adds what no implementation can skip either: for (b), the floor's
        # own writes (the floor less its read + json.loads loop, which parsing already counts);
        # for (d), the band and the strategy asked about each signal (the decide loop less the
        # parse loop).
        must = decide - parse[path] if quiet else max(0.0, base - plain[path])
        tight = base / (least + must)
        rows.append(
            [
                kind,
                label,
                f"{torghut_s:.3f}",
                f"{parse[path]:.4f}",
                f"{least:.4f}",
                f"{base:.4f}",
                f"{ratio:.3f}",
                f"{limit:.3f}",
                f"{must:.4f}",
                f"{tight:.3f}",
                f">= {goal:g}",
            ]
        )
        if target is not None:
            what = "the band and the strategy" if quiet else "the floor's own writes"
            target.limit = (
                f"limit: all but parsing, the fixed per-run cost and {what} free",
                f"{tight:.3f}x ({base:.4f} s / ({parse[path]:.4f} + {fixed[kind][0]:.4f} + "
                f"{must:.4f}) s); {limit:.3f}x without {what}",
            )
    print(
        table(
            [
                "database",
                "file",
                "torghut s",
                "parse loop s",
                "parse + empty-file replay s",
                "baseline s (floor; (d): json loop)",
                "torghut ratio",
                "limit: baseline / (parse + fixed)",
                "+ unskippable s",
                "tight limit",
                "target",
            ],
            rows,
        )
    )
    print(
        "limit: the ratio torghut would reach if everything but parsing the file and its fixed "
        "per-run cost (the empty file's replay) were free. Tight limit: the same, plus what no "
        "implementation can skip either: for (b) the floor's own writes (floor less its "
        "read + json.loads loop), for (d) each signal's price through the band and the "
        f"built-in strategy asked (parse + band + strategy loop {decide:.4f} s less the parse "
        "loop)"
    )
    print()
    return fixed, plain


def _limit_decisions(
    reps: int,
    floors: list[FloorResult],
    fixed: dict[str, tuple[float, float]],
    plain: dict[Path, float],
) -> None:
    """(g4): (b) against the floor plus torghut's own decision work (`limits.decision_work`:
    parse, strategy, judging, the simulated broker's fills, in memory), so that what is left
    of the gap is the pipeline, the rows and the database, not the deciding."""
    work: dict[Path, tuple[float, int]] = {}
    for path in dict.fromkeys(r.path for r in floors):
        work[path] = _best(lambda p: limits.decision_work(p, 500, SIM_CASH), path, reps)
    print(
        "(g4) (b) against the floor plus the decision work: torghut's own deciding code as it "
        "is (lines parsed, the built-in strategy, CONTRACT §8's checks and risk against the "
        "batch ledger, the simulated broker's fill on its in-memory book), with no pipeline, "
        f"no row and no database (limits.decision_work); best of {reps}"
    )
    rows = []
    for r in floors:
        decided_s, filled = work[r.path]
        own_writes = max(0.0, r.floor_wall - plain[r.path])
        least = decided_s + fixed[r.kind][0] + own_writes
        limit = r.floor_wall / least
        against = (r.floor_wall + decided_s) / r.torghut.wall
        # (g5): the same with the floor's rows written through SQLAlchemy Core instead.
        library_writes = max(0.0, r.library_wall - plain[r.path])
        library_limit = r.floor_wall / (decided_s + fixed[r.kind][0] + library_writes)
        rows.append(
            [
                r.kind,
                r.label,
                f"{r.torghut.wall:.3f}",
                f"{r.floor_wall:.4f}",
                f"{decided_s:.4f}",
                f"{filled:,}",
                f"{decided_s / max(filled, 1) * 1e6:.1f}",
                f"{limit:.3f}",
                f"{against:.3f}",
                f"{r.library_wall:.4f}",
                f"{library_limit:.3f}",
            ]
        )
        if r.target is not None:
            r.target.limit = (
                "limit: all but deciding, the fixed per-run cost and the floor's own writes free",
                f"{limit:.3f}x ({r.floor_wall:.4f} s / ({decided_s:.4f} + {fixed[r.kind][0]:.4f} "
                f"+ {own_writes:.4f}) s); torghut vs floor + deciding {against:.3f}x; "
                f"{library_limit:.3f}x with the rows written through SQLAlchemy Core (g5)",
            )
    print(
        table(
            [
                "database",
                "file",
                "torghut s",
                "floor s",
                "deciding s",
                "decisions filled",
                "deciding us per decision",
                "limit: floor / (deciding + fixed + floor's writes)",
                "(floor + deciding) / torghut",
                "(g5) library floor s",
                "(g5) limit: floor / (deciding + fixed + library floor's writes)",
            ],
            rows,
        )
    )
    print(
        "limit: the ratio torghut would reach if its pipeline, its rows' building and binding "
        "and its database plumbing were free, its deciding code unchanged; the last column: "
        "torghut against the floor plus that deciding, i.e. what the plumbing costs. (g5) "
        "library floor: the floor's very rows written through SQLAlchemy Core, the library "
        "the project's standards name for the database, as it is meant to be used "
        "(floor_db.write_library: one engine.begin() per transaction, execute(statement, "
        "rows), torghut's column types binding the values); its limit: the ratio torghut "
        "would reach if it did nothing but decide and hand the rows to that library"
    )
    print()


def _limit_symbols(dbs: Databases, reps: int, pair: Pair, target: Target) -> None:
    floor = bench_symbols_floor(dbs, pair, reps)
    print(
        f"(g3) (e)'s {pair.name}: floor_db's durable floor on the same two files (the rows "
        "torghut writes, bare sqlite3), process CPU of its timed region (read, json.loads, "
        f"write), best of {reps}"
    )
    rows = []
    for f, torghut in zip(floor, pair.per_signal, strict=True):
        rows.append(
            [
                str(f.symbols),
                f"{f.signals:,}",
                f"{f.rows:,}",
                str(f.transactions),
                f"{f.cpu:.3f}",
                f"{f.per_signal * 1e6:.1f}",
                f"{torghut * 1e6:.1f}",
                f"{(torghut - f.per_signal) * 1e6:.1f}",
            ]
        )
    print(
        table(
            [
                "symbols",
                "signals",
                "floor rows",
                "floor transactions",
                "floor CPU s",
                "floor CPU us per signal",
                "torghut CPU us per signal (e)",
                "torghut - floor us",
            ],
            rows,
        )
    )
    spread = max(f.per_signal for f in floor) / min(f.per_signal for f in floor)
    rest = [t - f.per_signal for f, t in zip(floor, pair.per_signal, strict=True)]
    rest_spread = max(rest) / min(rest) if min(rest) > 0 else float("inf")
    print(
        f"CPU per signal apart: torghut {pair.spread:.2f}x, the floor {spread:.2f}x, torghut "
        f"minus the floor {rest_spread:.2f}x (target <= {SCALING_TOLERANCE:g}x)"
    )
    print()
    target.limit = (
        "the floor's own CPU per signal (rows any writer must write)",
        f"{spread:.2f}x apart; torghut minus the floor {rest_spread:.2f}x",
    )


def _summary_rows(targets: list[Target]) -> list[list[str]]:
    rows = []
    for t in targets:
        rows.append([t.name, t.measured, t.target, t.status])
        if t.status == "MISS" and t.limit is not None:
            rows.append([f"  {t.limit[0]}", t.limit[1], "(shown, not a target)", ""])
    return rows


if __name__ == "__main__":
    sys.exit(main())
