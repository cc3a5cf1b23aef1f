"""`decision_hash` (the decisions' identity and the broker's client order id) gives the very
hash it gave before it stopped calling `json.dumps` (issue 16), on random decisions: every
identity ever stored must keep matching."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from torghut.domain import Action, TradeDecision, as_utc, decision_hash


def reference_hash(decision: TradeDecision) -> str:
    """`decision_hash` before issue 16, verbatim."""
    identity = {
        "strategy_id": decision.strategy_id,
        "symbol": decision.symbol,
        "timeframe": decision.timeframe,
        "event_ts": as_utc(decision.event_ts).isoformat(),
        "action": decision.action.value,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"th-{digest[:37]}"


_text = st.one_of(
    st.text(min_size=1, max_size=16),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=16),
    st.sampled_from(["AAPL", 'A"B', "a\\b", "\u00e9t\u00e9", "\U0001f600", "x\x00y", "\ud800"]),
)
_zones = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(minutes=330))])


@settings(max_examples=2000, deadline=None)
@given(
    strategy_id=_text,
    symbol=_text,
    timeframe=_text,
    action=st.sampled_from(list(Action)),
    event_ts=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones
    ),
)
def test_the_hash_is_the_one_json_dumps_gave(
    strategy_id: str, symbol: str, timeframe: str, action: Action, event_ts: datetime
) -> None:
    decision = TradeDecision.model_construct(
        strategy_id=strategy_id,
        symbol=symbol,
        timeframe=timeframe,
        action=action,
        event_ts=event_ts,
        qty=Decimal(1),
    )
    assert decision_hash(decision) == reference_hash(decision)


def test_a_known_decision_keeps_its_stored_identity() -> None:
    decision = TradeDecision(
        strategy_id="macd-rsi-default",
        symbol="AAPL",
        action=Action.BUY,
        qty=Decimal(3),
        event_ts=datetime(2025, 3, 3, 14, 30, tzinfo=UTC),
        timeframe="1Min",
    )
    assert decision_hash(decision) == reference_hash(decision)
    assert decision_hash(decision) == "th-876d0a59afff139fc1d26d4ed9d961bc89fc1"
