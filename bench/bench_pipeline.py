"""Benchmarks of the whole trading pipeline, through `torghut.replay.run_replay`.

(a) Review concurrency: one batch of 50 buy decisions (50 symbols, one event_ts), each reviewed
    by a local Jangar-compatible gateway (`DevGateway`) that takes 1 s per review, with the gate
    enforced (LLM_SHADOW_MODE=false, LLM_FAIL_MODE=veto). Wall time with LLM_MAX_CONCURRENCY=16
    against the same replay with LLM_MAX_CONCURRENCY=1 (the baseline). Target: at least 8x.
(b) Throughput without the gate (LLM_ENABLED=false): a generated file where every line fires a
    buy (100 symbols per timestamp, distinct timestamps), replayed end to end on the simulated
    broker, against a plain loop that only reads the same file and `json.loads` each line (the
    baseline). Target: torghut's signals/s at least a tenth of the plain loop's.

Every replay gets a fresh SQLite database in a temporary directory, migrated before its clock
starts; a run whose work did not
happen as expected (decision, review or submission counts) fails before any ratio is printed.

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from torghut.config import load_settings
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torghut.config import load_settings

from tables import table  # bench/tables.py (scripts run from bench/)
from torghut.db.engine import upgrade
from torghut.devgateway import DevGateway, DevGatewayConfig
from torghut.replay import run_replay
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


def bench_concurrency(
    workdir: Path, n: int, latency: float
) -> tuple[list[list[str]], float]:
    signals = one_batch_file(workdir / "one_batch.jsonl", n)
    results = {}
    for concurrency in (16, 1):
        wall, summary = asyncio.run(_gated_replay(workdir, signals, concurrency, latency))
        _check_gated(summary, n, f"LLM_MAX_CONCURRENCY={concurrency}")
        results[concurrency] = (wall, summary)
    ratio = results[1][0] / results[16][0]
    rows = []
    for concurrency, label in ((16, "torghut LLM_MAX_CONCURRENCY=16"),
                               (1, "torghut LLM_MAX_CONCURRENCY=1 (baseline)")):
        wall, summary = results[concurrency]
        rows.append([
            label, str(summary["decisions"]), str(summary["reviews"].get("approve", 0)),
            str(summary["submitted"]), f"{wall:.2f}", f"{n * latency / wall:.2f}",
            f"{results[1][0] / wall:.2f}",
        ])
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


def _best(fn: Any, path: Path, reps: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(reps):
        started = time.perf_counter()
        count = fn(path)
        best = min(best, time.perf_counter() - started)
    return best, count


def _ungated_settings(workdir: Path) -> Any:
    # Cash enough that no order is refused: every decision takes the full path to the broker.
    return _settings(workdir, "ungated", LLM_ENABLED="false", TRADING_SIM_CASH="1000000000")


def bench_throughput(
    workdir: Path, n: int, profile: bool
) -> tuple[list[list[str]], float, str | None]:
    signals = many_batches_file(workdir / "many_batches.jsonl", n)
    settings = _ungated_settings(workdir)
    started = time.perf_counter()
    summary = asyncio.run(run_replay(settings, signals))
    wall = time.perf_counter() - started
    if summary["signals"] != n or summary["decisions"] != n or summary["submitted"] != n:
        raise AssertionError(f"ungated replay: expected {n} signals, decisions and "
                             f"submissions, got {summary}")
    plain_s, plain_n = _best(plain_loop, signals, 5)
    parse_s, parse_n = _best(parse_loop, signals, 3)
    if plain_n != n or parse_n != n:
        raise AssertionError(f"baseline loops read {plain_n} / {parse_n} lines, expected {n}")
    ours = n / wall
    plain = n / plain_s
    parse = n / parse_s
    ratio = ours / plain
    rows = [
        ["torghut replay, LLM_ENABLED=false", str(n), str(summary["decisions"]),
         f"{wall:.3f}", f"{summary['decisions'] / wall:,.1f}", f"{ours:,.1f}",
         f"{ratio:.6f}"],
        ["  (attribution) parse_signal_line loop", str(n), "-", f"{parse_s:.3f}", "-",
         f"{parse:,.1f}", f"{parse / plain:.6f}"],
        ["plain loop: read + json.loads (baseline)", str(n), "-", f"{plain_s:.3f}", "-",
         f"{plain:,.1f}", "1.000000"],
    ]
    report = None
    if profile:
        report = _profile_replay(workdir, signals)
    return rows, ratio, report


def bench_sample(workdir: Path) -> tuple[list[str], float]:
    """The bundled sample: realistic density (about 3 % of signals fire a decision)."""
    from torghut.bootstrap import bundled_signals

    signals = bundled_signals()
    settings = _settings(workdir, "sample", LLM_ENABLED="false")
    started = time.perf_counter()
    summary = asyncio.run(run_replay(settings, signals))
    wall = time.perf_counter() - started
    if summary["decisions"] == 0:
        raise AssertionError(f"sample replay made no decision: {summary}")
    plain_s, plain_n = _best(plain_loop, signals, 5)
    ratio = (summary["signals"] / wall) / (plain_n / plain_s)
    row = ["torghut replay of the bundled sample", str(summary["signals"]),
           str(summary["decisions"]), f"{wall:.3f}", f"{summary['decisions'] / wall:,.1f}",
           f"{summary['signals'] / wall:,.1f}", f"{ratio:.6f}"]
    return row, ratio


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

    decisions = args.decisions or (20 if args.quick else 50)
    latency = args.latency if args.latency is not None else (0.5 if args.quick else 1.0)
    n_signals = args.signals or (300 if args.quick else 1500)

    print(f"python {sys.version.split()[0]} ({platform.python_implementation()}), "
          f"{platform.system()} {platform.release()} {platform.machine()}, "
          f"{os.cpu_count()} CPUs, pid {os.getpid()}")
    print()
    with tempfile.TemporaryDirectory(prefix="torghut-bench-") as tmp:
        workdir = Path(tmp)
        print(f"(a) one batch of {decisions} buy decisions, enforced review by a gateway taking "
              f"{latency:g} s per review")
        rows, ratio = bench_concurrency(workdir, decisions, latency)
        print(table(["run", "decisions", "approved", "submitted", "wall s",
                     "review-s / wall-s", "speed-up vs =1"], rows))
        concurrency_ok = ratio >= CONCURRENCY_TARGET
        rounds = -(-decisions // 16)
        print(f"ratio wall(=1) / wall(=16) = {ratio:.2f}x (target >= {CONCURRENCY_TARGET:g}x; "
              f"at most {decisions / rounds:.1f}x with zero overhead: {decisions} reviews in "
              f"{rounds} rounds of 16): {'PASS' if concurrency_ok else 'MISS'}")
        print()
        print(f"(b) {n_signals} signals, every one a buy decision ({SYMBOLS_PER_TS} symbols per "
              f"event_ts), no review gate, simulated broker, SQLite")
        rows, tratio, report = bench_throughput(workdir, n_signals, args.profile)
        sample_row, sample_ratio = bench_sample(workdir)
        rows.insert(1, sample_row)
        print(table(["run", "signals", "decisions", "wall s", "decisions/s", "signals/s",
                     "signals/s ratio"], rows))
        throughput_ok = tratio >= THROUGHPUT_TARGET and sample_ratio >= THROUGHPUT_TARGET
        print(f"ratio torghut / plain loop signals/s = {tratio:.6f} (every signal a decision), "
              f"{sample_ratio:.6f} (bundled sample) (target >= {THROUGHPUT_TARGET:g}): "
              f"{'PASS' if throughput_ok else 'MISS'}")
        if report is not None:
            print()
            print("cProfile of the replay in (b), top 20 by own time:")
            print(report)
    return 0 if concurrency_ok and throughput_ok else 1


if __name__ == "__main__":
    sys.exit(main())
