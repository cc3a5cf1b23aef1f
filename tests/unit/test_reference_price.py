"""`TradeDecision.reference_price` reads a Decimal `params.price` as it is (issue 16: it was
re-parsed from its text on every read, three times per decision): the same price as before,
exponent and sign included, for every kind of value a decision's params may hold."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from torghut.domain import Action, OrderType, TradeDecision


def reference_price_before(decision: TradeDecision) -> Decimal | None:
    """`reference_price` before issue 16's fast path, verbatim."""
    raw = decision.params.get("price")
    if raw is not None:
        try:
            price = Decimal(str(raw))
        except ArithmeticError:
            price = None
        if price is not None and price.is_finite() and price > 0:
            return price
    return decision.limit_price


_prices = st.one_of(
    st.none(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("sNaN"), Decimal("-0"), Decimal("1E+2"), Decimal("0.000")]),
    st.floats(),
    st.integers(-(10**20), 10**20),
    st.text(max_size=8),
    st.booleans(),
)


@settings(max_examples=3000, deadline=None)
@given(price=_prices, limit=st.one_of(st.none(), st.decimals("0.01", 10_000, places=2)))
def test_the_reference_price_is_the_one_it_was(price: Any, limit: Decimal | None) -> None:
    decision = TradeDecision(
        strategy_id="s",
        symbol="AAPL",
        action=Action.BUY,
        qty=Decimal(1),
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        event_ts=datetime(2026, 1, 5, 15, tzinfo=UTC),
        timeframe="1Min",
        limit_price=limit,
        params={"price": price},
    )
    expected = reference_price_before(decision)
    got = decision.reference_price
    assert repr(got) == repr(expected)
