"""Prompt templates as package data, and the messages built from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from torghut.domain import TradeDecision
from torghut.errors import ConfigError
from torghut.trading.llm.prompts import (
    USER_PREAMBLE,
    available_versions,
    build_messages,
    load_prompt,
)
from torghut.trading.llm.schema import RESPONSE_KEYS, LLMReviewRequest, PolicyBounds


def _request(bounds: PolicyBounds | None = None) -> LLMReviewRequest:
    decision = TradeDecision(
        strategy_id="s",
        symbol="AAPL",
        action="buy",
        qty=Decimal(5),
        event_ts=datetime(2026, 2, 9, tzinfo=UTC),
        timeframe="1Min",
        params={"price": "100.98"},
    )
    return LLMReviewRequest(
        decision=decision,
        portfolio={
            "equity": "100000",
            "cash": "100000",
            "positions": [{"symbol": "AAPL", "qty": "2", "market_value": "201.96", "x": None}],
        },
        policy=bounds or PolicyBounds(),
    )


def test_v1_is_shipped() -> None:
    assert "v1" in available_versions()
    template = load_prompt("v1")
    assert template.version == "v1"
    assert len(template.sha256) == 64


def test_hash_is_stable() -> None:
    assert load_prompt("v1").sha256 == load_prompt("v1").sha256
    messages_a = build_messages(load_prompt("v1"), _request())
    messages_b = build_messages(load_prompt("v1"), _request())
    assert messages_a == messages_b


@pytest.mark.parametrize("version", ["v999", "../system_v1", "", "v1.txt"])
def test_unknown_version_is_a_config_error(version: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_prompt(version)
    assert info.value.variable == "LLM_PROMPT_VERSION"
    assert "LLM_PROMPT_VERSION" in str(info.value)
    assert "v1" in str(info.value)  # lists what is available


def test_system_message_states_schema_and_bounds() -> None:
    bounds = PolicyBounds(
        min_confidence=0.65, adjustment_allowed=True, min_qty_multiplier=0.4, max_qty_multiplier=1.5
    )
    system, user = build_messages(load_prompt("v1"), _request(bounds))
    assert system["role"] == "system"
    text = system["content"]
    for key in RESPONSE_KEYS:
        assert f'"{key}"' in text
    assert "seven keys" in text
    assert "one JSON object only" in text
    assert "0.65" in text and "0.4" in text and "1.5" in text
    assert "Adjustments are allowed" in text
    assert "$" not in text  # every placeholder filled
    assert user["role"] == "user"


def test_system_message_says_when_adjustment_is_not_allowed() -> None:
    system, _ = build_messages(load_prompt("v1"), _request(PolicyBounds()))
    assert "Adjustments are NOT allowed" in system["content"]


def test_user_message_is_a_sentence_then_the_request_as_compact_json() -> None:
    request = _request()
    _, user = build_messages(load_prompt("v1"), request)
    content = user["content"]
    assert content.startswith(USER_PREAMBLE)
    # The request is the first JSON object of the message (the dev gateway relies on it).
    first = content.index("{")
    assert "{" not in USER_PREAMBLE
    body, end = json.JSONDecoder().raw_decode(content, first)
    assert end == len(content)
    assert content[first:] == json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    assert body == request.model_dump(mode="json")
    assert body["decision"]["symbol"] == "AAPL"
    assert body["decision"]["params"]["price"] == "100.98"
    assert "limit_price" in body["decision"]
    assert body["portfolio"]["positions"][0]["market_value"] == "201.96"
    assert set(body["policy"]) >= {"min_qty_multiplier", "max_qty_multiplier", "adjustment_allowed"}


@pytest.mark.parametrize("adjust", [True, False])
def test_v2_states_the_inputs_the_schema_and_the_bounds(adjust: bool) -> None:
    bounds = PolicyBounds(min_confidence=0.65, adjustment_allowed=adjust)
    system, _ = build_messages(load_prompt("v2"), _request(bounds))
    text = system["content"]
    assert "$" not in text
    for key in (
        *RESPONSE_KEYS,
        "as_of",
        "history",
        "session",
        "open_orders",
        "risk_limits",
        "recent_decisions",
        "missing",
    ):
        assert key in text
    for concern in (
        "Regime",
        "Momentum against the order",
        "disagrees with its history",
        "last minutes of the session",
    ):
        assert concern in text
    assert "0.65" in text
    assert ("Adjustments are allowed" in text) is adjust


def test_v1_stays_selectable_beside_v2() -> None:
    assert {"v1", "v2"} <= set(available_versions())
    assert load_prompt("v1").sha256 != load_prompt("v2").sha256


@pytest.mark.parametrize("adjust", [True, False])
def test_a_model_echoing_the_v2_prompt_gives_no_valid_review(adjust: bool) -> None:
    """The example shape of v2 is not a review: a model that echoes its prompt (system and
    user message, in either order) has its answer refused, never read as an approval."""
    from torghut.errors import ReviewError
    from torghut.trading.llm.answer import extract_review

    system, user = build_messages(
        load_prompt("v2"), _request(PolicyBounds(adjustment_allowed=adjust))
    )
    for echo in (
        system["content"],
        system["content"] + "\n" + user["content"],
        user["content"] + "\n" + system["content"],
    ):
        with pytest.raises(ReviewError) as info:
            extract_review(echo)
        assert info.value.code.value in ("invalid_json", "invalid_schema")
