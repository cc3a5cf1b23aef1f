from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.conftest import Database
from torghut.db.tables import ExecutionRow, Strategy, TradeDecisionRow
from torghut.domain import (
    Account,
    Action,
    Book,
    BrokerOrder,
    OrderRequest,
    OrderType,
    Position,
    TimeInForce,
)
from torghut.errors import BrokerError
from torghut.trading.brokers import SimBroker
from torghut.trading.reconcile import MISSING_POLLS_KEY, reconcile

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


class FakeBroker:
    """Answers from a dict: an order, None (unknown) or an exception to raise."""

    def __init__(self, name: str = "fake") -> None:
        self._name = name
        self.answers: dict[str, BrokerOrder | Exception | None] = {}
        self.asked: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    async def get_account(self) -> Account:
        raise NotImplementedError

    async def get_book(self) -> Book:
        raise NotImplementedError

    async def list_positions(self) -> list[Position]:
        raise NotImplementedError

    async def list_open_orders(self) -> list[BrokerOrder]:
        raise NotImplementedError

    async def submit_order(self, order: OrderRequest) -> BrokerOrder:
        raise NotImplementedError

    async def submit_orders(self, orders: Sequence[OrderRequest]) -> list[BrokerOrder | Exception]:
        raise NotImplementedError

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        self.asked.append(client_order_id)
        answer = self.answers.get(client_order_id)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def settle(self, grace_seconds: float) -> int:
        return 0

    async def aclose(self) -> None:
        return None

    def set(
        self,
        coid: str,
        status: str,
        filled: str = "0",
        price: str | None = None,
        **raw: str,
    ) -> None:
        self.answers[coid] = BrokerOrder(
            broker_order_id=f"b-{coid}",
            client_order_id=coid,
            symbol="AAPL",
            status=status,
            filled_qty=Decimal(filled),
            avg_fill_price=None if price is None else Decimal(price),
            raw={"status": status, **raw},
        )


async def add_execution(
    database: Database,
    coid: str,
    *,
    status: str = "new",
    broker: str = "fake",
    created: datetime | None = None,
    decision_status: str = "submitted",
) -> uuid.UUID:
    async with database.sessions() as session, session.begin():
        if await session.get(Strategy, "s1") is None:
            session.add(Strategy(id="s1", params={}))
            await session.flush()
        decision_id = uuid.uuid4()
        session.add(
            TradeDecisionRow(
                id=decision_id,
                strategy_id="s1",
                symbol="AAPL",
                timeframe="1Min",
                action="buy",
                qty=Decimal(10),
                decision_json={},
                decision_hash=coid,
                status=decision_status,
                event_ts=NOW,
            )
        )
        await session.flush()
        session.add(
            ExecutionRow(
                trade_decision_id=decision_id,
                client_order_id=coid,
                broker_order_id=None,
                broker=broker,
                symbol="AAPL",
                side="buy",
                order_type="market",
                time_in_force="day",
                submitted_qty=Decimal(10),
                status=status,
                created_at=created or NOW - timedelta(minutes=5),
            )
        )
    return decision_id


async def load(database: Database, coid: str) -> tuple[ExecutionRow, TradeDecisionRow]:
    async with database.sessions() as session:
        execution = (
            await session.execute(select(ExecutionRow).where(ExecutionRow.client_order_id == coid))
        ).scalar_one()
        decision = await session.get(TradeDecisionRow, execution.trade_decision_id)
        assert decision is not None
        return execution, decision


async def test_status_fill_and_decision_are_mirrored(database: Database) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-fill")
    broker.set("c-fill", "filled", "10", "101.25", filled_at="2026-03-02T15:59:30.123456789Z")
    result = await reconcile(database.db, broker, now=NOW)
    assert (result.polled, result.updated, result.finalised, result.errors) == (1, 1, 1, 0)
    assert result.broker_rejected == 0
    execution, decision = await load(database, "c-fill")
    assert execution.status == "filled"
    assert execution.filled_qty == Decimal(10)
    assert execution.avg_fill_price == Decimal("101.25")
    assert execution.broker_order_id == "b-c-fill"
    assert execution.last_polled_at == NOW
    assert decision.status == "filled"
    assert decision.executed_at == datetime(2026, 3, 2, 15, 59, 30, 123456, tzinfo=UTC)


