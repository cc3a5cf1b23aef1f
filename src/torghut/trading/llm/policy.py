"""The review policy: what the model said, checked against the configured bounds.

A pure function. Rules, in order (the first that applies decides):

1. confidence below `min_confidence`            -> veto `llm_confidence_below_min`
2. the model vetoed                             -> veto `llm_veto`
3. the model approved                           -> approve
4. the model asked for an adjustment:
   - adjustments are not allowed                -> veto `llm_adjustment_not_allowed`
   - order type: unchanged, or a switch between two allowed types among market and limit
     (stop and stop_limit keep their type: the review cannot carry a stop price)
                                                -> else veto `llm_adjustment_order_type_not_allowed`
   - quantity: `adjusted_qty` None keeps the original; an integral original stays whole
     (floored, at least 1); the result lies in [qty x min, qty x max]
                                                -> else veto `llm_adjustment_qty_out_of_bounds`
   - a limit or stop_limit order has a limit price (the model's, else the original's)
                                                -> else veto `llm_adjustment_missing_limit_price`
   - nothing actually changes                   -> veto `llm_adjustment_no_change`
   - the adjusted order is not a valid decision -> veto `llm_adjustment_invalid`
   - otherwise                                  -> adjust, with the adjusted decision

An adjustment that changes nothing is vetoed rather than approved: the model said the order as
proposed should not go out, and did not say how to change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from torghut.domain import LLMVerdict, OrderType, TradeDecision, Verdict
from torghut.trading.llm.schema import LLMReviewResponse, PolicyBounds

if TYPE_CHECKING:
    from torghut.config import Settings

REASON_CONFIDENCE_BELOW_MIN = "llm_confidence_below_min"
REASON_VETO = "llm_veto"
REASON_ADJUSTMENT_NOT_ALLOWED = "llm_adjustment_not_allowed"
REASON_ADJUSTMENT_ORDER_TYPE_NOT_ALLOWED = "llm_adjustment_order_type_not_allowed"
REASON_ADJUSTMENT_QTY_OUT_OF_BOUNDS = "llm_adjustment_qty_out_of_bounds"
REASON_ADJUSTMENT_MISSING_LIMIT_PRICE = "llm_adjustment_missing_limit_price"
REASON_ADJUSTMENT_NO_CHANGE = "llm_adjustment_no_change"
REASON_ADJUSTMENT_INVALID = "llm_adjustment_invalid"

POLICY_REASONS: frozenset[str] = frozenset(
    {
        REASON_CONFIDENCE_BELOW_MIN,
        REASON_VETO,
        REASON_ADJUSTMENT_NOT_ALLOWED,
        REASON_ADJUSTMENT_ORDER_TYPE_NOT_ALLOWED,
        REASON_ADJUSTMENT_QTY_OUT_OF_BOUNDS,
        REASON_ADJUSTMENT_MISSING_LIMIT_PRICE,
        REASON_ADJUSTMENT_NO_CHANGE,
        REASON_ADJUSTMENT_INVALID,
    }
)

# The only order types a review may switch between (a switch also needs both in the bounds).
SWITCHABLE_ORDER_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT})
_NEEDS_LIMIT_PRICE = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})


@dataclass(frozen=True, slots=True)
class PolicyResult:
    verdict: Verdict
    reason: str | None = None
    adjusted_decision: TradeDecision | None = None


def _veto(reason: str) -> PolicyResult:
    return PolicyResult(Verdict.VETO, reason)


def _decimal(value: float) -> Decimal:
    # Through str(): the configured 1.25 is exactly 1.25, not its binary approximation.
    return Decimal(str(value))


def _is_whole(qty: Decimal) -> bool:
    return qty == qty.to_integral_value()


def apply_policy(
    response: LLMReviewResponse, decision: TradeDecision, bounds: PolicyBounds
) -> PolicyResult:
    """The verdict after policy, its reason, and the adjusted decision for an `adjust`."""
    if response.confidence < bounds.min_confidence:
        return _veto(REASON_CONFIDENCE_BELOW_MIN)
    if response.verdict is LLMVerdict.VETO:
        return _veto(REASON_VETO)
    if response.verdict is LLMVerdict.APPROVE:
        return PolicyResult(Verdict.APPROVE)
    return _adjust(response, decision, bounds)


def _adjust(
    response: LLMReviewResponse, decision: TradeDecision, bounds: PolicyBounds
) -> PolicyResult:
    if not bounds.adjustment_allowed:
        return _veto(REASON_ADJUSTMENT_NOT_ALLOWED)

    order_type = response.adjusted_order_type or decision.order_type
    if order_type is not decision.order_type:
        allowed = SWITCHABLE_ORDER_TYPES.intersection(bounds.allowed_order_types)
        if decision.order_type not in allowed or order_type not in allowed:
            return _veto(REASON_ADJUSTMENT_ORDER_TYPE_NOT_ALLOWED)

    qty = decision.qty
    if response.adjusted_qty is not None:
        qty = response.adjusted_qty
        if _is_whole(decision.qty):
            qty = max(Decimal(1), qty.to_integral_value(rounding=ROUND_FLOOR))
        low = decision.qty * _decimal(bounds.min_qty_multiplier)
        high = decision.qty * _decimal(bounds.max_qty_multiplier)
        # Checked after flooring: what is submitted must lie within the bounds.
        if not low <= qty <= high:
            return _veto(REASON_ADJUSTMENT_QTY_OUT_OF_BOUNDS)

    limit_price: Decimal | None = None
    if order_type in _NEEDS_LIMIT_PRICE:
        limit_price = response.limit_price or decision.limit_price
        if limit_price is None:
            return _veto(REASON_ADJUSTMENT_MISSING_LIMIT_PRICE)

    update: dict[str, Any] = {"qty": qty, "order_type": order_type, "limit_price": limit_price}
    if all(getattr(decision, key) == value for key, value in update.items()):
        return _veto(REASON_ADJUSTMENT_NO_CHANGE)
    try:
        # Validated, not model_copy(update=...): that would skip the decision's own checks.
        adjusted = TradeDecision.model_validate({**decision.model_dump(), **update})
    except ValidationError:
        return _veto(REASON_ADJUSTMENT_INVALID)
    return PolicyResult(Verdict.ADJUST, None, adjusted)


def bounds_from_settings(settings: Settings) -> PolicyBounds:
    return PolicyBounds(
        min_confidence=settings.llm_min_confidence,
        adjustment_allowed=settings.llm_adjustment_allowed,
        min_qty_multiplier=settings.llm_min_qty_multiplier,
        max_qty_multiplier=settings.llm_max_qty_multiplier,
    )
