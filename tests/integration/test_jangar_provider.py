"""JangarProvider against a scripted server on 127.0.0.1: every byte and its timing controlled."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.integration.conftest_llm import (
    MESSAGES,
    SECRET,
    assert_code,
    example,
    free_port,
    review_error,
    wait_until,
)
from tests.integration.rawserver import (
    Close,
    Drip,
    Hold,
    RawServer,
    Repeat,
    Reset,
    Script,
    Send,
    Sleep,
    head,
    respond,
    split,
    sse,
    unanswered_port,
)
from torghut.errors import ReviewErrorCode
from torghut.trading.llm.jangar import CHAT_PATH, JangarConfig, JangarProvider
from torghut.trading.llm.retry import parse_retry_after

E = ReviewErrorCode
SSE_HEAD = head(200, {"content-type": "text/event-stream", "connection": "close"})


def chunk(content: str | None = None, **extra: Any) -> dict[str, Any]:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-5.3-codex",
        "choices": [{"delta": delta, "index": 0, "finish_reason": None}],
        "thread_id": "t-1",
    }
    body.update(extra)
    return body


STOP = {"choices": [{"delta": {}, "index": 0, "finish_reason": "stop"}]}
USAGE = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
SIMPLE = sse(chunk("\nHello"), chunk(", "), chunk("world"), USAGE, STOP, "[DONE]")


def config(url: str, **overrides: Any) -> JangarConfig:
    values: dict[str, Any] = {
        "base_url": url,
        "api_key": None,
        "model": "gpt-5.3-codex",
        "timeout_seconds": 10.0,
        "connect_timeout_seconds": 2.0,
        "first_token_timeout_seconds": 8.0,
        "idle_timeout_seconds": 8.0,
        "max_response_bytes": 1_048_576,
        "max_retries": 1,
        "secrets": (),
    }
    values.update(overrides)
    return JangarConfig(**values)


ProviderFactory = Callable[..., JangarProvider]


@pytest.fixture
async def make_provider() -> AsyncIterator[ProviderFactory]:
    """Providers built in a test are closed after it."""
    made: list[JangarProvider] = []

    def make(url: str, **overrides: Any) -> JangarProvider:
        provider = JangarProvider(config(url, **overrides))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


# --- the seed's cases ------------------------------------------------------------------------


async def test_content_chunks_assemble_into_one_string(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(SIMPLE)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    assert result.text == "Hello, world"
    assert result.usage is not None and result.usage.total_tokens == 15
    assert result.finish_reason == "stop"
    assert result.model == "gpt-5.3-codex"
    assert result.ttft_ms is not None and result.latency_ms >= result.ttft_ms >= 0


async def test_done_ends_the_stream(make_provider: ProviderFactory) -> None:
    body = sse(chunk("\nyes"), "[DONE]") + b"data: this is not json\n\n"
    # The server holds the connection open after [DONE]: the answer must not wait for it.
    script = [Send(SSE_HEAD), Send(body), Hold()]
    async with RawServer([script]) as server:
        started = time.monotonic()
        result = await make_provider(server.url).complete(MESSAGES)
        assert time.monotonic() - started < 2
    assert result.text == "yes"
    assert result.usage is None


async def test_non_2xx_is_an_error_with_the_status(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(b"nope", 404, content_type="text/plain")]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 404
    assert "404" in error.message and "nope" in error.message


# --- the example streams, byte-exact ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("approve_clean.sse", "approve"),
        ("veto_clean.sse", "veto"),
        ("ratelimit_preamble.sse", "approve"),
        ("preamble_message.sse", "approve"),
    ],
)
async def test_answer_examples(name: str, verdict: str, make_provider: ProviderFactory) -> None:
    async with RawServer([respond(example(name))]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    assert f'"verdict":"{verdict}"' in result.text.replace(" ", "")
    assert result.usage is not None and result.usage.prompt_tokens is not None
    assert not result.text.startswith("\n{") or name == "ratelimit_preamble.sse"
    assert "**" not in result.text or name == "ratelimit_preamble.sse"  # reasoning kept apart


async def test_approve_clean_parts(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(example("approve_clean.sse"))]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    answer = json.loads(result.text)
    assert answer["verdict"] == "approve" and answer["confidence"] == 0.86
    assert result.reasoning.startswith("**Checking notional vs cap**")
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (1810, 480)
    assert result.usage.total_tokens == 2098


async def test_not_json_answer_is_returned_as_text(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(example("not_json_answer.sse"))]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    assert result.text == "I approve this trade, it looks fine."


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("midstream_upstream_error.sse", "responseStreamDisconnected"),
        ("failed_turn.sse", "codex_error"),
    ],
)
async def test_error_frames_fail_the_review(
    name: str, code: str, make_provider: ProviderFactory
) -> None:
    async with RawServer([respond(example(name))]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
        assert len(server.requests) == 1
    assert_code(error, E.GATEWAY_ERROR)
    assert code in error.message
    assert len(error.message) < 450


@pytest.mark.parametrize(
    ("name", "code"),
    [("stream_required.sse", "stream_required"), ("model_not_found.sse", "model_not_found")],
)
async def test_pre_stream_400s(name: str, code: str, make_provider: ProviderFactory) -> None:
    async with RawServer([respond(example(name), 400)]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
        assert len(server.requests) == 1  # a 400 is never retried
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 400
    assert "400" in error.message and code in error.message


@pytest.mark.parametrize("seed", range(6))
async def test_events_split_arbitrarily(seed: int, make_provider: ProviderFactory) -> None:
    body = example("approve_clean.sse")
    rng = random.Random(seed)
    sizes = [rng.choice([1, 2, 3, 7, 40, 300]) for _ in range(len(body))]
    script = [Send(SSE_HEAD), *split(body, sizes, gap=0.0), Close()]
    async with RawServer([script]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    assert json.loads(result.text)["verdict"] == "approve"


async def test_crlf_line_ends(make_provider: ProviderFactory) -> None:
    body = example("veto_clean.sse").replace(b"\n", b"\r\n")
    async with RawServer([respond(body, pieces=7)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    assert json.loads(result.text)["risk_flags"] == ["max_notional"]


async def test_keepalive_comments_between_events(make_provider: ProviderFactory) -> None:
    events = example("approve_clean.sse").split(b"\n\n")
    body = b": keepalive\n\n" + b"\n\n: keepalive\n\n".join(events)
    async with RawServer([respond(body, pieces=11)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    assert json.loads(result.text)["verdict"] == "approve"


async def test_unknown_keys_and_role_only_chunks_are_ignored(
    make_provider: ProviderFactory,
) -> None:
    role_only = {"choices": [{"delta": {"role": "assistant"}, "index": 0}], "turn_number": 2}
    event = chunk("\n{}", jangar_event={"kind": "tool"})
    event["choices"][0]["delta"]["jangar_event"] = {"type": "plan"}
    body = sse(role_only, event, {"choices": [], "thread_id": "x"}, STOP, "[DONE]")
    async with RawServer([respond(body)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    assert result.text == "{}"
    assert result.usage is None


# --- the request -----------------------------------------------------------------------------


async def test_request_without_key(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(SIMPLE)]) as server:
        provider = make_provider(server.url + "/")
        await provider.complete(MESSAGES)
    request = server.requests[0]
    assert request.method == "POST" and request.path == CHAT_PATH
    assert request.json() == {
        "model": "gpt-5.3-codex",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True, "include_plan": False},
    }
    assert request.json() == provider.request_body(MESSAGES)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "text/event-stream"
    assert "authorization" not in request.headers
    assert "x-openwebui-chat-id" not in request.headers
    assert request.headers.get("x-trade-execution") == "torghut"


async def test_request_with_key(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(SIMPLE)]) as server:
        provider = make_provider(server.url, api_key=SECRET)
        await provider.complete(MESSAGES)
    request = server.requests[0]
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    body = provider.request_body(MESSAGES)
    assert SECRET not in json.dumps(body)
    for key in ("temperature", "max_tokens", "response_format"):
        assert key not in request.json()


# --- failures in the stream ------------------------------------------------------------------


async def test_event_error(make_provider: ProviderFactory) -> None:
    body = sse(chunk("\nhi")) + b'event: error\ndata: {"code":"boom","message":"bad"}\n\n'
    body += sse(STOP, "[DONE]")
    async with RawServer([respond(body)]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, E.GATEWAY_ERROR)
    assert "boom" in error.message and "bad" in error.message


async def test_error_frame_first(make_provider: ProviderFactory) -> None:
    frame = {"error": {"message": "model crashed", "type": "x", "code": "internal_error"}}
    async with RawServer([respond(sse(frame, chunk("\n{}"), STOP, "[DONE]"))]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, E.GATEWAY_ERROR)
    assert "internal_error: model crashed" in error.message


async def test_body_ends_before_done(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(sse(chunk("\nhalf"), STOP))]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
        assert len(server.requests) == 1
    assert_code(error, E.STREAM_INCOMPLETE)


async def test_first_event_then_disconnect_is_not_retried(
    make_provider: ProviderFactory,
) -> None:
    script = [Send(SSE_HEAD), Send(sse(chunk("\n{"))), Sleep(0.05), Reset()]
    async with RawServer([script, respond(SIMPLE)]) as server:
        error = await review_error(make_provider(server.url, max_retries=3).complete(MESSAGES))
        assert len(server.requests) == 1
    assert_code(error, E.STREAM_INCOMPLETE)


async def test_200_headers_then_close_is_not_retried(make_provider: ProviderFactory) -> None:
    async with RawServer([[Send(SSE_HEAD), Close()], respond(SIMPLE)]) as server:
        error = await review_error(make_provider(server.url, max_retries=3).complete(MESSAGES))
        assert len(server.requests) == 1
    assert_code(error, E.STREAM_INCOMPLETE)


@pytest.mark.parametrize(
    "body",
    [
        b"data: {not json\n\n",
        sse({"choices": {"delta": {"content": "x"}}}),
        sse({"choices": [{"delta": {"content": 42}}]}),
        sse({"choices": [{"delta": "text"}]}),
        sse({"choices": ["x"]}),
        b"data: [1, 2]\n\n",
        sse({"choices": [], "usage": "lots"}),
    ],
)
async def test_malformed_chunks(body: bytes, make_provider: ProviderFactory) -> None:
    async with RawServer([respond(body + sse(STOP, "[DONE]"))]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, E.PROTOCOL_ERROR)


async def test_unexpected_content_type(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(b"<html>hi</html>", content_type="text/html")]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, E.PROTOCOL_ERROR)
    assert "text/html" in error.message


async def test_json_chat_completion(make_provider: ProviderFactory) -> None:
    body = json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": "gpt-5.3-codex",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": '\n{"verdict":"veto"}'},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    ).encode()
    async with RawServer([respond(body, content_type="application/json", length=True)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
    assert result.text == '{"verdict":"veto"}'
    assert result.usage is not None and result.usage.total_tokens == 7
    assert result.ttft_ms is not None


async def test_json_error_with_200(make_provider: ProviderFactory) -> None:
    body = b'{"error":{"message":"turn failed","type":"internal","code":"codex_error"}}'
    async with RawServer([respond(body, content_type="application/json")]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, E.GATEWAY_ERROR)
    assert "codex_error" in error.message


async def test_json_answer_is_bounded(make_provider: ProviderFactory) -> None:
    body = b'{"choices":[{"message":{"content":"' + b"x" * 20_000 + b'"}}]}'
    async with RawServer([respond(body, content_type="application/json")]) as server:
        error = await review_error(
            make_provider(server.url, max_response_bytes=4096).complete(MESSAGES)
        )
    assert_code(error, E.RESPONSE_TOO_LARGE)


# --- http errors -----------------------------------------------------------------------------


async def test_proxy_html_error_is_quoted_and_cut(make_provider: ProviderFactory) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b"x" * 2000 + b"</body></html>"
    async with RawServer([respond(page, 502, content_type="text/html")]) as server:
        error = await review_error(make_provider(server.url, max_retries=0).complete(MESSAGES))
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 502 and "502 Bad Gateway" in error.message
    assert len(error.message) < 360


async def test_error_body_is_read_bounded(make_provider: ProviderFactory) -> None:
    # A 500 whose body never ends: the status is reported without reading it all.
    script = [Send(head(500, {"content-type": "text/plain"})), Repeat(b"y" * 16384, 0.001)]
    async with RawServer([script]) as server:
        error = await review_error(make_provider(server.url, max_retries=0).complete(MESSAGES))
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 500


async def test_jangar_500_is_retried_then_reported(make_provider: ProviderFactory) -> None:
    body = sse(
        {"error": {"message": "boom", "type": "server_error", "code": "internal_error"}}, "[DONE]"
    )
    async with RawServer([respond(body, 500)]) as server:
        error = await review_error(make_provider(server.url, max_retries=2).complete(MESSAGES))
        assert len(server.requests) == 3
    assert_code(error, E.HTTP_ERROR)
    assert "500" in error.message and "internal_error" in error.message


# --- connection errors and retries -----------------------------------------------------------


async def test_connection_refused(make_provider: ProviderFactory) -> None:
    provider = make_provider(f"http://127.0.0.1:{free_port()}", max_retries=0)
    error = await review_error(provider.complete(MESSAGES))
    assert_code(error, E.CONNECT_ERROR)


async def test_reset_before_status_line_is_retried(make_provider: ProviderFactory) -> None:
    async with RawServer([[Reset()], respond(SIMPLE)]) as server:
        result = await make_provider(server.url, max_retries=1).complete(MESSAGES)
        assert len(server.requests) == 2
    assert result.text == "Hello, world"


async def test_reset_every_time_is_a_connect_error(make_provider: ProviderFactory) -> None:
    async with RawServer([[Reset()]]) as server:
        error = await review_error(make_provider(server.url, max_retries=2).complete(MESSAGES))
        assert len(server.requests) == 3
    assert_code(error, E.CONNECT_ERROR)


async def test_503_then_200(make_provider: ProviderFactory) -> None:
    busy = respond(b"busy", 503, content_type="text/plain")
    async with RawServer([busy, respond(SIMPLE)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
        assert len(server.requests) == 2
    assert result.text == "Hello, world"


async def test_429_retry_after_is_honoured(make_provider: ProviderFactory) -> None:
    limited = respond(b"slow down", 429, content_type="text/plain", headers={"retry-after": "1"})
    async with RawServer([limited, respond(SIMPLE)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
        first, second = server.requests
    assert result.text == "Hello, world"
    assert second.received_at - first.received_at >= 0.95


async def test_retry_after_past_the_deadline_fails_at_once(
    make_provider: ProviderFactory,
) -> None:
    limited = respond(b"later", 429, content_type="text/plain", headers={"retry-after": "30"})
    async with RawServer([limited, respond(SIMPLE)]) as server:
        started = time.monotonic()
        error = await review_error(make_provider(server.url, timeout_seconds=5).complete(MESSAGES))
        assert time.monotonic() - started < 2
        assert len(server.requests) == 1
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 429


async def test_400_is_not_retried(make_provider: ProviderFactory) -> None:
    rejected = respond(example("model_not_found.sse"), 400)
    async with RawServer([rejected, respond(SIMPLE)]) as server:
        await review_error(make_provider(server.url, max_retries=3).complete(MESSAGES))
        assert len(server.requests) == 1


async def test_no_retries_when_max_retries_is_zero(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(b"busy", 503, content_type="text/plain")]) as server:
        await review_error(make_provider(server.url, max_retries=0).complete(MESSAGES))
        assert len(server.requests) == 1


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-4") == 0.0
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    from datetime import UTC, datetime

    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert parse_retry_after(date, now=now) == 30.0


# --- the clocks ------------------------------------------------------------------------------


async def test_connect_clock(make_provider: ProviderFactory) -> None:
    with unanswered_port() as port:
        if port is None:
            pytest.skip("this kernel completes loopback connects to a full backlog")
        provider = make_provider(
            f"http://127.0.0.1:{port}", connect_timeout_seconds=0.3, max_retries=0
        )
        error = await review_error(provider.complete(MESSAGES))
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("connect")


async def test_first_token_clock_with_keepalives(make_provider: ProviderFactory) -> None:
    script = [Send(SSE_HEAD), Repeat(b": keepalive\n\n", 0.05)]
    async with RawServer([script]) as server:
        provider = make_provider(server.url, first_token_timeout_seconds=0.5, max_retries=3)
        error = await review_error(provider.complete(MESSAGES))
        assert len(server.requests) == 1
        assert await wait_until(lambda: server.active == 0)  # the connection was closed
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("first_token")


async def test_first_token_clock_before_the_status_line(make_provider: ProviderFactory) -> None:
    async with RawServer([[Hold()]]) as server:
        provider = make_provider(server.url, first_token_timeout_seconds=0.4)
        error = await review_error(provider.complete(MESSAGES))
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("first_token")


async def test_idle_clock_with_keepalives_flowing(make_provider: ProviderFactory) -> None:
    script = [Send(SSE_HEAD), Send(sse(chunk("\n{"))), Repeat(b": keepalive\n\n", 0.05)]
    async with RawServer([script]) as server:
        provider = make_provider(server.url, idle_timeout_seconds=0.5)
        error = await review_error(provider.complete(MESSAGES))
        assert await wait_until(lambda: server.active == 0)
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("idle")


async def test_total_clock_with_a_byte_every_200ms(make_provider: ProviderFactory) -> None:
    script = [Send(SSE_HEAD), Drip(SIMPLE, 0.2)]
    async with RawServer([script]) as server:
        provider = make_provider(server.url, timeout_seconds=1.0)
        error = await review_error(provider.complete(MESSAGES))
        assert await wait_until(lambda: server.active == 0)
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("total")


async def test_total_clock_covers_retries(make_provider: ProviderFactory) -> None:
    # Every attempt hangs until the first-token clock; the total deadline ends the review.
    async with RawServer([[Hold()]]) as server:
        provider = make_provider(
            server.url, timeout_seconds=1.0, first_token_timeout_seconds=0.4, max_retries=5
        )
        error = await review_error(provider.complete(MESSAGES))
    assert_code(error, E.TIMEOUT)


@pytest.mark.parametrize("kind", ["keepalives", "byte_per_second"])
async def test_acceptance_timeout_within_deadline(
    kind: str, make_provider: ProviderFactory
) -> None:
    """The issue's acceptance: timeout_seconds=2 fails with `timeout` in under 2.3 s."""
    script: Script
    if kind == "keepalives":
        script = [Send(SSE_HEAD), Repeat(b": keepalive\n\n", 0.1)]
    else:
        script = [Send(SSE_HEAD), Drip(example("approve_clean.sse"), 1.0)]
    async with RawServer([script]) as server:
        provider = make_provider(
            server.url, timeout_seconds=2.0, first_token_timeout_seconds=15, idle_timeout_seconds=10
        )
        started = time.monotonic()
        error = await review_error(provider.complete(MESSAGES))
        elapsed = time.monotonic() - started
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("total")
    assert elapsed < 2.3