async def test_partial_fill_keeps_polling_then_final(database: Database) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-part")
    broker.set("c-part", "partially_filled", "4", "100")
    first = await reconcile(database.db, broker, now=NOW)
    assert (first.updated, first.finalised) == (1, 0)
    execution, decision = await load(database, "c-part")
    assert (execution.status, execution.filled_qty) == ("partially_filled", Decimal(4))
    assert decision.status == "partially_filled"
    assert decision.executed_at is None

    # Nothing new: polled, nothing updated.
    again = await reconcile(database.db, broker, now=NOW + timedelta(seconds=15))
    assert (again.polled, again.updated) == (1, 0)

    broker.set("c-part", "filled", "10", "100.5")
    last = await reconcile(database.db, broker, now=NOW + timedelta(seconds=30))
    assert (last.updated, last.finalised) == (1, 1)
    _, decision = await load(database, "c-part")
    assert decision.status == "filled"
    assert decision.executed_at == NOW + timedelta(seconds=30)


async def test_working_status_leaves_the_decision_submitted(database: Database) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-acc", status="pending_new")
    broker.set("c-acc", "accepted")
    await reconcile(database.db, broker, now=NOW)
    execution, decision = await load(database, "c-acc")
    assert execution.status == "accepted"
    assert decision.status == "submitted"


async def test_broker_rejection_is_recorded_on_the_decision(database: Database) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-rej")
    broker.answers["c-rej"] = BrokerOrder(
        broker_order_id="b1",
        client_order_id="c-rej",
        symbol="AAPL",
        status="rejected",
        reject_reason="insufficient buying power",
    )
    result = await reconcile(database.db, broker, now=NOW)
    assert (result.finalised, result.broker_rejected) == (1, 1)
    execution, decision = await load(database, "c-rej")
    assert execution.status == "rejected"
    assert execution.reject_reason == "insufficient buying power"
    assert decision.status == "rejected"
    assert decision.reason == "broker_rejected:insufficient buying power"


@pytest.mark.parametrize(
    "terminal",
    ["filled", "canceled", "expired", "rejected", "done_for_day", "replaced", "stopped", "error"],
)
async def test_terminal_statuses_are_not_polled(database: Database, terminal: str) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-done", status=terminal)
    result = await reconcile(database.db, broker, now=NOW)
    assert result.polled == 0
    assert broker.asked == []


async def test_done_for_day_stops_polling(database: Database) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-dfd")
    broker.set("c-dfd", "done_for_day", "3", "100")
    assert (await reconcile(database.db, broker, now=NOW)).finalised == 1
    assert (await reconcile(database.db, broker, now=NOW)).polled == 0
    assert broker.asked == ["c-dfd"]


async def test_a_failing_order_does_not_stop_the_others(database: Database) -> None:
    broker = FakeBroker()
    for coid in ("c-a", "c-bad", "c-b"):
        await add_execution(database, coid)
    broker.set("c-a", "filled", "10", "100")
    broker.answers["c-bad"] = BrokerError("alpaca unreachable: ConnectionError")
    broker.set("c-b", "canceled")
    result = await reconcile(database.db, broker, now=NOW)
    assert (result.polled, result.updated, result.finalised, result.errors) == (3, 2, 2, 1)
    assert (await load(database, "c-a"))[0].status == "filled"
    assert (await load(database, "c-b"))[0].status == "canceled"
    bad, _ = await load(database, "c-bad")
    assert bad.status == "new"
    assert bad.last_polled_at == NOW  # tried: goes behind the others next time


async def test_an_unexpected_exception_is_contained_too(database: Database) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-boom")
    await add_execution(database, "c-ok")
    broker.answers["c-boom"] = RuntimeError("bug in an adapter")
    broker.set("c-ok", "filled", "10", "100")
    result = await reconcile(database.db, broker, now=NOW)
    assert (result.errors, result.finalised) == (1, 1)


async def test_unknown_order_becomes_error_after_n_polls(database: Database) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-lost")
    for i in range(2):
        result = await reconcile(database.db, broker, now=NOW, max_missing_polls=3)
        assert (result.updated, result.finalised) == (1, 0)
        execution, _ = await load(database, "c-lost")
        assert execution.status == "new"
        assert execution.raw_json == {MISSING_POLLS_KEY: i + 1}
    result = await reconcile(database.db, broker, now=NOW, max_missing_polls=3)
    assert result.finalised == 1
    execution, decision = await load(database, "c-lost")
    assert execution.status == "error"
    assert decision.status == "error"
    assert decision.reason is not None and "after 3 polls" in decision.reason
    assert (await reconcile(database.db, broker, now=NOW)).polled == 0


