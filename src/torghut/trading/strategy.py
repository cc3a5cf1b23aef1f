"""The MACD/RSI rule, order sizing and catalog parsing. Pure: no I/O, no clock, no asyncio.

Decisions made here, so that callers need not guess:

- A strategy whose timeframe or universe does not match the signal, or whose indicators
  (`macd`, `macd_signal`, `rsi14`) are missing or not finite, produces no decision. A disabled
  strategy still produces its decisions: risk rejects them as `strategy_disabled`, so the
  audit trail shows what it would have done.
- A rule that fires on a signal *without a price* still produces a decision (qty 1, the
  minimum, and `params.price` None): the risk engine then rejects it as `missing_price` and the
  audit trail says why nothing traded, instead of the signal vanishing silently.
- Entries are sized by notional (`size_order`). The rule knows nothing of positions: the
  pipeline, which does, turns an order that reduces a position into an exit sized to that
  position (`size_exit`): all of it, or, for a strategy with `partial_exits: true`, no more
  than the notional sizing gives. A sell with nothing held stays notional-sized, and risk
  rejects it (`shorts_not_allowed`) unless shorts are allowed.
- A strategy's own universe wins over the operator's `TRADING_UNIVERSE`; with neither, every
  symbol trades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from torghut.domain import Action, OrderType, Signal, TimeInForce, TradeDecision, identity_hash
from torghut.errors import InputError

DEFAULT_STRATEGY_NAME = "macd-rsi-default"

# Keys a catalog entry may carry under `params:`; they are the rule's knobs.
RULE_PARAMS = ("buy_rsi_below", "sell_rsi_above", "order_type", "time_in_force", "partial_exits")


class StrategySpec(BaseModel):
    """One strategy of the catalog. `name` is its id (the `strategies.id` primary key and the
    decisions' `strategy_id`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    description: str | None = None
    enabled: bool = True
    base_timeframe: str | None = Field(default=None, min_length=1, max_length=16)
    universe_symbols: tuple[str, ...] | None = None
    max_notional_per_trade: Decimal | None = Field(default=None, gt=0)
    max_position_pct_equity: Decimal | None = Field(default=None, gt=0, le=1)
    buy_rsi_below: float = Field(default=35, ge=0, le=100)
    sell_rsi_above: float = Field(default=65, ge=0, le=100)
    # Stop orders need a stop price no signal carries: only market and limit (at the signal's
    # price) are offered.
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    # An exit sells (or covers) the whole position unless this is set: then at most what the
    # notional sizing gives, so a position is left in steps.
    partial_exits: bool = False

    @property
    def id(self) -> str:
        return self.name

    @field_validator("order_type")
    @classmethod
    def _order_type(cls, value: OrderType) -> OrderType:
        if value not in (OrderType.MARKET, OrderType.LIMIT):
            raise ValueError("must be market or limit (no signal carries a stop price)")
        return value

    @field_validator("universe_symbols", mode="before")
    @classmethod
    def _symbols(cls, value: Any) -> Any:
        if isinstance(value, str):  # "AAPL, MSFT" is how operators write it in env vars too
            value = [s for s in value.split(",")]
        if isinstance(value, list | tuple | set | frozenset):
            symbols = sorted({str(s).strip().upper() for s in value if str(s).strip()})
            return tuple(symbols) if symbols else None
        return value

    def rule_params(self) -> dict[str, Any]:
        """The knobs stored in `strategies.params`."""
        return {
            "buy_rsi_below": self.buy_rsi_below,
            "sell_rsi_above": self.sell_rsi_above,
            "order_type": self.order_type.value,
            "time_in_force": self.time_in_force.value,
            "partial_exits": self.partial_exits,
        }


DEFAULT_STRATEGY = StrategySpec(
    name=DEFAULT_STRATEGY_NAME,
    description="Buy when MACD is above its signal and RSI(14) < 35; sell when MACD is below "
    "its signal and RSI(14) > 65. Any timeframe, every symbol.",
)


@dataclass(frozen=True, slots=True)
class StrategyDefaults:
    """The operator's limits, used where a strategy sets none (TRADING_* settings).

    `universe` (TRADING_UNIVERSE) is optional here: left None, the risk engine is the one that
    turns an out-of-universe symbol away and records `symbol_not_allowed`."""

    max_notional_per_trade: Decimal = Decimal(1000)
    max_position_pct_equity: Decimal = Decimal("0.1")
    universe: frozenset[str] | None = None


def size_order(
    price: Decimal,
    *,
    equity: Decimal,
    max_notional_per_trade: Decimal,
    max_position_pct_equity: Decimal,
) -> Decimal:
    """`floor(min(max_notional, equity x max_pct) / price)`, at least 1 share.

    The floor of one share means a tiny budget still yields an order; the risk engine, which
    sees cash and positions, is the one that says no."""
    if not price.is_finite() or price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    budget = min(max_notional_per_trade, equity * max_position_pct_equity)
    shares = (budget / price).to_integral_value(rounding=ROUND_FLOOR)
    return max(shares, Decimal(1))


_isfinite = math.isfinite
# A strategy's universe as a set, built once per tuple (held here, so its id is not reused).
_UNIVERSES: dict[int, tuple[tuple[str, ...], frozenset[str]]] = {}
_UNIVERSES_MAX = 256


def _universe(symbols: tuple[str, ...]) -> frozenset[str]:
    cached = _UNIVERSES.get(id(symbols))
    if cached is not None and cached[0] is symbols:
        return cached[1]
    if len(_UNIVERSES) >= _UNIVERSES_MAX:  # catalogs reloaded many times: start over
        _UNIVERSES.clear()
    universe = frozenset(symbols)
    _UNIVERSES[id(symbols)] = (symbols, universe)
    return universe


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def evaluate(
    strategy: StrategySpec,
    signal: Signal,
    *,
    equity: Decimal,
    defaults: StrategyDefaults | None = None,
) -> TradeDecision | None:
    """The decision `strategy` takes on `signal`, or None when its rule does not fire.

    The operator's limits come from `defaults`; the strategy's own limits win over them."""
    firing = fire(strategy, signal, defaults)
    return None if firing is None else firing.decide(equity)


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule that fired on a signal, before its order is sized: whether it fires, and the
    decision's identity (its hash), do not depend on the book; only the size does (equity).
    The pipeline asks every signal whether a rule fires, and sizes only what did."""

    strategy: StrategySpec
    signal: Signal
    action: Action
    price: Decimal | None
    notional_cap: Decimal
    pct_cap: Decimal

    @property
    def hash(self) -> str:
        """`decision_hash` of the decision it makes, whatever its size."""
        signal = self.signal
        return identity_hash(
            self.action, signal.event_ts, self.strategy.name, signal.symbol, signal.timeframe
        )

    def decide(self, equity: Decimal) -> TradeDecision:
        """The decision, sized for `equity` (qty 1 without a price: risk says why)."""
        strategy, signal, price = self.strategy, self.signal, self.price
        qty = (
            Decimal(1)
            if price is None
            else size_order(
                price,
                equity=equity,
                max_notional_per_trade=self.notional_cap,
                max_position_pct_equity=self.pct_cap,
            )
        )
        macd, macd_signal, rsi = signal.macd, signal.macd_signal, signal.rsi14
        assert macd is not None and macd_signal is not None and rsi is not None  # fired on them
        if self.action is Action.BUY:
            rationale = (
                f"macd {_fmt(macd)} > signal {_fmt(macd_signal)}, "
                f"rsi14 {_fmt(rsi)} < {_fmt(strategy.buy_rsi_below)}"
            )
        else:
            rationale = (
                f"macd {_fmt(macd)} < signal {_fmt(macd_signal)}, "
                f"rsi14 {_fmt(rsi)} > {_fmt(strategy.sell_rsi_above)}"
            )
        return TradeDecision(
            strategy_id=strategy.name,
            symbol=signal.symbol,
            action=self.action,
            qty=qty,
            order_type=strategy.order_type,
            time_in_force=strategy.time_in_force,
            event_ts=signal.event_ts,
            timeframe=signal.timeframe,
            rationale=rationale,
            limit_price=price if strategy.order_type is OrderType.LIMIT else None,
            params={"price": price, "macd": macd, "macd_signal": macd_signal, "rsi14": rsi},
        )


def fire(
    strategy: StrategySpec, signal: Signal, defaults: StrategyDefaults | None = None
) -> Firing | None:
    """Whether `strategy`'s rule fires on `signal` (see `evaluate`). Called for every signal
    and strategy: what decides that the rule does not fire comes first, and costs no
    allocation."""
    if strategy.base_timeframe is not None and strategy.base_timeframe != signal.timeframe:
        return None
    symbols = strategy.universe_symbols
    universe: frozenset[str] | None = None
    if symbols is not None:
        universe = _universe(symbols)
    elif defaults is not None:
        universe = defaults.universe
    if universe is not None and signal.symbol not in universe:
        return None
    macd, macd_signal, rsi = signal.macd, signal.macd_signal, signal.rsi14
    if (
        macd is None
        or macd_signal is None
        or rsi is None
        or not (_isfinite(macd) and _isfinite(macd_signal) and _isfinite(rsi))
    ):
        return None
    if macd > macd_signal and rsi < strategy.buy_rsi_below:
        action = Action.BUY
    elif macd < macd_signal and rsi > strategy.sell_rsi_above:
        action = Action.SELL
    else:
        return None

    defaults = defaults or StrategyDefaults()
    price = signal.price if signal.price is not None and signal.price.is_finite() else None
    if price is not None and price <= 0:
        price = None
    if price is None and strategy.order_type is OrderType.LIMIT:
        return None  # a limit order needs a price to limit at
    return Firing(
        strategy,
        signal,
        action,
        price,
        strategy.max_notional_per_trade or defaults.max_notional_per_trade,
        strategy.max_position_pct_equity or defaults.max_position_pct_equity,
    )


def size_exit(
    decision: TradeDecision,
    *,
    position: Decimal,
    closing: Decimal,
    partial: bool,
    max_shares: Decimal,
) -> TradeDecision:
    """The decision re-sized as an exit when it reduces `position` (signed shares held),
    `closing` being what open orders of the same side already take off it: the rest of the
    position, capped by the strategy's own sizing when it asks for `partial` exits and by the
    share cap (a larger position is closed over several signals). Unchanged otherwise: an
    entry, or nothing left to close."""
    remaining = position - closing if decision.action is Action.SELL else -position - closing
    if remaining <= 0:
        return decision
    qty = min(remaining, decision.qty) if partial else remaining
    qty = min(qty, max_shares)
    if qty == decision.qty:
        return decision
    return decision.model_copy(update={"qty": qty})


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "entry"


def spec_from_mapping(entry: Mapping[str, Any], where: str) -> StrategySpec:
    """One catalog entry (or one `strategies` row, as a mapping) to a spec. Rule knobs may sit
    at the top level or under `params:`; `id` is accepted for `name`."""
    data = dict(entry)
    params = data.pop("params", None) or {}
    if not isinstance(params, Mapping):
        raise InputError(f"{where}: field 'params' must be a mapping")
    for key, value in params.items():
        if key in data:
            raise InputError(f"{where}: field {key!r} is given both at top level and in params")
        data[key] = value
    if "id" in data and "name" not in data:
        data["name"] = data.pop("id")
    elif "id" in data and data["id"] != data["name"]:
        raise InputError(f"{where}: fields 'id' and 'name' disagree")
    else:
        data.pop("id", None)
    try:
        return StrategySpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = _field_path(tuple(first["loc"]))
        if field in RULE_PARAMS and field not in entry:
            field = f"params.{field}"
        message = str(first["msg"]).removeprefix("Value error, ")
        if field == "name" and isinstance(data.get("name"), bool):
            message += " (YAML reads yes/no/on/off as booleans: quote the name)"
        raise InputError(f"{where}: field {field!r}: {message}") from None


def parse_catalog(yaml_text: str, source: str) -> list[StrategySpec]:
    """Parse a strategy catalog:

        strategies:
          - name: momentum-1m
            enabled: true
            base_timeframe: 1Min
            universe_symbols: [AAPL, MSFT]
            max_notional_per_trade: 2500
            max_position_pct_equity: 0.05
            params: {buy_rsi_below: 30, sell_rsi_above: 70}

    Raises `InputError` naming `source` and the entry/field at fault, or the duplicated name.
    An empty file is an empty catalog."""
    try:
        document = yaml.safe_load(yaml_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InputError(f"{source}: invalid YAML{where}: {problem}") from None
    if document is None:
        return []
    if not isinstance(document, Mapping):
        raise InputError(f"{source}: expected a mapping with a 'strategies' list at top level")
    unknown = sorted(str(k) for k in document if k != "strategies")
    if unknown:
        raise InputError(f"{source}: unknown top-level field {unknown[0]!r}")
    entries = document.get("strategies") or []
    if not isinstance(entries, list):
        raise InputError(f"{source}: field 'strategies' must be a list")
    specs: list[StrategySpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{source}: strategies[{index}]"
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: expected a mapping")
        name = entry.get("name", entry.get("id"))
        if isinstance(name, str):
            where = f"{source}: strategies[{index}] ({name})"
        spec = spec_from_mapping(entry, where)
        if spec.name in seen:
            raise InputError(f"{source}: duplicate strategy name {spec.name!r}")
        seen.add(spec.name)
        specs.append(spec)
    return specs