# --- the byte cap ----------------------------------------------------------------------------


async def test_byte_cap_counts_keepalives(make_provider: ProviderFactory) -> None:
    script = [Send(SSE_HEAD), Repeat(b": keepalive\n\n" * 100, 0.001)]
    async with RawServer([script]) as server:
        provider = make_provider(server.url, max_response_bytes=8192)
        error = await review_error(provider.complete(MESSAGES))
        assert await wait_until(lambda: server.active == 0)
    assert_code(error, E.RESPONSE_TOO_LARGE)


async def test_byte_cap_on_one_endless_event(make_provider: ProviderFactory) -> None:
    script = [
        Send(SSE_HEAD),
        Send(b'data: {"choices":[{"delta":{"content":"'),
        Repeat(b"z" * 4096, 0.001),
    ]
    async with RawServer([script]) as server:
        provider = make_provider(server.url, max_response_bytes=100_000)
        error = await review_error(provider.complete(MESSAGES))
    assert_code(error, E.RESPONSE_TOO_LARGE)


async def test_stream_within_cap_passes(make_provider: ProviderFactory) -> None:
    body = example("approve_clean.sse")
    async with RawServer([respond(body)]) as server:
        result = await make_provider(server.url, max_response_bytes=len(body)).complete(MESSAGES)
    assert result.usage is not None


