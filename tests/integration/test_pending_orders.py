"""Write-ahead orders: an order is stored on its decision before it is sent and cleared when
the broker's answer is recorded; an order whose outcome was never learned is adopted or sent
again as it was, and never rejected while it may be live. (Cases found by an internal review.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import func, select, text, update

from tests.conftest import Database
from tests.fakes import (
    FaultyAuditStore,
    FaultyBroker,
    arrives_later,
    lost,
    refuse_each,
    unanswered,
)
from tests.integration.test_gate_table import FakeProvider
from tests.integration.test_pipeline_behaviour import _buys, _env, run_one_cycle
from torghut.bootstrap import Container, build_container
from torghut.config import load_settings
from torghut.db.tables import ExecutionRow, SimOrder, TradeDecisionRow
from torghut.errors import BrokerError
from torghut.ports import Broker
from torghut.replay import run_replay


def lose_first_answer(*, place_first: bool = False, late: bool = False) -> FaultyBroker:
    """A broker whose first answer is lost (a reset connection). `place_first`: the order was
    placed all the same; `late`: it arrives later, when the test delivers it. Its `sent` is
    what was handed to it. Wrap a container's broker with `wrap(broker)`."""
    fault = lost() if place_first else arrives_later() if late else unanswered()
    return FaultyBroker(_Unset(), submit_faults=[fault])  # type: ignore[arg-type]


class _Unset:
    """Stands in for the inner broker until `wrap` gives the real one."""


def wrap(faulty: FaultyBroker) -> Callable[[Broker], Broker]:
    """Each new container's broker behind this one fault plan (shared across processes)."""

    def wrapper(inner: Broker) -> Broker:
        faulty.inner = inner
        return faulty

    return wrapper


async def container(
    database: Database, tmp_path: Path, n: int = 1, broker: FaultyBroker | None = None
) -> Container:
    settings = load_settings({"DB_DSN": database.dsn}, None)
    return await build_container(
        settings,
        signals_path=_buys(tmp_path, n),
        trading_enabled=True,
        wrap_broker=wrap(broker) if broker else None,
    )


async def decisions(database: Database) -> Sequence[TradeDecisionRow]:
    async with database.sessions() as session:
        query = select(TradeDecisionRow).order_by(TradeDecisionRow.symbol)
        return (await session.execute(query)).scalars().all()


async def test_an_unreadable_pending_order_holds_only_its_own_decision(
    database: Database, tmp_path: Path
) -> None:
    c = await container(database, tmp_path, n=2, broker=lose_first_answer())
    try:
        assert (await c.pipeline.run_cycle()).committed is False
        rows = await decisions(database)
        assert all(r.pending_order_json for r in rows)
        broken = {**(rows[0].pending_order_json or {}), "qty": "not-a-number"}
        async with database.sessions() as session, session.begin():
            await session.execute(
                update(TradeDecisionRow)
                .where(TradeDecisionRow.id == rows[0].id)
                .values(pending_order_json=broken)
            )
        result = await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    assert (result.committed, result.submitted) == (False, 1)
    # Neither re-sent nor rejected (it may be live) until an operator looks; the other fills.
    assert [r.status for r in await decisions(database)] == ["planned", "filled"]


async def test_a_resend_whose_pending_write_fails_keeps_the_decision_planned(
    database: Database, tmp_path: Path
) -> None:
    broker = lose_first_answer(late=True)
    # The first pending write goes through; the re-send's rewrite fails.
    store = {"record_pending_orders": [None, OSError("database went away")]}
    settings = load_settings({"DB_DSN": database.dsn}, None)
    c = await build_container(
        settings,
        signals_path=_buys(tmp_path, 1),
        trading_enabled=True,
        wrap_broker=wrap(broker),
        wrap_store=lambda inner: FaultyAuditStore(inner, fail=dict(store)),
    )
    try:
        await c.pipeline.run_cycle()
        await c.pipeline.run_cycle()
        await broker.deliver_late()  # the first request lands, late
    finally:
        await c.aclose()
    [row] = await decisions(database)
    assert row.status == "planned" and row.pending_order_json is not None


async def test_a_refused_order_leaves_nothing_pending(database: Database, tmp_path: Path) -> None:
    refusing = FaultyBroker(_Unset(), submit_faults=[refuse_each()])  # type: ignore[arg-type]
    c = await container(database, tmp_path, broker=refusing)
    try:
        await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    [row] = await decisions(database)
    assert (row.status, row.pending_order_json) == ("rejected", None)


async def test_an_adopted_order_is_recorded_as_it_was_sent(
    database: Database, tmp_path: Path
) -> None:
    """The review adjusted the order to 6 shares; it was placed, its answer lost, and the
    broker could not be asked at once. Adopted next cycle: the execution row says 6."""
    broker = lose_first_answer(place_first=True)
    broker.lookup_faults.append(BrokerError("503 from the broker", rejected=False))
    env = _env(
        database.dsn, LLM_SHADOW_MODE="false", LLM_FAIL_MODE="veto", LLM_ADJUSTMENT_ALLOWED="true"
    )
    c = await build_container(
        load_settings(env, None),
        signals_path=_buys(tmp_path, 1),
        trading_enabled=True,
        provider=FakeProvider("adjust"),
        wrap_broker=wrap(broker),
    )
    try:
        await c.pipeline.run_cycle()
        await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    async with database.sessions() as session:
        order = (await session.execute(select(SimOrder))).scalar_one()
        execution = (await session.execute(select(ExecutionRow))).scalar_one()
    assert execution.submitted_qty == order.qty == 6


async def test_a_recorded_order_leaves_sql_null_behind(database: Database, tmp_path: Path) -> None:
    await run_replay(load_settings({"DB_DSN": database.dsn}, None), _buys(tmp_path, 1))
    async with database.sessions() as session:
        cleared = await session.scalar(
            text("select count(*) from trade_decisions where pending_order_json is null")
        )
        total = await session.scalar(select(func.count()).select_from(TradeDecisionRow))
    assert cleared == total == 1


async def test_past_the_resend_window_an_order_the_broker_never_got_is_rejected(
    database: Database, tmp_path: Path
) -> None:
    broker = lose_first_answer()
    signals = _buys(tmp_path, 1)

    env = {"DB_DSN": database.dsn, "TRADING_RESEND_WINDOW_SECONDS": "60"}
    await run_one_cycle(env, signals, wrap_broker=wrap(broker))  # the answer is lost: pending
    # The window has passed: not sent again.
    late = await run_one_cycle(
        {**env, "TRADING_RESEND_WINDOW_SECONDS": "0"}, signals, wrap_broker=wrap(broker)
    )
    assert (late.committed, late.submitted, late.rejected) == (True, 0, {"broker_no_answer": 1})
    assert [[str(o.qty) for o in batch] for batch in broker.sent] == [["10"]]
    [row] = await decisions(database)
    assert (row.status, row.reason, row.pending_order_json) == (
        "rejected",
        "broker_no_answer",
        None,
    )
