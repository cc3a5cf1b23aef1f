"""Every rule of the review policy, and its reason."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from torghut.config import load_settings
from torghut.domain import OrderType, TradeDecision, Verdict
from torghut.trading.llm import policy as P
from torghut.trading.llm.policy import apply_policy, bounds_from_settings
from torghut.trading.llm.schema import LLMReviewResponse, PolicyBounds

ALLOW = PolicyBounds(
    min_confidence=0.5, adjustment_allowed=True, min_qty_multiplier=0.5, max_qty_multiplier=1.25
)
DENY = PolicyBounds(adjustment_allowed=False)


def decision(**overrides: Any) -> TradeDecision:
    values: dict[str, Any] = {
        "strategy_id": "s",
        "symbol": "AAPL",
        "action": "buy",
        "qty": Decimal(10),
        "order_type": "market",
        "event_ts": datetime(2026, 2, 9, tzinfo=UTC),
        "timeframe": "1Min",
        "params": {"price": "100"},
    }
    values.update(overrides)
    return TradeDecision.model_validate(values)


def review(verdict: str = "adjust", confidence: float = 0.9, **fields: Any) -> LLMReviewResponse:
    return LLMReviewResponse.model_validate(
        {"verdict": verdict, "confidence": confidence, "rationale": "r", **fields}
    )


LIMIT = {"order_type": "limit", "limit_price": Decimal("100")}
STOP = {"order_type": "stop", "stop_price": Decimal("95")}
STOP_LIMIT = {"order_type": "stop_limit", "stop_price": Decimal("95"), "limit_price": Decimal("94")}

CASES = [
    # (id, review fields, decision overrides, bounds, verdict, reason, adjusted fields)
    ("approve", {"verdict": "approve"}, {}, DENY, Verdict.APPROVE, None, None),
    ("veto", {"verdict": "veto"}, {}, DENY, Verdict.VETO, P.REASON_VETO, None),
    (
        "low-confidence-approve",
        {"verdict": "approve", "confidence": 0.49},
        {},
        DENY,
        Verdict.VETO,
        P.REASON_CONFIDENCE_BELOW_MIN,
        None,
    ),
    (
        "low-confidence-veto",
        {"verdict": "veto", "confidence": 0.1},
        {},
        DENY,
        Verdict.VETO,
        P.REASON_CONFIDENCE_BELOW_MIN,
        None,
    ),
    (
        "low-confidence-adjust",
        {"confidence": 0.2, "adjusted_qty": 8},
        {},
        ALLOW,
        Verdict.VETO,
        P.REASON_CONFIDENCE_BELOW_MIN,
        None,
    ),
    (
        "confidence-at-min-passes",
        {"verdict": "approve", "confidence": 0.5},
        {},
        DENY,
        Verdict.APPROVE,
        None,
        None,
    ),
    (
        "adjust-not-allowed",
        {"adjusted_qty": 8},
        {},
        DENY,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_NOT_ALLOWED,
        None,
    ),
    ("adjust-qty", {"adjusted_qty": 8}, {}, ALLOW, Verdict.ADJUST, None, {"qty": Decimal(8)}),
    (
        "adjust-qty-at-low-bound",
        {"adjusted_qty": 5},
        {},
        ALLOW,
        Verdict.ADJUST,
        None,
        {"qty": Decimal(5)},
    ),
    (
        "adjust-qty-at-high-bound",
        {"adjusted_qty": 12.5},
        {},
        ALLOW,
        Verdict.ADJUST,
        None,
        {"qty": Decimal(12)},
    ),
    (
        "adjust-qty-floored-whole-shares",
        {"adjusted_qty": 7.9},
        {},
        ALLOW,
        Verdict.ADJUST,
        None,
        {"qty": Decimal(7)},
    ),
    (
        "adjust-qty-fractional-original-kept-fractional",
        {"adjusted_qty": 1.2},
        {"qty": Decimal("1.5")},
        ALLOW,
        Verdict.ADJUST,
        None,
        {"qty": Decimal("1.2")},
    ),
    (
        "adjust-qty-floored-at-least-one",
        {"adjusted_qty": 0.6},
        {"qty": Decimal(1)},
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_NO_CHANGE,  # floored to 1, the original: nothing changes
        None,
    ),
    (
        "adjust-qty-too-low",
        {"adjusted_qty": 4},
        {},
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_QTY_OUT_OF_BOUNDS,
        None,
    ),
    (
        "adjust-qty-too-high",
        {"adjusted_qty": 13},
        {},
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_QTY_OUT_OF_BOUNDS,
        None,
    ),
    (
        "adjust-qty-below-after-flooring",
        {"adjusted_qty": 1.6},
        {"qty": Decimal(3)},
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_QTY_OUT_OF_BOUNDS,
        None,
    ),
    (
        "adjust-market-to-limit",
        {"adjusted_order_type": "limit", "limit_price": 99.5},
        {},
        ALLOW,
        Verdict.ADJUST,
        None,
        {"order_type": OrderType.LIMIT, "limit_price": Decimal("99.5"), "qty": Decimal(10)},
    ),
    (
        "adjust-market-to-limit-without-price",
        {"adjusted_order_type": "limit"},
        {},
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_MISSING_LIMIT_PRICE,
        None,
    ),
    (
        "adjust-limit-to-market-drops-price",
        {"adjusted_order_type": "market"},
        LIMIT,
        ALLOW,
        Verdict.ADJUST,
        None,
        {"order_type": OrderType.MARKET, "limit_price": None},
    ),
    (
        "adjust-limit-price-only",
        {"limit_price": 98},
        LIMIT,
        ALLOW,
        Verdict.ADJUST,
        None,
        {"order_type": OrderType.LIMIT, "limit_price": Decimal(98)},
    ),
    (
        "adjust-limit-keeps-original-price",
        {"adjusted_qty": 6},
        LIMIT,
        ALLOW,
        Verdict.ADJUST,
        None,
        {"qty": Decimal(6), "limit_price": Decimal(100)},
    ),
    (
        "adjust-to-stop-not-allowed",
        {"adjusted_order_type": "stop"},
        {},
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_ORDER_TYPE_NOT_ALLOWED,
        None,
    ),
    (
        "adjust-stop-to-market-not-allowed",
        {"adjusted_order_type": "market"},
        STOP,
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_ORDER_TYPE_NOT_ALLOWED,
        None,
    ),
    (
        "adjust-stop-limit-to-limit-not-allowed",
        {"adjusted_order_type": "limit", "limit_price": 94},
        STOP_LIMIT,
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_ORDER_TYPE_NOT_ALLOWED,
        None,
    ),
    (
        "adjust-stop-qty-keeps-type",
        {"adjusted_qty": 6, "adjusted_order_type": "stop"},
        STOP,
        ALLOW,
        Verdict.ADJUST,
        None,
        {"qty": Decimal(6), "order_type": OrderType.STOP, "stop_price": Decimal(95)},
    ),
    (
        "adjust-switch-outside-configured-types",
        {"adjusted_order_type": "limit", "limit_price": 99},
        {},
        ALLOW.model_copy(update={"allowed_order_types": (OrderType.MARKET,)}),
        Verdict.VETO,
        P.REASON_ADJUSTMENT_ORDER_TYPE_NOT_ALLOWED,
        None,
    ),
    ("adjust-no-change", {}, {}, ALLOW, Verdict.VETO, P.REASON_ADJUSTMENT_NO_CHANGE, None),
    (
        "adjust-same-values",
        {"adjusted_qty": 10, "adjusted_order_type": "market"},
        {},
        ALLOW,
        Verdict.VETO,
        P.REASON_ADJUSTMENT_NO_CHANGE,
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "overrides", "bounds", "verdict", "reason", "adjusted"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_policy(
    fields: dict[str, Any],
    overrides: dict[str, Any],
    bounds: PolicyBounds,
    verdict: Verdict,
    reason: str | None,
    adjusted: dict[str, Any] | None,
) -> None:
    original = decision(**overrides)
    fields = dict(fields)
    result = apply_policy(
        review(fields.pop("verdict", "adjust"), fields.pop("confidence", 0.9), **fields),
        original,
        bounds,
    )
    assert result.verdict is verdict
    assert result.reason == reason
    if adjusted is None:
        assert result.adjusted_decision is None
    else:
        new = result.adjusted_decision
        assert new is not None
        for key, value in adjusted.items():
            assert getattr(new, key) == value, key
        # Everything else is the original's.
        assert new.symbol == original.symbol
        assert new.event_ts == original.event_ts
        assert new.params == original.params
        assert new != original


def test_reasons_are_listed_and_prefixed() -> None:
    for name in dir(P):
        if name.startswith("REASON_ADJUSTMENT_"):
            assert getattr(P, name).startswith("llm_adjustment_")
        if name.startswith("REASON_"):
            assert getattr(P, name) in P.POLICY_REASONS


def test_bounds_from_settings() -> None:
    settings = load_settings(
        {
            "LLM_MIN_CONFIDENCE": "0.7",
            "LLM_ADJUSTMENT_ALLOWED": "true",
            "LLM_MIN_QTY_MULTIPLIER": "0.25",
            "LLM_MAX_QTY_MULTIPLIER": "1.1",
        },
        env_file=None,
    )
    bounds = bounds_from_settings(settings)
    assert bounds == PolicyBounds(
        min_confidence=0.7, adjustment_allowed=True, min_qty_multiplier=0.25, max_qty_multiplier=1.1
    )


def test_multiplier_bounds_are_exact() -> None:
    # 1.1 as a float is slightly above 1.1; the bound must still admit exactly 11 of 10.
    bounds = ALLOW.model_copy(update={"max_qty_multiplier": 1.1})
    result = apply_policy(review(adjusted_qty=11), decision(), bounds)
    assert result.verdict is Verdict.ADJUST
