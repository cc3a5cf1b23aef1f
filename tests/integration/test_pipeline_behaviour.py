"""The gate's timing and safety rules in the pipeline: shadow never delays an order, enforcing
never sends one before its audit row, reviews are concurrent and bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import Database
from tests.fakes import FaultyAuditStore, FaultyBroker, lost, unanswered
from tests.integration.test_gate_table import FakeProvider
from torghut.bootstrap import build_container
from torghut.config import load_settings
from torghut.db.engine import upgrade
from torghut.db.tables import ExecutionRow, LLMDecisionReview, TradeDecisionRow
from torghut.domain import OrderRequest
from torghut.ports import AuditStore, Broker, ChatMessage, Completion
from torghut.replay import run_replay
from torghut.trading.pipeline import CycleResult


def _buys(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"buys-{n}.jsonl"
    lines = [
        {
            "event_ts": "2026-03-02T15:00:00Z",
            "symbol": f"S{i:03d}",
            "timeframe": "1Min",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 100.0,
        }
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


async def run_one_cycle(
    env: dict[str, str],
    signals: Path,
    provider: FakeProvider | None = None,
    wrap_broker: Callable[[Broker], Broker] | None = None,
) -> CycleResult:
    """One cycle of a fresh process (a restart, the next leader) with these settings."""
    container = await build_container(
        load_settings(env, None),
        signals_path=signals,
        trading_enabled=True,
        provider=provider,
        wrap_broker=wrap_broker,
    )
    try:
        return await container.pipeline.run_cycle()
    finally:
        await container.aclose()


def _env(dsn: str, **extra: str) -> dict[str, str]:
    return {"DB_DSN": dsn, "JANGAR_BASE_URL": "http://127.0.0.1:9", "LLM_ENABLED": "true", **extra}


class GatedProvider(FakeProvider):
    """Holds every review until the test opens the gate; counts reviews in flight."""

    def __init__(self, outcome: str = "approve") -> None:
        super().__init__(outcome)
        self.release = asyncio.Event()
        self.in_flight = 0
        self.peak = 0
        self.changed = asyncio.Condition()

    async def held(self, n: int) -> None:
        """Wait until `n` reviews are held at the gate."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.in_flight >= n)

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        async with self.changed:
            self.in_flight += 1
            self.changed.notify_all()
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.release.wait()
            return await super().complete(messages)
        finally:
            self.in_flight -= 1


async def test_shadow_submits_before_the_review_finishes(
    database: Database, tmp_path: Path
) -> None:
    settings = load_settings(_env(database.dsn, LLM_SHADOW_MODE="true"), None)
    provider = GatedProvider("veto")
    container = await build_container(
        settings, signals_path=_buys(tmp_path, 3), trading_enabled=True, provider=provider
    )
    try:
        result = await container.pipeline.run_cycle()
        # Every order is out while every review is still held (the reviews, started beside
        # the orders, may still be reading their context: wait until all three are held).
        assert result.submitted == 3
        async with asyncio.timeout(30):  # a guard against hanging, not a speed check
            await provider.held(3)
        assert container.pipeline.reviews_in_flight == 3
        async with database.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(ExecutionRow)) == 3
            assert await session.scalar(select(func.count()).select_from(LLMDecisionReview)) == 0
        provider.release.set()
        await container.pipeline.drain()
        async with database.sessions() as session:
            rows = (await session.execute(select(LLMDecisionReview))).scalars().all()
        assert [(r.verdict, r.shadow, r.effective_action) for r in rows] == [
            ("veto", True, "submitted_original")
        ] * 3
        metrics = container.metrics.render().decode()
        assert 'torghut_llm_reviews_total{verdict="veto"} 3.0' in metrics
        assert 'torghut_llm_shadow_disagreements_total{verdict="veto"} 3.0' in metrics
        assert "torghut_llm_review_latency_seconds_count 3.0" in metrics
        assert 'torghut_llm_tokens_total{kind="prompt"} 30.0' in metrics
    finally:
        await container.aclose()


