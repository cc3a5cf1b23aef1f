"""Value types shared by every part of Torghut: signals, decisions, risk results, orders,
review outcomes. Frozen, validated, free of I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Action(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class TradingMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class FailMode(StrEnum):
    VETO = "veto"
    PASS_THROUGH = "pass_through"


class LLMVerdict(StrEnum):
    """What the model said."""

    APPROVE = "approve"
    VETO = "veto"
    ADJUST = "adjust"


class Verdict(StrEnum):
    """The review outcome after policy."""

    APPROVE = "approve"
    VETO = "veto"
    ADJUST = "adjust"
    ERROR = "error"


class EffectiveAction(StrEnum):
    SUBMITTED_ORIGINAL = "submitted_original"
    SUBMITTED_ADJUSTED = "submitted_adjusted"
    REJECTED = "rejected"


class DecisionStatus(StrEnum):
    PLANNED = "planned"
    REJECTED = "rejected"
    SUBMITTED = "submitted"
    # Broker statuses mirrored by reconciliation.
    ACCEPTED = "accepted"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    DONE_FOR_DAY = "done_for_day"
    REPLACED = "replaced"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    PENDING_NEW = "pending_new"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    CALCULATED = "calculated"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    BROKER_REJECTED = "broker_rejected"
    ERROR = "error"


# Broker order statuses after which nothing more will happen: reconciliation stops polling.
TERMINAL_ORDER_STATUSES = frozenset(
    {
        "filled",
        "canceled",
        "expired",
        "rejected",
        "done_for_day",
        "replaced",
        "stopped",
        "broker_rejected",
        "error",
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (SQLite returns them naive)."""
    tz = value.tzinfo
    if tz is UTC:  # most values: the service makes its datetimes in UTC
        return value
    return value.replace(tzinfo=UTC) if tz is None else value.astimezone(UTC)


class Signal(BaseModel):
    """One technical-analysis signal: the strategy's input."""

    # Built at its first validation or dump, not at import: `llm review` without `--signals`
    # never validates one, and the build was 1.4 ms of its start-up.
    model_config = ConfigDict(frozen=True, defer_build=True)

    event_ts: datetime
    symbol: str = Field(min_length=1, max_length=32)
    timeframe: str = Field(min_length=1, max_length=16)
    macd: float | None = None
    macd_signal: float | None = None
    rsi14: float | None = None
    price: Decimal | None = None
    seq: int = 0
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event_ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()


