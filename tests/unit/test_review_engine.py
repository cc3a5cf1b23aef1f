"""The review engine over a fake provider: every path ends in an outcome."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from torghut.domain import (
    Account,
    LLMVerdict,
    OrderType,
    Position,
    TradeDecision,
    TradingMode,
    Usage,
    Verdict,
)
from torghut.errors import ReviewError, ReviewErrorCode
from torghut.ports import ChatMessage, Completion
from torghut.trading.llm.circuit import CircuitBreaker, CircuitState
from torghut.trading.llm.prompts import load_prompt
from torghut.trading.llm.review_engine import (
    ReviewEngine,
    ReviewOutcome,
    build_review_request,
)
from torghut.trading.llm.schema import LLMReviewRequest, PolicyBounds

SECRET = "sk-super-secret-key-123"
USAGE = Usage(prompt_tokens=1810, completion_tokens=139, total_tokens=1949)


def answer(**fields: Any) -> str:
    body: dict[str, Any] = {
        "verdict": "approve",
        "confidence": 0.86,
        "adjusted_qty": None,
        "adjusted_order_type": None,
        "limit_price": None,
        "rationale": "within limits",
        "risk_flags": [],
    }
    body.update(fields)
    return "\n> **Rate limits**\n> Plan: pro\n\n" + json.dumps(body) + "\nDone."


@dataclass
class FakeProvider:
    """Answers with `text`, or raises `error`, or waits on `gate` first."""

    text: str = field(default_factory=answer)
    error: BaseException | None = None
    gate: asyncio.Event | None = None
    calls: list[list[ChatMessage]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return "fake"

    @property
    def model(self) -> str:
        return "fake-model"

    def request_body(self, messages: Sequence[ChatMessage]) -> dict[str, object]:
        return {"model": self.model, "messages": list(messages), "stream": True}

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        self.calls.append(list(messages))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return Completion(
            text=self.text,
            reasoning="**Checking notional**",
            usage=USAGE,
            latency_ms=420,
            ttft_ms=180,
            model=self.model,
            finish_reason="stop",
        )

    async def aclose(self) -> None:
        return None


class Ticker:
    """A monotonic clock that moves 0.25 s per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def decision(**overrides: Any) -> TradeDecision:
    values: dict[str, Any] = {
        "strategy_id": "macd-rsi-default",
        "symbol": "AAPL",
        "action": "buy",
        "qty": Decimal(10),
        "event_ts": datetime(2026, 2, 9, 14, 30, tzinfo=UTC),
        "timeframe": "1Min",
        "params": {"price": "100.98"},
    }
    values.update(overrides)
    return TradeDecision.model_validate(values)


def request_for(d: TradeDecision, bounds: PolicyBounds) -> LLMReviewRequest:
    return build_review_request(
        d,
        account=Account(cash=Decimal(90000), equity=Decimal(100000), buying_power=Decimal(180000)),
        positions=[
            Position("AAPL", Decimal(2), Decimal("99.5"), Decimal("201.96")),
            {"symbol": "MSFT", "qty": "1", "market_value": "400", "marginable": True, "x": None},
        ],
        market={"macd": 0.5, "macd_signal": 0.3, "rsi14": 31.0},
        recent_decisions=[{"symbol": "AAPL", "status": "filled"}],
        bounds=bounds,
        trading_mode=TradingMode.PAPER,
        prompt_version="v1",
    )


def state(breaker: CircuitBreaker) -> CircuitState:
    return breaker.state


@dataclass
class Rig:
    provider: FakeProvider
    breaker: CircuitBreaker
    engine: ReviewEngine
    bounds: PolicyBounds

    async def review(self, d: TradeDecision | None = None) -> ReviewOutcome:
        d = d or decision()
        return await self.engine.review(d, request_for(d, self.bounds))


def rig(
    provider: FakeProvider | None = None,
    *,
    bounds: PolicyBounds | None = None,
    max_errors: int = 3,
) -> Rig:
    provider = provider or FakeProvider()
    bounds = bounds or PolicyBounds()
    breaker = CircuitBreaker(max_errors, 300, 600)
    engine = ReviewEngine(
        provider, breaker, load_prompt("v1"), bounds, secrets=[SECRET], clock=Ticker()
    )
    return Rig(provider, breaker, engine, bounds)


async def test_approve() -> None:
    r = rig()
    outcome = await r.review()
    assert outcome.verdict is Verdict.APPROVE
    assert outcome.llm_verdict is LLMVerdict.APPROVE
    assert outcome.reason is None
    assert outcome.error_code is None and outcome.error is None
    assert outcome.confidence == 0.86
    assert outcome.rationale == "within limits"
    assert outcome.usage == USAGE
    assert outcome.ttft_ms == 180
    assert outcome.latency_ms == 250
    assert (outcome.provider, outcome.model, outcome.prompt_version) == ("fake", "fake-model", "v1")
    assert outcome.prompt_hash == load_prompt("v1").sha256
    assert outcome.adjusted_decision is None
    # The audit columns: the body sent (messages included) and the raw answer.
    assert outcome.request_json["messages"] == r.provider.calls[0]
    assert outcome.response_json is not None
    assert outcome.response_json["text"] == r.provider.text
    assert outcome.response_json["reasoning"] == "**Checking notional**"
    assert outcome.response_json["review"]["verdict"] == "approve"
    assert outcome.response_json["error"] is None
    assert outcome.response_json["finish_reason"] == "stop"
    json.dumps(outcome.request_json)
    json.dumps(outcome.response_json)
    assert r.breaker.snapshot()["recent_error_count"] == 0


