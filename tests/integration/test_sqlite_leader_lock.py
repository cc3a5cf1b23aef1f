"""One trading loop per SQLite file (issue 12): the second scheduler on the same file stands
by until the first lets go; other files, and PostgreSQL, keep their own locks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy.ext.asyncio import create_async_engine

from torghut.bootstrap import trading_lock
from torghut.db.engine import FileLeaderLock, sqlite_lock_path
from torghut.metrics import Metrics
from torghut.trading.scheduler import LeaderLock, TradingScheduler


def _scheduler(dsn_path: Path) -> TradingScheduler:
    dsn = f"sqlite:///{dsn_path}"
    engine = create_async_engine(f"sqlite+aiosqlite:///{dsn_path}")
    return TradingScheduler(
        pipeline=SimpleNamespace(),
        broker=SimpleNamespace(),
        engine=engine,
        metrics=Metrics(),
        enabled=True,
        poll_interval=1,
        reconcile_interval=1,
        lock=trading_lock(dsn, engine),
    )


async def test_two_schedulers_on_one_file_elect_one_leader(tmp_path: Path) -> None:
    first, second = _scheduler(tmp_path / "t.db"), _scheduler(tmp_path / "t.db")
    assert await first._lead() is True
    assert await second._lead() is False
    assert (first.status.leader, second.status.leader) == (True, False)
    assert await first._lead() is True  # a leader keeps leading
    assert await second._lead() is False  # and the standby keeps waiting

    await first.lock.release()
    assert await second._lead() is True
    assert await first._lead() is False
    await second.lock.release()


async def test_separate_files_lead_separately(tmp_path: Path) -> None:
    a, b = _scheduler(tmp_path / "a.db"), _scheduler(tmp_path / "b.db")
    assert await a._lead() and await b._lead()
    await a.lock.release()
    await b.lock.release()


def test_the_lock_lives_beside_the_database_file(tmp_path: Path) -> None:
    assert sqlite_lock_path(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db.lock"
    assert sqlite_lock_path("sqlite:///relative.db") == Path.cwd() / "relative.db.lock"
    assert sqlite_lock_path("sqlite://") is None  # in memory: no other process can open it
    assert sqlite_lock_path("sqlite:///:memory:") is None
    assert sqlite_lock_path("postgresql://u@h/db") is None
    pg = create_async_engine("postgresql+psycopg://u@127.0.0.1:9/db")
    assert isinstance(trading_lock("postgresql://u@127.0.0.1:9/db", pg), LeaderLock)
    lite = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert isinstance(trading_lock(f"sqlite:///{tmp_path}/x.db", lite), FileLeaderLock)


def test_a_lock_held_by_another_process_is_respected_and_freed_by_its_death(
    tmp_path: Path,
) -> None:
    lock_path = tmp_path / "t.db.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, filelock
            lock = filelock.FileLock({str(lock_path)!r})
            lock.acquire(timeout=0)
            print("held", flush=True)
            sys.stdin.read()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        ours = FileLeaderLock(lock_path)
        assert asyncio.run(ours.try_acquire()) is False
        holder.kill()  # kill -9: the kernel drops the flock with the process
        holder.wait(timeout=10)
        assert asyncio.run(ours.try_acquire()) is True
        asyncio.run(ours.release())
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
