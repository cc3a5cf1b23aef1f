"""`Database`: one transaction per `run`, off the event loop, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tests.conftest import Database
from torghut.db.engine import STATEMENT_TIMEOUT_MS
from torghut.db.tables import SignalCursor

TS = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def add_cursor(key: str) -> object:
    def work(session: Session) -> None:
        session.add(SignalCursor(source=key, event_ts=TS, symbol="AAPL", seq=1))

    return work


async def keys(database: Database) -> list[str]:
    async with database.sessions() as session:
        return list((await session.execute(select(SignalCursor.source))).scalars())


async def test_run_commits_what_the_work_did_and_returns_its_value(database: Database) -> None:
    def work(session: Session) -> str:
        session.add(SignalCursor(source="a", event_ts=TS, symbol="AAPL", seq=1))
        return "done"

    assert await database.db.run(work) == "done"
    assert await keys(database) == ["a"]


async def test_work_runs_off_the_event_loop_thread(database: Database) -> None:
    loop_thread = threading.get_ident()
    ran_on = await database.db.run(lambda session: threading.get_ident())
    assert ran_on != loop_thread


async def test_a_raising_work_rolls_back_everything_it_did(database: Database) -> None:
    def work(session: Session) -> None:
        session.add(SignalCursor(source="b", event_ts=TS, symbol="AAPL", seq=1))
        session.flush()  # the row is in the transaction...
        raise ValueError("half way")  # ...and must not survive this

    with pytest.raises(ValueError, match="half way"):
        await database.db.run(work)
    assert await keys(database) == []


async def test_a_cancelled_run_still_queued_never_runs(database: Database) -> None:
    db = database.db
    started, release = threading.Event(), threading.Event()

    def blocker(session: Session) -> None:
        started.set()
        release.wait(10)

    workers = db._executor._max_workers  # fill every worker, so the next run has to queue
    blockers = [asyncio.ensure_future(db.run(blocker)) for _ in range(workers)]
    await asyncio.to_thread(started.wait, 10)
    queued = asyncio.ensure_future(db.run(add_cursor("never")))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    await asyncio.gather(*blockers)
    assert await db.settle(5) == 0
    assert await keys(database) == []


async def test_settle_waits_for_a_transaction_whose_caller_was_cancelled(
    database: Database,
) -> None:
    db = database.db
    started, release = threading.Event(), threading.Event()

    def slow(session: Session) -> None:
        started.set()
        release.wait(10)
        session.add(SignalCursor(source="late", event_ts=TS, symbol="AAPL", seq=1))

    task = asyncio.ensure_future(db.run(slow))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.running == 1
    assert await db.settle(0.05) == 1  # still in its thread: cannot be called back
    release.set()
    assert await db.settle(5) == 0
    assert await keys(database) == ["late"]  # it finished, and committed


async def test_aclose_refuses_new_work(database: Database) -> None:
    db = database.db
    await db.run(lambda session: None)
    await db.aclose()
    with pytest.raises(RuntimeError):
        await db.run(lambda session: None)


async def test_postgres_statements_have_a_server_side_deadline(database: Database) -> None:
    if database.kind != "postgresql":
        pytest.skip("statement_timeout is a PostgreSQL setting")
    shown = await database.db.run(
        lambda session: session.execute(text("show statement_timeout")).scalar_one()
    )
    assert shown == f"{STATEMENT_TIMEOUT_MS // 1000}s"

    def too_slow(session: Session) -> None:
        session.execute(text("set local statement_timeout = 50"))
        session.execute(text("select pg_sleep(2)"))

    with pytest.raises(OperationalError, match="statement timeout"):
        await database.db.run(too_slow)
    # The connection that timed out is still usable afterwards.
    assert await database.db.run(lambda s: s.execute(text("select 1")).scalar_one()) == 1
