"""Where torghut's replay time goes, by owner of the code: torghut's own, SQLAlchemy's,
pydantic's, the database driver's, the hand-offs between threads, json, the standard library.

Issue 16 asks the replay to run at 0.5x the durable floor (`bench_pipeline.py` (b): the same
rows written with the bare driver, `floor_db.py`), or for the profile that shows what is left
is the database or the interpreter, not torghut's code. This script replays, on SQLite and
(when it answers) PostgreSQL, the bundled sample and the every-line-a-decision file (5,000
lines, 100 symbols per minute, `bench_pipeline.many_batches_file`), with (b)'s settings
(`bench_pipeline._replay`: LLM_ENABLED=false, simulated broker, TRADING_BATCH_SIZE=500, cash
enough for every order), each run on a fresh database (`bench_pipeline.Databases`: SQLite files
in a temporary directory, PostgreSQL schemas dropped at the end). Per database and file:

1. `bench_pipeline.bench_floor` itself: torghut's replay unprofiled (best of 3 by wall time,
   with `floor_meter`'s process CPU, CPU per thread group and time inside the driver) and the
   floor's (best of 3), with (b)'s checks that both wrote the same rows.
2. The replay under cProfile timing CPU (`time.thread_time`), on every thread that does the
   work: the main thread (the event loop) and every thread started during the run (the
   database workers `torghut-db*`, `asyncio.to_thread`'s workers, which read the signal file),
   each with its own profiler (`floor_meter.Meter(profile=True)` installs one in each new
   thread through `threading.setprofile`: Python 3.11 has no `setprofile_all_threads`),
   merged per thread group (main / db / other). Best of 2 by profiled CPU.
3. Each function's own time (tottime) goes to the owner of its code, by file: src/torghut/;
   site-packages' sqlalchemy (and its generated `<sqlalchemy ...>` wrappers); pydantic,
   pydantic_core, pydantic_settings, typing_inspection; psycopg/psycopg_binary and the stdlib's
   sqlite3 package (the driver); the stdlib's asyncio, concurrent, threading, selectors, queue,
   contextvars (hand-offs); json; decimal/datetime; the rest of the stdlib; code generated at
   run time (file `<string>`: dataclasses', typing_inspection's); bench/ (floor_meter's
   timers around the transactions and driver calls); anything else (prometheus_client, ...).
   C functions go by their qualified name when it names an owner (`{method 'execute' of
   'sqlite3.Cursor' objects}` and psycopg_binary's are the driver's, `_json`'s json's,
   `pydantic_core`'s pydantic's, `decimal.`/`datetime.` the builtins', `_asyncio.` the
   hand-offs'); the generic ones (dict.get, isinstance, a lock's acquire, epoll's poll, ...)
   go to the owners of the Python functions that called them, split by the time each caller
   spent in them: a `getattr` torghut calls is torghut's cost, a `poll` psycopg waits in is
   the driver's. `--detail N` prints the top N functions of every owner.

Why a CPU clock: with cProfile's default (wall) clock, a thread waiting for the GIL is charged
to whatever it was running, so two threads sharing the interpreter both look busy (on the
sample, SQLite: 1.38 s busy over the threads in a profiled run of 1.32 s wall and 0.67 s process
CPU, the waits for work left out). The CPU clock leaves out what is no thread's CPU:
waits for PostgreSQL's answers and commits, shown instead by the unprofiled runs' time inside
the driver (wall).

cProfile inflates Python-heavy code: each call it sees costs it CPU (here about 3 us: reading
`thread_time` is a system call, 1.2 us, twice per call), which lands in the caller's and the
callee's own time, so code made of many small calls (ours above all: 60 % of the calls) looks
bigger than it is, and C code that runs long per call (SQLite's engine, psycopg's) smaller.
Two figures per owner that are not profiled seconds, both estimates:
- "scaled to unprofiled s": the owner's profiled share of each thread group's CPU, times that
  group's CPU in the unprofiled best run (main thread; inside the database transactions; the
  rest). The inflation makes it too high for code with many calls per second of own time and
  too low for C code that runs long per call (the driver's);
- "less profiler s": the owner's profiled CPU less its calls times the profiler's cost per
  call, that cost being the profiled run's process CPU in excess of the unprofiled run's,
  divided by the calls counted (so the column sums to about the unprofiled CPU; an owner whose
  calls cost the profiler less than the average is clamped at 0, hence a sum a little above).
  It assumes one cost per call, Python or C; a cost measured in-process on empty functions
  (2.4 us, against about 3.1 us per call in the replays) made the column sum to 2.3x the
  unprofiled CPU, so the cost is fitted instead.
The profiler's own CPU is about 85 % of the profiled CPU, so neither figure is precise: on the
every-line-a-decision files the second puts torghut's own code higher than the first (1.9 s
against 1.4 s of 2.4 s CPU, SQLite). The verdict takes the larger.

The verdict per database and file: torghut's own code takes at most X s of CPU (the larger of
the two figures); if it were free, torghut would still take Y = unprofiled wall - X (a lower bound:
removing X s of CPU saves at most X s of wall), Z = Y / floor times the floor, and floor / Y is
the best ratio any change to torghut's own code alone could reach, against the 0.5x target.
The summary adds the hand-offs (the event loop and the thread hand-offs our design asks for).

    python bench/profile_packages.py            # both files, best of 3, profiled twice
    python bench/profile_packages.py --quick    # the sample only, best of 2, profiled once

Not part of `bench/run.py`: it has no target of its own.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import sys
import sysconfig
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_pipeline  # bench/bench_pipeline.py (scripts run from bench/); puts src on the path
import floor_db
import torghut
from floor_meter import Measurement, Meter
from tables import table
from torghut.bootstrap import bundled_signals, freeze_startup_heap
from torghut.trading.session import SessionCalendar

# pstats' key of a function: (file, line, name); a C function's file is "~".
Func = tuple[str, int, str]
RawStats = dict[Func, tuple[int, int, float, float, dict[Func, tuple[int, int, float, float]]]]

TORGHUT = "torghut (src/torghut)"
SQLALCHEMY = "SQLAlchemy"
PYDANTIC = "pydantic / pydantic-core"
DRIVER = "driver (sqlite3 / psycopg)"
HANDOFFS = "hand-offs (asyncio, futures, threading)"
JSON = "json"
DECIMAL = "decimal / datetime builtins"
STDLIB = "other stdlib"
GENERATED = "generated code (<string>)"
BENCH = "bench (floor_meter's timers)"
OTHER = "other"
OWNERS = (
    TORGHUT,
    SQLALCHEMY,
    PYDANTIC,
    DRIVER,
    HANDOFFS,
    JSON,
    DECIMAL,
    STDLIB,
    GENERATED,
    BENCH,
)
GROUPS = ("main", "db", "other")  # the event loop's thread, torghut-db*, every other thread

_SRC = str(Path(torghut.__file__).resolve().parent) + os.sep
_BENCH = str(Path(__file__).resolve().parent) + os.sep
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve()) + os.sep
_SITE = os.sep + "site-packages" + os.sep

_PACKAGES = {
    "sqlalchemy": SQLALCHEMY,
    "pydantic": PYDANTIC,
    "pydantic_core": PYDANTIC,
    "pydantic_settings": PYDANTIC,
    "typing_inspection": PYDANTIC,  # pydantic's own helper package
    "psycopg": DRIVER,
    "psycopg_binary": DRIVER,
    "psycopg_c": DRIVER,
    "psycopg_pool": DRIVER,
}
_STDLIB_MODULES = {
    "asyncio": HANDOFFS,
    "concurrent": HANDOFFS,
    "threading.py": HANDOFFS,
    "selectors.py": HANDOFFS,
    "queue.py": HANDOFFS,
    "contextvars.py": HANDOFFS,
    "json": JSON,
    "decimal.py": DECIMAL,
    "_pydecimal.py": DECIMAL,
    "datetime.py": DECIMAL,
    "sqlite3": DRIVER,
}
# C functions whose qualified name says whose they are (checked in this order).
_C_NAMES = (
    ("sqlite3.", DRIVER),
    ("psycopg", DRIVER),
    ("sqlalchemy", SQLALCHEMY),
    ("pydantic_core", PYDANTIC),
    ("_json", JSON),
    ("json.", JSON),
    ("decimal.", DECIMAL),
    ("datetime.", DECIMAL),
    ("_asyncio.", HANDOFFS),
)

_resolved: dict[str, str] = {}


def owner_of_file(filename: str) -> str:
    """The owner of a Python function's code, by its file."""
    if filename.startswith("<string>"):
        return GENERATED
    if filename.startswith("<sqlalchemy"):  # its generated wrappers name themselves
        return SQLALCHEMY
    if filename.startswith("<frozen"):
        return STDLIB
    path = _resolved.get(filename)
    if path is None:
        path = _resolved[filename] = str(Path(filename).resolve())
    if path.startswith(_SRC):
        return TORGHUT
    if path.startswith(_BENCH):
        return BENCH
    if _SITE in path:
        top = path.split(_SITE, 1)[1].split(os.sep, 1)[0]
        return _PACKAGES.get(top.removesuffix(".py"), OTHER)
    if path.startswith(_STDLIB):
        top = path.removeprefix(_STDLIB).split(os.sep, 1)[0]
        return _STDLIB_MODULES.get(top, STDLIB)
    return OTHER