async def test_reviews_run_concurrently_up_to_the_limit(database: Database, tmp_path: Path) -> None:
    settings = load_settings(
        _env(database.dsn, LLM_SHADOW_MODE="false", LLM_MAX_CONCURRENCY="4"), None
    )
    provider = GatedProvider()
    container = await build_container(
        settings, signals_path=_buys(tmp_path, 12), trading_enabled=True, provider=provider
    )
    try:
        cycle = asyncio.create_task(container.pipeline.run_cycle())
        for _ in range(200):
            if provider.in_flight == 4:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert provider.in_flight == 4, "four reviews at once, no more"
        provider.release.set()
        result = await cycle
        assert provider.peak == 4 and provider.calls == 12
        assert result.submitted == 12
    finally:
        await container.aclose()


async def test_failed_audit_write_means_no_order(database: Database, tmp_path: Path) -> None:
    settings = load_settings(_env(database.dsn, LLM_SHADOW_MODE="false"), None)
    summary = await run_replay(
        settings,
        _buys(tmp_path, 2),
        provider=FakeProvider("approve"),
        wrap_store=lambda inner: FaultyAuditStore(
            inner, always={"record_review": OSError("disk full")}
        ),
    )
    assert summary["submitted"] == 0
    assert summary["rejected"] == {"audit_write_failed": 2}
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ExecutionRow)) == 0
        statuses = (await session.execute(select(TradeDecisionRow.status))).scalars().all()
    assert statuses == ["rejected", "rejected"]


async def test_adjusted_decision_is_risk_checked_again(database: Database, tmp_path: Path) -> None:
    # The model asks for 12 shares (within 1.25x of 10) but 12 x $100 breaks the $1000 cap.
    class Upsize(FakeProvider):
        async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
            self.calls += 1
            body = {
                "verdict": "adjust",
                "confidence": 0.9,
                "adjusted_qty": 12,
                "rationale": "bigger",
            }
            return Completion(json.dumps(body), "", None, latency_ms=5, ttft_ms=1)

    env = _env(database.dsn, LLM_SHADOW_MODE="false", LLM_ADJUSTMENT_ALLOWED="true")
    summary = await run_replay(load_settings(env, None), _buys(tmp_path, 1), provider=Upsize("x"))
    assert summary["submitted"] == 0
    assert summary["rejected"] == {"max_notional_exceeded": 1}
    async with database.sessions() as session:
        row = (await session.execute(select(LLMDecisionReview))).scalar_one()
    assert (row.verdict, row.effective_action) == ("adjust", "rejected")
    assert row.tokens_prompt is None, "no usage from the gateway stays null"


async def test_restart_after_upgrade_is_idempotent(database: Database) -> None:
    upgrade(database.dsn)  # a second upgrade at head changes nothing


async def test_gateway_echoing_the_key_never_reaches_the_audit_row(
    database: Database, tmp_path: Path
) -> None:
    from tests.integration.rawserver import RawServer, respond

    key = "sk-jangar-secret-7c41d9"
    body = (
        'data: {"error":{"message":"bad header Authorization: Bearer ' + key + '",'
        '"type":"auth","code":"unauthorized"}}\n\ndata: [DONE]\n\n'
    ).encode()
    async with RawServer([respond(body, 401)]) as server:
        env = {
            "DB_DSN": database.dsn,
            "JANGAR_BASE_URL": server.url,
            "JANGAR_API_KEY": key,
            "LLM_ENABLED": "true",
            "LLM_SHADOW_MODE": "false",
            "LLM_FAIL_MODE": "veto",
        }
        summary = await run_replay(load_settings(env, None), _buys(tmp_path, 1))
        assert server.requests[0].headers.get("authorization") == f"Bearer {key}"
    assert summary["rejected"] == {"llm_error:http_error": 1}
    async with database.sessions() as session:
        row = (await session.execute(select(LLMDecisionReview))).scalar_one()
    stored = json.dumps([row.error_message, row.input_json, row.response_json], default=str)
    assert key not in stored
    assert "401" in (row.error_message or "") and "***" in (row.error_message or "")