class TradeDecision(BaseModel):
    """A proposed order, as a strategy produced it or as an operator wrote it in a file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy_id: str = Field(min_length=1, max_length=128)
    symbol: str = Field(min_length=1, max_length=32)
    action: Action
    qty: Decimal = Field(gt=0)
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    event_ts: datetime
    timeframe: str = Field(min_length=1, max_length=16)
    rationale: str | None = None
    limit_price: Decimal | None = Field(default=None, gt=0)
    stop_price: Decimal | None = Field(default=None, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event_ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()

    @model_validator(mode="after")
    def _prices_for_type(self) -> TradeDecision:
        if self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and self.limit_price is None:
            raise ValueError(f"limit_price is required for a {self.order_type.value} order")
        if self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and self.stop_price is None:
            raise ValueError(f"stop_price is required for a {self.order_type.value} order")
        return self

    @property
    def reference_price(self) -> Decimal | None:
        """`params.price` when present, else the limit price (CONTRACT §3)."""
        raw = self.params.get("price")
        if type(raw) is Decimal:  # the strategies' own: as `Decimal(str(raw))` gives it, exactly
            return raw if raw.is_finite() and raw > 0 else self.limit_price
        if raw is not None:
            try:
                price = Decimal(str(raw))
            except ArithmeticError:
                price = None
            if price is not None and price.is_finite() and price > 0:
                return price
        return self.limit_price

    @property
    def notional(self) -> Decimal | None:
        price = self.reference_price
        return None if price is None else price * self.qty


def decision_hash(decision: TradeDecision) -> str:
    """Stable identity of a decision: the same signal through the same strategy always hashes
    the same, so a replay or two racing loops can never submit it twice. It is also the broker's
    `client_order_id` (Alpaca allows up to 128 characters; this is 40).

    The hashed text is `json.dumps` of the identity's five fields with sorted keys, written out
    here by hand (the same bytes: each value quoted by the encoder `json.dumps` itself uses),
    since building an encoder per call cost more than the hash; tests/unit/test_domain_hash.py
    compares both on random decisions."""
    return identity_hash(
        decision.action,
        decision.event_ts,
        decision.strategy_id,
        decision.symbol,
        decision.timeframe,
    )


def identity_hash(
    action: Action, event_ts: datetime, strategy_id: str, symbol: str, timeframe: str
) -> str:
    """`decision_hash` of a decision with these identity fields (as the decision holds them:
    symbol upper-case and stripped), without the decision."""
    text = _IDENTITY.format(
        _quote(action.value),
        _quote(as_utc(event_ts).isoformat()),
        _quote(strategy_id),
        _quote(symbol),
        _quote(timeframe),
    )
    return f"th-{hashlib.sha256(text.encode()).hexdigest()[:37]}"


# `json.dumps({...}, sort_keys=True)` of the identity: keys in sorted order, default separators.
_IDENTITY = '{{"action": {}, "event_ts": {}, "strategy_id": {}, "symbol": {}, "timeframe": {}}}'
_quote = json.encoder.encode_basestring_ascii  # what json.dumps quotes strings with (ensure_ascii)


@dataclass(frozen=True, slots=True)
class RiskResult:
    approved: bool
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        return ",".join(self.reasons) if self.reasons else None


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    market_value: Decimal


@dataclass(frozen=True, slots=True)
class Account:
    cash: Decimal
    equity: Decimal
    buying_power: Decimal


@dataclass(frozen=True, slots=True)
class Book:
    """What a broker holds for us at one moment: read together, so they agree."""

    account: Account
    positions: list[Position]
    open_orders: list[BrokerOrder]
    # The price each position's `market_value` was taken at, where the broker says (the
    # simulated one does), so that a revaluation adds up to the broker's own.
    last_prices: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    side: Action
    qty: Decimal
    order_type: OrderType
    time_in_force: TimeInForce
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    reference_price: Decimal | None = None

    @classmethod
    def for_decision(cls, decision: TradeDecision, client_order_id: str) -> OrderRequest:
        return cls(
            client_order_id=client_order_id,
            symbol=decision.symbol,
            side=decision.action,
            qty=decision.qty,
            order_type=decision.order_type,
            time_in_force=decision.time_in_force,
            limit_price=decision.limit_price,
            stop_price=decision.stop_price,
            reference_price=decision.reference_price,
        )

    def to_json(self) -> dict[str, str | None]:
        """Every field as text (decimals exactly), for `pending_order_json`."""

        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "qty": str(self.qty),
            "order_type": self.order_type.value,
            "time_in_force": self.time_in_force.value,
            "limit_price": text(self.limit_price),
            "stop_price": text(self.stop_price),
            "reference_price": text(self.reference_price),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrderRequest:
        def number(key: str) -> Decimal | None:
            value = data.get(key)
            return None if value is None else Decimal(str(value))

        return cls(
            client_order_id=str(data["client_order_id"]),
            symbol=str(data["symbol"]),
            side=Action(data["side"]),
            qty=Decimal(str(data["qty"])),
            order_type=OrderType(data["order_type"]),
            time_in_force=TimeInForce(data["time_in_force"]),
            limit_price=number("limit_price"),
            stop_price=number("stop_price"),
            reference_price=number("reference_price"),
        )


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """The broker's view of one order."""

    broker_order_id: str
    client_order_id: str
    symbol: str
    status: str
    filled_qty: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    reject_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # Typed by the adapter from the broker's answer, so that nothing past the adapter reads
    # `raw` to size risk. None where the broker did not say (risk cannot count such an order).
    side: Action | None = None
    qty: Decimal | None = None
    limit_price: Decimal | None = None

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL_ORDER_STATUSES


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None

    def as_dict(self) -> dict[str, int | None]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
