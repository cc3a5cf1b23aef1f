"""The review request admits real broker payloads; the review response is strict."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
from pydantic import ValidationError

from torghut.domain import LLMVerdict, OrderType, TradeDecision, TradingMode
from torghut.trading.llm.schema import (
    RESPONSE_KEYS,
    LLMReviewRequest,
    LLMReviewResponse,
    PolicyBounds,
    PortfolioSnapshot,
)


class AssetClass(Enum):
    US_EQUITY = "us_equity"


@dataclass
class Nested:
    exchange: str
    marginable: bool


def _decision() -> TradeDecision:
    return TradeDecision(
        strategy_id="macd-rsi-default",
        symbol="aapl",
        action="buy",
        qty=Decimal("5"),
        order_type="limit",
        event_ts=datetime(2026, 2, 9, 14, 30, tzinfo=UTC),
        timeframe="1Min",
        limit_price=Decimal("100.98"),
        params={"price": Decimal("100.98"), "signal_id": uuid.UUID(int=7)},
    )


def _broker_position() -> dict[Any, Any]:
    # Shaped like an Alpaca position as alpaca-py hands it over.
    return {
        "asset_id": uuid.UUID("904837e3-3b76-47ec-b432-046db621571b"),
        "symbol": "AAPL",
        "exchange": "NASDAQ",
        "asset_class": AssetClass.US_EQUITY,
        "avg_entry_price": Decimal("100.10"),
        "qty": Decimal("10"),
        "qty_available": "10",
        "side": "long",
        "market_value": Decimal("1009.80"),
        "unrealized_pl": Decimal("8.80"),
        "unrealized_intraday_plpc": float("nan"),
        "change_today": None,
        "asset_marginable": True,
        "lastday_price": None,
        "swap_rate": None,
        "avg_entry_swap_rate": None,
        "usd": {"avg_entry_price": "100.10", "nested": [1, {"deep": False}]},
        "details": Nested("NASDAQ", True),
        "updated_at": datetime(2026, 2, 9, 14, 29, tzinfo=UTC),
        7: "an integer key",
    }


def test_positions_with_nested_objects_bools_nulls_serialise() -> None:
    request = LLMReviewRequest(
        decision=_decision(),
        portfolio=PortfolioSnapshot(
            equity=Decimal("100000"),
            cash=Decimal("98990.20"),
            buying_power=Decimal("197980.40"),
            positions=[_broker_position()],
        ),
        market={"macd": 0.4, "rsi14": 31.2, "event_ts": datetime(2026, 2, 9, tzinfo=UTC)},
        recent_decisions=[{"id": uuid.UUID(int=1), "status": "filled", "qty": Decimal("2")}],
        policy=PolicyBounds(),
        trading_mode=TradingMode.LIVE,
        prompt_version="v1",
    )
    dumped = request.model_dump(mode="json")
    text = json.dumps(dumped, allow_nan=False)  # strict JSON: no NaN, no unknown types
    position = json.loads(text)["portfolio"]["positions"][0]
    assert position["asset_id"] == "904837e3-3b76-47ec-b432-046db621571b"
    assert position["asset_class"] == "us_equity"
    assert position["market_value"] == "1009.80"
    assert position["asset_marginable"] is True
    assert position["change_today"] is None
    assert position["unrealized_intraday_plpc"] is None
    assert position["usd"]["nested"] == [1, {"deep": False}]
    assert position["details"] == {"exchange": "NASDAQ", "marginable": True}
    assert position["updated_at"].startswith("2026-02-09T14:29")
    assert position["7"] == "an integer key"
    # The names the dev gateway reads.
    assert dumped["decision"]["symbol"] == "AAPL"
    assert dumped["decision"]["params"]["price"] == "100.98"
    assert dumped["decision"]["limit_price"] == "100.98"
    assert dumped["portfolio"]["equity"] == "100000"
    assert dumped["policy"]["min_qty_multiplier"] == 0.5
    assert dumped["policy"]["adjustment_allowed"] is False
    assert dumped["trading_mode"] == "live"
    assert dumped["recent_decisions"][0]["id"] == str(uuid.UUID(int=1))


def test_unknown_objects_in_payloads_fall_back_to_text() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    request = LLMReviewRequest(decision={"symbol": "X"}, market={"thing": Opaque()})
    assert request.model_dump(mode="json")["market"] == {"thing": "opaque"}


def test_policy_bounds_must_be_ordered() -> None:
    with pytest.raises(ValidationError):
        PolicyBounds(min_qty_multiplier=2, max_qty_multiplier=1)


def _valid(**overrides: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "verdict": "approve",
        "confidence": 0.86,
        "adjusted_qty": None,
        "adjusted_order_type": None,
        "limit_price": None,
        "rationale": "Notional well under the cap.",
        "risk_flags": [],
    }
    answer.update(overrides)
    return answer


def test_valid_response() -> None:
    review = LLMReviewResponse.model_validate(
        _valid(verdict="adjust", adjusted_qty=3, adjusted_order_type="limit", limit_price=100.1)
    )
    assert review.verdict is LLMVerdict.ADJUST
    assert review.adjusted_qty == Decimal("3")
    assert review.adjusted_order_type is OrderType.LIMIT
    assert review.limit_price == Decimal("100.1")  # exact, not the float's binary noise
    assert set(RESPONSE_KEYS) == set(LLMReviewResponse.model_fields)


def test_minimal_response_defaults() -> None:
    review = LLMReviewResponse.model_validate(
        {"verdict": "veto", "confidence": 1, "rationale": "too big"}
    )
    assert review.risk_flags == []
    assert review.adjusted_qty is None


def test_unknown_keys_are_kept() -> None:
    review = LLMReviewResponse.model_validate(_valid(notes="extra", score=3))
    assert review.model_extra == {"notes": "extra", "score": 3}
    assert review.model_dump()["notes"] == "extra"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"confidence": "high"}, "confidence", id="confidence-word"),
        pytest.param({"confidence": "0.9"}, "confidence", id="confidence-numeric-string"),
        pytest.param({"confidence": True}, "confidence", id="confidence-bool"),
        pytest.param({"confidence": 1.2}, "confidence", id="confidence-above-1"),
        pytest.param({"confidence": -0.1}, "confidence", id="confidence-negative"),
        pytest.param({"confidence": float("nan")}, "confidence", id="confidence-nan"),
        pytest.param({"confidence": None}, "confidence", id="confidence-null"),
        pytest.param({"verdict": "maybe"}, "verdict", id="verdict-unknown"),
        pytest.param({"verdict": "APPROVE"}, "verdict", id="verdict-case"),
        pytest.param({"verdict": 1}, "verdict", id="verdict-number"),
        pytest.param({"adjusted_qty": 0}, "adjusted_qty", id="qty-zero"),
        pytest.param({"adjusted_qty": -3}, "adjusted_qty", id="qty-negative"),
        pytest.param({"adjusted_qty": "5"}, "adjusted_qty", id="qty-string"),
        pytest.param({"adjusted_qty": True}, "adjusted_qty", id="qty-bool"),
        pytest.param({"adjusted_qty": float("inf")}, "adjusted_qty", id="qty-inf"),
        pytest.param({"limit_price": 0}, "limit_price", id="limit-zero"),
        pytest.param({"limit_price": "100"}, "limit_price", id="limit-string"),
        pytest.param({"adjusted_order_type": "twap"}, "adjusted_order_type", id="type-unknown"),
        pytest.param({"rationale": ""}, "rationale", id="rationale-empty"),
        pytest.param({"rationale": "   "}, "rationale", id="rationale-blank"),
        pytest.param({"rationale": "x" * 281}, "rationale", id="rationale-too-long"),
        pytest.param({"rationale": 5}, "rationale", id="rationale-number"),
        pytest.param({"risk_flags": "max_notional"}, "risk_flags", id="flags-string"),
        pytest.param({"risk_flags": [1]}, "risk_flags", id="flags-numbers"),
        pytest.param({"risk_flags": None}, "risk_flags", id="flags-null"),
    ],
)
def test_wrong_types_and_ranges_fail(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        LLMReviewResponse.model_validate(_valid(**overrides))
    assert info.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize("missing", ["verdict", "confidence", "rationale"])
def test_required_keys(missing: str) -> None:
    answer = _valid()
    del answer[missing]
    with pytest.raises(ValidationError):
        LLMReviewResponse.model_validate(answer)


def test_rationale_at_limit_is_fine() -> None:
    assert len(LLMReviewResponse.model_validate(_valid(rationale="x" * 280)).rationale) == 280
