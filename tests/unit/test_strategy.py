from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from torghut.domain import Action, OrderType, Signal, TimeInForce
from torghut.errors import InputError
from torghut.trading.strategy import (
    DEFAULT_STRATEGY,
    StrategyDefaults,
    StrategySpec,
    evaluate,
    parse_catalog,
    size_order,
)

TS = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)
EQUITY = Decimal(100_000)


def sig(**overrides: Any) -> Signal:
    fields: dict[str, Any] = {
        "event_ts": TS,
        "symbol": "AAPL",
        "timeframe": "1Min",
        "macd": 0.5,
        "macd_signal": 0.2,
        "rsi14": 30.1,
        "price": Decimal(100),
    }
    fields.update(overrides)
    return Signal(**fields)


# --- sizing --------------------------------------------------------------------------------


def test_buy_at_100_with_embedded_defaults_is_10_shares() -> None:
    qty = size_order(
        Decimal(100),
        equity=EQUITY,
        max_notional_per_trade=Decimal(1000),
        max_position_pct_equity=Decimal("0.1"),
    )
    assert qty == Decimal(10)


@pytest.mark.parametrize(
    ("price", "equity", "notional", "pct", "expected"),
    [
        pytest.param("117.35", "100000", "1000", "0.1", 8, id="floor"),
        pytest.param("100", "5000", "1000", "0.1", 5, id="pct-of-equity-binds"),
        pytest.param("2500", "100000", "1000", "0.1", 1, id="at-least-one"),
        pytest.param("100", "0", "1000", "0.1", 1, id="no-equity-still-one"),
        pytest.param("0.5", "100000", "1000", "0.1", 2000, id="penny-stock"),
    ],
)
def test_size_order(price: str, equity: str, notional: str, pct: str, expected: int) -> None:
    qty = size_order(
        Decimal(price),
        equity=Decimal(equity),
        max_notional_per_trade=Decimal(notional),
        max_position_pct_equity=Decimal(pct),
    )
    assert qty == Decimal(expected)
    assert qty == qty.to_integral_value()


@pytest.mark.parametrize("price", ["0", "-1", "NaN"])
def test_size_order_rejects_a_non_positive_price(price: str) -> None:
    with pytest.raises(ValueError):
        size_order(
            Decimal(price),
            equity=EQUITY,
            max_notional_per_trade=Decimal(1000),
            max_position_pct_equity=Decimal("0.1"),
        )


# --- the rule ------------------------------------------------------------------------------


def test_default_strategy_buys() -> None:
    decision = evaluate(DEFAULT_STRATEGY, sig(), equity=EQUITY, defaults=StrategyDefaults())
    assert decision is not None
    assert decision.strategy_id == "macd-rsi-default"
    assert decision.action is Action.BUY
    assert decision.qty == Decimal(10)
    assert decision.order_type is OrderType.MARKET
    assert decision.time_in_force is TimeInForce.DAY
    assert decision.event_ts == TS
    assert decision.timeframe == "1Min"
    assert decision.rationale == "macd 0.5 > signal 0.2, rsi14 30.1 < 35"
    assert decision.params == {
        "price": Decimal(100),
        "macd": 0.5,
        "macd_signal": 0.2,
        "rsi14": 30.1,
    }
    assert decision.reference_price == Decimal(100)


def test_default_strategy_sells() -> None:
    decision = evaluate(
        DEFAULT_STRATEGY,
        sig(macd=-0.3, macd_signal=0.1, rsi14=71.0),
        equity=EQUITY,
        defaults=StrategyDefaults(),
    )
    assert decision is not None
    assert decision.action is Action.SELL
    assert decision.rationale == "macd -0.3 < signal 0.1, rsi14 71 > 65"


@pytest.mark.parametrize(
    ("macd", "macd_signal", "rsi"),
    [
        pytest.param(0.5, 0.2, 35.0, id="rsi-at-buy-threshold"),
        pytest.param(0.2, 0.5, 30.0, id="macd-below-but-rsi-low"),
        pytest.param(0.2, 0.2, 30.0, id="macd-equal"),
        pytest.param(-0.3, 0.1, 65.0, id="rsi-at-sell-threshold"),
        pytest.param(0.3, 0.1, 70.0, id="macd-above-but-rsi-high"),
        pytest.param(0.5, 0.2, 50.0, id="neutral"),
    ],
)
def test_rule_does_not_fire(macd: float, macd_signal: float, rsi: float) -> None:
    signal = sig(macd=macd, macd_signal=macd_signal, rsi14=rsi)
    assert evaluate(DEFAULT_STRATEGY, signal, equity=EQUITY) is None


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"macd": None}, id="no-macd"),
        pytest.param({"macd_signal": None}, id="no-signal"),
        pytest.param({"rsi14": None}, id="no-rsi"),
        pytest.param({"rsi14": float("nan")}, id="nan-rsi"),
    ],
)
def test_missing_indicators_produce_nothing(overrides: dict[str, Any]) -> None:
    assert evaluate(DEFAULT_STRATEGY, sig(**overrides), equity=EQUITY) is None


