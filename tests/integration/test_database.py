"""`Database`: one transaction per `run`, off the event loop, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from tests.conftest import Database
from torghut.db import repo
from torghut.db.engine import STATEMENT_TIMEOUT_MS
from torghut.db.engine import Database as TorghutDatabase
from torghut.db.tables import SignalCursor, TradeDecisionRow
from torghut.trading.catalog import StrategyCatalog

TS = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def add_cursor(key: str) -> Callable[[Session], None]:
    def work(session: Session) -> None:
        session.add(SignalCursor(source=key, event_ts=TS, symbol="AAPL", seq=1))

    return work


class Held:
    """A transaction that holds its database thread until the test releases it, then does
    `then` (if any) in the same transaction."""

    def __init__(self, then: Callable[[Session], None] | None = None) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.then = then

    def __call__(self, session: Session) -> None:
        self.started.set()
        self.release.wait(10)
        if self.then is not None:
            self.then(session)

    async def wait_started(self) -> None:
        await asyncio.to_thread(self.started.wait, 10)


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
    blocker = Held()
    release = blocker.release
    workers = db._executor._max_workers  # fill every worker, so the next run has to queue
    blockers = [asyncio.ensure_future(db.run(blocker)) for _ in range(workers)]
    await blocker.wait_started()
    queued = asyncio.ensure_future(db.run(add_cursor("never")))
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
    slow = Held(then=add_cursor("late"))
    release = slow.release
    task = asyncio.ensure_future(db.run(slow))
    await slow.wait_started()
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
    with pytest.raises(RuntimeError, match="the database is closed"):
        await db.run(lambda session: None)


async def test_aclose_finishes_work_already_handed_over(database: Database) -> None:
    db = database.db
    slow = Held()
    release = slow.release
    running = asyncio.ensure_future(db.run(slow))
    queued = asyncio.ensure_future(db.run(add_cursor("queued")))
    await slow.wait_started()
    closing = asyncio.ensure_future(db.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waits for the running transaction
    release.set()
    await asyncio.gather(running, queued, closing)  # neither caller sees a cancellation
    assert await keys(database) == ["queued"]


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


async def _planned_decision(database: Database) -> uuid.UUID:
    from torghut.domain import Action, TradeDecision

    decision = TradeDecision(
        strategy_id="macd-rsi-default",
        symbol="AAPL",
        action=Action.BUY,
        qty=Decimal(1),
        event_ts=TS,
        timeframe="1Min",
    )
    await StrategyCatalog(None, "merge", database.db).load()  # the decision's strategy row
    return (await repo.insert_decision(database.db, decision, "h-exists")).id


async def test_a_bulk_update_naming_a_missing_row_writes_nothing_and_says_so(
    database: Database,
) -> None:
    """A pending order recorded on a decision that is not there must not pass for written:
    the whole transaction fails, and the decision that does exist is left as it was."""
    exists = await _planned_decision(database)
    missing = uuid.uuid4()
    with pytest.raises(StaleDataError, match="matched 1 of 2 rows"):
        await repo.record_pending_orders(
            database.db, [(exists, {"qty": "1"}), (missing, {"qty": "1"})]
        )
    with pytest.raises(StaleDataError, match="matched 0 of 1 rows"):
        await repo.reject_decisions(database.db, [(missing, "x")])
    async with database.sessions() as session:
        row = (await session.execute(select(TradeDecisionRow))).scalar_one()
    assert (row.status, row.pending_order_json) == ("planned", None)


async def test_deadlines_in_the_dsn_win_over_ours(database: Database) -> None:
    if database.kind != "postgresql":
        pytest.skip("connection deadlines and statement_timeout are PostgreSQL settings")
    dsn = f"{database.dsn}&connect_timeout=3&keepalives_idle=5"
    dsn = dsn.replace("options=", "options=-cstatement_timeout%3D1500%20")
    db = TorghutDatabase(dsn)
    try:

        def settings(session: Session) -> tuple[str, str, str]:
            raw = session.connection().connection.dbapi_connection
            assert raw is not None
            params = raw.info.get_parameters()  # type: ignore[attr-defined]
            timeout = session.execute(text("show statement_timeout")).scalar_one()
            return params["connect_timeout"], params["keepalives_idle"], timeout

        assert await db.run(settings) == ("3", "5", "1500ms")
    finally:
        await db.aclose()