async def test_order_sent_before_a_crash_is_adopted_not_orphaned(
    database: Database, tmp_path: Path
) -> None:
    """A run died after the broker took the order but before it was recorded: the restart
    records that order. No second order, no second review (a veto now must not strand it)."""
    from decimal import Decimal

    from torghut.db import repo
    from torghut.db.tables import SimOrder
    from torghut.domain import OrderRequest, decision_hash
    from torghut.trading.brokers import SimBroker
    from torghut.trading.signals import parse_signal_line
    from torghut.trading.strategy import DEFAULT_STRATEGY, evaluate

    signals = _buys(tmp_path, 1)
    signal = parse_signal_line(signals.read_text().splitlines()[0], 1)
    decision = evaluate(DEFAULT_STRATEGY, signal, equity=Decimal(100_000))
    assert decision is not None
    h = decision_hash(decision)
    async with database.sessions() as session, session.begin():
        from torghut.db.tables import Strategy

        session.add(Strategy(id=DEFAULT_STRATEGY.name, params={}))
    await repo.insert_decision(database.db, decision, h)
    broker = SimBroker(database.db, starting_cash=Decimal(100_000))
    await broker.submit_order(OrderRequest.for_decision(decision, h))

    provider = FakeProvider("veto")
    env = _env(database.dsn, LLM_SHADOW_MODE="false", LLM_FAIL_MODE="veto")
    summary = await run_replay(load_settings(env, None), signals, provider=provider)
    assert provider.calls == 0
    assert summary["submitted"] == 1
    async with database.sessions() as session:
        decision_row = (await session.execute(select(TradeDecisionRow))).scalar_one()
        execution = (await session.execute(select(ExecutionRow))).scalar_one()
        orders = (await session.execute(select(SimOrder))).scalars().all()
    assert decision_row.status == "filled"
    assert len(orders) == 1 and execution.broker_order_id == orders[0].broker_order_id
    assert execution.client_order_id == h


async def _one_buy_outcome(database: Database) -> tuple[list[str], int, int]:
    from torghut.db.tables import SimOrder

    async with database.sessions() as session:
        statuses = list((await session.execute(select(TradeDecisionRow.status))).scalars())
        executions = await session.scalar(select(func.count()).select_from(ExecutionRow))
        orders = await session.scalar(select(func.count()).select_from(SimOrder))
    return statuses, executions or 0, orders or 0


async def test_placed_order_whose_record_fails_is_adopted_not_rejected(
    database: Database, tmp_path: Path
) -> None:
    summary = await run_replay(
        load_settings({"DB_DSN": database.dsn}, None),
        _buys(tmp_path, 1),
        wrap_store=lambda inner: FaultyAuditStore(
            inner, fail={"record_executions": [OSError("database went away")]}
        ),
    )
    assert summary["complete"] is True and summary["submitted"] == 1
    assert await _one_buy_outcome(database) == (["filled"], 1, 1)


@pytest.mark.parametrize("placed_before_failing", [True, False])
async def test_broker_timeout_asks_the_broker_before_deciding(
    database: Database,
    tmp_path: Path,
    placed_before_failing: bool,
) -> None:
    brokers: list[FaultyBroker] = []

    def wrap(inner: Broker) -> Broker:
        brokers.append(
            FaultyBroker(inner, submit_faults=[lost() if placed_before_failing else unanswered()])
        )
        return brokers[-1]

    summary = await run_replay(
        load_settings({"DB_DSN": database.dsn}, None), _buys(tmp_path, 1), wrap_broker=wrap
    )
    # Placed: found by its client order id at once. Not placed: never rejected on one "not
    # found" (a timed-out request may still arrive); the next cycle re-sends that order.
    assert (summary["submitted"], summary["rejected"], summary["complete"]) == (1, {}, True)
    assert len(brokers[0].sent) == (1 if placed_before_failing else 2)
    assert await _one_buy_outcome(database) == (["filled"], 1, 1)


