"""Benchmark the command line's start-up: `torghut --help`, `torghut llm review` and the
service's imports.

Run: `python bench/bench_cli.py` (or `--quick`). Each run is a fresh interpreter; the figure is
the best of N runs (the least disturbed by other load on the machine), with the median beside
it. Rounds are interleaved, so that a burst of load hits every case alike.

Two clocks:
  exit      from spawn to the process's exit (`--help`, `--version`, imports);
  on wire   from spawn (`time.time()` in this process right before it) to the moment the
            review's request line (`POST /openai/v1/chat/completions`) reaches a loopback
            gateway run by this bench, which stamps it on arrival and answers a recorded
            Jangar stream (tests/fixtures/jangar/approve_clean.sse) so that the command exits
            normally; the models check (`GET /openai/v1/models`) that precedes it is shown too.
            `llm review` runs as an operator's dry run: no `.env`, no database file (DB_DSN
            names a missing SQLite file), no `--signals`.

Baselines, measured in the same run:
  python                 `python -c pass`: the interpreter's own floor;
  eager --help           `--help` with what the CLI imported up front before imports were made
                         lazy (the settings module, hence pydantic-settings and SQLAlchemy);
  eager llm review       `llm review` with what it imported before it was made lazy (SQLAlchemy
                         and its ORM, the service's wiring `torghut.bootstrap`, the database
                         modules and Alembic, the evaluation package);
  httpx floor            the imports no review can do without (asyncio, httpx, pydantic-settings)
                         and one request with httpx: what is left once our own code costs nothing;
  eager service          the service's modules plus the openai SDK and alpaca-py (pandas, numpy),
                         which the service imported whatever the configuration.

Shown, not targets: the review and its floor without the development extras (`... no dev`).
httpx imports trio when it is installed (httpcore picks its lock class at import) and its
command-line client (rich, pygments) when those are: here they come with selenium and
schemathesis (the `dev` extra), about 0.1 s that a production install (`pip install .`) never
imports. Those rows hide the three packages (None in `sys.modules`: what an import of a package
that is not installed raises) to show what the image would see.

Targets: `torghut --help` and `torghut llm review` (on the wire) under 0.3 s, best of N. Exits 1
when either is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tables import table  # bench/tables.py (scripts run from bench/)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STREAM = ROOT / "tests" / "fixtures" / "jangar" / "approve_clean.sse"
TARGET_SECONDS = 0.3
MODEL = "gpt-5.3-codex"  # LLM_MODEL's default, the model of the recorded stream
REVIEW_PATH = "/openai/v1/chat/completions"
DECISION = (
    '{"strategy_id": "manual", "symbol": "AAPL", "action": "buy", "qty": 5, '
    '"order_type": "market", "time_in_force": "day", "event_ts": "2026-11-25T15:30:00Z", '
    '"timeframe": "1Min", "params": {"price": 231.5}}'
)
HELP = "from torghut.cli import main; main(['--help'])"
REVIEW_ARGS = ["llm", "review", "--decision", "decision.json"]
REVIEW = f"import sys; from torghut.cli import main; sys.exit(main({REVIEW_ARGS!r}))"
# What `llm review` imported before: dryrun.py's module-level imports and what they pull in.
EAGER_REVIEW = (
    "import sqlalchemy.orm, torghut.bootstrap, torghut.db.tables, torghut.evaluation.command"
)
HTTPX_FLOOR = (
    "import asyncio, httpx, pydantic_settings, os; "
    "httpx.post(os.environ['JANGAR_BASE_URL'] + '/openai/v1/chat/completions', "
    f"json={{'model': '{MODEL}', 'stream': True, 'messages': []}}).read()"
)

# Installed here only with the `dev` extra (selenium, schemathesis); see the module docstring.
NO_DEV = "import sys; sys.modules.update(dict.fromkeys(('trio', 'rich', 'pygments')))"

# (name, interpreter arguments, clock): "exit" or "wire".
CASES: list[tuple[str, list[str], str]] = [
    ("python (floor)", ["-c", "pass"], "exit"),
    ("eager --help (baseline)", ["-c", f"import sqlalchemy.exc, torghut.config; {HELP}"], "exit"),
    ("torghut --help", ["-m", "torghut.cli", "--help"], "exit"),
    ("torghut --version", ["-m", "torghut.cli", "--version"], "exit"),
    ("httpx floor (baseline)", ["-c", HTTPX_FLOOR], "wire"),
    ("eager llm review (baseline)", ["-c", f"{EAGER_REVIEW}; {REVIEW}"], "wire"),
    ("torghut llm review", ["-m", "torghut.cli", *REVIEW_ARGS], "wire"),
    ("httpx floor, no dev", ["-c", f"{NO_DEV}; {HTTPX_FLOOR}"], "wire"),
    ("torghut llm review, no dev", ["-c", f"{NO_DEV}; {REVIEW}"], "wire"),
    (
        "eager service (baseline)",
        ["-c", "import openai, alpaca.trading.client, torghut.bootstrap, torghut.main"],
        "exit",
    ),
    ("service imports", ["-c", "import torghut.bootstrap, torghut.main"], "exit"),
]


@dataclass
class Gateway:
    """A loopback Jangar stand-in on its own thread: stamps each request line with
    `time.time()` as it arrives, then answers the models list or the recorded stream."""

    stream: bytes
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                self.arrivals.append((time.time(), line.decode("latin-1").strip()))
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                if line.startswith(b"GET") and b"/models" in line:
                    body = f'{{"object":"list","data":[{{"id":"{MODEL}"}}]}}'.encode()
                    kind = "application/json"
                else:
                    body, kind = self.stream, "text/event-stream"
                writer.write(
                    f"HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\n"
                    f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def review_arrival(self, since: int) -> tuple[float | None, float | None]:
        """(the models check, the review request) among the arrivals after index `since`."""
        models = review = None
        for stamp, line in self.arrivals[since:]:
            if models is None and "/models" in line:
                models = stamp
            if review is None and REVIEW_PATH in line:
                review = stamp
        return models, review


def run_once(args: list[str], clock: str, gateway: Gateway, workdir: Path) -> tuple[float, float]:
    """Seconds to exit, or to the review request on the wire (and to the models check)."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "JANGAR_BASE_URL": f"http://127.0.0.1:{gateway.port}",
        "DB_DSN": f"sqlite:///{workdir / 'missing.db'}",
    }
    seen = len(gateway.arrivals)
    started = time.time()
    subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )
    ended = time.time()
    if clock == "exit":
        return ended - started, float("nan")
    models, review = gateway.review_arrival(seen)
    if review is None:
        raise RuntimeError(f"{args}: no review request reached the gateway")
    return review - started, (models - started) if models is not None else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 runs per case instead of 9")
    parser.add_argument("--runs", type=int, help="runs per case")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 9)
    gateway = Gateway(STREAM.read_bytes())
    gateway.start()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        workdir = Path(tmp)
        (workdir / "decision.json").write_text(DECISION, encoding="utf-8")
        for _, case, clock in CASES:  # warm the file cache and the bytecode once, untimed
            run_once(case, clock, gateway, workdir)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in CASES}
        for _ in range(runs):
            for name, case, clock in CASES:
                samples[name].append(run_once(case, clock, gateway, workdir))
    best: dict[str, float] = {}
    rows = []
    for name, _, clock in CASES:
        values = [s[0] for s in samples[name]]
        best[name] = min(values)
        models = min(s[1] for s in samples[name])
        rows.append(
            [
                name,
                "on wire" if clock == "wire" else "exit",
                f"{best[name]:.3f}",
                f"{statistics.median(values):.3f}",
                "" if math.isnan(models) else f"{models:.3f}",
            ]
        )
    print(f"start-up, {runs} runs each, seconds")
    print(table(["case", "clock", "best", "median", "models check"], rows))
    help_best, eager_help = best["torghut --help"], best["eager --help (baseline)"]
    review_best, eager_review = best["torghut llm review"], best["eager llm review (baseline)"]
    floor = best["httpx floor (baseline)"]
    service, eager_service = best["service imports"], best["eager service (baseline)"]
    print(
        f"--help: {help_best:.3f} s vs {eager_help:.3f} s eager ({eager_help / help_best:.1f}x); "
        f"llm review on the wire: {review_best:.3f} s vs {eager_review:.3f} s eager "
        f"({eager_review / review_best:.1f}x), {review_best / floor:.2f}x the httpx floor "
        f"({floor:.3f} s); service imports {service:.3f} s vs {eager_service:.3f} s eager"
    )
    review_prod, floor_prod = best["torghut llm review, no dev"], best["httpx floor, no dev"]
    print(
        f"without the dev extras (`pip install .`): llm review {review_prod:.3f} s, "
        f"{review_prod / floor_prod:.2f}x its httpx floor ({floor_prod:.3f} s)"
    )
    ok = True
    for name, value in (("torghut --help", help_best), ("torghut llm review", review_best)):
        met = value < TARGET_SECONDS
        ok = ok and met
        print(f"target {name} < {TARGET_SECONDS} s: {value:.3f} s {'PASS' if met else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
