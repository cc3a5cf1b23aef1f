from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import pytest

from torghut.domain import (
    Account,
    Action,
    BrokerOrder,
    OrderRequest,
    OrderType,
    Position,
    TimeInForce,
    TradeDecision,
    TradingMode,
    decision_hash,
)
from torghut.trading import risk
from torghut.trading.risk import (
    OpenOrder,
    RecentTrade,
    RiskContext,
    RiskLimits,
    StrategyLimits,
    evaluate_risk,
)

NOW = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
RICH = Account(cash=Decimal(100_000), equity=Decimal(100_000), buying_power=Decimal(100_000))


def decision(
    symbol: str = "AAPL",
    action: Action = Action.BUY,
    qty: str = "10",
    price: str | None = "100",
    **extra: Any,
) -> TradeDecision:
    params = {} if price is None else {"price": price}
    return TradeDecision(
        strategy_id="macd-rsi-default",
        symbol=symbol,
        action=action,
        qty=Decimal(qty),
        event_ts=NOW,
        timeframe="1Min",
        params=params,
        **extra,
    )


def ctx(**changes: Any) -> RiskContext:
    return replace(RiskContext(account=RICH, now=NOW), **changes)


def position(symbol: str, qty: str, price: str = "100") -> Position:
    q, p = Decimal(qty), Decimal(price)
    return Position(symbol=symbol, qty=q, avg_entry_price=p, market_value=q * p)


def test_a_plain_buy_passes() -> None:
    result = evaluate_risk(decision(), RiskLimits(), ctx())
    assert result.approved
    assert result.reasons == ()
    assert result.reason is None


