"""The pieces of the point-in-time context (trading/llm/context.py) and how the review engine
uses it."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from torghut.domain import Action, BrokerOrder, Signal, TradeDecision, TradingMode, Usage
from torghut.ports import ChatMessage, Completion
from torghut.trading.llm.circuit import CircuitBreaker
from torghut.trading.llm.context import (
    BarHistory,
    PointInTimeContext,
    ReviewFacts,
    realized_vol_bps,
    returns_bps,
    session_clock,
)
from torghut.trading.llm.prompts import load_prompt
from torghut.trading.llm.review_engine import ReviewEngine
from torghut.trading.llm.schema import LLMReviewRequest, PolicyBounds

T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York


def _signal(
    minute: int, price: str, *, seq: int = 0, symbol: str = "AAPL", **payload: Any
) -> Signal:
    return Signal(
        event_ts=T0 + timedelta(minutes=minute),
        symbol=symbol,
        timeframe="1Min",
        macd=0.5,
        macd_signal=0.25,
        rsi14=40.0,
        price=Decimal(price),
        seq=seq,
        payload=payload,
    )


def test_history_reads_up_to_t_whatever_the_order_it_was_fed_in() -> None:
    history = BarHistory(keep=10)
    history.add([_signal(2, "102"), _signal(0, "100"), _signal(1, "101")])
    history.add([_signal(1, "101.5")])  # the same signal read again: replaced, not doubled
    bars = history.until("AAPL", "1Min", T0 + timedelta(minutes=1), 5)
    assert [str(b.price) for b in bars] == ["100", "101.5"]
    assert history.until("AAPL", "5Min", T0, 5) == []
    assert history.price_at("AAPL", T0 + timedelta(seconds=90)) == Decimal("101.5")
    assert history.price_at("AAPL", T0 - timedelta(seconds=1)) is None


def test_history_keeps_its_bars_plus_what_the_last_feeds_brought() -> None:
    history = BarHistory(keep=3, batches=2)
    history.add([_signal(i, str(100 + i)) for i in range(6)])  # one feed of 6: all kept
    everything = T0 + timedelta(hours=9)

    def minutes() -> list[int]:
        return [b.ts.minute for b in history.until("AAPL", "1Min", everything, 100)]

    assert minutes() == [0, 1, 2, 3, 4, 5]
    history.add([_signal(6, "106")])  # 3 + 6 + 1
    assert minutes() == [0, 1, 2, 3, 4, 5, 6]
    history.add([_signal(7, "107")])  # the feed of 6 is now older than 2 feeds: 3 + 1 + 1
    assert minutes() == [3, 4, 5, 6, 7]
    history.add([_signal(0, "100", symbol="MSFT")])  # a feed without AAPL: 3 + 1 + 0
    assert minutes() == [4, 5, 6, 7]
    history.add([])
    assert minutes() == [5, 6, 7]


def test_bar_keeps_known_and_numeric_payload_indicators_only() -> None:
    history = BarHistory(keep=3)
    history.add([_signal(0, "100", volume=1200, vwap=99.5, note="x", flag=True, bad=float("nan"))])
    row = history.until("AAPL", "1Min", T0, 1)[0].as_json()
    assert row == {
        "ts": "2025-03-03T15:00:00Z",
        "price": "100",
        "macd": 0.5,
        "macd_signal": 0.25,
        "rsi14": 40.0,
        "volume": 1200.0,
        "vwap": 99.5,
    }


def test_returns_and_volatility() -> None:
    prices = [100.0 + i for i in range(16)]  # 100 .. 115
    r = returns_bps(prices)
    assert r["1_bars"] == pytest.approx((115 / 114 - 1) * 1e4, abs=0.01)
    assert r["15_bars"] == pytest.approx(1500.0)
    assert r["window"] == pytest.approx(1500.0)
    assert returns_bps([100.0, 101.0])["5_bars"] is None
    assert returns_bps([]) == {"1_bars": None, "5_bars": None, "15_bars": None, "window": None}
    steps = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    mean = sum(steps) / len(steps)
    sd = math.sqrt(sum((s - mean) ** 2 for s in steps) / (len(steps) - 1))
    assert realized_vol_bps(prices) == pytest.approx(sd * 1e4, abs=0.01)
    assert realized_vol_bps([100.0, 101.0]) is None
    assert realized_vol_bps([100.0] * 5) == 0.0


@pytest.mark.parametrize(
    ("utc", "phase", "since", "until"),
    [
        ("2025-03-03T14:30:00", "regular", 0.0, 390.0),  # the open (EST)
        ("2025-03-03T20:59:00", "regular", 389.0, 1.0),  # the last minute
        ("2025-03-03T21:00:00", "after_hours", None, None),
        ("2025-03-03T13:00:00", "pre_market", None, None),
        ("2025-03-03T02:00:00", "closed", None, None),
        ("2025-03-08T15:00:00", "closed", None, None),  # a Saturday
        ("2025-07-01T13:30:00", "regular", 0.0, 390.0),  # the open in summer time (EDT)
    ],
)
def test_session_clock(utc: str, phase: str, since: float | None, until: float | None) -> None:
    clock = session_clock(datetime.fromisoformat(utc).replace(tzinfo=UTC))
    assert (clock["phase"], clock["minutes_since_open"], clock["minutes_to_close"]) == (
        phase,
        since,
        until,
    )


@pytest.mark.parametrize(
    ("utc", "phase", "since", "until"),
    [
        ("2025-03-03T14:30:00", "regular", 0.0, 390.0),  # an ordinary day, as without one
        ("2025-03-03T21:00:00", "after_hours", None, None),
        ("2025-07-04T15:00:00", "closed", None, None),  # Independence Day, a Friday
        ("2025-07-04T12:00:00", "closed", None, None),  # no pre-market on a holiday either
        ("2025-11-28T17:30:00", "regular", 180.0, 30.0),  # the day after Thanksgiving: 13:00
        ("2025-11-28T18:30:00", "after_hours", None, None),  # closed early, so after hours
        ("2025-11-28T22:30:00", "closed", None, None),  # 4 h after the early close
        ("2025-03-08T15:00:00", "closed", None, None),  # a Saturday
    ],
)
def test_session_clock_follows_the_exchange_calendar(
    utc: str, phase: str, since: float | None, until: float | None
) -> None:
    """With the calendar the trading checks use, the reviewer's clock knows holidays and
    early closes (it read a holiday as a weekday, and 13:00 closes as 16:00)."""
    from torghut.trading.session import SessionCalendar

    t = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    clock = session_clock(t, SessionCalendar("XNYS"))
    assert (clock["phase"], clock["minutes_since_open"], clock["minutes_to_close"]) == (
        phase,
        since,
        until,
    )
    assert "holidays and early closes" in clock["calendar"]
    # The `always` calendar (tests, crypto-like runs) keeps the plain weekday clock.
    plain = session_clock(t, SessionCalendar("always"))
    assert plain == session_clock(t)


async def test_the_reviewer_built_from_settings_uses_the_trading_calendar() -> None:
    from torghut.config import load_settings
    from torghut.trading.llm.reviewer import build_reviewer

    settings = load_settings(
        {
            "LLM_PROVIDER": "jangar",
            "JANGAR_BASE_URL": "http://127.0.0.1:9",
            "TRADING_CALENDAR": "XNAS",
        },
        env_file=None,
    )
    reviewer = build_reviewer(settings)
    assert reviewer.context.calendar is not None
    assert reviewer.context.calendar.exchange == "XNAS"
    # A decision on Independence Day is reviewed as made while the exchange is closed.
    holiday = DECISION.model_copy(update={"event_ts": datetime(2025, 7, 4, 15, tzinfo=UTC)})
    request = await reviewer.context.build(holiday, ReviewFacts())
    assert request.session is not None and request.session["phase"] == "closed"


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[Sequence[ChatMessage]] = []

    @property
    def name(self) -> str:
        return "jangar"

    @property
    def model(self) -> str:
        return "m"

    def request_body(self, messages: Sequence[ChatMessage]) -> dict[str, object]:
        return {"messages": list(messages)}

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        self.messages.append(messages)
        return Completion(
            '{"verdict":"approve","confidence":0.9,"rationale":"ok"}',
            "",
            Usage(1, 1, 2),
            latency_ms=1,
            ttft_ms=1,
        )

    async def aclose(self) -> None:
        return None


class _BrokenContext:
    async def build(self, decision: TradeDecision, facts: ReviewFacts) -> LLMReviewRequest:
        raise RuntimeError("bug")

    def observe(self, signals: Sequence[Signal]) -> None:
        raise AssertionError("not called here")


DECISION = TradeDecision(
    strategy_id="s",
    symbol="AAPL",
    action="buy",
    qty=Decimal(1),
    event_ts=T0 + timedelta(minutes=2),
    timeframe="1Min",
    params={"price": "102"},
)


async def test_the_engine_asks_the_context_and_survives_a_broken_one() -> None:
    bounds = PolicyBounds()
    provider = _Recorder()
    context = PointInTimeContext(
        bounds=bounds, trading_mode=TradingMode.LIVE, prompt_version="v2", context_bars=2
    )
    engine = ReviewEngine(
        provider, CircuitBreaker(3, 60, 60), load_prompt("v2"), bounds, context=context
    )
    engine.observe([_signal(i, str(100 + i)) for i in range(5)])
    outcome = await engine.review_decision(DECISION, ReviewFacts(signal=_signal(2, "102")))
    assert outcome.verdict.value == "approve" and outcome.real_request_json is None
    text = provider.messages[-1][-1]["content"]
    sent, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
    assert [b["price"] for b in sent["history"]["bars"]] == ["101", "102"]
    assert sent["trading_mode"] == "live" and sent["as_of"] == "2025-03-03T15:02:00Z"
    assert sent["missing"] == ["portfolio", "recent_decisions", "risk_limits"]

    broken = ReviewEngine(
        provider, CircuitBreaker(3, 60, 60), load_prompt("v2"), bounds, context=_BrokenContext()
    )
    outcome = await broken.review_decision(DECISION, ReviewFacts())
    assert outcome.verdict.value == "approve"
    text = provider.messages[-1][-1]["content"]
    sent, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
    assert sent["missing"] == ["context"] and sent["decision"]["symbol"] == "AAPL"


async def test_recent_decisions_that_fail_to_load_are_labelled_missing() -> None:
    async def failing(symbol: str, before: datetime, limit: int) -> list[dict[str, Any]]:
        raise OSError("database away")

    context = PointInTimeContext(
        bounds=PolicyBounds(),
        trading_mode=TradingMode.PAPER,
        prompt_version="v2",
        recent_decisions=failing,
        risk_limits={},
    )
    request = await context.build(DECISION, ReviewFacts())
    assert request.missing == ["history", "market", "portfolio", "recent_decisions"]
    assert request.recent_decisions == []


async def test_the_signal_payload_is_bounded_in_the_request() -> None:
    context = PointInTimeContext(
        bounds=PolicyBounds(), trading_mode=TradingMode.PAPER, prompt_version="v2", context_bars=30
    )
    extra: dict[str, Any] = {f"k{i:03d}": "x" * 10_000 for i in range(200)}
    extra["nested"] = {"deep": ["x" * 10_000]}
    signals = [_signal(i, str(100 + i), **extra) for i in range(40)]
    context.observe(signals)
    request = await context.build(DECISION, ReviewFacts(signal=signals[2]))
    body = json.dumps(request.model_dump(mode="json"))
    assert len(body) < 8_000
    payload = request.market["payload"] if request.market else {}
    assert len(payload) == 16 and all(len(v) == 64 for v in payload.values())


async def test_open_orders_of_the_symbol_reach_the_request_from_their_typed_fields() -> None:
    # The pipeline hands over the orders open at the decision's signal time as typed
    # BrokerOrders (no broker JSON): their side, quantity and limit must reach the reviewer.
    context = PointInTimeContext(
        bounds=PolicyBounds(), trading_mode=TradingMode.PAPER, prompt_version="v2"
    )
    orders = [
        BrokerOrder(
            broker_order_id="",
            client_order_id="a",
            symbol="AAPL",
            status="open",
            side=Action.SELL,
            qty=Decimal(5),
            limit_price=Decimal("101.5"),
        ),
        BrokerOrder(broker_order_id="", client_order_id="b", symbol="MSFT", status="open"),
    ]
    request = await context.build(DECISION, ReviewFacts(open_orders=orders))
    assert request.open_orders == [
        {
            "symbol": "AAPL",
            "side": "sell",
            "qty": "5",
            "order_type": None,
            "limit_price": "101.5",
            "status": "open",
            "filled_qty": "0",
        }
    ]


def test_session_clock_outside_the_calendar_says_unknown() -> None:
    """A day the exchange calendar does not cover (its years end) is an unknown phase for
    the reviewer, not an exception that fails the review."""
    from torghut.trading.session import SessionCalendar

    clock = session_clock(datetime(2099, 3, 2, 15, tzinfo=UTC), SessionCalendar("XNYS"))
    assert clock["phase"] == "unknown"
    assert clock["minutes_since_open"] is None and clock["minutes_to_close"] is None
