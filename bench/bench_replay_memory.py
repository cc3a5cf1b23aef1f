"""Peak memory of a replay over a long signal file (issue 11 item 6).

A 750,000-line file (about 100 MB) is generated from the bundled sample, each copy shifted by a
day so every line is a distinct signal. Each measurement runs in a fresh Python process and
reports its own peak RSS (`ru_maxrss`):

- baseline, "whole file in memory": what the source did before streaming (every line parsed
  into a `Signal`, kept in a dict by key, then sorted into one list), reimplemented here;
- torghut's `ReplaySignalSource`: the file indexed once, then read batch by batch (500) with
  the cursor committed after each, on a fresh SQLite database, as the loop does;
- `torghut replay` end to end (the pipeline and the simulated broker; skipped with --quick).

Target: the streaming source and `torghut replay` under 250 MB, whatever the file's length.

    python bench/bench_replay_memory.py            # 750,000 lines
    python bench/bench_replay_memory.py --quick    # 100,000 lines, no end-to-end replay
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from tables import table  # bench/tables.py (scripts run from bench/)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "torghut" / "data" / "sample_signals.jsonl"
TARGET_MB = 250.0

_PRELUDE = f"""
import resource, sys
sys.path.insert(0, {str(ROOT / "src")!r})
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

BASELINE = (
    _PRELUDE
    + """
from torghut.trading.signals import parse_signal_line, signal_key
by_key = {}
with open(sys.argv[1], "rb") as handle:
    for lineno, raw in enumerate(handle, start=1):
        signal = parse_signal_line(raw.decode(), lineno)
        by_key.setdefault(signal_key(signal), signal)
signals = [by_key[k] for k in sorted(by_key)]
print(len(signals), peak_mb())
"""
)

STREAMING = (
    _PRELUDE
    + """
import asyncio
from pathlib import Path
from torghut.db.engine import Database, upgrade
from torghut.trading.signals import ReplaySignalSource

async def main():
    dsn = f"sqlite:///{sys.argv[2]}"
    upgrade(dsn)
    db = Database(dsn)
    source = ReplaySignalSource(Path(sys.argv[1]), db)
    seen = 0
    while batch := await source.fetch(500):
        seen += len(batch)
        await source.commit(batch)
    await source.aclose()
    await db.aclose()
    return seen

print(asyncio.run(main()), peak_mb())
"""
)

END_TO_END = (
    _PRELUDE
    + """
import os, subprocess
env = dict(os.environ, DB_DSN=f"sqlite:///{sys.argv[2]}", PYTHONPATH=sys.path[0])
done = subprocess.run([sys.executable, "-m", "torghut.cli", "replay", "--signals", sys.argv[1]],
                      env=env, capture_output=True, text=True, check=False)
summary = json.loads(done.stdout) if done.returncode == 0 else {}
print(summary.get("signals", -1),
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
""".replace("import os, subprocess", "import json, os, subprocess")
)


def make_file(path: Path, lines: int) -> int:
    """`lines` signals: the sample again and again, each copy one day later."""
    sample = [json.loads(text) for text in SAMPLE.read_text(encoding="utf-8").splitlines()]
    written = 0
    with path.open("w", encoding="utf-8") as out:
        copy = 0
        while written < lines:
            shift = timedelta(days=copy)
            for row in sample:
                if written == lines:
                    break
                ts = datetime.fromisoformat(row["event_ts"].replace("Z", "+00:00")) + shift
                out.write(json.dumps({**row, "event_ts": ts.isoformat()}) + "\n")
                written += 1
            copy += 1
    return path.stat().st_size


def measure(script: str, *args: str) -> tuple[int, float, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False, cwd=ROOT
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr[-2000:]}")
    count, peak = done.stdout.split()
    return int(count), float(peak), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 lines, no end to end")
    parser.add_argument("--lines", type=int, help="override the file's length")
    args = parser.parse_args(argv)
    lines = args.lines or (100_000 if args.quick else 750_000)

    with tempfile.TemporaryDirectory(prefix="torghut-bench-") as tmp:
        path = Path(tmp) / "signals.jsonl"
        size = make_file(path, lines)
        print(
            f"{lines:,} lines, {size / 1e6:.0f} MB; Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cores"
        )
        rows: list[list[str]] = []
        failed = False
        runs = [
            ("baseline: whole file in memory", BASELINE, False),
            ("ReplaySignalSource (streaming)", STREAMING, True),
        ]
        if not args.quick:
            runs.append(("torghut replay, end to end", END_TO_END, True))
        for i, (name, script, targeted) in enumerate(runs):
            count, peak, seconds = measure(script, str(path), str(Path(tmp) / f"db{i}.sqlite"))
            if count != lines:
                raise SystemExit(f"{name}: read {count} signals, expected {lines}")
            verdict = "-"
            if targeted:
                verdict = "ok" if peak < TARGET_MB else "MISSED"
                failed |= peak >= TARGET_MB
            rows.append([name, f"{peak:,.0f} MB", f"{seconds:.1f} s", verdict])
        print(table(["reader", "peak RSS", "wall", f"< {TARGET_MB:.0f} MB"], rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