def test_missing_price_still_decides_so_risk_can_record_why() -> None:
    decision = evaluate(DEFAULT_STRATEGY, sig(price=None), equity=EQUITY)
    assert decision is not None
    assert decision.params["price"] is None
    assert decision.qty == Decimal(1)
    assert decision.reference_price is None


def test_timeframe_and_universe_filters() -> None:
    spec = StrategySpec(name="s", base_timeframe="5Min", universe_symbols=("msft", "AAPL"))
    assert evaluate(spec, sig(timeframe="1Min"), equity=EQUITY) is None
    assert evaluate(spec, sig(timeframe="5Min"), equity=EQUITY) is not None
    assert evaluate(spec, sig(timeframe="5Min", symbol="NVDA"), equity=EQUITY) is None
    assert evaluate(spec, sig(timeframe="5Min", symbol="msft"), equity=EQUITY) is not None


def test_default_strategy_trades_any_timeframe_and_symbol() -> None:
    for timeframe, symbol in [("1Sec", "SPY"), ("1Hour", "O'REILLY"), ("1Day", "BRK.B")]:
        signal = sig(timeframe=timeframe, symbol=symbol)
        assert evaluate(DEFAULT_STRATEGY, signal, equity=EQUITY) is not None


def test_operator_universe_applies_when_the_strategy_has_none() -> None:
    defaults = StrategyDefaults(universe=frozenset({"MSFT"}))
    assert evaluate(DEFAULT_STRATEGY, sig(), equity=EQUITY, defaults=defaults) is None
    narrow = StrategySpec(name="s", universe_symbols=("AAPL",))
    assert evaluate(narrow, sig(), equity=EQUITY, defaults=defaults) is not None


def test_disabled_strategy_still_decides_so_that_risk_can_say_strategy_disabled() -> None:
    spec = StrategySpec(name="off", enabled=False)
    decision = evaluate(spec, sig(), equity=EQUITY)
    assert decision is not None and decision.strategy_id == "off"


def test_strategy_limits_win_over_defaults() -> None:
    spec = StrategySpec(name="s", max_notional_per_trade=Decimal(500))
    decision = evaluate(spec, sig(), equity=EQUITY, defaults=StrategyDefaults())
    assert decision is not None and decision.qty == Decimal(5)
    decision = evaluate(
        DEFAULT_STRATEGY,
        sig(),
        equity=EQUITY,
        defaults=StrategyDefaults(
            max_notional_per_trade=Decimal(2000), max_position_pct_equity=Decimal("0.5")
        ),
    )
    assert decision is not None and decision.qty == Decimal(20)


def test_custom_thresholds_and_limit_orders() -> None:
    spec = StrategySpec(
        name="s", buy_rsi_below=25, order_type=OrderType.LIMIT, time_in_force=TimeInForce.GTC
    )
    assert evaluate(spec, sig(rsi14=30.1), equity=EQUITY) is None
    decision = evaluate(spec, sig(rsi14=20), equity=EQUITY)
    assert decision is not None
    assert decision.order_type is OrderType.LIMIT
    assert decision.limit_price == Decimal(100)
    assert decision.time_in_force is TimeInForce.GTC
    assert evaluate(spec, sig(rsi14=20, price=None), equity=EQUITY) is None


# --- catalog parsing -----------------------------------------------------------------------

CATALOG = """
strategies:
  - name: momentum-1m
    enabled: true
    base_timeframe: 1Min
    universe_symbols: [aapl, MSFT]
    max_notional_per_trade: 2500
    max_position_pct_equity: 0.05
    params:
      buy_rsi_below: 30
      sell_rsi_above: 70
  - name: paused
    enabled: false
  - id: by-id
    order_type: limit
    time_in_force: gtc
"""


