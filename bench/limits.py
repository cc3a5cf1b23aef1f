"""The least a trading cycle can cost: what bench_pipeline's (g) limits measure beside torghut.

`cursor_commits` is the per-cycle durable floor of (f): any design that durably commits where it
stopped once per cycle pays, per cycle, at least one transaction that moves one row of
`signal_cursors`. It is measured with the bare `sqlite3` module on a database migrated with
torghut's own migrations, with torghut's connection pragmas (`_sqlite_pragmas`: WAL,
synchronous=NORMAL, ...), so that each commit is as durable as torghut's. Optionally, each
commit is handed to a worker thread and awaited from asyncio, as `torghut.db.engine.Database.run`
does (ThreadPoolExecutor + `asyncio.wrap_future`): the price of keeping the event loop free.

`database_run_commits` is the same transaction through torghut's own machinery
(`Database.run`: the thread hop, a SQLAlchemy session and connection from its pool, the
statement as plain driver SQL): for attribution, what torghut's plumbing adds to each commit.

`process_cpu` is the clock (f) compares with: the whole process's CPU time, every thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import resource
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from torghut.db.engine import Database, _sqlite_pragmas

_SOURCE = "file:bench-limits"
_INSERT = (
    "INSERT INTO signal_cursors (source, event_ts, symbol, seq, updated_at) VALUES (?, ?, ?, ?, ?)"
)
_MOVE = (
    "UPDATE signal_cursors SET event_ts = ?, symbol = ?, seq = ?, updated_at = ? WHERE source = ?"
)
# SQLAlchemy's SQLite text for a datetime, as torghut's rows hold them.
_TS = "2025-03-03 14:30:00.000000"


def process_cpu() -> float:
    """User + system CPU seconds of the whole process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Cost:
    cpu: float  # process CPU seconds, every thread
    wall: float
    cycles: int

    @property
    def cpu_per_cycle_us(self) -> float:
        return self.cpu / self.cycles * 1e6


def _connect(database: Path) -> sqlite3.Connection:
    # Autocommit mode: the transactions are the explicit BEGIN / COMMIT below, nothing else.
    db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    _sqlite_pragmas(db, None)
    db.execute(_INSERT, (_SOURCE, _TS, "AAPL", 0, _TS))
    return db


def _commit(db: sqlite3.Connection, seq: int) -> None:
    db.execute("BEGIN")
    db.execute(_MOVE, (_TS, "AAPL", seq, _TS, _SOURCE))
    db.execute("COMMIT")


def cursor_commits(database: Path, cycles: int, *, hop: bool) -> Cost:
    """Process CPU and wall time of `cycles` transactions, each moving the cursor row and
    committing, on `database` (migrated, empty). With `hop`, each transaction runs on a worker
    thread and the event loop awaits it, one at a time (a cycle waits for its commit)."""
    db = _connect(database)
    try:
        if hop:
            cost = asyncio.run(_hopped(db, cycles))
        else:
            cpu, wall = process_cpu(), time.perf_counter()
            for seq in range(1, cycles + 1):
                _commit(db, seq)
            cost = Cost(process_cpu() - cpu, time.perf_counter() - wall, cycles)
        [(seq,)] = db.execute("SELECT seq FROM signal_cursors WHERE source = ?", (_SOURCE,))
        if seq != cycles:
            raise AssertionError(f"cursor floor: {seq} commits landed, expected {cycles}")
        return cost
    finally:
        db.close()


async def _hopped(db: sqlite3.Connection, cycles: int) -> Cost:
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        await asyncio.wrap_future(executor.submit(lambda: None), loop=loop)  # thread started
        cpu, wall = process_cpu(), time.perf_counter()
        for seq in range(1, cycles + 1):
            await asyncio.wrap_future(executor.submit(_commit, db, seq), loop=loop)
        return Cost(process_cpu() - cpu, time.perf_counter() - wall, cycles)


def database_run_commits(database: Path, cycles: int) -> Cost:
    """As `cursor_commits(hop=True)`, through torghut's `Database.run` (a session per
    transaction, the UPDATE sent as driver SQL: no ORM, no statement compilation)."""
    return asyncio.run(_database_run(database, cycles))


async def _database_run(database: Path, cycles: int) -> Cost:
    db = Database(f"sqlite:///{database}")
    try:

        def first(session: Session) -> None:
            session.connection().exec_driver_sql(_INSERT, (_SOURCE, _TS, "AAPL", 0, _TS))

        await db.run(first)  # the connection opened, the pragmas set
        cpu, wall = process_cpu(), time.perf_counter()
        for seq in range(1, cycles + 1):

            def move(session: Session, seq: int = seq) -> None:
                session.connection().exec_driver_sql(_MOVE, (_TS, "AAPL", seq, _TS, _SOURCE))

            await db.run(move)
        cost = Cost(process_cpu() - cpu, time.perf_counter() - wall, cycles)

        def last(session: Session) -> int:
            row = session.connection().exec_driver_sql(
                "SELECT seq FROM signal_cursors WHERE source = ?", (_SOURCE,)
            )
            return int(row.scalar_one())

        if (seq := await db.run(last)) != cycles:
            raise AssertionError(f"Database.run floor: {seq} commits landed, expected {cycles}")
        return cost
    finally:
        await db.aclose()
