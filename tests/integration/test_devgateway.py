"""`torghut.devgateway` over real loopback sockets, read the way a client reads it.

The SSE parsing here is deliberately a few local lines, not the client's decoder: the gateway
and the client must not share parsing code, or a bug in one would hide in the other.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from torghut.devgateway import DevGateway, DevGatewayConfig, main

EXAMPLES = Path("/work/shared/jangar/examples")
COMPLETIONS = "/openai/v1/chat/completions"
REVIEW_KEYS = {
    "verdict",
    "confidence",
    "adjusted_qty",
    "adjusted_order_type",
    "limit_price",
    "rationale",
    "risk_flags",
}


@dataclass
class Event:
    """One SSE block: a comment block has `comment` set and no data."""

    data: str | None
    comment: str | None


def parse_sse(body: bytes) -> list[Event]:
    events: list[Event] = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        data_lines = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        comments = [line[1:].strip() for line in block.split("\n") if line.startswith(":")]
        events.append(
            Event(
                data="\n".join(data_lines) if data_lines else None,
                comment=comments[0] if comments else None,
            )
        )
    return events


def review_request(
    qty: float = 5,
    price: float = 100.0,
    *,
    equity: float = 100_000.0,
    positions: list[dict[str, Any]] | None = None,
    order_type: str = "market",
    min_qty_multiplier: float = 0.5,
) -> dict[str, Any]:
    return {
        "decision": {
            "symbol": "AAPL",
            "action": "buy",
            "qty": qty,
            "order_type": order_type,
            "params": {"price": price},
        },
        "portfolio": {"equity": equity, "cash": equity, "positions": positions or []},
        "policy": {
            "min_qty_multiplier": min_qty_multiplier,
            "max_qty_multiplier": 1.25,
            "adjustment_allowed": True,
        },
    }


def body_for(
    request: dict[str, Any] | None = None, *, include_usage: bool = True, **extra: Any
) -> dict[str, Any]:
    user = "Review this trade decision and answer with JSON only.\n"
    user += json.dumps(request if request is not None else review_request())
    user += "\nThanks."
    body: dict[str, Any] = {
        "model": "gpt-5.3-codex",
        "stream": True,
        "stream_options": {"include_usage": include_usage, "include_plan": False},
        "messages": [
            {"role": "system", "content": 'You are a risk reviewer. Schema: {"verdict": ...}'},
            {"role": "user", "content": user},
        ],
    }
    body.update(extra)
    return body


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as c:
        yield c


@pytest.fixture
async def gateway() -> AsyncIterator[DevGateway]:
    async with DevGateway(DevGatewayConfig()) as gw:
        yield gw


async def post(client: httpx.AsyncClient, gw: DevGateway, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return await client.post(gw.base_url + COMPLETIONS, content=body)
    return await client.post(gw.base_url + COMPLETIONS, json=body)


def data_chunks(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events if e.data is not None and e.data != "[DONE]"]


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content", "")
        for c in chunks
        if c.get("choices") and "delta" in c["choices"][0]
    )


def answer_of(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    content = content_of(chunks)
    answer: dict[str, Any] = json.loads(content[content.index("{") :])
    return answer


# --- errors before the stream ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        ({"model": "gpt-5.3-codex", "stream": True, "messages": []}, "messages_required"),
        ({"model": "gpt-5.3-codex", "stream": True}, "messages_required"),
        ({"stream": False, "messages": [{"role": "user", "content": "hi"}]}, "stream_required"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "stream_required"),
        (
            {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            "model_not_found",
        ),
    ],
)
async def test_pre_stream_errors_are_sse_bodies(
    client: httpx.AsyncClient, gateway: DevGateway, body: Any, code: str
) -> None:
    response = await post(client, gateway, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/event-stream"
    events = parse_sse(response.content)
    assert [e.data is not None for e in events] == [True, True]
    assert events[1].data == "[DONE]"
    error = json.loads(events[0].data or "")
    assert set(error) == {"error"}
    assert error["error"]["code"] == code
    assert error["error"]["type"] == "invalid_request_error"
    assert isinstance(error["error"]["message"], str) and error["error"]["message"]
    assert gateway.request_count == 1


@pytest.mark.parametrize(
    ("example", "body"),
    [
        (
            "stream_required.sse",
            {
                "model": "gpt-5.3-codex",
                "stream": False,
                "messages": [{"role": "user", "content": "x"}],
            },
        ),
        (
            "model_not_found.sse",
            {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        ),
    ],
)
async def test_pre_stream_errors_match_recorded_bytes(
    client: httpx.AsyncClient, gateway: DevGateway, example: str, body: dict[str, Any]
) -> None:
    if not (EXAMPLES / example).exists():
        pytest.skip("recorded Jangar examples not available")
    response = await post(client, gateway, body)
    assert response.content == (EXAMPLES / example).read_bytes()


# --- the success stream ----------------------------------------------------------------------


async def test_success_stream_shape(client: httpx.AsyncClient, gateway: DevGateway) -> None:
    response = await post(client, gateway, body_for())
    assert response.status_code == 200
    for name, value in {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "connection": "keep-alive",
        "x-accel-buffering": "no",
    }.items():
        assert response.headers[name] == value
    raw = response.content
    assert b"\r" not in raw
    events = parse_sse(raw)
    assert events[0].comment == "keepalive" and events[0].data is None
    assert events[-1].data == "[DONE]"
    for line in raw.decode().split("\n"):
        assert line == "" or line.startswith("data: ") or line == ": keepalive"

    chunks = data_chunks(events)
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert {"id", "created", "model", "choices", "thread_id"} <= set(chunk)
        assert chunk["model"] == "gpt-5.3-codex"
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["thread_id"] for c in chunks}) == 1

    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:] if c["choices"])
    reasoning = [
        c for c in chunks if c["choices"] and "reasoning_content" in c["choices"][0]["delta"]
    ]
    assert len(reasoning) >= 2

    content = content_of(chunks)
    assert content.startswith("\n\n> **Rate limits**\n> Plan: pro\n> Primary: 65% left · 5h window")
    block_end = content.index("\n\n", 2) + 2
    assert content[block_end:].startswith("\n{")
    answer = json.loads(content[block_end + 1 :])
    assert set(answer) == REVIEW_KEYS
    content_deltas = [c for c in chunks if c["choices"] and "content" in c["choices"][0]["delta"]]
    assert len(content_deltas) >= 4  # the answer is split over several deltas

    usage = [c for c in chunks if c["choices"] == []]
    assert len(usage) == 1 and chunks.index(usage[0]) == len(chunks) - 2
    assert usage[0]["usage"]["total_tokens"] == (
        usage[0]["usage"]["prompt_tokens"] + usage[0]["usage"]["completion_tokens"]
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1] if c["choices"])

    assert gateway.request_count == 1
    assert gateway.requests == [body_for()]


async def test_usage_only_when_asked(client: httpx.AsyncClient, gateway: DevGateway) -> None:
    for body in (body_for(include_usage=False), {**body_for(), "stream_options": None}):
        chunks = data_chunks(parse_sse((await post(client, gateway, body)).content))
        assert all(c["choices"] for c in chunks)
        assert "usage" not in json.dumps(chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_without_rate_limit_block_and_without_model(client: httpx.AsyncClient) -> None:
    config = DevGatewayConfig(include_rate_limit_block=False, model="dev-model")
    async with DevGateway(config) as gw:
        body = body_for()
        del body["model"]
        chunks = data_chunks(parse_sse((await post(client, gw, body)).content))
    assert content_of(chunks).startswith("\n{")
    assert {c["model"] for c in chunks} == {"dev-model"}


async def test_latency_sends_keepalives_before_the_answer(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(latency_seconds=0.5, keepalive_seconds=0.1)) as gw:
        events = parse_sse((await post(client, gw, body_for())).content)
    first_data = next(i for i, e in enumerate(events) if e.data is not None)
    assert first_data >= 3
    assert all(e.comment == "keepalive" for e in events[:first_data])
    assert events[-1].data == "[DONE]"


async def test_models_and_healthz(client: httpx.AsyncClient) -> None:
    config = DevGatewayConfig(model="gpt-5.3-codex", models=("other-model",))
    async with DevGateway(config) as gw:
        models = await client.get(gw.base_url + "/openai/v1/models")
        health = await client.get(gw.base_url + "/healthz")
        accepted = await post(client, gw, body_for(model="other-model"))
    assert models.status_code == 200
    listing = models.json()
    assert listing["object"] == "list"
    assert {m["id"] for m in listing["data"]} == {"gpt-5.3-codex", "other-model"}
    assert all(m["object"] == "model" for m in listing["data"])
    assert health.status_code == 200
    assert accepted.status_code == 200
    assert gw.request_count == 1  # only the completions route counts


# --- the reviewer ----------------------------------------------------------------------------


async def review(client: httpx.AsyncClient, gw: DevGateway, request: Any) -> dict[str, Any]:
    response = await post(client, gw, body_for(request))
    assert response.status_code == 200
    answer = answer_of(data_chunks(parse_sse(response.content)))
    assert set(answer) == REVIEW_KEYS
    return answer


async def test_reviewer_approves_small_trade(
    client: httpx.AsyncClient, gateway: DevGateway
) -> None:
    answer = await review(client, gateway, review_request(qty=5, price=100.0))
    assert answer == {
        "verdict": "approve",
        "confidence": 0.8,
        "adjusted_qty": None,
        "adjusted_order_type": None,
        "limit_price": None,
        "rationale": "within limits",
        "risk_flags": [],
    }


async def test_reviewer_vetoes_large_notional(
    client: httpx.AsyncClient, gateway: DevGateway
) -> None:
    answer = await review(client, gateway, review_request(qty=600, price=100.0, equity=1e7))
    assert answer["verdict"] == "veto"
    assert answer["confidence"] == 0.9
    assert answer["rationale"] == "notional above limit"
    assert answer["risk_flags"] == ["max_notional"]
    assert answer["adjusted_qty"] is None


async def test_reviewer_adjusts_on_exposure(client: httpx.AsyncClient, gateway: DevGateway) -> None:
    positions = [
        {"symbol": "AAPL", "qty": 150, "market_value": 15_000.0},
        {"symbol": "MSFT", "qty": 10, "market_value": 90_000.0},
    ]
    request = review_request(
        qty=75, price=100.0, positions=positions, order_type="limit", min_qty_multiplier=0.4
    )
    answer = await review(client, gateway, request)
    # (15,000 + 7,500) / 100,000 = 22.5% > 20%; MSFT does not count.
    assert answer["verdict"] == "adjust"
    assert answer["confidence"] == 0.75
    assert answer["adjusted_qty"] == 30  # floor(75 x 0.4)
    assert answer["adjusted_order_type"] == "limit"
    assert answer["risk_flags"] == ["exposure"]


async def test_reviewer_adjust_keeps_at_least_one_share(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(adjust_exposure_pct=0.0001)) as gw:
        answer = await review(client, gw, review_request(qty=1, price=100.0))
    assert answer["verdict"] == "adjust"
    assert answer["adjusted_qty"] == 1


@pytest.mark.parametrize("request_", ["no json here", {"unrelated": True}, {"decision": "x"}])
async def test_reviewer_without_decision_is_unsure(
    client: httpx.AsyncClient, gateway: DevGateway, request_: Any
) -> None:
    body = body_for()
    body["messages"][-1]["content"] = (
        request_ if isinstance(request_, str) else json.dumps(request_)
    )
    answer = answer_of(data_chunks(parse_sse((await post(client, gateway, body)).content)))
    assert answer["verdict"] == "approve"
    assert answer["confidence"] == 0.3
    assert answer["rationale"] == "no decision found"


async def test_reviewer_reads_the_last_user_message(
    client: httpx.AsyncClient, gateway: DevGateway
) -> None:
    body = body_for(review_request(qty=5))
    body["messages"].insert(1, {"role": "user", "content": json.dumps(review_request(qty=10_000))})
    answer = answer_of(data_chunks(parse_sse((await post(client, gateway, body)).content)))
    assert answer["verdict"] == "approve"


# --- faults ----------------------------------------------------------------------------------


async def test_fault_error_frame(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(fault="error-frame")) as gw:
        response = await post(client, gw, body_for())
    assert response.status_code == 200
    events = parse_sse(response.content)
    assert events[-1].data == "[DONE]"
    chunks = data_chunks(events)
    errors = [c for c in chunks if "error" in c]
    assert [e["error"]["code"] for e in errors] == ["responseStreamDisconnected", "codex_error"]
    assert all("choices" not in e and "thread_id" in e for e in errors)
    json.loads(errors[1]["error"]["message"])  # the codex_error message is itself JSON
    first_error = chunks.index(errors[0])
    partial = content_of(chunks[:first_error])
    assert "{" in partial
    with pytest.raises(json.JSONDecodeError):
        json.loads(partial[partial.index("{") :])
    after = chunks[first_error + 2 :]
    assert after[0]["choices"] == [] and "usage" in after[0]
    assert after[1]["choices"][0]["finish_reason"] == "stop"


async def test_fault_truncate(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(fault="truncate")) as gw:
        response = await post(client, gw, body_for())
    assert response.status_code == 200
    events = parse_sse(response.content)
    assert all(e.data != "[DONE]" for e in events)
    chunks = data_chunks(events)
    assert chunks and all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert "{" in content_of(chunks)


async def test_fault_slow_drips_bytes(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(fault="slow")) as gw:
        request = client.build_request("POST", gw.base_url + COMPLETIONS, json=body_for())
        response = await client.send(request, stream=True)
        try:
            assert response.status_code == 200
            received: list[bytes] = []
            async for piece in response.aiter_raw():
                received.append(piece)
                if len(received) == 3:
                    break
        finally:
            await response.aclose()
    assert received == [b":", b" ", b"k"]


async def test_fault_keepalive_forever(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(fault="keepalive-forever", keepalive_seconds=0.1)) as gw:
        request = client.build_request("POST", gw.base_url + COMPLETIONS, json=body_for())
        response = await client.send(request, stream=True)
        raw = b""
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.8):
                    async for piece in response.aiter_raw():
                        raw += piece
        finally:
            await response.aclose()
    events = parse_sse(raw)
    assert len(events) >= 3
    assert all(e.comment == "keepalive" and e.data is None for e in events)


async def test_shutdown_is_prompt_with_open_streams(client: httpx.AsyncClient) -> None:
    gw = DevGateway(DevGatewayConfig(fault="keepalive-forever", keepalive_seconds=0.1))
    await gw.start()
    request = client.build_request("POST", gw.base_url + COMPLETIONS, json=body_for())
    response = await client.send(request, stream=True)
    try:
        chunks = response.aiter_raw()
        assert await anext(chunks) == b": keepalive\n\n"
        started = time.monotonic()
        await gw.stop()
        elapsed = time.monotonic() - started
        rest = b"".join([piece async for piece in chunks])
    finally:
        await response.aclose()
    assert b"[DONE]" not in rest
    assert elapsed < 3.0  # generous: the point is "not forever"
    with pytest.raises(httpx.ConnectError):
        await client.get(gw.base_url + "/healthz")


async def test_fault_http_500(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(fault="http-500")) as gw:
        response = await post(client, gw, body_for())
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/event-stream"
    events = parse_sse(response.content)
    assert len(events) == 2 and events[1].data == "[DONE]"
    assert json.loads(events[0].data or "")["error"]["code"] == "internal_error"


async def test_fault_garbage(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(fault="garbage")) as gw:
        response = await post(client, gw, body_for())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    data = [e.data for e in parse_sse(response.content) if e.data is not None]
    assert data[-1] == "[DONE]"
    assert data[:-1] and all(d == "not json at all" for d in data[:-1])


async def test_validation_wins_over_faults(client: httpx.AsyncClient) -> None:
    async with DevGateway(DevGatewayConfig(fault="http-500")) as gw:
        response = await post(client, gw, body_for(stream=False))
    assert response.status_code == 400


async def fault_pattern(client: httpx.AsyncClient, seed: int, n: int) -> list[bool]:
    config = DevGatewayConfig(fault="http-500", fault_rate=0.5, seed=seed)
    async with DevGateway(config) as gw:
        statuses = [(await post(client, gw, body_for())).status_code for _ in range(n)]
    assert set(statuses) <= {200, 500}
    return [status == 500 for status in statuses]


async def test_fault_rate_is_deterministic_per_seed(client: httpx.AsyncClient) -> None:
    first = await fault_pattern(client, seed=7, n=12)
    again = await fault_pattern(client, seed=7, n=12)
    rng = random.Random(7)
    assert first == again == [rng.random() < 0.5 for _ in range(12)]
    assert any(first) and not all(first)


# --- configuration and CLI -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"fault": "nope"}, {"fault_rate": 1.5}, {"latency_seconds": -1}, {"keepalive_seconds": 0}],
)
def test_config_rejects_invalid_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DevGatewayConfig(**kwargs)


def test_config_lists_its_model() -> None:
    assert "gpt-5.3-codex" in DevGatewayConfig().models
    assert "x" in DevGatewayConfig(model="x").models


def test_cli_bad_usage_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--fault", "bogus"])
    assert exited.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["--fault-rate", "2"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


async def test_gateway_restarts_after_stop(client: httpx.AsyncClient) -> None:
    gw = DevGateway(DevGatewayConfig())
    async with gw:
        assert (await post(client, gw, body_for())).status_code == 200
    async with gw:
        events = parse_sse((await post(client, gw, body_for())).content)
    assert events[-1].data == "[DONE]"
    assert gw.request_count == 2


# --- the evaluation reviewers (random, oracle) ---------------------------------------------


def _decision_text(symbol: str, action: str, event_ts: str, price: float = 100.0) -> str:
    decision = {
        "symbol": symbol,
        "action": action,
        "qty": 1,
        "event_ts": event_ts,
        "params": {"price": price},
    }
    return "Review this.\n" + json.dumps({"decision": decision})


def test_random_reviewer_vetoes_a_seeded_share_and_always_the_same_ones() -> None:
    from torghut.devgateway import review_answer

    times = [f"2025-03-03T{14 + i // 60:02d}:{i % 60:02d}:00Z" for i in range(400)]

    def vetoed(seed: int, order: list[str]) -> set[str]:
        config = DevGatewayConfig(reviewer="random", veto_rate=0.3, seed=seed)
        return {
            t
            for t in order
            if review_answer(_decision_text("AAPL", "buy", t), config)[0]["verdict"] == "veto"
        }

    first = vetoed(1, times)
    assert 0.24 < len(first) / len(times) < 0.36
    assert vetoed(1, list(reversed(times))) == first  # arrival order does not matter
    assert vetoed(2, times) != first
    config = DevGatewayConfig(reviewer="random", veto_rate=0.0)
    assert review_answer(_decision_text("A", "buy", times[0]), config)[0]["verdict"] == "approve"


async def test_oracle_vetoes_exactly_the_decisions_that_lose(
    client: httpx.AsyncClient, tmp_path: Any
) -> None:
    signals = tmp_path / "s.jsonl"
    rows = [
        ("AAPL", "2025-03-03T15:00:00Z", 100.0),
        ("AAPL", "2025-03-03T15:30:00Z", 99.0),
        ("MSFT", "2025-03-03T15:00:00Z", 100.0),
        ("MSFT", "2025-03-03T15:30:00Z", 100.01),
    ]
    signals.write_text(
        "".join(
            json.dumps({"event_ts": t, "symbol": s, "timeframe": "1Min", "price": p}) + "\n"
            for s, t, p in rows
        )
        + "not json\n"
    )
    config = DevGatewayConfig(
        reviewer="oracle",
        oracle_signals=str(signals),
        oracle_horizon_seconds=1800,
        oracle_cost_bps=2.0,
    )
    from torghut.devgateway import review_answer

    def verdict(symbol: str, action: str, at: str) -> str:
        return str(
            review_answer(_decision_text(symbol, action, at), config, _oracle(config))[0]["verdict"]
        )

    assert verdict("AAPL", "buy", "2025-03-03T15:00:00Z") == "veto"  # -100 bps
    assert verdict("AAPL", "sell", "2025-03-03T15:00:00Z") == "approve"  # +100 - 2
    assert verdict("MSFT", "buy", "2025-03-03T15:00:00Z") == "veto"  # +1 - 2: a loss net
    assert verdict("MSFT", "buy", "2025-03-03T15:10:00Z") == "approve"  # no price 30m later
    async with DevGateway(config) as gw:
        answer = await review(
            client,
            gw,
            {
                "decision": {
                    "symbol": "AAPL",
                    "action": "buy",
                    "qty": 1,
                    "event_ts": "2025-03-03T15:00:00Z",
                    "params": {"price": 100.0},
                }
            },
        )
    assert answer["verdict"] == "veto" and answer["risk_flags"] == ["oracle"]


def _oracle(config: DevGatewayConfig) -> Any:
    from torghut.devgateway import Oracle

    assert config.oracle_signals is not None
    return Oracle(config.oracle_signals, config.oracle_horizon_seconds, config.oracle_cost_bps)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reviewer": "wise"},
        {"reviewer": "oracle"},
        {"reviewer": "random", "veto_rate": 1.5},
        {"reviewer": "oracle", "oracle_signals": "x", "oracle_horizon_seconds": 0},
    ],
)
def test_evaluation_reviewer_config_is_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DevGatewayConfig(**kwargs)


def test_cli_oracle_without_its_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--reviewer", "oracle", "--oracle-signals", "/nonexistent.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "--oracle-signals" in err and len(err.strip().splitlines()) == 1
