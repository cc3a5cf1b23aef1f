"""Benchmark the command line's start-up: `torghut --help` and the service's imports.

Run: `python bench/bench_cli.py` (or `--quick`). Each line is a fresh interpreter, timed from
spawn to exit; the figure is the best of N runs (the least disturbed by other load on the
machine), with the median beside it.

Baselines, measured in the same run:
  python          `python -c pass`: the interpreter's own floor;
  eager --help    `--help` with what the CLI imported up front before imports were made lazy
                  (the settings module, hence pydantic-settings and SQLAlchemy);
  eager service   the service's modules plus the openai SDK and alpaca-py (pandas, numpy),
                  which the service imported whatever the configuration.

Target: `torghut --help` under 0.3 s (best of N). Exits 1 when it is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tables import table  # bench/tables.py (scripts run from bench/)

SRC = Path(__file__).resolve().parents[1] / "src"
TARGET_HELP_SECONDS = 0.3
HELP = "from torghut.cli import main; main(['--help'])"
CASES: list[tuple[str, list[str]]] = [
    ("python (floor)", ["-c", "pass"]),
    ("eager --help (baseline)", ["-c", f"import sqlalchemy.exc, torghut.config; {HELP}"]),
    ("torghut --help", ["-m", "torghut.cli", "--help"]),
    ("torghut --version", ["-m", "torghut.cli", "--version"]),
    (
        "eager service (baseline)",
        ["-c", "import openai, alpaca.trading.client, torghut.bootstrap, torghut.main"],
    ),
    ("service imports", ["-c", "import torghut.bootstrap, torghut.main"]),
]


def time_once(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, check=True, timeout=120
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 runs per case instead of 9")
    parser.add_argument("--runs", type=int, help="runs per case")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 9)
    for _, case in CASES:  # warm the file cache and the bytecode once, untimed
        time_once(case)
    results: dict[str, tuple[float, float]] = {}
    # Interleaved rounds, so that a burst of load on the machine hits every case alike.
    samples: dict[str, list[float]] = {name: [] for name, _ in CASES}
    for _ in range(runs):
        for name, case in CASES:
            samples[name].append(time_once(case))
    for name, values in samples.items():
        results[name] = (min(values), statistics.median(values))
    rows = [[name, f"{best:.3f}", f"{median:.3f}"] for name, (best, median) in results.items()]
    print(f"start-up, {runs} runs each, seconds")
    print(table(["case", "best", "median"], rows))
    help_best = results["torghut --help"][0]
    eager_best = results["eager --help (baseline)"][0]
    service, eager_service = results["service imports"][0], results["eager service (baseline)"][0]
    print(
        f"--help: {help_best:.3f} s vs {eager_best:.3f} s eager ({eager_best / help_best:.1f}x); "
        f"service imports {service:.3f} s vs {eager_service:.3f} s eager"
    )
    ok = help_best < TARGET_HELP_SECONDS
    print(f"target --help < {TARGET_HELP_SECONDS} s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