async def test_model_text_is_redacted_in_the_audit_row(database: Database, tmp_path: Path) -> None:
    key = "sk-jangar-model-echo-55"

    class Leaky(FakeProvider):
        async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
            body = {
                "verdict": "approve",
                "confidence": 0.9,
                "rationale": f"saw Bearer {key}",
                "risk_flags": [key],
                "note": key,
            }
            return Completion(json.dumps(body), f"thinking about {key}", None, 5, 1)

    env = _env(database.dsn, LLM_SHADOW_MODE="false", JANGAR_API_KEY=key)
    await run_replay(load_settings(env, None), _buys(tmp_path, 1), provider=Leaky("x"))
    async with database.sessions() as session:
        row = (await session.execute(select(LLMDecisionReview))).scalar_one()
    stored = json.dumps(
        [row.rationale, row.risk_flags, row.response_json, row.input_json], default=str
    )
    assert key not in stored and "***" in (row.rationale or "")


async def test_a_batch_shares_its_broker_and_database_writes(
    database: Database, tmp_path: Path
) -> None:
    """Decisions that pass risk together go to the broker in one call, their execution rows
    in one transaction (group commit), and every one of them still gets its own outcome: 40
    buys of which the last 10 cannot be paid for (rejected by risk, those are stored rejected
    with the batch's decision rows: no transaction of their own)."""
    brokers: list[FaultyBroker] = []
    stores: list[FaultyAuditStore] = []

    def wrap_broker(inner: Broker) -> Broker:
        brokers.append(FaultyBroker(inner))
        return brokers[-1]

    def wrap_store(inner: AuditStore) -> AuditStore:
        stores.append(FaultyAuditStore(inner))
        return stores[-1]

    # $1,000 a trade (10 shares at 100) from $30,000 of cash: risk lets 30 through (counting
    # the reservations of the batch) and rejects the other 10, each with its reason.
    env = {
        "DB_DSN": database.dsn,
        "TRADING_SIM_CASH": "30000",
        "TRADING_MAX_POSITION_PCT_EQUITY": "1",
        "TRADING_MAX_NOTIONAL_PER_TRADE": "1000",
    }
    summary = await run_replay(
        load_settings(env, None),
        _buys(tmp_path, 40),
        wrap_broker=wrap_broker,
        wrap_store=wrap_store,
    )
    assert (summary["submitted"], summary["rejected"]) == (30, {"insufficient_buying_power": 10})
    calls = stores[0].calls
    assert [len(batch) for batch in brokers[0].sent] == [30]
    assert (calls["record_executions"], calls.get("reject_decisions")) == ([30], None)
    assert calls["insert_judged_decisions"] == [40]
    async with database.sessions() as session:
        statuses = list((await session.execute(select(TradeDecisionRow.status))).scalars())
        executions_stored = await session.scalar(select(func.count()).select_from(ExecutionRow))
    assert (statuses.count("filled"), statuses.count("rejected"), executions_stored) == (30, 10, 30)