def owner_of_c(name: str) -> str | None:
    """The owner a C function's qualified name gives, or None for the generic ones."""
    for part, owner in _C_NAMES:
        if part in name:
            return owner
    return None


# --------------------------------------------------------------------------------------------
# Attribution


@dataclass
class Share:
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GROUPS, 0.0))
    calls: int = 0

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass
class Attribution:
    owners: dict[str, Share] = field(default_factory=lambda: defaultdict(Share))
    # Each owner's functions, by label: own seconds and calls (a generic C function appears
    # under each owner that called it, with that owner's part).
    functions: dict[str, dict[str, tuple[float, int]]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    @property
    def total(self) -> float:
        return sum(s.total for s in self.owners.values())

    def group_total(self, group: str) -> float:
        return sum(s.seconds[group] for s in self.owners.values())

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.owners.values())

    def add(self, group: str, raw: RawStats) -> None:
        for func, (_cc, nc, tt, _ct, callers) in raw.items():
            filename, _line, name = func
            if filename != "~":
                owner = owner_of_file(filename)
                self._charge(owner, group, tt, nc, func)
                continue
            named = owner_of_c(name)
            if named is not None:
                self._charge(named, group, tt, nc, func)
                continue
            # A generic C function: its callers' owners, by the time each spent in it.
            spent = sum(c[2] for c in callers.values())
            if not callers:
                self._charge(OTHER, group, tt, nc, func)
                continue
            for caller, (c_nc, _c_cc, c_tt, _c_ct) in callers.items():
                part = c_tt / spent if spent > 0 else c_nc / max(nc, 1)
                c_file = caller[0]
                owner = owner_of_file(c_file) if c_file != "~" else OTHER
                self._charge(owner, group, tt * part, c_nc, func)

    def _charge(self, owner: str, group: str, seconds: float, calls: int, func: Func) -> None:
        share = self.owners[owner]
        share.seconds[group] += seconds
        share.calls += calls
        label = _label(func)
        before, n = self.functions[owner].get(label, (0.0, 0))
        self.functions[owner][label] = (before + seconds, n + calls)


