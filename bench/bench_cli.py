"""Benchmark the command line's start-up: `torghut --help`, `torghut llm review` and the
service's imports, in a production install (the targets) and in the development venv.

Run: `python bench/bench_cli.py` (or `--quick`). Each run is a fresh interpreter; the figure is
the best of N runs (the least disturbed by other load on the machine), with the median beside
it. Rounds are interleaved, so that a burst of load hits every case alike; one untimed round
first warms the file cache and the bytecode.

Two clocks:
  exit      from spawn to the process's exit;
  on wire   from spawn (`time.time()` in this process right before it) to the moment the
            review's request line (`POST /openai/v1/chat/completions`) reaches a loopback
            gateway run by this bench, which stamps it on arrival and answers a recorded
            Jangar stream (tests/fixtures/jangar/approve_clean.sse) so that the command exits
            normally; the models check (`GET /openai/v1/models`) that precedes it is shown too.
            `llm review` runs as an operator's dry run: no `.env`, no database file (DB_DSN
            names a missing SQLite file), no `--signals`.

Production venv (`prod`): bench/.prod-venv, built by bench/prod_venv.py on first use and reused:
pyproject.toml's runtime dependencies only (no extras), the checkout's current source installed
non-editable (reinstalled whenever it changed; see that module for why an install and not `src`
on the path). Run with no PYTHONPATH, so nothing of the development venv or of src/ is
importable; a check run says which modules a review loaded from outside the venv and the
standard library (none expected) and whether trio, rich or pygments are installed (not expected).
  torghut --help         TARGET. The venv's `torghut` console script, as an operator types it.
  torghut llm review     TARGET, on the wire. The console script.
  python (floor)         `python -c pass`: the interpreter's own floor;
  httpx floor            the imports no review can do without (asyncio, httpx, pydantic-settings)
                         and one request with httpx: what is left once our own code costs nothing.

Development venv (`dev`): the interpreter running this bench (/work/main/.venv through
/work/wt/run, `pip install -e .[dev]`) with the checkout's src/ first on PYTHONPATH. Shown, not
targets. Its extras (selenium, schemathesis) install trio, rich and pygments, which httpx imports
whenever they are installed (httpcore picks its lock class at import; httpx's command-line client
is rich and pygments): the difference from the `prod` rows. `torghut` runs as `python -m
torghut.cli` here, as these rows always have, so that they compare with earlier figures.
  python (floor), torghut --help, torghut --version, httpx floor, torghut llm review: as above;
  eager --help           `--help` with what the CLI imported up front before imports were made
                         lazy (the settings module, hence pydantic-settings and SQLAlchemy);
  eager llm review       `llm review` with what it imported before it was made lazy (SQLAlchemy
                         and its ORM, the service's wiring `torghut.bootstrap`, the database
                         modules and Alembic, the evaluation package);
  eager service          the service's modules plus the openai SDK and alpaca-py (pandas, numpy),
                         which the service imported whatever the configuration;
  service imports        the service's modules as they are now.
(The earlier `... no dev` rows, which hid trio, rich and pygments in the development venv, are
gone: the production venv measures what they approximated.)

Targets: `torghut --help` and `torghut llm review` (on the wire) under 0.3 s, best of N, in the
production venv. When that venv cannot be built (no index, a failed install), the bench says so
and takes the targets from the development venv's rows instead, marked as such. Exits 1 only when
a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from typing import TypedDict

import prod_venv  # bench/prod_venv.py (scripts run from bench/)
from tables import table  # bench/tables.py

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
DEV_ONLY = ("trio", "rich", "pygments")  # installed by the dev extra; httpx imports them
# Untimed: a review, then where every loaded module came from (written to check.json).
CHECK = (
    "import importlib.util, json, os, sys; from torghut.cli import main; "
    f"code = main({REVIEW_ARGS!r}); import torghut; "
    "roots = tuple(p + os.sep for p in (sys.prefix, sys.base_prefix)); "
    "files = {getattr(m, '__file__', None) or '' for m in list(sys.modules.values())}; "
    "json.dump({'code': code, 'modules': len(sys.modules), 'torghut': torghut.__file__, "
    "'outside': sorted(f for f in files if f and not f.startswith(roots)), "
    "'path_outside': [p for p in sys.path if p and not p.startswith(roots)], "
    f"'dev_only': [n for n in {DEV_ONLY!r} if importlib.util.find_spec(n)]}}, "
    "open('check.json', 'w'))"
)


class ImportCheck(TypedDict):
    """What CHECK writes."""

    code: int
    modules: int
    torghut: str
    outside: list[str]
    path_outside: list[str]
    dev_only: list[str]


@dataclass(frozen=True)
class Case:
    where: str  # "prod" or "dev"
    name: str
    argv: list[str]  # the whole command line, the executable first
    clock: str  # "exit" or "wire"
    target: bool = False


def dev_cases() -> list[Case]:
    py = sys.executable
    return [
        Case("dev", "python (floor)", [py, "-c", "pass"], "exit"),
        Case(
            "dev",
            "eager --help (baseline)",
            [py, "-c", f"import sqlalchemy.exc, torghut.config; {HELP}"],
            "exit",
        ),
        Case("dev", "torghut --help", [py, "-m", "torghut.cli", "--help"], "exit"),
        Case("dev", "torghut --version", [py, "-m", "torghut.cli", "--version"], "exit"),
        Case("dev", "httpx floor (baseline)", [py, "-c", HTTPX_FLOOR], "wire"),
        Case("dev", "eager llm review (baseline)", [py, "-c", f"{EAGER_REVIEW}; {REVIEW}"], "wire"),
        Case("dev", "torghut llm review", [py, "-m", "torghut.cli", *REVIEW_ARGS], "wire"),
        Case(
            "dev",
            "eager service (baseline)",
            [py, "-c", "import openai, alpaca.trading.client, torghut.bootstrap, torghut.main"],
            "exit",
        ),
        Case(
            "dev", "service imports", [py, "-c", "import torghut.bootstrap, torghut.main"], "exit"
        ),
    ]


def prod_cases(venv: prod_venv.ProdVenv) -> list[Case]:
    py, cli = str(venv.python), str(venv.torghut)
    return [
        Case("prod", "python (floor)", [py, "-c", "pass"], "exit"),
        Case("prod", "torghut --help", [cli, "--help"], "exit", target=True),
        Case("prod", "httpx floor (baseline)", [py, "-c", HTTPX_FLOOR], "wire"),
        Case("prod", "torghut llm review", [cli, *REVIEW_ARGS], "wire", target=True),
    ]


def environment(where: str, gateway: Gateway, workdir: Path) -> dict[str, str]:
    """`prod`: no PYTHONPATH (only the venv's packages); `dev`: the checkout's src/ first."""
    if where == "prod":
        env = prod_venv.clean_env()
    else:
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env["JANGAR_BASE_URL"] = f"http://127.0.0.1:{gateway.port}"
    env["DB_DSN"] = f"sqlite:///{workdir / 'missing.db'}"
    return env


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


def run_once(case: Case, gateway: Gateway, workdir: Path) -> tuple[float, float]:
    """Seconds to exit, or to the review request on the wire (and to the models check)."""
    env = environment(case.where, gateway, workdir)
    seen = len(gateway.arrivals)
    started = time.time()
    process = subprocess.Popen(case.argv, env=env, cwd=workdir, stdout=subprocess.DEVNULL)
    # A blocking wait, and a timer for the timeout: `wait(timeout=...)` polls with sleeps that
    # grow to 50 ms, which rounded every exit up to its next poll (0.016, 0.064, 0.114 s...).
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    try:
        code = process.wait()
    finally:
        watchdog.cancel()
    ended = time.time()
    if code != 0:
        raise subprocess.CalledProcessError(code, case.argv)
    if case.clock == "exit":
        return ended - started, float("nan")
    models, review = gateway.review_arrival(seen)
    if review is None:
        raise RuntimeError(f"{case.argv}: no review request reached the gateway")
    return review - started, (models - started) if models is not None else float("nan")


def check_imports(python: str, where: str, gateway: Gateway, workdir: Path) -> ImportCheck:
    """Run a review once (untimed) and report where its modules came from."""
    subprocess.run(
        [python, "-c", CHECK],
        env=environment(where, gateway, workdir),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )
    found: ImportCheck = json.loads((workdir / "check.json").read_text(encoding="utf-8"))
    return found


def prepare_prod() -> tuple[prod_venv.ProdVenv | None, str]:
    """The production venv, or None and why not."""
    try:
        venv = prod_venv.ensure()
    except (prod_venv.VenvError, OSError, KeyError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    built = f"built in {venv.built_seconds:.1f} s" if venv.built_seconds else "reused"
    source = (
        f"source installed in {venv.installed_seconds:.1f} s"
        if venv.installed_seconds
        else "installed source current"
    )
    return venv, f"{prod_venv.shown(venv.path)} ({built}; {source})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 runs per case instead of 9")
    parser.add_argument("--runs", type=int, help="runs per case")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 9)
    venv, venv_note = prepare_prod()
    if venv is None:
        print(
            f"bench: the production venv could not be built ({venv_note}); the targets are "
            "measured in the DEVELOPMENT venv instead (with trio, rich, pygments: slower than "
            "an operator's install)",
            file=sys.stderr,
        )
    cases = [*(prod_cases(venv) if venv else []), *dev_cases()]
    gateway = Gateway(STREAM.read_bytes())
    gateway.start()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        workdir = Path(tmp)
        (workdir / "decision.json").write_text(DECISION, encoding="utf-8")
        for case in cases:  # warm the file cache and the bytecode once, untimed
            run_once(case, gateway, workdir)
        checks = {"dev": check_imports(sys.executable, "dev", gateway, workdir)}
        if venv:
            checks["prod"] = check_imports(str(venv.python), "prod", gateway, workdir)
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {
            (c.where, c.name): [] for c in cases
        }
        for _ in range(runs):
            for case in cases:
                samples[case.where, case.name].append(run_once(case, gateway, workdir))
    best: dict[tuple[str, str], float] = {}
    rows: dict[str, list[list[str]]] = {"prod": [], "dev": []}
    for case in cases:
        values = [s[0] for s in samples[case.where, case.name]]
        best[case.where, case.name] = min(values)
        models = min(s[1] for s in samples[case.where, case.name])
        rows[case.where].append(
            [
                case.name + (" TARGET" if case.target else ""),
                "on wire" if case.clock == "wire" else "exit",
                f"{min(values):.3f}",
                f"{statistics.median(values):.3f}",
                "" if math.isnan(models) else f"{models:.3f}",
            ]
        )
    header = ["case", "clock", "best", "median", "models check"]
    print(f"start-up, {runs} runs each, seconds")
    if venv:
        print(f"\nproduction venv: {venv_note}; runtime dependencies only, no PYTHONPATH")
        print(table(header, rows["prod"]))
    else:
        print(f"\nproduction venv: UNAVAILABLE ({venv_note})")
    print(f"\ndevelopment venv: {sys.prefix}, src/ on PYTHONPATH (shown, not targets)")
    print(table(header, rows["dev"]))
    print()
    for where, found in checks.items():
        print(
            f"{where} review loads {found['modules']} modules, torghut from {found['torghut']}; "
            f"trio/rich/pygments installed: {', '.join(found['dev_only']) or 'none'}"
        )
    if "prod" in checks:
        outside = [*checks["prod"]["outside"], *checks["prod"]["path_outside"]]
        print(
            "prod isolation: "
            + (
                "every module from the venv or the standard library, no foreign sys.path entry"
                if not outside
                else f"NOT ISOLATED, from outside the venv: {outside}"
            )
        )
    dev = {name: value for (where, name), value in best.items() if where == "dev"}
    help_best, eager_help = dev["torghut --help"], dev["eager --help (baseline)"]
    review_best, eager_review = dev["torghut llm review"], dev["eager llm review (baseline)"]
    floor = dev["httpx floor (baseline)"]
    service, eager_service = dev["service imports"], dev["eager service (baseline)"]
    print(
        f"dev: --help {help_best:.3f} s vs {eager_help:.3f} s eager "
        f"({eager_help / help_best:.1f}x); llm review on the wire {review_best:.3f} s vs "
        f"{eager_review:.3f} s eager ({eager_review / review_best:.1f}x), "
        f"{review_best / floor:.2f}x the httpx floor ({floor:.3f} s); service imports "
        f"{service:.3f} s vs {eager_service:.3f} s eager"
    )
    where = "prod" if venv else "dev"
    if venv:
        prod = {name: value for (w, name), value in best.items() if w == "prod"}
        print(
            f"prod: llm review {prod['torghut llm review']:.3f} s, "
            f"{prod['torghut llm review'] / prod['httpx floor (baseline)']:.2f}x its httpx floor "
            f"({prod['httpx floor (baseline)']:.3f} s); the dev venv's extras add "
            f"{review_best - prod['torghut llm review']:+.3f} s to the review and "
            f"{help_best - prod['torghut --help']:+.3f} s to --help"
        )
    ok = True
    for name in ("torghut --help", "torghut llm review"):
        value = best[where, name]
        met = value < TARGET_SECONDS
        ok = ok and met
        measured = "production venv" if venv else "DEVELOPMENT venv (production venv unavailable)"
        print(
            f"target {name} < {TARGET_SECONDS} s, {measured}: {value:.3f} s "
            f"{'PASS' if met else 'MISS'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
