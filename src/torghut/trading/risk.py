"""The deterministic risk checks: a decision, the limits and a snapshot of the book in, a
`RiskResult` out. Pure: no I/O, no clock (the caller passes `now`), no environment.

Every check runs and every failing reason is reported, so an operator sees at once all that is
wrong with a decision, not only the first thing. Reasons are module constants, listed in
`REASONS` in the order they are checked.

What each check compares (all prices are the decision's reference price, CONTRACT §3):

| reason | fails when |
|---|---|
| `trading_disabled` | trading is off (`serve` guards its loop with it; replay passes True) |
| `live_not_enabled` | live mode without the explicit live switch |
| `kill_switch` | the kill switch is on |
| `strategy_disabled` | the decision's strategy is disabled |
| `symbol_not_allowed` | the symbol is outside the configured or the strategy's universe |
| `missing_price` | the decision has no reference price (`params.price`, else its limit) |
| `max_shares_exceeded` | the quantity is over `max_shares_per_order` (exits too) |
| `max_notional_exceeded` | qty × price over the per-trade cap (the strategy's, else global) |
| `insufficient_buying_power` | a buy's notional is over the account's buying power |
| `max_position_pct_exceeded` | exposure after the order, open orders counted, over equity × pct |
| `shorts_not_allowed` | a sell is larger than the long position net of open sells |
| `cooldown_active` | another decision traded the symbol less than `cooldown_seconds` ago |

An exit is an order that only reduces a position: a sell of at most the long position net of
open sells, or a buy of at most the short position net of open buys. It is exempt from the
per-trade notional cap (a position bought at the cap and closed at a gain is above it) and
from the position cap (it only lowers exposure); the share cap still applies.

Checked before this module, by the pipeline, in CONTRACT §8's order, each alone: the kill
switch, `signal_stale` and `market_closed` (`trading/session.py`), then `price_out_of_band`
(`trading/ledger.py`); their constants are here so that every reason has one home.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from torghut.domain import (
    Account,
    Action,
    BrokerOrder,
    OrderRequest,
    Position,
    RiskResult,
    TradeDecision,
    TradingMode,
    as_utc,
    decision_hash,
)

TRADING_DISABLED = "trading_disabled"
LIVE_NOT_ENABLED = "live_not_enabled"
KILL_SWITCH = "kill_switch"
STRATEGY_DISABLED = "strategy_disabled"
SYMBOL_NOT_ALLOWED = "symbol_not_allowed"
MISSING_PRICE = "missing_price"
MAX_NOTIONAL_EXCEEDED = "max_notional_exceeded"
INSUFFICIENT_BUYING_POWER = "insufficient_buying_power"
MAX_POSITION_PCT_EXCEEDED = "max_position_pct_exceeded"
SHORTS_NOT_ALLOWED = "shorts_not_allowed"
COOLDOWN_ACTIVE = "cooldown_active"
MAX_SHARES_EXCEEDED = "max_shares_exceeded"
PRICE_OUT_OF_BAND = "price_out_of_band"

REASONS: tuple[str, ...] = (
    TRADING_DISABLED,
    LIVE_NOT_ENABLED,
    KILL_SWITCH,
    STRATEGY_DISABLED,
    SYMBOL_NOT_ALLOWED,
    MISSING_PRICE,
    MAX_SHARES_EXCEEDED,
    MAX_NOTIONAL_EXCEEDED,
    INSUFFICIENT_BUYING_POWER,
    MAX_POSITION_PCT_EXCEEDED,
    SHORTS_NOT_ALLOWED,
    COOLDOWN_ACTIVE,
)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Service-wide limits (from settings). Defaults are the embedded ones of CONTRACT §2."""

    trading_enabled: bool = True
    trading_mode: TradingMode = TradingMode.PAPER
    live_enabled: bool = False
    kill_switch: bool = False
    allow_shorts: bool = False
    max_notional_per_trade: Decimal = Decimal(1000)
    max_position_pct_equity: Decimal = Decimal("0.1")
    cooldown_seconds: float = 0.0
    max_shares_per_order: Decimal = Decimal(10_000)
    # None: every symbol is allowed.
    universe: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class StrategyLimits:
    """A strategy's own limits; each set field replaces the global one (`universe` narrows)."""

    max_notional_per_trade: Decimal | None = None
    max_position_pct_equity: Decimal | None = None
    universe: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order at the broker not yet done. `qty` is what remains to fill; `price` its limit
    (None for a market order: the decision's reference price stands in for it)."""

    symbol: str
    side: Action
    qty: Decimal
    price: Decimal | None = None
    client_order_id: str | None = None

    @classmethod
    def from_request(cls, order: OrderRequest) -> OpenOrder:
        return cls(
            symbol=order.symbol.upper(),
            side=order.side,
            qty=order.qty,
            price=order.limit_price or order.reference_price,
            client_order_id=order.client_order_id,
        )

    @classmethod
    def from_broker_order(cls, order: BrokerOrder) -> OpenOrder | None:
        """From a broker's open order, by its typed side, quantity and limit (the adapter
        reads them from the broker's answer). None when the broker did not say: such an order
        cannot be counted."""
        if order.side is None or order.qty is None:
            return None
        return cls(
            symbol=order.symbol.upper(),
            side=order.side,
            qty=max(order.qty - order.filled_qty, Decimal(0)),
            price=order.limit_price,
            client_order_id=order.client_order_id,
        )


@dataclass(frozen=True, slots=True)
class RecentTrade:
    """When a decision last traded a symbol, and which decision it was (so that the decision
    under evaluation, re-checked after an LLM adjustment, never cools itself down)."""

    at: datetime
    decision_hash: str | None = None


@dataclass(frozen=True, slots=True)
class RiskContext:
    """A snapshot of the book for one evaluation.

    `last_trade_at` maps a symbol to the last submitted decision in it. The caller must leave
    out the decision under evaluation; as a second guard, a `RecentTrade` whose hash is the
    evaluated decision's is ignored, and so is an open order whose `client_order_id` is it.
    `now` is the decision's clock: wall time in `serve`, event time in `replay`."""

    account: Account
    now: datetime
    positions: Mapping[str, Position] = field(default_factory=dict)
    # A `BrokerOrder` counts through `OpenOrder.from_broker_order` (its typed side and qty);
    # one without them cannot be sized and is left out.
    open_orders: Sequence[OpenOrder | BrokerOrder] = ()
    strategy_enabled: bool = True
    strategy_limits: StrategyLimits | None = None
    last_trade_at: Mapping[str, datetime | RecentTrade] = field(default_factory=dict)


def evaluate_risk(
    decision: TradeDecision,
    limits: RiskLimits,
    ctx: RiskContext,
    *,
    own_hash: str | None = None,
) -> RiskResult:
    """Every check, every failing reason (in `REASONS` order); approved when none fails.
    `own_hash`: `decision_hash(decision)`, when the caller has it already (it is computed
    otherwise)."""
    reasons: list[str] = []
    if own_hash is None:
        own_hash = decision_hash(decision)
    symbol = decision.symbol
    strategy = ctx.strategy_limits or StrategyLimits()

    if not limits.trading_enabled:
        reasons.append(TRADING_DISABLED)
    if limits.trading_mode is TradingMode.LIVE and not limits.live_enabled:
        reasons.append(LIVE_NOT_ENABLED)
    if limits.kill_switch:
        reasons.append(KILL_SWITCH)
    if not ctx.strategy_enabled:
        reasons.append(STRATEGY_DISABLED)
    if not _allowed(symbol, limits.universe) or not _allowed(symbol, strategy.universe):
        reasons.append(SYMBOL_NOT_ALLOWED)

    price = decision.reference_price
    open_orders: list[OpenOrder] = [
        o
        for o in _open_orders(ctx.open_orders)
        if o.symbol.upper() == symbol and o.client_order_id != own_hash
    ]
    held = ctx.positions[symbol].qty if symbol in ctx.positions else Decimal(0)
    open_sells = sum((o.qty for o in open_orders if o.side is Action.SELL), Decimal(0))

    exit_ = is_exit(decision.action, decision.qty, held, open_orders)
    if price is None:
        reasons.append(MISSING_PRICE)
    if decision.qty > limits.max_shares_per_order:
        reasons.append(MAX_SHARES_EXCEEDED)
    if price is not None:
        notional = price * decision.qty
        max_notional = _first(strategy.max_notional_per_trade, limits.max_notional_per_trade)
        if notional > max_notional and not exit_:
            reasons.append(MAX_NOTIONAL_EXCEEDED)
        if decision.action is Action.BUY and notional > ctx.account.buying_power:
            reasons.append(INSUFFICIENT_BUYING_POWER)
        pct = _first(strategy.max_position_pct_equity, limits.max_position_pct_equity)
        exposure = _exposure_after(decision, price, held, open_orders)
        if not exit_ and exposure > ctx.account.equity * pct:
            reasons.append(MAX_POSITION_PCT_EXCEEDED)

    going_short = decision.qty > held - open_sells
    if decision.action is Action.SELL and going_short and not limits.allow_shorts:
        reasons.append(SHORTS_NOT_ALLOWED)

    if limits.cooldown_seconds > 0 and _cooling_down(symbol, own_hash, limits, ctx):
        reasons.append(COOLDOWN_ACTIVE)

    return RiskResult(approved=not reasons, reasons=tuple(reasons))


def is_exit(action: Action, qty: Decimal, held: Decimal, open_orders: Sequence[OpenOrder]) -> bool:
    """Whether an order of `qty` only reduces the position `held` (open orders of the symbol
    counted: what they already close is not there to close again)."""
    if action is Action.SELL and held > 0:
        open_sells = sum((o.qty for o in open_orders if o.side is Action.SELL), Decimal(0))
        return Decimal(0) < qty <= held - open_sells
    if action is Action.BUY and held < 0:
        open_buys = sum((o.qty for o in open_orders if o.side is Action.BUY), Decimal(0))
        return Decimal(0) < qty <= -held - open_buys
    return False


def _open_orders(orders: Sequence[OpenOrder | BrokerOrder]) -> list[OpenOrder]:
    result: list[OpenOrder] = []
    for order in orders:
        converted = OpenOrder.from_broker_order(order) if isinstance(order, BrokerOrder) else order
        if converted is not None:
            result.append(converted)
    return result


def _allowed(symbol: str, universe: frozenset[str] | None) -> bool:
    return universe is None or symbol in {s.upper() for s in universe}


def _first(override: Decimal | None, default: Decimal) -> Decimal:
    return default if override is None else override


def _exposure_after(
    decision: TradeDecision, price: Decimal, held: Decimal, open_orders: Sequence[OpenOrder]
) -> Decimal:
    """The absolute value of the position in the symbol once this order and every open order
    fill. Open buys count (they may fill any moment); open sells are not netted against a long
    position, since they may never fill, but do count towards a short one."""
    open_buy_value = sum(
        (o.qty * (o.price or price) for o in open_orders if o.side is Action.BUY), Decimal(0)
    )
    if decision.action is Action.BUY:
        return abs(held * price + open_buy_value + decision.qty * price)
    open_sells = sum((o.qty for o in open_orders if o.side is Action.SELL), Decimal(0))
    after = held - open_sells - decision.qty
    # Selling out of a long position only reduces exposure: only a short beyond it can breach.
    return -after * price if after < 0 else Decimal(0)


def _cooling_down(symbol: str, own_hash: str, limits: RiskLimits, ctx: RiskContext) -> bool:
    last = ctx.last_trade_at.get(symbol)
    if last is None:
        return False
    if isinstance(last, RecentTrade):
        if last.decision_hash == own_hash:
            return False
        at = last.at
    else:
        at = last
    # A trade stamped after `now` (signals replayed out of order) counts as recent: safer.
    return as_utc(ctx.now) - as_utc(at) < timedelta(seconds=limits.cooldown_seconds)
