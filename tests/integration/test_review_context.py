"""The reviewer's context is point in time (issue 14 item 1): for every decision of a whole
replay of the bundled sample, in shadow and enforcing mode, on SQLite and PostgreSQL, nothing in
the request is dated after the decision's signal time, and the largest request stays bounded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from torghut.bootstrap import bundled_signals
from torghut.config import load_settings
from torghut.domain import Account, Position, Signal, TradeDecision, TradingMode, Usage
from torghut.ports import ChatMessage, Completion
from torghut.replay import run_replay
from torghut.trading.llm.context import BarHistory, PointInTimeContext, ReviewFacts
from torghut.trading.llm.schema import PolicyBounds

# Any ISO 8601 date-time, with or without seconds fraction and zone.
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
# The largest request (the user message holding it) of the bundled sample's replay, in bytes.
MAX_REQUEST_BYTES = 12_000


class RecordingProvider:
    """Approves every review (or vetoes every third, so enforcing mode rejects some) and keeps
    the request JSON of each."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.sizes: list[int] = []

    @property
    def name(self) -> str:
        return "jangar"

    @property
    def model(self) -> str:
        return "recorder"

    def request_body(self, messages: Sequence[ChatMessage]) -> dict[str, object]:
        return {"model": self.model, "messages": list(messages), "stream": True}

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        text = messages[-1]["content"]
        self.sizes.append(len(text.encode("utf-8")))
        request, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
        self.requests.append(request)
        verdict = "veto" if len(self.requests) % 3 == 0 else "approve"
        answer = {"verdict": verdict, "confidence": 0.9, "rationale": "recorded"}
        return Completion(json.dumps(answer), "", Usage(1, 1, 2), latency_ms=1, ttft_ms=1)

    async def aclose(self) -> None:
        return None


