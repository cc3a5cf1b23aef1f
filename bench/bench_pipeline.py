"""Benchmarks of the whole trading pipeline, through `torghut.replay.run_replay`.

(a) Review concurrency: one batch of 50 buy decisions (50 symbols, one event_ts), each reviewed
    by a local Jangar-compatible gateway (`DevGateway`) that takes 1 s per review, with the gate
    enforced (LLM_SHADOW_MODE=false, LLM_FAIL_MODE=veto). Wall time with LLM_MAX_CONCURRENCY=16
    against the same replay with LLM_MAX_CONCURRENCY=1 (the baseline). Target: at least 8x.
(b) Throughput without the gate (LLM_ENABLED=false), replayed end to end on the simulated
    broker, against a plain loop that only reads the same file and `json.loads` each line (the
    baseline, best of 5). Target: torghut's signals/s at least a tenth of the plain loop's.
    Two files: the bundled sample (realistic: about 3 % of signals fire a decision) and a
    generated worst case where every line fires a buy (100 symbols per timestamp). For
    attribution, a file where no line fires (the read path alone: parse, strategy, cursor) and
    a loop that only parses lines into `Signal`s.

Every replay gets a fresh SQLite database in a temporary directory, migrated before its clock
starts, and each throughput replay is timed as the best of 3 (the machine's noise is tens of
milliseconds); the heap is frozen after the imports as `torghut replay` does. A run whose
work did not happen as expected (decision, review or submission counts) fails before any
ratio is printed.

    python bench/bench_pipeline.py            # full run
    python bench/bench_pipeline.py --quick    # 20 decisions and 0.5 s reviews in (a), smaller (b)
    python bench/bench_pipeline.py --profile  # also cProfile the replay of (b), top hotspots
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from torghut.config import load_settings
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torghut.config import load_settings

from tables import table  # bench/tables.py (scripts run from bench/)
from torghut.bootstrap import bundled_signals, freeze_startup_heap
from torghut.db.engine import upgrade
from torghut.devgateway import DevGateway, DevGatewayConfig
from torghut.replay import run_replay
from torghut.trading.session import SessionCalendar
from torghut.trading.signals import parse_signal_line

CONCURRENCY_TARGET = 8.0
THROUGHPUT_TARGET = 0.1
SYMBOLS_PER_TS = 100
BASE_TS = 1_741_012_200  # 2025-03-03T14:30:00Z


# --------------------------------------------------------------------------------------------
# Signal files


def _buy_line(symbol: str, ts: int) -> str:
    # macd above its signal and RSI under 35: the default strategy buys; at price 100 with the
    # default $1,000 notional cap it sizes 10 shares.
    return json.dumps(
        {
            "event_ts": ts,
            "symbol": symbol,
            "timeframe": "1Min",
            "macd": 0.25,
            "macd_signal": 0.05,
            "rsi14": 30.0,
            "price": 100,
        },
        separators=(",", ":"),
    )


def one_batch_file(path: Path, n: int) -> Path:
    """`n` buy signals on `n` different symbols, all at the same event_ts (one batch)."""
    path.write_text("".join(_buy_line(f"B{i:03d}", BASE_TS) + "\n" for i in range(n)))
    return path


def quiet_file(path: Path, n: int) -> Path:
    """`n` signals on which the default strategy does nothing (RSI 50, MACD under its signal)."""
    lines = (
        json.dumps(
            {
                "event_ts": BASE_TS + 60 * (i // SYMBOLS_PER_TS),
                "symbol": f"Q{i % SYMBOLS_PER_TS:03d}",
                "timeframe": "1Min",
                "macd": 0.01,
                "macd_signal": 0.05,
                "rsi14": 50.0,
                "price": 100,
            },
            separators=(",", ":"),
        )
        + "\n"
        for i in range(n)
    )
    path.write_text("".join(lines))
    return path


def many_batches_file(path: Path, n: int) -> Path:
    """`n` buy signals, `SYMBOLS_PER_TS` symbols per minute: every line fires a decision."""
    lines = (
        _buy_line(f"S{i % SYMBOLS_PER_TS:03d}", BASE_TS + 60 * (i // SYMBOLS_PER_TS)) + "\n"
        for i in range(n)
    )
    path.write_text("".join(lines))
    return path


# --------------------------------------------------------------------------------------------
# Replays


def _settings(workdir: Path, name: str, **extra: str) -> Any:
    db = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {"DB_DSN": f"sqlite:///{db}", "TRADING_BATCH_SIZE": "500", **extra}
    settings = load_settings(env, env_file=None)
    # Schema creation is not replay work: migrate before the clock starts (run_replay's own
    # upgrade is then a no-op check, inside the timed region like any replay's).
    upgrade(settings.db_dsn)
    return settings


async def _gated_replay(
    workdir: Path, signals: Path, concurrency: int, latency: float
) -> tuple[float, dict[str, Any]]:
    config = DevGatewayConfig(latency_seconds=latency, keepalive_seconds=0.5)
    async with DevGateway(config) as gateway:
        settings = _settings(
            workdir,
            f"gated-{concurrency}",
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


def bench_concurrency(workdir: Path, n: int, latency: float) -> tuple[list[list[str]], float]:
    signals = one_batch_file(workdir / "one_batch.jsonl", n)
    results = {}
    for concurrency in (16, 1):
        wall, summary = asyncio.run(_gated_replay(workdir, signals, concurrency, latency))
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


def plain_loop(path: Path) -> int:
    """The baseline: read the file and `json.loads` each line, nothing else."""
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                json.loads(line)
                count += 1
    return count


def parse_loop(path: Path) -> int:
    """For attribution only: read the file and build torghut `Signal`s (no pipeline)."""
    count = 0
    with path.open("rb") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                parse_signal_line(line.decode("utf-8"), lineno)
                count += 1
    return count


def durable_floor(path: Path, dsn: str) -> int:
    """For attribution only: the least any design that keeps each decision durably could do.
    Read and `json.loads` each line, then write, with the bare `sqlite3` module (no ORM, no
    asyncio, no strategy, risk or validation), the rows a submitted decision leaves in
    torghut's schema: its decision, its pending order, the simulated broker's order, position
    and cash, its execution, its final status, and the cursor; 500 lines a batch and four
    commits a batch, as the pipeline's transactions. Returns the decisions written."""
    db = sqlite3.connect(dsn.removeprefix("sqlite:///"), isolation_level=None)
    try:
        for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
            db.execute(f"PRAGMA {pragma}")  # as torghut's own connections
        now = "2026-01-01 00:00:00.000000"
        db.execute(
            "INSERT OR IGNORE INTO strategies (id, enabled, params, source, created_at, "
            "updated_at) VALUES ('floor', 1, '{}', 'bench', ?, ?)",
            (now, now),
        )
        db.execute(
            "INSERT OR IGNORE INTO sim_accounts (id, cash, updated_at) "
            "VALUES ('default', 1000000000, ?)",
            (now,),
        )
        with path.open("rb") as handle:
            lines = [json.loads(line) for line in handle if line.strip()]
        written = 0
        for start in range(0, len(lines), 500):
            batch = [(uuid.uuid4().hex, line) for line in lines[start : start + 500]]
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO trade_decisions (id, strategy_id, symbol, timeframe, action, qty, "
                "decision_json, decision_hash, status, event_ts, created_at, updated_at) "
                "VALUES (?, 'floor', ?, ?, 'buy', 10, ?, ?, 'planned', ?, ?, ?)",
                [
                    (
                        i,
                        x["symbol"],
                        x["timeframe"],
                        json.dumps(x),
                        f"{i}h",
                        str(x["event_ts"]),
                        now,
                        now,
                    )
                    for i, x in batch
                ],
            )
            db.execute("COMMIT")
            db.execute("BEGIN")
            db.executemany(
                "UPDATE trade_decisions SET pending_order_json = ?, updated_at = ? WHERE id = ?",
                [(json.dumps({"symbol": x["symbol"], "qty": "10"}), now, i) for i, x in batch],
            )
            db.execute("COMMIT")
            db.execute("BEGIN")
            db.execute(
                "UPDATE sim_accounts SET cash = cash - ?, updated_at = ? WHERE id = 'default'",
                (1000 * len(batch), now),
            )
            db.executemany(
                "INSERT INTO sim_orders (client_order_id, broker_order_id, symbol, side, "
                "order_type, time_in_force, qty, status, filled_qty, avg_fill_price, "
                "created_at, updated_at) VALUES (?, ?, ?, 'buy', 'market', 'day', 10, "
                "'filled', 10, 100, ?, ?)",
                [(f"{i}h", f"sim-{i}", x["symbol"], now, now) for i, x in batch],
            )
            db.executemany(
                "INSERT INTO sim_positions (symbol, qty, avg_entry_price, last_price, "
                "updated_at) VALUES (?, 10, 100, 100, ?) ON CONFLICT (symbol) DO UPDATE SET "
                "qty = qty + 10, updated_at = excluded.updated_at",
                [(x["symbol"], now) for _, x in batch],
            )
            db.execute("COMMIT")
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO executions (id, trade_decision_id, client_order_id, "
                "broker_order_id, broker, symbol, side, order_type, time_in_force, "
                "submitted_qty, filled_qty, avg_fill_price, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'sim', ?, 'buy', 'market', 'day', 10, 10, 100, 'filled', "
                "?, ?)",
                [
                    (uuid.uuid4().hex, i, f"{i}h", f"sim-{i}", x["symbol"], now, now)
                    for i, x in batch
                ],
            )
            db.executemany(
                "UPDATE trade_decisions SET status = 'filled', pending_order_json = NULL, "
                "executed_at = ?, updated_at = ? WHERE id = ?",
                [(now, now, i) for i, _ in batch],
            )
            db.execute(
                "INSERT INTO signal_cursors (source, event_ts, symbol, seq, updated_at) "
                "VALUES ('floor', ?, ?, 0, ?) ON CONFLICT (source) DO UPDATE SET "
                "event_ts = excluded.event_ts, symbol = excluded.symbol",
                (str(batch[-1][1]["event_ts"]), batch[-1][1]["symbol"], now),
            )
            db.execute("COMMIT")
            written += len(batch)
        return written
    finally:
        db.close()