async def test_request_carries_portfolio_and_policy() -> None:
    r = rig()
    await r.review()
    user = r.provider.calls[0][-1]["content"]
    body = json.loads(user[user.index("{") :])
    assert body["portfolio"]["equity"] == "100000"
    assert body["portfolio"]["positions"][0] == {
        "symbol": "AAPL",
        "qty": "2",
        "avg_entry_price": "99.5",
        "market_value": "201.96",
    }
    assert body["portfolio"]["positions"][1]["marginable"] is True
    assert body["market"]["rsi14"] == 31.0
    assert body["policy"]["adjustment_allowed"] is False


async def test_veto() -> None:
    r = rig(FakeProvider(text=answer(verdict="veto", confidence=0.93, risk_flags=["max_notional"])))
    outcome = await r.review()
    assert outcome.verdict is Verdict.VETO
    assert outcome.reason == "llm_veto"
    assert outcome.risk_flags == ["max_notional"]
    assert r.breaker.snapshot()["recent_error_count"] == 0  # a veto is a working review


async def test_low_confidence_is_a_policy_veto() -> None:
    outcome = await rig(FakeProvider(text=answer(confidence=0.2))).review()
    assert outcome.llm_verdict is LLMVerdict.APPROVE
    assert outcome.verdict is Verdict.VETO
    assert outcome.reason == "llm_confidence_below_min"


async def test_adjust_within_bounds() -> None:
    bounds = PolicyBounds(adjustment_allowed=True)
    provider = FakeProvider(
        text=answer(verdict="adjust", confidence=0.75, adjusted_qty=6.7, risk_flags=["exposure"])
    )
    outcome = await rig(provider, bounds=bounds).review()
    assert outcome.verdict is Verdict.ADJUST
    assert outcome.llm_verdict is LLMVerdict.ADJUST
    assert outcome.adjusted_qty == Decimal("6.7")  # what the model asked
    assert outcome.adjusted_decision is not None
    assert outcome.adjusted_decision.qty == Decimal(6)  # what the policy made of it
    assert outcome.adjusted_decision.order_type is OrderType.MARKET


async def test_adjust_not_allowed() -> None:
    outcome = await rig(FakeProvider(text=answer(verdict="adjust", adjusted_qty=6))).review()
    assert outcome.verdict is Verdict.VETO
    assert outcome.reason == "llm_adjustment_not_allowed"
    assert outcome.adjusted_decision is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        pytest.param("I approve this trade, it looks fine.", "invalid_json", id="invalid_json"),
        pytest.param(
            '```\n{"exit_code":0}\n```\n{"verdict":"approve","confidence":"high","rationale":"x"}',
            "invalid_schema",
            id="invalid_schema",
        ),
    ],
)
async def test_unusable_answers_are_errors_that_count(text: str, code: str) -> None:
    r = rig(FakeProvider(text=text))
    outcome = await r.review()
    assert outcome.verdict is Verdict.ERROR
    assert outcome.llm_verdict is None
    assert outcome.error_code == code
    assert outcome.reason == f"llm_error:{code}"
    assert outcome.error == {"code": code, "message": outcome.error_message}
    # The answer is still audited, with its usage and timings.
    assert outcome.response_json is not None
    assert outcome.response_json["text"] == text
    assert outcome.response_json["error"]["code"] == code
    assert outcome.response_json["review"] is None
    assert outcome.usage == USAGE
    assert outcome.ttft_ms == 180
    assert r.breaker.snapshot()["recent_error_count"] == 1


async def test_provider_error_is_an_outcome_and_redacted() -> None:
    error = ReviewError(
        ReviewErrorCode.HTTP_ERROR, f"status 401: bad key Bearer {SECRET}", status=401
    )
    r = rig(FakeProvider(error=error))
    outcome = await r.review()
    assert outcome.verdict is Verdict.ERROR
    assert outcome.error_code == "http_error"
    assert outcome.reason == "llm_error:http_error"
    assert outcome.error_message is not None
    assert SECRET not in outcome.error_message
    assert "***" in outcome.error_message
    assert SECRET not in json.dumps(outcome.response_json)
    assert outcome.usage is None and outcome.ttft_ms is None
    assert outcome.response_json is not None and outcome.response_json["text"] is None
    assert outcome.request_json["messages"]  # what was sent is still recorded
    assert r.breaker.snapshot()["recent_error_count"] == 1