def test_parse_catalog() -> None:
    specs = parse_catalog(CATALOG, "strategies.yaml")
    assert [s.name for s in specs] == ["momentum-1m", "paused", "by-id"]
    first = specs[0]
    assert first.base_timeframe == "1Min"
    assert first.universe_symbols == ("AAPL", "MSFT")
    assert first.max_notional_per_trade == Decimal(2500)
    assert first.max_position_pct_equity == Decimal("0.05")
    assert (first.buy_rsi_below, first.sell_rsi_above) == (30, 70)
    assert specs[1].enabled is False
    assert specs[2].order_type is OrderType.LIMIT
    assert specs[2].time_in_force is TimeInForce.GTC


def test_empty_catalog_is_empty() -> None:
    assert parse_catalog("", "x.yaml") == []
    assert parse_catalog("strategies: []\n", "x.yaml") == []


def test_duplicate_names_are_named() -> None:
    text = "strategies:\n  - name: twin\n  - name: other\n  - name: twin\n"
    with pytest.raises(InputError, match=r"x\.yaml: duplicate strategy name 'twin'"):
        parse_catalog(text, "x.yaml")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        pytest.param("strategies:\n  - name: [\n", r"x\.yaml: invalid YAML at line", id="yaml"),
        pytest.param("- name: a\n", r"x\.yaml: expected a mapping", id="top-level-list"),
        pytest.param("strategy: []\n", r"x\.yaml: unknown top-level field 'strategy'", id="top"),
        pytest.param("strategies: {name: a}\n", r"'strategies' must be a list", id="not-list"),
        pytest.param("strategies: [a]\n", r"strategies\[0\]: expected a mapping", id="entry"),
        pytest.param("strategies: [{enabled: true}]\n", r"field 'name'", id="no-name"),
        pytest.param(
            "strategies: [{name: a, max_notional_per_trade: -5}]\n",
            r"x\.yaml: strategies\[0\] \(a\): field 'max_notional_per_trade'",
            id="negative-notional",
        ),
        pytest.param(
            "strategies: [{name: a, max_position_pct_equity: 1.5}]\n",
            r"field 'max_position_pct_equity'",
            id="pct-above-1",
        ),
        pytest.param("strategies: [{name: a, enabled: maybe}]\n", r"field 'enabled'", id="bool"),
        pytest.param(
            "strategies: [{name: a, buy_rsi_bellow: 30}]\n",
            r"field 'buy_rsi_bellow': Extra inputs",
            id="typo",
        ),
        pytest.param(
            "strategies: [{name: a, params: {order_type: stop}}]\n",
            r"field 'params.order_type': must be market or limit",
            id="stop-order",
        ),
        pytest.param(
            "strategies: [{name: a, params: [1]}]\n", r"'params' must be a mapping", id="params"
        ),
        pytest.param("strategies: [{name: 'bad name!'}]\n", r"field 'name'", id="name-pattern"),
        pytest.param("strategies: [{name: off}]\n", r"quote the name", id="yaml-bool-name"),
    ],
)
def test_bad_catalogs_name_the_file_and_field(text: str, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        parse_catalog(text, "x.yaml")


@pytest.mark.parametrize(
    ("action", "position", "closing", "partial", "sized", "expected"),
    [
        ("sell", "10", "0", False, "11", "10"),  # the whole long position, not the 11 sized
        ("sell", "10", "4", False, "11", "6"),  # less what open sells already take
        ("sell", "10", "0", True, "3", "3"),  # partial exits: no more than the sizing
        ("sell", "10", "0", True, "30", "10"),
        ("sell", "0", "0", False, "11", "11"),  # nothing held: an entry, left to risk
        ("sell", "10", "10", False, "11", "11"),  # all already being sold
        ("buy", "-8", "0", False, "11", "8"),  # a buy covers a short the same way
        ("buy", "5", "0", False, "11", "11"),  # a buy on a long position is an entry
        ("sell", "25000", "0", False, "11", "10000"),  # the share cap: closed in steps
    ],
)
def test_exits_are_sized_to_the_position(
    action: str, position: str, closing: str, partial: bool, sized: str, expected: str
) -> None:
    from torghut.domain import Action, TradeDecision
    from torghut.trading.strategy import size_exit

    decision = TradeDecision(
        strategy_id="s",
        symbol="ACME",
        action=Action(action),
        qty=Decimal(sized),
        event_ts=sig().event_ts,
        timeframe="1Min",
        params={"price": "100"},
    )
    resized = size_exit(
        decision,
        position=Decimal(position),
        closing=Decimal(closing),
        partial=partial,
        max_shares=Decimal(10_000),
    )
    assert resized.qty == Decimal(expected)