# --- secrets ---------------------------------------------------------------------------------


async def test_key_echoed_in_http_error_is_redacted(make_provider: ProviderFactory) -> None:
    async def scenario(body: bytes, status: int, ctype: str) -> str:
        async with RawServer([respond(body, status, content_type=ctype)]) as server:
            provider = make_provider(server.url, api_key=SECRET, max_retries=0)
            error = await review_error(provider.complete(MESSAGES))
        assert SECRET not in error.message and SECRET not in str(error)
        return error.message

    echo = f"bad header Authorization: Bearer {SECRET}"
    message = await scenario(echo.encode(), 401, "text/plain")
    assert "***" in message
    sse_body = sse({"error": {"message": echo, "code": "unauthorized"}}, "[DONE]")
    message = await scenario(sse_body, 401, "text/event-stream")
    assert "unauthorized" in message and "***" in message
    message = await scenario(
        sse({"error": {"message": echo, "code": "x"}}), 200, "text/event-stream"
    )
    assert "***" in message
    message = await scenario(b"data: " + echo.encode() + b"\n\n", 200, "text/event-stream")
    assert "***" in message


async def test_configured_secrets_are_redacted(make_provider: ProviderFactory) -> None:
    other = "db-password-12345"
    async with RawServer([respond(f"oops {other}".encode(), 400, content_type="text/plain")]) as s:
        error = await review_error(make_provider(s.url, secrets=(other,)).complete(MESSAGES))
    assert other not in error.message


