"""Run every benchmark of `bench/`, one after the other, each in its own subprocess.

    python bench/run.py            # full runs
    python bench/run.py --quick    # `--quick` is passed to every benchmark

Each benchmark's output is printed as it runs; a summary line per benchmark follows (PASS when
it exited 0, FAIL otherwise). Exits 1 when any benchmark failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# The benchmarks; the other modules of bench/ (tables.py, floor_db.py, floor_meter.py,
# make_sample_signals.py) are helpers they import or tools run by hand.
BENCHMARKS = (
    "bench_sse",
    "bench_provider",
    "bench_pipeline",
    "bench_clickhouse",
    "bench_replay_memory",
    "bench_answer",
    "bench_context",
    "bench_cli",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    args = parser.parse_args(argv)

    results: list[tuple[str, int, float]] = []
    for name in BENCHMARKS:
        command = [sys.executable, str(BENCH_DIR / f"{name}.py")]
        if args.quick:
            command.append("--quick")
        print(f"===== {name} {'--quick ' if args.quick else ''}=====", flush=True)
        started = time.perf_counter()
        code = subprocess.run(command, cwd=BENCH_DIR.parent, check=False).returncode
        results.append((name, code, time.perf_counter() - started))
        print(flush=True)

    print("===== summary =====")
    width = max(len(name) for name in BENCHMARKS)
    for name, code, seconds in results:
        verdict = "PASS" if code == 0 else f"FAIL (exit {code})"
        print(f"{name.ljust(width)}  {verdict}  {seconds:.1f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