async def test_shutdown_keeps_the_lock_while_a_cancelled_audit_write_still_runs(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shadow review cancelled at shutdown may already have handed its audit row to a
    database thread, which cannot be called back: the leader lock must not go before that
    write is over, or it could land after another leader took over. The review here ends,
    and its write starts, only after the cycle's own writes were settled."""
    import threading

    started, release = threading.Event(), threading.Event()
    settings = load_settings(_env(database.dsn, LLM_SHADOW_MODE="true"), None)
    provider = GatedProvider("approve")
    container = await build_container(
        settings,
        signals_path=_buys(tmp_path, 1),
        trading_enabled=True,
        provider=provider,
        wrap_store=lambda inner: FaultyAuditStore(
            inner, stall={"record_review": (started, release)}
        ),
    )
    real_quiesce = container.pipeline.quiesce

    async def quiesce_then_let_the_review_end(grace_seconds: float = 30) -> int:
        still = await real_quiesce(grace_seconds)
        provider.release.set()
        return still

    monkeypatch.setattr(container.pipeline, "quiesce", quiesce_then_let_the_review_end)
    released: list[bool] = []

    async def release_lock() -> None:
        released.append(True)

    monkeypatch.setattr(container.scheduler.lock, "release", release_lock)
    try:
        assert (await container.pipeline.run_cycle()).submitted == 1
        async with asyncio.timeout(30):  # a guard against hanging, not a speed check
            await provider.held(1)
        with caplog.at_level("ERROR"):
            await container.scheduler.stop(grace_seconds=0.5)
        assert started.is_set()  # the audit write did reach its thread
        assert released == []  # kept: the write was still running
        assert "leader lock is kept" in caplog.text
    finally:
        release.set()
        await container.aclose()


async def test_a_batch_counts_its_own_orders_per_symbol_for_position_size(
    database: Database, tmp_path: Path
) -> None:
    """Buys of one batch count each other's reservations in their own symbol only: with
    $2,500 allowed per symbol and $1,000 a trade, two buys go through in each of three
    symbols, whatever the size of the batch, and the third in each is turned away."""
    path = tmp_path / "same-symbols.jsonl"
    lines = [
        {
            "event_ts": f"2026-03-02T15:{minute:02d}:00Z",
            "symbol": symbol,
            "timeframe": "1Min",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 100.0,
        }
        for minute in range(4)
        for symbol in ("AAA", "BBB", "CCC")
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    env = {
        "DB_DSN": database.dsn,
        "TRADING_SIM_CASH": "100000",
        "TRADING_MAX_POSITION_PCT_EQUITY": "0.025",
        "TRADING_MAX_NOTIONAL_PER_TRADE": "1000",
    }
    summary = await run_replay(load_settings(env, None), path)
    assert (summary["submitted"], summary["rejected"]) == (6, {"max_position_pct_exceeded": 6})
    async with database.sessions() as session:
        filled = (
            await session.execute(
                select(TradeDecisionRow.symbol, func.count())
                .where(TradeDecisionRow.status == "filled")
                .group_by(TradeDecisionRow.symbol)
            )
        ).all()
    assert sorted(filled) == [("AAA", 2), ("BBB", 2), ("CCC", 2)]


async def test_a_cancelled_cycle_sends_nothing_afterwards_and_the_next_leader_finishes_it(
    database: Database, tmp_path: Path
) -> None:
    """Shutdown past its grace cancels the cycle while its orders are being placed: the
    broker call is cancelled with it (nothing is sent later, behind the next leader's back).
    Those orders were handed to the broker, so the next leader finishes exactly them, once,
    without a second review (here it would veto)."""
    from torghut.db.tables import SimOrder

    signals = _buys(tmp_path, 2)
    release = asyncio.Event()
    slow: list[FaultyBroker] = []

    def wrap(inner: Broker) -> Broker:
        slow.append(FaultyBroker(inner, hold=release))
        return slow[0]

    old = await build_container(
        load_settings({"DB_DSN": database.dsn}, None),
        signals_path=signals,
        trading_enabled=True,
        wrap_broker=wrap,
    )
    try:
        cycle = asyncio.create_task(old.pipeline.run_cycle())
        await slow[0].held.wait()
        cycle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cycle
        assert slow[0].cancelled == 1  # the broker call went down with the cycle
        env = _env(database.dsn, LLM_SHADOW_MODE="false", LLM_FAIL_MODE="veto")
        provider = FakeProvider("veto")
        result = await run_one_cycle(env, signals, provider)
        assert (result.submitted, result.rejected, provider.calls) == (2, {}, 0)
        release.set()
        await asyncio.sleep(0)
        async with database.sessions() as session:
            orders = await session.scalar(select(func.count()).select_from(SimOrder))
            statuses = list((await session.execute(select(TradeDecisionRow.status))).scalars())
        assert (orders, statuses) == (2, ["filled", "filled"])
    finally:
        await old.aclose()


async def test_an_adopted_order_whose_record_fails_stays_planned_until_recorded(
    database: Database, tmp_path: Path
) -> None:
    """The execution row fails to write after the order is placed, and again when the next
    cycle adopts it: the decision is never rejected with a live order; the third cycle
    records it."""
    stores: list[FaultyAuditStore] = []

    def wrap(inner: AuditStore) -> AuditStore:
        gone = OSError("database went away")
        stores.append(FaultyAuditStore(inner, fail={"record_executions": [gone, gone]}))
        return stores[0]

    summary = await run_replay(
        load_settings({"DB_DSN": database.dsn}, None), _buys(tmp_path, 1), wrap_store=wrap
    )
    assert summary["complete"] is True and summary["submitted"] == 1
    assert stores[0].calls["record_executions"] == [1, 1, 1]
    assert await _one_buy_outcome(database) == (["filled"], 1, 1)


async def test_an_unfinished_batch_waits_for_the_next_poll(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Execution rows cannot be written: the order is placed, the batch stays unfinished.
    One pass of the loop runs that batch once (not again and again at once) and says why."""
    env = {"DB_DSN": database.dsn, "TRADING_BATCH_SIZE": "1"}
    container = await build_container(
        load_settings(env, None),
        signals_path=_buys(tmp_path, 1),
        trading_enabled=True,
        wrap_store=lambda inner: FaultyAuditStore(
            inner, always={"record_executions": OSError("database went away")}
        ),
    )
    cycles = 0
    real = container.pipeline.run_cycle

    async def counted() -> object:
        nonlocal cycles
        cycles += 1
        return await real()

    monkeypatch.setattr(container.pipeline, "run_cycle", counted)
    try:
        await container.scheduler.run_once()
    finally:
        await container.aclose()
    assert cycles == 1
    assert "unfinished" in (container.scheduler.status.last_error or "")


async def test_an_order_with_no_known_outcome_is_resent_as_it_was_not_reviewed_again(
    database: Database, tmp_path: Path
) -> None:
    """The review adjusted the order to 6 shares; the broker's answer was lost and it has no
    such order. The next cycle sends those same 6 shares again, without a second review (which
    might now say something else about an order that may be live)."""
    from torghut.db.tables import SimOrder

    broker: list[FaultyBroker] = []

    def wrap(inner: Broker) -> Broker:
        broker.append(FaultyBroker(inner, submit_faults=[unanswered()]))
        return broker[0]

    provider = FakeProvider("adjust")
    env = _env(
        database.dsn, LLM_SHADOW_MODE="false", LLM_FAIL_MODE="veto", LLM_ADJUSTMENT_ALLOWED="true"
    )
    container = await build_container(
        load_settings(env, None),
        signals_path=_buys(tmp_path, 1),
        trading_enabled=True,
        provider=provider,
        wrap_broker=wrap,
    )
    try:
        first = await container.pipeline.run_cycle()
        assert (first.committed, first.submitted, first.rejected) == (False, 0, {})
        second = await container.pipeline.run_cycle()
        assert (second.committed, second.submitted) == (True, 1)
    finally:
        await container.aclose()
    assert provider.calls == 1
    assert [[str(o.qty) for o in batch] for batch in broker[0].sent] == [["6"], ["6"]]
    async with database.sessions() as session:
        order = (await session.execute(select(SimOrder))).scalar_one()
        decision = (await session.execute(select(TradeDecisionRow))).scalar_one()
    assert order.qty == 6 and decision.status == "filled"
    assert decision.pending_order_json is None  # cleared once the answer was recorded


async def test_the_kill_switch_stops_a_resend_too(database: Database, tmp_path: Path) -> None:
    from torghut.db.tables import SimOrder

    # One fault and one record of what was sent, shared by the three processes below.
    faults: list[Exception | None] = [unanswered()]
    sent: list[list[OrderRequest]] = []

    def wrap(inner: Broker) -> Broker:
        return FaultyBroker(inner, submit_faults=faults, sent=sent)

    signals = _buys(tmp_path, 1)
    env = {"DB_DSN": database.dsn}
    await run_one_cycle(env, signals, wrap_broker=wrap)  # the answer is lost: pending
    stopped = await run_one_cycle({**env, "TRADING_KILL_SWITCH": "true"}, signals, wrap_broker=wrap)
    assert (stopped.committed, stopped.submitted, len(sent)) == (False, 0, 1)
    resumed = await run_one_cycle(env, signals, wrap_broker=wrap)
    assert (resumed.committed, resumed.submitted, len(sent)) == (True, 1, 2)
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SimOrder)) == 1
