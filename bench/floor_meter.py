"""Where a replay's time goes, without a sampling profiler.

`Meter.measure(fn)` runs `fn` and returns its wall time, the CPU time of the whole process (all
threads: `getrusage(RUSAGE_SELF)`), and, from wrappers installed for the run only:

- the wall and CPU time spent inside torghut's database transactions, on the database's worker
  threads (`torghut.db.engine.Database._transaction`, timed with `perf_counter` and
  `thread_time` around each call): SQLAlchemy, the driver and the database;
- of that, the wall time inside the driver (SQLAlchemy's dialect calls `do_execute`,
  `do_executemany`, `do_commit`, `do_rollback`, `do_ping` and connecting: the statements'
  round trips, the database engine itself, the commits' waits for the disk).

So "the database" is the driver time, "our Python" the rest of the process's CPU; the main
thread's CPU (the event loop: strategy, risk, pipeline) is measured apart, and what is left is
the other threads' (reading the signal file). With `profile=True`, every thread started during
the run gets a cProfile of its CPU time (`thread_stats`, by thread name), beside the caller's
own profile of the main thread.

The wrappers cost a few microseconds per transaction and statement. When torghut's internals
they wrap are renamed, the columns they feed read "-" instead of failing the bench.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_DRIVER_CALLS = (
    "do_execute",
    "do_executemany",
    "do_execute_no_params",
    "do_commit",
    "do_rollback",
    "do_begin",
    "do_ping",
    "connect",
)


@dataclass
class Measurement:
    wall: float
    cpu: float  # the whole process, every thread
    main_cpu: float  # the calling thread (the event loop of `asyncio.run`)
    db_wall: float | None  # inside database transactions, summed over the worker threads
    db_cpu: float | None
    driver_wall: float | None  # of db_wall: inside the driver and the database


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _dialect_classes() -> list[type]:
    classes: list[type] = []
    try:
        from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

        classes.extend(SQLiteDialect_pysqlite.__mro__)
    except ImportError:
        pass
    try:
        from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

        classes.extend(PGDialect_psycopg.__mro__)
    except ImportError:
        pass
    return list(dict.fromkeys(c for c in classes if c is not object))


class Meter:
    def __init__(self, *, profile: bool = False) -> None:
        self.profile = profile
        self._local = threading.local()
        self._lock = threading.Lock()
        self._db_wall = 0.0
        self._db_cpu = 0.0
        self._driver = 0.0
        self._transactions = 0
        self.profiles: list[tuple[str, cProfile.Profile]] = []
        self.available = True

    # -- wrappers --------------------------------------------------------------------------
    def _wrap_transaction(self, original: Callable[..., T]) -> Callable[..., T]:
        meter = self

        def timed(db: Any, work: Any) -> T:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(db, work)
            finally:
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                with meter._lock:
                    meter._db_wall += wall
                    meter._db_cpu += cpu
                    meter._transactions += 1

        return timed

    def _wrap_driver(self, original: Callable[..., T]) -> Callable[..., T]:
        meter = self

        def timed(*args: Any, **kwargs: Any) -> T:
            # An override calling its base's method is counted once (the outermost call).
            depth = getattr(meter._local, "depth", 0)
            meter._local.depth = depth + 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                meter._local.depth = depth
                if depth == 0:
                    elapsed = time.perf_counter() - started
                    with meter._lock:
                        meter._driver += elapsed

        return timed

    def _thread_hook(self, frame: Any, event: str, arg: Any) -> None:
        # Installed by `threading.setprofile` in every new thread: swap itself for a cProfile
        # of that thread's CPU time.
        sys.setprofile(None)
        profiler = cProfile.Profile(time.thread_time)
        with self._lock:
            self.profiles.append((threading.current_thread().name, profiler))
        profiler.enable()

    @contextmanager
    def installed(self) -> Iterator[Meter]:
        patched: list[tuple[type, str, Any]] = []
        if self.profile:
            threading.setprofile(self._thread_hook)
        try:
            from torghut.db.engine import Database

            original = Database.__dict__.get("_transaction")
            if callable(original):
                patched.append((Database, "_transaction", original))
                Database._transaction = self._wrap_transaction(original)  # type: ignore[method-assign]
            else:
                self.available = False
            for cls in _dialect_classes():
                for name in _DRIVER_CALLS:
                    fn = cls.__dict__.get(name)
                    if callable(fn):
                        patched.append((cls, name, fn))
                        setattr(cls, name, self._wrap_driver(fn))
            yield self
        finally:
            threading.setprofile(None)
            for cls, name, fn in reversed(patched):
                setattr(cls, name, fn)

    # -- use -------------------------------------------------------------------------------
    def measure(self, fn: Callable[[], T]) -> tuple[Measurement, T]:
        with self._lock:
            self._db_wall = self._db_cpu = self._driver = 0.0
            self._transactions = 0
        with self.installed():
            cpu, main, wall = _cpu(), time.thread_time(), time.perf_counter()
            result = fn()
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
            main = time.thread_time() - main
        ok = self.available
        return (
            Measurement(
                wall,
                cpu,
                main,
                self._db_wall if ok else None,
                self._db_cpu if ok else None,
                self._driver if ok else None,
            ),
            result,
        )

    def thread_stats(self, database: bool, top: int = 15) -> str:
        """The cProfile (CPU time) of the threads started during the run (`profile=True`):
        torghut's database threads, or all the others; top `top` by own time."""
        chosen = [p for name, p in self.profiles if name.startswith("torghut-db") == database]
        chosen = [p for p in chosen if p.getstats()]
        if not chosen:
            return "(no such thread)\n"
        out = io.StringIO()
        stats = pstats.Stats(chosen[0], stream=out)
        for more in chosen[1:]:
            stats.add(more)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        return out.getvalue()
