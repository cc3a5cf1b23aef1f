"""Audit rows that match what happened (issue 12 item 5): a decision resumed after a crash
reuses its enforced review instead of asking again, and a review row's `effective_action`
follows a later rejection of its order. Faults come from `tests/fakes.py`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import Database
from tests.fakes import FaultyAuditStore, FaultyBroker, lost, refused, unanswered
from tests.integration.test_gate_table import FakeProvider
from tests.integration.test_pipeline_behaviour import _buys, _env
from torghut.bootstrap import build_container
from torghut.config import load_settings
from torghut.db import repo
from torghut.db.tables import LLMDecisionReview, SimOrder, TradeDecisionRow
from torghut.ports import AuditStore, Broker
from torghut.trading.pipeline import CycleResult


async def cycle(
    database: Database,
    signals: Path,
    provider: FakeProvider,
    wrap: Callable[[Broker], Broker] | None = None,
    **env: str,
) -> CycleResult:
    """One cycle of a fresh process, enforcing the gate with `veto` on failure."""
    settings = load_settings(
        _env(database.dsn, LLM_SHADOW_MODE="false", LLM_FAIL_MODE="veto", **env), None
    )
    container = await build_container(
        settings, signals_path=signals, trading_enabled=True, provider=provider, wrap_broker=wrap
    )
    try:
        return await container.pipeline.run_cycle()
    finally:
        await container.aclose()


async def reviews(database: Database) -> list[tuple[str, bool, str]]:
    async with database.sessions() as session:
        rows = (await session.execute(select(LLMDecisionReview))).scalars().all()
    return [(r.verdict, r.shadow, r.effective_action) for r in rows]


async def decision_row(database: Database) -> TradeDecisionRow:
    async with database.sessions() as session:
        return (await session.execute(select(TradeDecisionRow))).scalar_one()


async def test_a_crash_after_the_review_never_reviews_again(
    database: Database, tmp_path: Path
) -> None:
    """The process dies (its cycle cancelled) while the reviewed order is at the broker. The
    review row and the order written ahead were one transaction, so the next process sends
    that order and asks nothing (it would veto now)."""
    signals = _buys(tmp_path, 1)
    hold = asyncio.Event()
    broker: list[FaultyBroker] = []

    def wrap(inner: Broker) -> Broker:
        broker.append(FaultyBroker(inner, hold=hold))
        return broker[0]

    settings = load_settings(
        _env(database.dsn, LLM_SHADOW_MODE="false", LLM_FAIL_MODE="veto"), None
    )
    first = FakeProvider("approve")
    container = await build_container(
        settings, signals_path=signals, trading_enabled=True, provider=first, wrap_broker=wrap
    )
    try:
        task = asyncio.create_task(container.pipeline.run_cycle())
        await broker[0].held.wait()
        row = await decision_row(database)
        assert row.status == "planned" and row.pending_order_json is not None
        assert await reviews(database) == [("approve", False, "submitted_original")]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await container.aclose()
    again = FakeProvider("veto")
    result = await cycle(database, signals, again)
    assert (result.submitted, again.calls, first.calls) == (1, 0, 1)
    assert await reviews(database) == [("approve", False, "submitted_original")]
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SimOrder)) == 1


async def test_a_crash_right_after_the_review_row_is_committed_never_reviews_again(
    database: Database, tmp_path: Path
) -> None:
    """The narrowest window: the process dies just after the review row's transaction
    committed, before anything else happens. The order written ahead was in that transaction,
    so the restart re-sends it; it used to find a `planned` decision with no order and review
    it a second time (4 decisions after kill -9 in issue 12)."""
    signals = _buys(tmp_path, 1)
    committed = asyncio.Event()  # never set: the write stays "just committed" until the crash
    stores: list[FaultyAuditStore] = []

    def wrap(inner: AuditStore) -> AuditStore:
        stores.append(
            FaultyAuditStore(
                inner, hold={"record_review": committed}, hold_after=frozenset({"record_review"})
            )
        )
        return stores[0]

    settings = load_settings(
        _env(database.dsn, LLM_SHADOW_MODE="false", LLM_FAIL_MODE="veto"), None
    )
    first = FakeProvider("approve")
    container = await build_container(
        settings, signals_path=signals, trading_enabled=True, provider=first, wrap_store=wrap
    )
    try:
        task = asyncio.create_task(container.pipeline.run_cycle())
        await stores[0].held.wait()  # the review row's transaction has committed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await container.aclose()
    again = FakeProvider("veto")
    result = await cycle(database, signals, again)
    assert (result.submitted, again.calls) == (1, 0)
    assert await reviews(database) == [("approve", False, "submitted_original")]


async def test_the_review_row_and_its_order_are_written_together_or_not_at_all(
    database: Database,
) -> None:
    """The order written ahead cannot be stored (its decision is gone): the review row is
    rolled back with it, so no row ever claims an order that has no pending record."""
    row: dict[str, Any] = {
        "trade_decision_id": uuid.uuid4(),
        "provider": "jangar",
        "model": "m",
        "prompt_version": "v1",
        "input_json": {},
        "verdict": "approve",
        "shadow": False,
        "fail_mode": "veto",
        "trading_mode": "paper",
        "effective_action": "submitted_original",
    }
    with pytest.raises(Exception):  # noqa: B017 - either database's own error
        await repo.record_review(database.db, row, pending=(uuid.uuid4(), {"qty": "1"}))
    assert await reviews(database) == []


async def test_a_broker_that_never_heard_of_the_order_turns_the_review_row_to_rejected(
    database: Database, tmp_path: Path
) -> None:
    """Approved, sent, the answer lost, and the broker does not know the order: past the
    resend window it is rejected `broker_no_answer`, and the review row says `rejected`
    (it kept `submitted_original`)."""
    signals = _buys(tmp_path, 1)
    provider = FakeProvider("approve")

    def wrap(inner: Broker) -> Broker:
        return FaultyBroker(inner, submit_faults=[unanswered()])

    first = await cycle(database, signals, provider, wrap)
    assert (first.committed, first.submitted) == (False, 0)
    second = await cycle(database, signals, provider, TRADING_RESEND_WINDOW_SECONDS="0")
    assert dict(second.rejected) == {"broker_no_answer": 1}
    assert provider.calls == 1
    assert (await decision_row(database)).status == "rejected"
    assert await reviews(database) == [("approve", False, "rejected")]


async def test_a_refused_order_turns_the_review_row_to_rejected(
    database: Database, tmp_path: Path
) -> None:
    provider = FakeProvider("approve")
    result = await cycle(
        database,
        _buys(tmp_path, 1),
        provider,
        lambda inner: FaultyBroker(inner, submit_faults=[refused()]),
    )
    assert [r.split(":")[0] for r in result.rejected] == ["broker_rejected"]
    assert await reviews(database) == [("approve", False, "rejected")]


async def test_a_lost_answer_is_adopted_and_the_review_row_stays_submitted(
    database: Database, tmp_path: Path
) -> None:
    signals = _buys(tmp_path, 1)
    provider = FakeProvider("approve")
    first = await cycle(
        database, signals, provider, lambda inner: FaultyBroker(inner, submit_faults=[lost()])
    )
    assert first.submitted == 1  # asked at once: the broker has it
    assert await reviews(database) == [("approve", False, "submitted_original")]


async def test_the_reviewer_sees_no_decision_from_after_its_own_signal(
    database: Database, tmp_path: Path
) -> None:
    """One batch, three buys of one symbol a minute apart: each review's recent decisions
    hold only the earlier ones (the batch stored all three at once)."""
    import json as _json

    from tests.integration.test_trading_safety import BUY, tick, write

    class Recording(FakeProvider):
        def __init__(self) -> None:
            super().__init__("approve")
            self.recent: list[list[str]] = []

        async def complete(self, messages: Any) -> Any:
            user = messages[-1]["content"]
            body = _json.JSONDecoder().raw_decode(user[user.index("{") :])[0]
            self.recent.append(sorted(d["event_ts"] for d in body.get("recent_decisions", [])))
            return await super().complete(messages)

    provider = Recording()
    path = write(tmp_path, "three", [tick(0, "100", BUY), tick(1, "100", BUY), tick(2, "100", BUY)])
    await cycle(database, path, provider, TRADING_MAX_POSITION_PCT_EQUITY="1")
    assert sorted(provider.recent, key=len) == [
        [],
        ["2026-03-02T15:00:00Z"],
        ["2026-03-02T15:00:00Z", "2026-03-02T15:01:00Z"],
    ]