def test_config_repr_hides_the_key() -> None:
    assert SECRET not in repr(config("http://x", api_key=SECRET, secrets=(SECRET,)))


# --- the client ------------------------------------------------------------------------------


async def test_connection_is_reused_between_reviews(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(SIMPLE, length=True, close=False)]) as server:
        provider = make_provider(server.url)
        for _ in range(3):
            assert (await provider.complete(MESSAGES)).text == "Hello, world"
        assert server.connections == 1


async def test_shared_client_is_left_open() -> None:
    async with RawServer([respond(SIMPLE)]) as server, httpx.AsyncClient() as client:
        provider = JangarProvider(config(server.url), client=client)
        await provider.complete(MESSAGES)
        await provider.aclose()
        assert not client.is_closed


async def test_own_client_is_closed() -> None:
    provider = JangarProvider(config("http://127.0.0.1:9"))
    await provider.aclose()
    assert provider._client.is_closed
    assert provider.name == "jangar" and provider.model == "gpt-5.3-codex"


async def test_bare_error_event_without_data_is_a_gateway_error(
    make_provider: ProviderFactory,
) -> None:
    """`event: error` with no data line is not dispatched by the SSE rules, yet it is a failure."""
    body = example("approve_clean.sse")
    async with RawServer([respond(b"event: error\n\n" + body)]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, ReviewErrorCode.GATEWAY_ERROR)


async def test_chunk_with_neither_choices_nor_usage_is_a_protocol_error(
    make_provider: ProviderFactory,
) -> None:
    body = b'data: {"object":"chat.completion.chunk","weird":1}\n\ndata: [DONE]\n\n'
    async with RawServer([respond(body)]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, ReviewErrorCode.PROTOCOL_ERROR)