def _label(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return "{" + name.strip("<>") + "}"  # as pstats prints C functions
    path = Path(filename)
    for root in (Path(_SRC).parent, Path(_BENCH).parent, Path(_STDLIB)):
        if path.is_relative_to(root):
            path = path.relative_to(root)
            break
    else:
        if _SITE in filename:
            path = Path(filename.split(_SITE, 1)[1])
    return f"{path}:{line}({name})"


def _group(thread_name: str) -> str:
    return "db" if thread_name.startswith("torghut-db") else "other"


def _raw(profilers: list[cProfile.Profile]) -> RawStats | None:
    chosen = [p for p in profilers if p.getstats()]
    if not chosen:
        return None
    stats = pstats.Stats(chosen[0])
    for more in chosen[1:]:
        stats.add(more)
    return stats.stats  # type: ignore[attr-defined,no-any-return]


@dataclass
class Profiled:
    measured: Measurement
    attribution: Attribution
    threads: dict[str, int]  # threads profiled, per group


def profiled_replay(dbs: bench_pipeline.Databases, kind: str, signals: Path) -> Profiled:
    """One replay on a fresh database, every thread under cProfile (CPU time)."""
    dsn = dbs.fresh(kind)
    gc.collect()
    meter = Meter(profile=True)  # a profiler per thread started during the run
    main = cProfile.Profile(time.thread_time)

    def run() -> dict[str, Any]:
        main.enable()
        try:
            return bench_pipeline._replay(dsn, signals)
        finally:
            main.disable()

    measured, summary = meter.measure(run)
    if not summary["complete"]:
        raise AssertionError(f"profiled replay of {signals.name} on {kind} incomplete: {summary}")
    attribution = Attribution()
    threads = dict.fromkeys(GROUPS, 0)
    threads["main"] = 1
    by_group: dict[str, list[cProfile.Profile]] = defaultdict(list)
    for name, profiler in meter.profiles:
        by_group[_group(name)].append(profiler)
        threads[_group(name)] += 1
    for group, profilers in (("main", [main]), *by_group.items()):
        raw = _raw(profilers)
        if raw is not None:
            attribution.add(group, raw)
    return Profiled(measured, attribution, threads)


# --------------------------------------------------------------------------------------------
# Report


@dataclass
class Case:
    kind: str
    label: str
    floor: bench_pipeline.FloorResult
    profiled: Profiled

    @property
    def unprofiled(self) -> Measurement:
        return self.floor.torghut

    def group_cpu(self) -> dict[str, float] | None:
        """The unprofiled best run's CPU per thread group: the event loop's thread, inside the
        database transactions, the rest (file reading, the workers' own loops). None when the
        Meter could not see the transactions."""
        m = self.unprofiled
        if m.db_cpu is None:
            return None
        return {"main": m.main_cpu, "db": m.db_cpu, "other": max(m.cpu - m.main_cpu - m.db_cpu, 0)}

    def scaled(self, owner: str) -> float:
        """An owner's profiled share of each thread group's CPU, of the unprofiled run's CPU of
        that group: an upper bound for Python-heavy code (see the docstring)."""
        a = self.profiled.attribution
        share = a.owners[owner]
        cpu = self.group_cpu()
        if cpu is None:
            return share.total / a.total * self.unprofiled.cpu
        out = 0.0
        for g in GROUPS:
            busy = a.group_total(g)
            out += share.seconds[g] / busy * cpu[g] if busy > 0 else 0.0
        return out

    @property
    def overhead_per_call(self) -> float:
        """The profiler's CPU per call it counted: the profiled run's process CPU in excess of
        the unprofiled best run's."""
        excess = self.profiled.measured.cpu - self.unprofiled.cpu
        return max(excess, 0.0) / max(self.profiled.attribution.calls, 1)

    def corrected(self, owner: str) -> float:
        share = self.profiled.attribution.owners[owner]
        return max(share.total - share.calls * self.overhead_per_call, 0.0)

    @property
    def own_upper(self) -> float:
        """The larger of the two estimates of torghut's own CPU (neither is a proven bound)."""
        return max(self.scaled(TORGHUT), self.corrected(TORGHUT))

    @property
    def without_own(self) -> float:
        return self.unprofiled.wall - self.own_upper

    @property
    def without_handoffs(self) -> float:
        """Also without the hand-offs between threads: the asyncio loop and the workers'
        queues our design asks for."""
        return self.without_own - self.scaled(HANDOFFS)


def _owner_rows(case: Case) -> list[list[str]]:
    a = case.profiled.attribution
    total = a.total
    names = sorted(a.owners, key=lambda o: -a.owners[o].total)
    rows = []
    for owner in names:
        share = a.owners[owner]
        rows.append(
            [
                owner,
                f"{share.total:.3f}",
                " / ".join(f"{share.seconds[g]:.3f}" for g in GROUPS),
                f"{share.total / total:.1%}",
                f"{share.calls:,}",
                f"{case.scaled(owner):.3f}",
                f"{case.corrected(owner):.3f}",
            ]
        )
    rows.append(
        [
            "total",
            f"{total:.3f}",
            " / ".join(f"{a.group_total(g):.3f}" for g in GROUPS),
            "100%",
            f"{a.calls:,}",
            f"{sum(case.scaled(o) for o in names):.3f}",
            f"{sum(case.corrected(o) for o in names):.3f}",
        ]
    )
    return rows


def _top(case: Case, owner: str, n: int) -> list[list[str]]:
    functions = case.profiled.attribution.functions[owner]
    total = case.profiled.attribution.total
    top = sorted(functions.items(), key=lambda item: -item[1][0])[:n]
    return [
        [label, f"{seconds:.3f}", f"{seconds / total:.1%}", f"{calls:,}"]
        for label, (seconds, calls) in top
    ]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def report(case: Case, reps: int, detail: int) -> None:
    m, p = case.unprofiled, case.profiled.measured
    a = case.profiled.attribution
    summary = case.floor.summary
    threads = case.profiled.threads
    cpu = case.group_cpu()
    groups = "" if cpu is None else " = " + " + ".join(f"{cpu[g]:.3f}" for g in GROUPS)
    print(
        f"== {case.kind}, {case.label}: {summary['signals']:,} signals, "
        f"{summary['decisions']:,} decisions ({summary['submitted']:,} sent)"
    )
    print(
        f"unprofiled, best of {reps}: wall {m.wall:.3f} s, process CPU {m.cpu:.3f} s{groups} "
        f"(main / db transactions / other), inside the driver {_s(m.driver_wall)} s of wall; "
        f"floor {case.floor.floor_wall:.3f} s (floor / torghut {case.floor.ratio:.3f}x)"
    )
    print(
        f"profiled: wall {p.wall:.3f} s, process CPU {p.cpu:.3f} s, profiled CPU {a.total:.3f} "
        f"s over {threads['main']} main + {threads['db']} db + {threads['other']} other "
        f"threads; profiling factor: wall {p.wall / m.wall:.2f}x, CPU {p.cpu / m.cpu:.2f}x; "
        f"{a.calls:,} calls counted: {case.overhead_per_call * 1e6:.2f} us of profiler per call"
    )
    print(
        table(
            [
                "owner",
                "CPU s profiled",
                "main / db / other threads",
                "share",
                "calls",
                "scaled to unprofiled s",
                "less profiler s",
            ],
            _owner_rows(case),
        )
    )
    owners = sorted(a.owners, key=lambda o: -a.owners[o].total) if detail else [TORGHUT]
    for owner in owners:
        print(f"{owner}: top {detail or 5} by own time (profiled; C functions by caller)")
        print(table(["function", "own s", "share", "calls"], _top(case, owner, detail or 5)))
    y = case.without_own
    print(
        f"torghut own code {case.own_upper:.3f} s at most (the larger of scaled "
        f"{case.scaled(TORGHUT):.3f} s and less profiler {case.corrected(TORGHUT):.3f} s); if it "
        f"were free, torghut would still take {y:.3f} s "
        f"= {y / case.floor.floor_wall:.2f}x the floor (floor / torghut at best "
        f"{case.floor.floor_wall / y:.3f}x, target {bench_pipeline.FLOOR_TARGET:g}x)"
    )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the sample only, fewer runs")
    parser.add_argument("--signals", type=int, default=5000, help="lines of the generated file")
    parser.add_argument("--postgres", default=bench_pipeline.DEFAULT_POSTGRES)
    parser.add_argument(
        "--detail", type=int, default=0, help="print the top N functions of every owner"
    )
    args = parser.parse_args(argv)
    freeze_startup_heap()  # as `torghut replay` and bench_pipeline do
    SessionCalendar().load()  # loaded once per process: before any clock, as bench_pipeline
    reps, profile_reps = (2, 1) if args.quick else (3, 2)

    print(
        f"python {sys.version.split()[0]} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    postgres = floor_db.reachable_postgres(args.postgres)
    print(
        "(b)'s replays: LLM_ENABLED=false, simulated broker, TRADING_BATCH_SIZE=500; CPU time "
        "per thread under cProfile, each function's own time to its code's owner"
    )
    print()
    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="torghut-profile-") as tmp:
        dbs = bench_pipeline.Databases(Path(tmp), postgres)
        try:
            files = [("bundled sample", bundled_signals())]
            if not args.quick:
                every = bench_pipeline.many_batches_file(Path(tmp) / "every.jsonl", args.signals)
                files.append((f"every line a decision ({args.signals:,})", every))
            for kind in ("sqlite", "postgresql"):
                if kind == "postgresql" and postgres is None:
                    continue
                for label, path in files:
                    floor = bench_pipeline.bench_floor(dbs, kind, label, path, reps, False)
                    runs = [profiled_replay(dbs, kind, path) for _ in range(profile_reps)]
                    best = min(runs, key=lambda r: r.attribution.total)
                    case = Case(kind, label, floor, best)
                    report(case, reps, args.detail)
                    cases.append(case)
        finally:
            dbs.close()

    print("summary: if torghut's own code were free")
    print(
        table(
            [
                "database",
                "file",
                "torghut s",
                "floor s",
                "own code s (at most)",
                "torghut without it s",
                "= x floor",
                "floor / that",
                "also without hand-offs s",
                "= x floor",
            ],
            [
                [
                    c.kind,
                    c.label,
                    f"{c.unprofiled.wall:.3f}",
                    f"{c.floor.floor_wall:.3f}",
                    f"{c.own_upper:.3f}",
                    f"{c.without_own:.3f}",
                    f"{c.without_own / c.floor.floor_wall:.2f}",
                    f"{c.floor.floor_wall / c.without_own:.3f}",
                    f"{c.without_handoffs:.3f}",
                    f"{c.without_handoffs / c.floor.floor_wall:.2f}",
                ]
                for c in cases
            ],
        )
    )
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
