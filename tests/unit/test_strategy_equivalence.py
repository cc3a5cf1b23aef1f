"""`evaluate` decides as it did before it learnt to say "no" first and cheaply (issue 16), on
random strategies and signals: the same decision, field for field, or None alike."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from torghut.domain import Action, OrderType, Signal, TradeDecision, decision_hash
from torghut.trading.strategy import (
    StrategyDefaults,
    StrategySpec,
    _fmt,
    evaluate,
    fire,
    size_order,
)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def reference_evaluate(
    strategy: StrategySpec,
    signal: Signal,
    *,
    equity: Decimal,
    defaults: StrategyDefaults | None = None,
) -> TradeDecision | None:
    """`evaluate` before issue 16, verbatim."""
    defaults = defaults or StrategyDefaults()
    notional_cap = strategy.max_notional_per_trade or defaults.max_notional_per_trade
    pct_cap = strategy.max_position_pct_equity or defaults.max_position_pct_equity
    if strategy.base_timeframe is not None and strategy.base_timeframe != signal.timeframe:
        return None
    universe = (
        frozenset(strategy.universe_symbols)
        if strategy.universe_symbols is not None
        else defaults.universe
    )
    if universe is not None and signal.symbol not in universe:
        return None
    macd, macd_signal, rsi = (
        _finite(signal.macd),
        _finite(signal.macd_signal),
        _finite(signal.rsi14),
    )
    if macd is None or macd_signal is None or rsi is None:
        return None

    if macd > macd_signal and rsi < strategy.buy_rsi_below:
        action = Action.BUY
        rationale = (
            f"macd {_fmt(macd)} > signal {_fmt(macd_signal)}, "
            f"rsi14 {_fmt(rsi)} < {_fmt(strategy.buy_rsi_below)}"
        )
    elif macd < macd_signal and rsi > strategy.sell_rsi_above:
        action = Action.SELL
        rationale = (
            f"macd {_fmt(macd)} < signal {_fmt(macd_signal)}, "
            f"rsi14 {_fmt(rsi)} > {_fmt(strategy.sell_rsi_above)}"
        )
    else:
        return None

    price = signal.price if signal.price is not None and signal.price.is_finite() else None
    if price is not None and price <= 0:
        price = None
    if price is None and strategy.order_type is OrderType.LIMIT:
        return None
    qty = (
        Decimal(1)
        if price is None
        else size_order(
            price,
            equity=equity,
            max_notional_per_trade=notional_cap,
            max_position_pct_equity=pct_cap,
        )
    )
    return TradeDecision(
        strategy_id=strategy.name,
        symbol=signal.symbol,
        action=action,
        qty=qty,
        order_type=strategy.order_type,
        time_in_force=strategy.time_in_force,
        event_ts=signal.event_ts,
        timeframe=signal.timeframe,
        rationale=rationale,
        limit_price=price if strategy.order_type is OrderType.LIMIT else None,
        params={"price": price, "macd": macd, "macd_signal": macd_signal, "rsi14": rsi},
    )


_SYMBOLS = ["AAPL", "MSFT", "NVDA"]
_number = st.one_of(
    st.none(),
    st.floats(-100, 100),
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, 35.0, 65.0]),
)
_specs = st.builds(
    StrategySpec,
    name=st.sampled_from(["s1", "momentum-1m"]),
    enabled=st.booleans(),
    base_timeframe=st.sampled_from([None, "1Min", "5Min"]),
    universe_symbols=st.one_of(st.none(), st.lists(st.sampled_from(_SYMBOLS), max_size=3)),
    max_notional_per_trade=st.one_of(st.none(), st.decimals(1, 10_000, places=2)),
    max_position_pct_equity=st.one_of(st.none(), st.decimals("0.01", 1, places=2)),
    buy_rsi_below=st.floats(0, 100),
    sell_rsi_above=st.floats(0, 100),
    order_type=st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
    partial_exits=st.booleans(),
)
_signals = st.builds(
    lambda **fields: Signal.model_construct(**fields),
    event_ts=st.just(datetime(2025, 3, 3, 14, 30, tzinfo=UTC)),
    symbol=st.sampled_from(_SYMBOLS),
    timeframe=st.sampled_from(["1Min", "5Min"]),
    macd=_number,
    macd_signal=_number,
    rsi14=_number,
    price=st.one_of(
        st.none(),
        st.decimals(-5, 10_000, places=3),
        st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal(0)]),
    ),
)
_defaults = st.one_of(
    st.none(),
    st.builds(
        StrategyDefaults,
        max_notional_per_trade=st.decimals(1, 10_000, places=2),
        max_position_pct_equity=st.decimals("0.01", 1, places=2),
        universe=st.one_of(st.none(), st.frozensets(st.sampled_from(_SYMBOLS))),
    ),
)


def _exactly(decision: TradeDecision | None) -> Any:
    if decision is None:
        return None
    return [(k, type(v), repr(v)) for k, v in decision.__dict__.items()]


@settings(max_examples=3000, deadline=None)
@given(_specs, _signals, _defaults, st.decimals(1, 10**7, places=2))
def test_evaluate_decides_as_before(
    spec: StrategySpec, signal: Signal, defaults: StrategyDefaults | None, equity: Decimal
) -> None:
    expected = reference_evaluate(spec, signal, equity=equity, defaults=defaults)
    assert _exactly(evaluate(spec, signal, equity=equity, defaults=defaults)) == _exactly(expected)
    # Twice: the second call reads the strategy's universe from the cache.
    assert _exactly(evaluate(spec, signal, equity=equity, defaults=defaults)) == _exactly(expected)
    # The pipeline's two steps: whether it fires (with the decision's hash), then its size.
    firing = fire(spec, signal, defaults)
    assert (firing is None) == (expected is None)
    if firing is not None and expected is not None:
        assert firing.hash == decision_hash(expected)
        assert _exactly(firing.decide(equity)) == _exactly(expected)


def test_a_changed_universe_is_not_read_from_the_cache() -> None:
    signal = Signal(
        event_ts=datetime(2025, 3, 3, 14, 30, tzinfo=UTC),
        symbol="AAPL",
        timeframe="1Min",
        macd=0.5,
        macd_signal=0.1,
        rsi14=20,
        price=Decimal(100),
    )
    spec = StrategySpec(name="s", universe_symbols=["AAPL"])
    assert evaluate(spec, signal, equity=Decimal(10_000)) is not None
    narrowed = spec.model_copy(update={"universe_symbols": ("MSFT",)})
    assert evaluate(narrowed, signal, equity=Decimal(10_000)) is None
    assert evaluate(spec, signal, equity=Decimal(10_000)) is not None
