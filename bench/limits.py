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
from decimal import Decimal
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


def decision_work(path: Path, batch_size: int, cash: Decimal) -> int:
    """(g4): the work a replay does to decide, with nothing written and nothing awaited:
    each line parsed into a `Signal`; per batch, the book read as the simulated broker gives
    it and the batch ledger opened on it; per signal, its price through the band, whether the
    built-in strategy's rule fires (with the decision's hash), the decision sized, judged
    (CONTRACT §8's checks and risk against the ledger) and reserved; per approved decision,
    the simulated broker's fill on its in-memory book and the order as it answers it. That is
    torghut's own decision code, as it is now, without the pipeline that carries it, the
    rows that record it or the database: what (b)'s ratio would cost if all of those were
    free. Returns the decisions approved and filled."""
    # The simulated broker's in-memory book is its private API: a bench may lean on it.
    from torghut.domain import OrderRequest
    from torghut.errors import BrokerError, InputError
    from torghut.trading import brokers
    from torghut.trading.judge import JudgingSettings, exit_sized, judge
    from torghut.trading.ledger import BatchLedger
    from torghut.trading.risk import RiskLimits
    from torghut.trading.session import SessionCalendar
    from torghut.trading.signals import parse_signal_line
    from torghut.trading.strategy import DEFAULT_STRATEGY, StrategyDefaults, fire

    calendar = SessionCalendar()
    calendar.load()
    settings, risk, sizing = JudgingSettings(calendar=calendar), RiskLimits(), StrategyDefaults()
    signals = []
    with path.open("rb") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    signals.append(parse_signal_line(line.decode("utf-8"), lineno))
                except InputError:
                    continue
    signals.sort(key=lambda s: (s.event_ts, s.symbol, s.seq))
    book = brokers._Book(account=brokers._AccountRow("default", cash), positions={}, resting=[])
    filled = 0
    for start in range(0, len(signals), batch_size):
        batch = signals[start : start + batch_size]
        held = [p for p in book.positions.values() if p.qty != 0]
        ledger = BatchLedger.open(
            brokers._as_book(book.account, held, book.resting),
            limits=risk,
            max_price_move=settings.max_price_move,
            fills_at_once=True,
            references={},
            last_trade_at={},
        )
        for signal in batch:
            price, accepted = signal.price, True
            if price is not None and price.is_finite() and price > 0:
                accepted = ledger.mark(signal.symbol, price)
            firing = fire(DEFAULT_STRATEGY, signal, sizing)
            if firing is None:
                continue
            key = firing.hash
            decision = exit_sized(firing.decide(ledger.equity), DEFAULT_STRATEGY, ledger, risk)
            judged = judge(
                decision,
                key,
                now=signal.event_ts,
                price_accepted=accepted,
                spec=DEFAULT_STRATEGY,
                ledger=ledger,
                limits=risk,
                settings=settings,
                with_view=False,
            )
            if judged.reservation is None:
                continue
            try:
                brokers._to_broker_order(book.place(OrderRequest.for_decision(decision, key)))
            except BrokerError:
                continue
            judged.reservation.keep()
            filled += 1
        for symbol, mark in ledger.marked.items():
            book.mark(symbol, mark)
        book.new_orders.clear()
        book.changed_orders.clear()
        book.new_positions.clear()
        book.changed_positions.clear()
    return filled
