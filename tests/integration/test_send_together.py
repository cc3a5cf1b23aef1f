"""Without a review, a batch's new decisions are sent together (`TradingPipeline._send_together`:
one write of their pending orders, one call to the broker, one write of the answers): each
decision still ends as it would alone. A halt that lands after judging, a pending write that
fails, a rejection write that fails, a bug before and after the orders left, and a batch wider
than one round (1,000 decisions), on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.conftest import Database
from tests.fakes import FaultyAuditStore, FaultyBroker, unanswered
from tests.integration.test_pending_orders import _Unset, decisions, wrap
from tests.integration.test_pipeline_behaviour import _buys
from torghut.bootstrap import Container, build_container
from torghut.config import load_settings
from torghut.db.tables import ExecutionRow, SimOrder
from torghut.domain import BrokerOrder, OrderRequest
from torghut.ports import AuditStore


async def _container(
    database: Database,
    tmp_path: Path,
    n: int,
    *,
    store: dict[str, Any] | None = None,
    broker: FaultyBroker | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Container, list[FaultyAuditStore]]:
    stores: list[FaultyAuditStore] = []

    def wrap_store(inner: AuditStore) -> AuditStore:
        stores.append(FaultyAuditStore(inner, **(store or {})))
        return stores[-1]

    container = await build_container(
        load_settings({"DB_DSN": database.dsn, **(env or {})}, None),
        signals_path=_buys(tmp_path, n),
        trading_enabled=True,
        wrap_store=wrap_store,
        wrap_broker=wrap(broker) if broker else None,
    )
    return container, stores


async def _counts(database: Database) -> tuple[int, int]:
    async with database.sessions() as session:
        orders = await session.scalar(select(func.count()).select_from(SimOrder))
        executions = await session.scalar(select(func.count()).select_from(ExecutionRow))
    return orders or 0, executions or 0


def _outcomes(rows: Sequence[Any]) -> list[tuple[str, str | None, bool]]:
    return [(r.status, r.reason, r.pending_order_json is not None) for r in rows]


async def test_a_halt_that_lands_after_judging_sends_nothing(
    database: Database, tmp_path: Path
) -> None:
    # The batch's decisions are held while they are being stored; the operator halts then.
    release = asyncio.Event()
    c, stores = await _container(
        database,
        tmp_path,
        3,
        store={"hold": {"insert_judged_decisions": release}, "hold_after": frozenset()},
    )
    try:
        cycle = asyncio.create_task(c.pipeline.run_cycle())
        async with asyncio.timeout(30):  # a guard against hanging, not a speed check
            await stores[0].held.wait()
        await c.halt.halt("stop now")
        release.set()
        result = await cycle
    finally:
        await c.aclose()
    assert (result.submitted, dict(result.rejected), result.committed) == (0, {"halted": 3}, True)
    assert _outcomes(await decisions(database)) == [("rejected", "halted", False)] * 3
    assert await _counts(database) == (0, 0)
    assert "record_pending_orders" not in stores[0].calls


async def test_a_failed_pending_write_sends_nothing_and_rejects_each(
    database: Database, tmp_path: Path
) -> None:
    c, stores = await _container(
        database, tmp_path, 3, store={"fail": {"record_pending_orders": [OSError("disk full")]}}
    )
    try:
        result = await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    assert (result.submitted, dict(result.rejected)) == (0, {"order_write_failed": 3})
    assert _outcomes(await decisions(database)) == [("rejected", "order_write_failed", False)] * 3
    assert await _counts(database) == (0, 0)
    assert stores[0].calls["reject_decisions"] == [3]


async def test_a_failed_rejection_write_is_tried_again_as_an_internal_error(
    database: Database, tmp_path: Path
) -> None:
    faults = {"record_pending_orders": [OSError("disk full")], "reject_decisions": [OSError("x")]}
    c, stores = await _container(database, tmp_path, 2, store={"fail": faults})
    try:
        result = await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    assert dict(result.rejected) == {"internal_error:OSError": 2} and result.committed
    assert (
        _outcomes(await decisions(database)) == [("rejected", "internal_error:OSError", False)] * 2
    )
    assert stores[0].calls["reject_decisions"] == [2, 2]


class _Garbled(FaultyBroker):
    """Places the orders, then answers something that is no answer (a broker adapter's bug)."""

    async def submit_orders(self, orders: Sequence[OrderRequest]) -> list[BrokerOrder | Exception]:
        self.sent.append(list(orders))
        await self.inner.submit_orders(orders)
        return ["garbled"] * len(orders)  # type: ignore[list-item]


async def test_a_bug_after_the_orders_left_rejects_none_and_the_next_cycle_adopts_them(
    database: Database, tmp_path: Path
) -> None:
    garbled = _Garbled(_Unset())  # type: ignore[arg-type]
    c, _ = await _container(database, tmp_path, 2, broker=garbled)
    try:
        first = await c.pipeline.run_cycle()
        assert (first.submitted, dict(first.rejected), first.committed) == (0, {}, False)
        # Planned, with the order written ahead: the broker may hold them.
        assert _outcomes(await decisions(database)) == [("planned", None, True)] * 2
        garbled.__class__ = FaultyBroker  # the adapter is fixed: its answers read again
        second = await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    assert (second.submitted, dict(second.rejected), second.committed) == (2, {}, True)
    assert [r.status for r in await decisions(database)] == ["filled", "filled"]
    assert len(garbled.sent) == 1  # adopted, never sent twice
    assert await _counts(database) == (2, 2)


@dataclass
class _Crashing(FaultyBroker):
    """A broker adapter whose request building fails before anything is sent (a bug), until
    it is fixed (`crash` False)."""

    crash: bool = True

    async def submit_orders(self, orders: Sequence[OrderRequest]) -> list[BrokerOrder | Exception]:
        if self.crash:
            raise ZeroDivisionError("bug in the adapter")
        return await super().submit_orders(orders)


async def test_an_adapter_that_fails_before_sending_leaves_the_orders_to_be_asked_about(
    database: Database, tmp_path: Path
) -> None:
    # The pipeline cannot know the request never left: never rejected on its word; the broker
    # is asked about each, and the next cycle sends what it does not hold.
    crashing = _Crashing(_Unset())  # type: ignore[arg-type]
    c, _ = await _container(database, tmp_path, 2, broker=crashing)
    try:
        first = await c.pipeline.run_cycle()
        assert (first.submitted, dict(first.rejected), first.committed) == (0, {}, False)
        assert _outcomes(await decisions(database)) == [("planned", None, True)] * 2
        crashing.crash = False
        second = await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    assert (second.submitted, second.committed) == (2, True)
    assert [r.status for r in await decisions(database)] == ["filled", "filled"]
    assert await _counts(database) == (2, 2)


async def test_a_batch_wider_than_a_round_is_sent_in_rounds(
    database: Database, tmp_path: Path
) -> None:
    broker = FaultyBroker(_Unset())  # type: ignore[arg-type]
    cash = {
        "TRADING_SIM_CASH": "10000000",
        "TRADING_MAX_POSITION_PCT_EQUITY": "1",
        "TRADING_BATCH_SIZE": "1100",
    }
    c, stores = await _container(database, tmp_path, 1003, broker=broker, env=cash)
    try:
        result = await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    assert (result.submitted, result.committed) == (1003, True)
    # A whole default batch (500) in one round; a wider one in rounds of 1,000.
    assert [len(orders) for orders in broker.sent] == [1000, 3]
    assert stores[0].calls["record_pending_orders"] == [1000, 3]
    assert stores[0].calls["record_executions"] == [1000, 3]
    assert await _counts(database) == (1003, 1003)


@dataclass
class _AskedTogether(FaultyBroker):
    """Every order's answer lost; each lookup waits until all of them are being asked at
    once (a broker that is down answers each only at its deadline)."""

    expected: int = 0
    asking: int = 0
    all_asking: asyncio.Event = field(default_factory=asyncio.Event)

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        self.asking += 1
        if self.asking == self.expected:
            self.all_asking.set()
        await self.all_asking.wait()
        return await super().get_order(client_order_id)


async def test_orders_whose_outcome_is_unknown_are_asked_about_side_by_side(
    database: Database, tmp_path: Path
) -> None:
    broker = _AskedTogether(_Unset(), submit_faults=[unanswered()], expected=3)  # type: ignore[arg-type]
    c, _ = await _container(database, tmp_path, 3, broker=broker)
    try:
        # A guard against hanging, not a speed check: one lookup at a time never ends.
        async with asyncio.timeout(30):
            result = await c.pipeline.run_cycle()
    finally:
        await c.aclose()
    assert broker.asking == 3 and (result.committed, result.submitted) == (False, 0)
    # Not found, never rejected on one "not found": still planned, their orders written ahead.
    assert _outcomes(await decisions(database)) == [("planned", None, True)] * 3