def _best(fn: Any, path: Path, reps: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(reps):
        started = time.perf_counter()
        count = fn(path)
        best = min(best, time.perf_counter() - started)
    return best, count


def _ungated_settings(workdir: Path, name: str = "ungated") -> Any:
    # Cash enough that no order is refused: every decision takes the full path to the broker.
    return _settings(workdir, name, LLM_ENABLED="false", TRADING_SIM_CASH="1000000000")


def _best_replay(
    workdir: Path, signals: Path, name: str, reps: int = 3
) -> tuple[float, dict[str, Any]]:
    """Best wall time of `reps` replays, each on a fresh database."""
    best, summary = float("inf"), {}
    for _ in range(reps):
        settings = _ungated_settings(workdir, name)
        started = time.perf_counter()
        summary = asyncio.run(run_replay(settings, signals))
        best = min(best, time.perf_counter() - started)
    return best, summary


def _row(label: str, signals: int, decisions: int, wall: float, plain_rate: float) -> list[str]:
    rate = signals / wall
    per_decision = f"{decisions / wall:,.1f}" if decisions else "-"
    return [
        label,
        str(signals),
        str(decisions),
        f"{wall:.3f}",
        per_decision,
        f"{rate:,.1f}",
        f"{rate / plain_rate:.4f}",
    ]


def bench_throughput(
    workdir: Path, n: int, profile: bool
) -> tuple[list[list[str]], dict[str, float], str | None]:
    """Rows for the table, and the ratio of each file that has a target."""
    sample = bundled_signals()
    every = many_batches_file(workdir / "many_batches.jsonl", n)
    quiet = quiet_file(workdir / "quiet.jsonl", n)
    rows: list[list[str]] = []
    ratios: dict[str, float] = {}
    for key, label, path in (
        ("sample", "torghut replay, bundled sample", sample),
        ("every", "torghut replay, every signal a decision", every),
        ("", "  (attribution) torghut replay, no signal fires", quiet),
    ):
        wall, summary = _best_replay(workdir, path, "throughput")
        plain_s, plain_n = _best(plain_loop, path, 5)
        if summary["signals"] != plain_n or not summary["complete"]:
            raise AssertionError(f"{label}: read {plain_n} lines, replay says {summary}")
        if path is every and (summary["decisions"], summary["submitted"]) != (n, n):
            raise AssertionError(f"{label}: expected {n} decisions and submissions: {summary}")
        if path is sample and summary["decisions"] == 0:
            raise AssertionError(f"{label}: no decision: {summary}")
        if path is quiet and summary["decisions"] != 0:
            raise AssertionError(f"{label}: expected no decision: {summary}")
        plain_rate = plain_n / plain_s
        rows.append(_row(label, summary["signals"], summary["decisions"], wall, plain_rate))
        rows.append(
            [
                "  plain loop on that file: read + json.loads (baseline)",
                str(plain_n),
                "-",
                f"{plain_s:.3f}",
                "-",
                f"{plain_rate:,.1f}",
                "1.0000",
            ]
        )
        if key:
            ratios[key] = (summary["signals"] / wall) / plain_rate
    parse_s, parse_n = _best(parse_loop, every, 3)
    plain_s, _ = _best(plain_loop, every, 5)
    rows.append(
        [
            "  (attribution) parse_signal_line loop, worst-case file",
            str(parse_n),
            "-",
            f"{parse_s:.3f}",
            "-",
            f"{parse_n / parse_s:,.1f}",
            f"{plain_s / parse_s:.4f}",
        ]
    )
    floor_s = float("inf")
    for attempt in range(3):
        dsn = _ungated_settings(workdir, f"floor-{attempt}").db_dsn
        started = time.perf_counter()
        floor_n = durable_floor(every, dsn)
        floor_s = min(floor_s, time.perf_counter() - started)
    if floor_n != n:
        raise AssertionError(f"durable floor wrote {floor_n} decisions, expected {n}")
    rows.append(
        [
            "  (attribution) durable floor: bare sqlite3 writes, worst-case file",
            str(floor_n),
            str(floor_n),
            f"{floor_s:.3f}",
            f"{floor_n / floor_s:,.1f}",
            f"{floor_n / floor_s:,.1f}",
            f"{plain_s / floor_s:.4f}",
        ]
    )
    report = _profile_replay(workdir, every) if profile else None
    return rows, ratios, report


def _profile_replay(workdir: Path, signals: Path) -> str:
    settings = _ungated_settings(workdir)
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run_replay(settings, signals))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(20)
    return out.getvalue()


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--decisions", type=int, default=None, help="decisions in (a)")
    parser.add_argument("--latency", type=float, default=None, help="seconds per review in (a)")
    parser.add_argument("--signals", type=int, default=None, help="signals in (b)")
    parser.add_argument("--profile", action="store_true", help="cProfile the replay of (b)")
    args = parser.parse_args(argv)
    freeze_startup_heap()  # as `torghut replay` does, after its imports
    # The exchange calendar of the session check is loaded once per process, on first use
    # (about 0.4 s: pandas); load it before any clock starts, as a serving process has.
    SessionCalendar().load()

    decisions = args.decisions or (20 if args.quick else 50)
    latency = args.latency if args.latency is not None else (0.5 if args.quick else 1.0)
    n_signals = args.signals or (600 if args.quick else 5000)

    print(
        f"python {sys.version.split()[0]} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, pid {os.getpid()}"
    )
    print()
    with tempfile.TemporaryDirectory(prefix="torghut-bench-") as tmp:
        workdir = Path(tmp)
        print(
            f"(a) one batch of {decisions} buy decisions, enforced review by a gateway taking "
            f"{latency:g} s per review"
        )
        rows, ratio = bench_concurrency(workdir, decisions, latency)
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
        concurrency_ok = ratio >= CONCURRENCY_TARGET
        rounds = -(-decisions // 16)
        print(
            f"ratio wall(=1) / wall(=16) = {ratio:.2f}x (target >= {CONCURRENCY_TARGET:g}x; "
            f"at most {decisions / rounds:.1f}x with zero overhead: {decisions} reviews in "
            f"{rounds} rounds of 16): {'PASS' if concurrency_ok else 'MISS'}"
        )
        print()
        print(
            "(b) throughput without the review gate, simulated broker, SQLite, "
            f"TRADING_BATCH_SIZE=500; generated files of {n_signals} signals"
        )
        rows, ratios, report = bench_throughput(workdir, n_signals, args.profile)
        print(
            table(
                [
                    "run",
                    "signals",
                    "decisions",
                    "wall s",
                    "decisions/s",
                    "signals/s",
                    "ratio to its baseline",
                ],
                rows,
            )
        )
        throughput_ok = all(r >= THROUGHPUT_TARGET for r in ratios.values())
        print(
            f"ratio torghut / plain loop signals/s = {ratios['sample']:.4f} (bundled sample), "
            f"{ratios['every']:.4f} (every signal a decision) (target >= "
            f"{THROUGHPUT_TARGET:g}): {'PASS' if throughput_ok else 'MISS'}"
        )
        if report is not None:
            print()
            print("cProfile of the replay in (b), top 20 by own time:")
            print(report)
    return 0 if concurrency_ok and throughput_ok else 1


if __name__ == "__main__":
    sys.exit(main())