async def test_an_order_found_again_resets_the_missing_count(database: Database) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-late")
    await reconcile(database.db, broker, now=NOW)
    broker.set("c-late", "new")
    result = await reconcile(database.db, broker, now=NOW)
    assert result.updated == 1
    execution, _ = await load(database, "c-late")
    assert execution.raw_json is not None
    assert MISSING_POLLS_KEY not in execution.raw_json


async def test_only_this_broker_executions_least_recently_polled_first(
    database: Database,
) -> None:
    broker = FakeBroker()
    await add_execution(database, "c-other", broker="alpaca")
    for i in range(3):
        await add_execution(database, f"c-{i}", created=NOW - timedelta(minutes=10 - i))
    for i in range(3):
        broker.set(f"c-{i}", "new")
    first = await reconcile(database.db, broker, now=NOW, limit=2)
    assert first.polled == 2
    assert sorted(broker.asked) == ["c-0", "c-1"]
    broker.asked.clear()
    # The never-polled one comes first now.
    await reconcile(database.db, broker, now=NOW + timedelta(seconds=1), limit=1)
    assert broker.asked == ["c-2"]
    assert "c-other" not in broker.asked


async def test_with_the_sim_broker_a_resting_limit_filled_by_a_mark(database: Database) -> None:
    sim = SimBroker(database.db, starting_cash=Decimal(100_000))
    request = OrderRequest(
        client_order_id="c-sim",
        symbol="AAPL",
        side=Action.BUY,
        qty=Decimal(10),
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        limit_price=Decimal(95),
        reference_price=Decimal(100),
    )
    placed = await sim.submit_order(request)
    assert placed.status == "new"
    await add_execution(database, "c-sim", broker="sim")
    assert (await reconcile(database.db, sim, now=NOW)).finalised == 0
    await sim.mark("AAPL", Decimal(94))
    result = await reconcile(database.db, sim, now=NOW)
    assert (result.updated, result.finalised) == (1, 1)
    execution, decision = await load(database, "c-sim")
    assert (execution.status, execution.filled_qty, execution.avg_fill_price) == (
        "filled",
        Decimal(10),
        Decimal(94),
    )
    assert execution.broker_order_id == placed.broker_order_id
    assert decision.status == "filled"
    assert decision.executed_at is not None


async def test_the_sweep_asks_a_broker_that_cannot_list_order_by_order(
    database: Database,
) -> None:
    """A `broker_no_answer` decision of the last hour is looked for by its client order id;
    found, its order is recorded and the decision follows it; older ones are left alone."""
    from torghut.trading.reconcile import FOUND_REASON

    async with database.sessions() as session, session.begin():
        session.add(Strategy(id="s1", params={}))
        await session.flush()
        for coid, rejected in (
            ("th-late", NOW - timedelta(minutes=5)),
            ("th-none", NOW - timedelta(minutes=5)),
            ("th-old", NOW - timedelta(hours=2)),
        ):
            session.add(
                TradeDecisionRow(
                    id=uuid.uuid4(),
                    strategy_id="s1",
                    symbol="AAPL",
                    timeframe="1Min",
                    action="buy",
                    qty=Decimal(10),
                    decision_json={},
                    decision_hash=coid,
                    status="rejected",
                    reason="broker_no_answer",
                    event_ts=rejected,
                    created_at=rejected,
                    updated_at=rejected,
                )
            )
    broker = FakeBroker()
    broker.set("th-late", "accepted", side="buy", type="market", time_in_force="day", qty="10")
    broker.set("th-old", "filled", filled="10", price="99")
    result = await reconcile(database.db, broker, now=NOW)
    assert (result.found, result.requests) == (1, 2)
    assert sorted(broker.asked) == ["th-late", "th-none"]
    execution, decision = await load(database, "th-late")
    assert (execution.status, execution.broker, execution.broker_order_id) == (
        "accepted",
        "fake",
        "b-th-late",
    )
    assert (decision.status, decision.reason) == ("submitted", FOUND_REASON)
    async with database.sessions() as session:
        others = (
            await session.execute(
                select(TradeDecisionRow.status, TradeDecisionRow.reason).where(
                    TradeDecisionRow.decision_hash.in_(["th-none", "th-old"])
                )
            )
        ).all()
    assert [tuple(row) for row in others] == [("rejected", "broker_no_answer")] * 2
    # The next pass polls the recorded execution like any other, and sweeps th-none again.
    broker.asked.clear()
    await reconcile(database.db, broker, now=NOW)
    assert sorted(broker.asked) == ["th-late", "th-none"]