def _datetimes(value: Any, path: str = "") -> Iterator[tuple[str, datetime]]:
    """Every string in `value` that reads as a date-time, with where it was found."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _datetimes(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _datetimes(item, f"{path}[{i}]")
    elif isinstance(value, str) and _ISO.match(value.strip()):
        yield path, datetime.fromisoformat(value.strip().replace("Z", "+00:00"))


@pytest.mark.parametrize("shadow", [True, False], ids=["shadow", "enforcing"])
async def test_no_request_of_a_replay_holds_anything_after_its_decision(
    db_dsn: str, shadow: bool
) -> None:
    env = {
        "DB_DSN": db_dsn,
        "LLM_PROVIDER": "openai",
        "LLM_ENABLED": "true",
        "LLM_SHADOW_MODE": "true" if shadow else "false",
        "LLM_FAIL_MODE": "veto",
        "TRADING_BATCH_SIZE": "400",
    }
    provider = RecordingProvider()
    summary = await run_replay(
        load_settings(env, env_file=None), bundled_signals(), provider=provider
    )
    assert summary["complete"]
    assert len(provider.requests) == sum(summary["reviews"].values()) > 50
    prices = _sample_prices()
    checked = with_history = with_recent = valued = 0
    for request in provider.requests:
        t = datetime.fromisoformat(request["decision"]["event_ts"].replace("Z", "+00:00"))
        assert (
            request["as_of"]
            and datetime.fromisoformat(request["as_of"].replace("Z", "+00:00")) == t
        )
        found = list(_datetimes(request))
        for where, moment in found:
            assert moment <= t, f"{where} = {moment.isoformat()} is after the decision at {t}"
        for recent in request["recent_decisions"]:
            assert datetime.fromisoformat(recent["event_ts"].replace("Z", "+00:00")) < t
        # Positions are valued at the last price at or before t, not at the batch's marks.
        for position in request["portfolio"]["positions"]:
            assert Decimal(position["price"]) == _price_at(prices, position["symbol"], t)
            valued += 1
        checked += len(found)
        with_history += bool(request["history"]["bars"])
        with_recent += bool(request["recent_decisions"])
        assert request["history"]["bars"][-1]["ts"] == request["decision"]["event_ts"].replace(
            "+00:00", "Z"
        )
        assert len(request["history"]["bars"]) == 30  # every decision of the sample has 30
    # The check saw real content: bars and earlier decisions in most requests.
    assert with_history == len(provider.requests)
    assert with_recent > len(provider.requests) // 2
    assert checked > 30 * len(provider.requests)
    assert valued > 50
    assert max(provider.sizes) <= MAX_REQUEST_BYTES, max(provider.sizes)


def _sample_prices() -> dict[str, list[tuple[datetime, Decimal]]]:
    series: dict[str, list[tuple[datetime, Decimal]]] = {}
    for line in bundled_signals().read_text().splitlines():
        row = json.loads(line)
        moment = datetime.fromisoformat(row["event_ts"].replace("Z", "+00:00"))
        series.setdefault(row["symbol"], []).append((moment, Decimal(str(row["price"]))))
    return {symbol: sorted(points) for symbol, points in series.items()}


def _price_at(
    prices: dict[str, list[tuple[datetime, Decimal]]], symbol: str, t: datetime
) -> Decimal:
    return [price for moment, price in prices[symbol] if moment <= t][-1]


def _signal(ts: str, price: str, symbol: str = "AMZN") -> Signal:
    return Signal(
        event_ts=datetime.fromisoformat(ts),
        symbol=symbol,
        timeframe="1Min",
        macd=0.1,
        macd_signal=0.0,
        rsi14=30.0,
        price=Decimal(price),
    )


async def test_a_later_bar_fed_first_is_not_shown_and_the_book_is_valued_at_t() -> None:
    """The AMZN case of the issue: the batch holds bars after the decision; the builder shows
    none of them and values the position at the last price at or before t."""
    history = BarHistory(100)
    history.add(
        [
            _signal("2025-03-03T16:18:00+00:00", "200"),
            _signal("2025-03-03T16:19:00+00:00", "201"),
            _signal("2025-03-03T16:20:00+00:00", "202"),
            _signal("2025-03-03T17:23:00+00:00", "250"),  # later in the same batch
        ]
    )
    asked: list[datetime] = []

    async def recent(symbol: str, before: datetime, limit: int) -> list[dict[str, Any]]:
        asked.append(before)
        return []

    builder = PointInTimeContext(
        bounds=PolicyBounds(),
        trading_mode=TradingMode.PAPER,
        prompt_version="v2",
        history=history,
        recent_decisions=recent,
        risk_limits={"cooldown_seconds": 0},
    )
    decision = TradeDecision(
        strategy_id="s",
        symbol="AMZN",
        action="buy",
        qty=Decimal(5),
        event_ts=datetime.fromisoformat("2025-03-03T16:20:00+00:00"),
        timeframe="1Min",
        params={"price": "202"},
    )
    facts = ReviewFacts(
        account=Account(cash=Decimal(1000), equity=Decimal(99999), buying_power=Decimal(1000)),
        positions=[Position("AMZN", Decimal(2), Decimal(190), Decimal(500))],
    )
    request = (await builder.build(decision, facts)).model_dump(mode="json")
    assert [b["price"] for b in request["history"]["bars"]] == ["200", "201", "202"]
    assert asked == [decision.event_ts]
    position = request["portfolio"]["positions"][0]
    assert position["price"] == "202" and position["market_value"] == "404.00"
    assert Decimal(request["portfolio"]["equity"]) == Decimal("1404.00")
    assert request["session"]["phase"] == "regular"
    assert request["session"]["minutes_since_open"] == 110.0
    assert request["session"]["minutes_to_close"] == 280.0
    assert request["history"]["returns_bps"]["1_bars"] == pytest.approx(49.75, abs=0.01)
    assert request["missing"] == ["market"]