@pytest.mark.parametrize(
    ("limits", "context", "the_decision", "reason"),
    [
        (RiskLimits(trading_enabled=False), ctx(), decision(), risk.TRADING_DISABLED),
        (RiskLimits(trading_mode=TradingMode.LIVE), ctx(), decision(), risk.LIVE_NOT_ENABLED),
        (RiskLimits(kill_switch=True), ctx(), decision(), risk.KILL_SWITCH),
        (RiskLimits(), ctx(strategy_enabled=False), decision(), risk.STRATEGY_DISABLED),
        (RiskLimits(universe=frozenset({"MSFT"})), ctx(), decision(), risk.SYMBOL_NOT_ALLOWED),
        (
            RiskLimits(),
            ctx(strategy_limits=StrategyLimits(universe=frozenset({"msft"}))),
            decision(),
            risk.SYMBOL_NOT_ALLOWED,
        ),
        (RiskLimits(), ctx(), decision(price=None), risk.MISSING_PRICE),
        (RiskLimits(), ctx(), decision(qty="11"), risk.MAX_NOTIONAL_EXCEEDED),
        (
            RiskLimits(),
            ctx(account=Account(Decimal(500), Decimal(100_000), Decimal(500))),
            decision(),
            risk.INSUFFICIENT_BUYING_POWER,
        ),
        (
            RiskLimits(),
            ctx(positions={"AAPL": position("AAPL", "95")}),
            decision(),
            risk.MAX_POSITION_PCT_EXCEEDED,
        ),
        (RiskLimits(), ctx(), decision(action=Action.SELL), risk.SHORTS_NOT_ALLOWED),
        (
            RiskLimits(cooldown_seconds=60),
            ctx(last_trade_at={"AAPL": NOW - timedelta(seconds=30)}),
            decision(),
            risk.COOLDOWN_ACTIVE,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_reason_alone(
    limits: RiskLimits, context: RiskContext, the_decision: TradeDecision, reason: str
) -> None:
    result = evaluate_risk(the_decision, limits, context)
    assert not result.approved
    assert result.reasons == (reason,)


def test_reasons_are_module_constants_in_check_order() -> None:
    assert risk.REASONS == (
        "trading_disabled",
        "live_not_enabled",
        "kill_switch",
        "strategy_disabled",
        "symbol_not_allowed",
        "missing_price",
        "max_shares_exceeded",
        "max_notional_exceeded",
        "insufficient_buying_power",
        "max_position_pct_exceeded",
        "shorts_not_allowed",
        "cooldown_active",
    )


def test_every_failing_reason_is_collected_not_only_the_first() -> None:
    limits = RiskLimits(
        trading_enabled=False,
        trading_mode=TradingMode.LIVE,
        kill_switch=True,
        universe=frozenset({"MSFT"}),
        cooldown_seconds=300,
    )
    context = ctx(
        account=Account(Decimal(50), Decimal(1000), Decimal(50)),
        strategy_enabled=False,
        last_trade_at={"AAPL": NOW - timedelta(seconds=1)},
    )
    result = evaluate_risk(decision(qty="20"), limits, context)
    assert result.reasons == (
        risk.TRADING_DISABLED,
        risk.LIVE_NOT_ENABLED,
        risk.KILL_SWITCH,
        risk.STRATEGY_DISABLED,
        risk.SYMBOL_NOT_ALLOWED,
        risk.MAX_NOTIONAL_EXCEEDED,
        risk.INSUFFICIENT_BUYING_POWER,
        risk.MAX_POSITION_PCT_EXCEEDED,
        risk.COOLDOWN_ACTIVE,
    )
    assert result.reason == ",".join(result.reasons)


def test_missing_price_and_a_short_sell_are_reported_together() -> None:
    result = evaluate_risk(decision(action=Action.SELL, price=None), RiskLimits(), ctx())
    assert result.reasons == (risk.MISSING_PRICE, risk.SHORTS_NOT_ALLOWED)


def test_limit_price_is_the_reference_when_params_have_no_price() -> None:
    d = decision(price=None, order_type=OrderType.LIMIT, limit_price=Decimal("99"))
    assert evaluate_risk(d, RiskLimits(), ctx()).approved


def test_live_mode_with_live_enabled_passes() -> None:
    limits = RiskLimits(trading_mode=TradingMode.LIVE, live_enabled=True)
    assert evaluate_risk(decision(), limits, ctx()).approved


def test_strategy_limits_override_the_global_ones() -> None:
    loose = ctx(
        strategy_limits=StrategyLimits(
            max_notional_per_trade=Decimal(5000), max_position_pct_equity=Decimal("0.5")
        )
    )
    assert evaluate_risk(decision(qty="40"), RiskLimits(), loose).approved
    tight = ctx(strategy_limits=StrategyLimits(max_notional_per_trade=Decimal(500)))
    assert evaluate_risk(decision(qty="10"), RiskLimits(), tight).reasons == (
        risk.MAX_NOTIONAL_EXCEEDED,
    )


def test_notional_cap_is_inclusive() -> None:
    # Exactly the cap is allowed: the CONTRACT's 10 shares at $100 against a 1000 cap.
    assert evaluate_risk(decision(qty="10", price="100"), RiskLimits(), ctx()).approved
    assert not evaluate_risk(decision(qty="10", price="100.01"), RiskLimits(), ctx()).approved


def test_open_buy_orders_count_towards_the_position_cap() -> None:
    # Equity 100000 × 0.1 = 10000; nothing held, but 9500 of open buys already in AAPL.
    limits = RiskLimits(max_notional_per_trade=Decimal(100_000))
    open_orders = [
        OpenOrder("AAPL", Action.BUY, Decimal(50), Decimal(100)),
        OpenOrder("AAPL", Action.BUY, Decimal(45)),  # market: priced at the reference
        OpenOrder("MSFT", Action.BUY, Decimal(1000), Decimal(400)),  # other symbol: ignored
    ]
    result = evaluate_risk(decision(qty="10"), limits, ctx(open_orders=open_orders))
    assert result.reasons == (risk.MAX_POSITION_PCT_EXCEEDED,)
    assert evaluate_risk(decision(qty="5"), limits, ctx(open_orders=open_orders)).approved


def test_open_orders_and_positions_count_together() -> None:
    limits = RiskLimits(max_notional_per_trade=Decimal(100_000))
    context = ctx(
        positions={"AAPL": position("AAPL", "60")},
        open_orders=[OpenOrder("AAPL", Action.BUY, Decimal(35), Decimal(100))],
    )
    assert evaluate_risk(decision(qty="5"), limits, context).approved
    assert evaluate_risk(decision(qty="6"), limits, context).reasons == (
        risk.MAX_POSITION_PCT_EXCEEDED,
    )


def test_the_decision_own_open_order_is_not_counted() -> None:
    d = decision(qty="10")
    mine = OpenOrder("AAPL", Action.BUY, Decimal(95), Decimal(100), decision_hash(d))
    assert evaluate_risk(d, RiskLimits(), ctx(open_orders=[mine])).approved


def test_sell_within_the_long_position_passes_and_beyond_it_is_a_short() -> None:
    held = ctx(positions={"AAPL": position("AAPL", "10")})
    assert evaluate_risk(decision(action=Action.SELL, qty="10"), RiskLimits(), held).approved
    beyond = decision(action=Action.SELL, qty="11", price="50")
    assert evaluate_risk(beyond, RiskLimits(), held).reasons == (risk.SHORTS_NOT_ALLOWED,)


def test_open_sells_are_netted_against_the_long_position() -> None:
    context = ctx(
        positions={"AAPL": position("AAPL", "10")},
        open_orders=[OpenOrder("AAPL", Action.SELL, Decimal(6))],
    )
    assert evaluate_risk(decision(action=Action.SELL, qty="4"), RiskLimits(), context).approved
    assert evaluate_risk(decision(action=Action.SELL, qty="5"), RiskLimits(), context).reasons == (
        risk.SHORTS_NOT_ALLOWED,
    )


def test_shorts_allowed_are_still_capped_by_the_position_pct() -> None:
    limits = RiskLimits(allow_shorts=True, max_notional_per_trade=Decimal(100_000))
    assert evaluate_risk(decision(action=Action.SELL, qty="100"), limits, ctx()).approved
    assert evaluate_risk(decision(action=Action.SELL, qty="101"), limits, ctx()).reasons == (
        risk.MAX_POSITION_PCT_EXCEEDED,
    )


def test_cooldown_over_is_no_longer_active() -> None:
    limits = RiskLimits(cooldown_seconds=60)
    context = ctx(last_trade_at={"AAPL": NOW - timedelta(seconds=60)})
    assert evaluate_risk(decision(), limits, context).approved


def test_cooldown_in_another_symbol_does_not_apply() -> None:
    limits = RiskLimits(cooldown_seconds=60)
    context = ctx(last_trade_at={"MSFT": NOW})
    assert evaluate_risk(decision(), limits, context).approved


def test_cooldown_never_counts_the_decision_under_evaluation() -> None:
    # The original rejected every decision once a cooldown was set: it saw itself.
    d = decision()
    limits = RiskLimits(cooldown_seconds=300)
    itself = ctx(last_trade_at={"AAPL": RecentTrade(at=NOW, decision_hash=decision_hash(d))})
    assert evaluate_risk(d, limits, itself).approved
    # Re-checked after an LLM adjustment (same hash, other qty): still not itself.
    assert evaluate_risk(d.model_copy(update={"qty": Decimal(5)}), limits, itself).approved
    other = ctx(last_trade_at={"AAPL": RecentTrade(at=NOW, decision_hash="th-other")})
    assert evaluate_risk(d, limits, other).reasons == (risk.COOLDOWN_ACTIVE,)


def test_a_hash_the_caller_has_already_is_the_one_risk_would_compute() -> None:
    d = decision()
    limits = RiskLimits(cooldown_seconds=300)
    itself = ctx(last_trade_at={"AAPL": RecentTrade(at=NOW, decision_hash=decision_hash(d))})
    mine = OpenOrder("AAPL", Action.BUY, Decimal(95), Decimal(100), decision_hash(d))
    for context in (itself, ctx(open_orders=[mine]), ctx()):
        given = evaluate_risk(d, limits, context, own_hash=decision_hash(d))
        assert given == evaluate_risk(d, limits, context)


def test_first_decision_with_cooldown_set_passes() -> None:
    assert evaluate_risk(decision(), RiskLimits(cooldown_seconds=3600), ctx()).approved


def test_open_order_from_a_typed_broker_order_never_from_its_raw_json() -> None:
    order = BrokerOrder(
        broker_order_id="b1",
        client_order_id="c1",
        symbol="aapl",
        status="new",
        filled_qty=Decimal(4),
        side=Action.BUY,
        qty=Decimal(10),
        limit_price=Decimal("101.5"),
    )
    assert OpenOrder.from_broker_order(order) == OpenOrder(
        "AAPL", Action.BUY, Decimal(6), Decimal("101.5"), "c1"
    )
    untyped = replace(
        order, side=None, qty=None, raw={"side": "buy", "qty": "10", "limit_price": "101.5"}
    )
    assert OpenOrder.from_broker_order(untyped) is None


def test_open_order_from_request() -> None:
    request = OrderRequest(
        client_order_id="c1",
        symbol="AAPL",
        side=Action.SELL,
        qty=Decimal(3),
        order_type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        reference_price=Decimal(100),
    )
    assert OpenOrder.from_request(request) == OpenOrder(
        "AAPL", Action.SELL, Decimal(3), Decimal(100), "c1"
    )


def test_contract_embedded_defaults_fifty_buys_on_different_symbols_all_pass() -> None:
    """CONTRACT §3: cash 100000, max notional 1000, pct 0.1: a buy at $100 is 10 shares, and
    at least 50 such buys on different symbols pass, as the book fills up with each of them."""
    limits = RiskLimits()  # the embedded defaults
    cash = Decimal(100_000)
    price = Decimal(100)
    positions: dict[str, Position] = {}
    open_orders: list[OpenOrder] = []
    for i in range(50):
        equity = cash + sum((p.market_value for p in positions.values()), Decimal(0))
        cap = min(limits.max_notional_per_trade, equity * limits.max_position_pct_equity)
        qty = max((cap / price).to_integral_value(rounding=ROUND_FLOOR), Decimal(1))
        assert qty == 10
        symbol = f"S{i:02d}"
        d = decision(symbol=symbol, qty=str(qty), price=str(price))
        reserved = sum((o.qty * price for o in open_orders), Decimal(0))
        account = Account(cash=cash, equity=equity, buying_power=cash - reserved)
        context = ctx(account=account, positions=dict(positions), open_orders=list(open_orders))
        result = evaluate_risk(d, limits, context)
        assert result.approved, (symbol, result.reasons)
        # Half fill at once, half stay open: both must keep the next ones passing.
        if i % 2:
            cash -= qty * price
            positions[symbol] = position(symbol, str(qty), str(price))
        else:
            open_orders.append(OpenOrder(symbol, Action.BUY, qty))


def test_broker_orders_in_the_context_are_counted_through_their_typed_fields() -> None:
    limits = RiskLimits(max_notional_per_trade=Decimal(100_000))
    resting = BrokerOrder(
        broker_order_id="b1",
        client_order_id="c1",
        symbol="AAPL",
        status="new",
        side=Action.BUY,
        qty=Decimal(95),
        limit_price=Decimal(100),
    )
    unsized = BrokerOrder(broker_order_id="b2", client_order_id="c2", symbol="AAPL", status="new")
    context = ctx(open_orders=[resting, unsized])
    assert evaluate_risk(decision(qty="10"), limits, context).reasons == (
        risk.MAX_POSITION_PCT_EXCEEDED,
    )
    assert evaluate_risk(decision(qty="5"), limits, context).approved
