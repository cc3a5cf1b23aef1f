"""The LLM review request (what Torghut sends) and response (what the model must answer).

The request carries real broker and signal payloads, which hold booleans, nulls, nested objects,
Decimals, UUIDs and datetimes: every free-form part is normalised to plain JSON values when the
model is built, so `model_dump(mode="json")` and `json.dumps` always work and the audit row
stores exactly what was sent. (The original service failed every review once a position was
open, because its position schema did not admit such payloads.)

The response is strict on purpose: a review that steers real orders must not be guessed from
`"confidence": "high"` or `"adjusted_qty": "a few"`. Unknown keys are allowed and kept, so that
whatever else the model said stays in the audit row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from torghut.domain import LLMVerdict, OrderType, TradeDecision, TradingMode

RATIONALE_MAX_CHARS = 280

# Order types an adjustment may switch between by default. Stop orders need a stop price the
# review schema cannot carry, so a review never turns an order into one (see policy.py).
DEFAULT_ALLOWED_ORDER_TYPES: tuple[OrderType, ...] = (OrderType.MARKET, OrderType.LIMIT)


def to_json_value(value: Any) -> Any:
    """`value` as plain JSON data (dict, list, str, int, float, bool, None).

    Decimals become strings (exact), UUIDs and datetimes their string forms, enums their values,
    dataclasses and pydantic models their fields, non-finite floats null (PostgreSQL's jsonb
    rejects NaN), and anything else unknown its `str()`: a review must never fail because a
    broker added a field of an unexpected type.
    """
    return json.loads(pydantic_core.to_json(value, fallback=str, inf_nan_mode="null"))


def _json_object(value: Any) -> dict[str, Any]:
    data = to_json_value(value)
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    return data


class PortfolioSnapshot(BaseModel):
    """The account and its open positions when the decision was made. Money fields are None
    when the broker could not be asked."""

    model_config = ConfigDict(frozen=True)

    equity: Decimal | None = None
    cash: Decimal | None = None
    buying_power: Decimal | None = None
    positions: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("positions", mode="before")
    @classmethod
    def _plain_positions(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return [_json_object(item) for item in value]
        return value


class PolicyBounds(BaseModel):
    """What the policy lets a review do; also told to the model in the prompt."""

    model_config = ConfigDict(frozen=True)

    min_confidence: float = Field(default=0.5, ge=0, le=1)
    adjustment_allowed: bool = False
    min_qty_multiplier: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    max_qty_multiplier: float = Field(default=1.25, gt=0, allow_inf_nan=False)
    allowed_order_types: tuple[OrderType, ...] = DEFAULT_ALLOWED_ORDER_TYPES

    @model_validator(mode="after")
    def _ordered(self) -> PolicyBounds:
        if self.min_qty_multiplier > self.max_qty_multiplier:
            raise ValueError("min_qty_multiplier must not be greater than max_qty_multiplier")
        return self


class LLMReviewRequest(BaseModel):
    """Everything the model sees about one decision. Key names are read by the dev gateway
    (`decision.symbol/qty/order_type/params.price/limit_price`, `portfolio.equity/positions`,
    `policy.min_qty_multiplier/...`): keep them."""

    model_config = ConfigDict(frozen=True)

    decision: dict[str, Any]
    portfolio: PortfolioSnapshot = Field(default_factory=PortfolioSnapshot)
    market: dict[str, Any] | None = None
    recent_decisions: list[dict[str, Any]] = Field(default_factory=list)
    policy: PolicyBounds = Field(default_factory=PolicyBounds)
    trading_mode: TradingMode = TradingMode.PAPER
    prompt_version: str = "v1"
    # The point-in-time context (trading/llm/context.py); all as of `as_of`, the decision's
    # signal time. `missing` names the parts the builder could not supply.
    as_of: str | None = None
    history: dict[str, Any] | None = None
    session: dict[str, Any] | None = None
    open_orders: list[dict[str, Any]] = Field(default_factory=list)
    risk_limits: dict[str, Any] | None = None
    missing: list[str] = Field(default_factory=list)

    @field_validator("decision", mode="before")
    @classmethod
    def _plain_decision(cls, value: Any) -> Any:
        if isinstance(value, TradeDecision):
            return value.model_dump(mode="json")
        return _json_object(value) if isinstance(value, Mapping) else value

    @field_validator("market", "history", "session", "risk_limits", mode="before")
    @classmethod
    def _plain_market(cls, value: Any) -> Any:
        return None if value is None else _json_object(value)

    @field_validator("recent_decisions", "open_orders", mode="before")
    @classmethod
    def _plain_recent(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return [_json_object(item) for item in value]
        return value


def _positive_number(value: Any) -> Decimal | None:
    """A JSON number > 0 as an exact Decimal. Strings and booleans are refused: the schema asks
    for numbers, and `"5"` or `true` means the model did not follow it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number or null")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    # str() first: Decimal(0.1) would carry the binary float's noise into an order.
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or number <= 0:
        raise ValueError("must be greater than 0")
    return number


class LLMReviewResponse(BaseModel):
    """The one JSON object the model must answer with (seven keys; others are kept)."""

    # Built when answer.py is imported (at the first answer), not with this module: a review's
    # request leaves before it is needed.
    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)

    verdict: LLMVerdict
    confidence: float = Field(strict=True, ge=0, le=1, allow_inf_nan=False)
    adjusted_qty: Decimal | None = None
    adjusted_order_type: OrderType | None = None
    limit_price: Decimal | None = None
    rationale: str = Field(strict=True, min_length=1, max_length=RATIONALE_MAX_CHARS)
    risk_flags: list[str] = Field(default_factory=list, strict=True)

    @field_validator("verdict", "adjusted_order_type", mode="before")
    @classmethod
    def _string_enum(cls, value: Any) -> Any:
        # Enums accept only their exact string values; refuse numbers and booleans outright.
        if value is not None and not isinstance(value, str):
            raise ValueError("must be a string")
        return value

    @field_validator("adjusted_qty", "limit_price", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Decimal | None:
        return _positive_number(value)

    @field_validator("rationale")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


# The answer schema as the prompt states it, in one place so prompt and validation agree.
RESPONSE_KEYS: tuple[str, ...] = (
    "verdict",
    "confidence",
    "adjusted_qty",
    "adjusted_order_type",
    "limit_price",
    "rationale",
    "risk_flags",
)
