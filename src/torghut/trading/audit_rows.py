"""What an `llm_decision_reviews` row holds (CONTRACT §6), from a review's outcome. Pure."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from torghut.domain import EffectiveAction, FailMode, TradingMode
from torghut.trading.llm.review_engine import ReviewOutcome


def review_row(
    decision_id: Any,
    outcome: ReviewOutcome,
    action: EffectiveAction,
    *,
    shadow: bool,
    fail_mode: FailMode,
    trading_mode: TradingMode,
    notional: Decimal | None,
) -> dict[str, Any]:
    usage = outcome.usage
    return {
        "trade_decision_id": decision_id,
        "provider": outcome.provider,
        "model": outcome.model,
        "prompt_version": outcome.prompt_version,
        "prompt_hash": outcome.prompt_hash,
        "input_json": outcome.request_json,
        "response_json": outcome.response_json,
        "llm_verdict": outcome.llm_verdict.value if outcome.llm_verdict else None,
        "verdict": outcome.verdict.value,
        "reason": outcome.reason,
        "confidence": outcome.confidence,
        "adjusted_qty": outcome.adjusted_qty,
        "adjusted_order_type": (
            outcome.adjusted_order_type.value if outcome.adjusted_order_type else None
        ),
        "rationale": outcome.rationale,
        "risk_flags": list(outcome.risk_flags),
        "tokens_prompt": usage.prompt_tokens if usage else None,
        "tokens_completion": usage.completion_tokens if usage else None,
        "latency_ms": outcome.latency_ms,
        "ttft_ms": outcome.ttft_ms,
        "shadow": shadow,
        "fail_mode": fail_mode.value,
        "trading_mode": trading_mode.value,
        "effective_action": action.value,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "notional": notional,
    }