async def test_secrets_in_answer_text_are_redacted() -> None:
    r = rig(FakeProvider(text=f"echo {SECRET}\n" + answer()))
    outcome = await r.review()
    assert outcome.verdict is Verdict.APPROVE
    assert SECRET not in json.dumps(outcome.response_json)


async def test_breaker_opens_and_circuit_open_sends_nothing() -> None:
    r = rig(FakeProvider(error=ReviewError(ReviewErrorCode.TIMEOUT, "total")), max_errors=2)
    for _ in range(2):
        assert (await r.review()).error_code == "timeout"
    assert state(r.breaker) is CircuitState.OPEN
    outcome = await r.review()
    assert len(r.provider.calls) == 2  # nothing sent the third time
    assert outcome.verdict is Verdict.ERROR
    assert outcome.error_code == "circuit_open"
    assert outcome.reason == "llm_error:circuit_open"
    assert outcome.latency_ms == 0
    assert outcome.usage is None and outcome.ttft_ms is None
    assert outcome.request_json["messages"]  # the body that would have been sent


async def test_unexpected_exception_is_a_protocol_error(caplog: pytest.LogCaptureFixture) -> None:
    r = rig(FakeProvider(error=KeyError("choices")))
    outcome = await r.review()
    assert outcome.verdict is Verdict.ERROR
    assert outcome.error_code == "protocol_error"
    assert outcome.error_message == "unexpected error: KeyError"
    assert any(rec.exc_info for rec in caplog.records if rec.name == "torghut.review")
    assert r.breaker.snapshot()["recent_error_count"] == 1


async def test_cancellation_propagates_and_releases_the_probe() -> None:
    gate = asyncio.Event()
    r = rig(FakeProvider(gate=gate), max_errors=1)
    # Open the breaker, then let the cooldown pass so the next review is the half-open probe.
    permit = r.breaker.acquire()
    assert permit is not None
    permit.failure()
    r.breaker.cooldown_seconds = 0
    task = asyncio.create_task(r.review())
    await r.provider.started.wait()
    assert r.breaker.acquire() is None  # the probe is out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(r.breaker) is CircuitState.HALF_OPEN
    gate.set()
    outcome = await r.review()  # a new probe is allowed, and succeeds
    assert outcome.verdict is Verdict.APPROVE
    assert state(r.breaker) is CircuitState.CLOSED


async def test_concurrent_reviews_share_one_probe() -> None:
    gate = asyncio.Event()
    r = rig(FakeProvider(gate=gate), max_errors=1)
    permit = r.breaker.acquire()
    assert permit is not None
    permit.failure()
    r.breaker.cooldown_seconds = 0
    tasks = [asyncio.create_task(r.review()) for _ in range(10)]
    await r.provider.started.wait()
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*tasks)
    assert len(r.provider.calls) == 1
    assert sum(o.verdict is Verdict.APPROVE for o in outcomes) == 1
    assert sum(o.error_code == "circuit_open" for o in outcomes) == 9
    assert state(r.breaker) is CircuitState.CLOSED


def test_build_review_request_without_account() -> None:
    d = decision()
    request = build_review_request(
        d,
        account=None,
        positions=[],
        market=None,
        recent_decisions=[],
        bounds=PolicyBounds(),
        trading_mode=TradingMode.LIVE,
        prompt_version="v1",
    )
    dumped = request.model_dump(mode="json")
    assert dumped["portfolio"] == {
        "equity": None,
        "cash": None,
        "buying_power": None,
        "positions": [],
    }
    assert dumped["market"] is None
    assert dumped["trading_mode"] == "live"
    assert dumped["decision"] == d.model_dump(mode="json")


# --- the answer search has threads of its own (issue 13) -----------------------------------


async def test_a_long_answer_is_parsed_while_the_default_executor_is_stuck() -> None:
    """Stalled DNS look-ups hold the loop's default executor (getaddrinfo runs there); the
    search of a long answer must not queue behind them."""
    loop = asyncio.get_running_loop()
    stuck = threading.Event()
    blockers = [loop.run_in_executor(None, stuck.wait) for _ in range(64)]
    try:
        noise = "tool output {not json} " * 5_000  # past the inline limit
        r = rig(FakeProvider(text=noise + answer()))
        outcome = await asyncio.wait_for(r.review(), 10)
        assert outcome.verdict is Verdict.APPROVE
    finally:
        stuck.set()
        await asyncio.gather(*blockers)
        await r.engine.aclose()


async def test_a_search_past_the_deadline_is_a_timeout() -> None:
    loop = asyncio.get_running_loop()

    class Late(FakeProvider):
        async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
            done = await super().complete(messages)
            return Completion(done.text, "", None, 1, 1, deadline=loop.time() - 1)

    r = rig(Late(text="x" * 100_000 + answer()))
    outcome = await r.review()
    await r.engine.aclose()
    assert outcome.error_code == "timeout"
    assert (outcome.error_message or "").startswith("total")
