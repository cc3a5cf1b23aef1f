"""OpenAIProvider (official SDK) against a scripted OpenAI-speaking server on 127.0.0.1, and the
provider factory."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.integration.conftest_llm import (
    MESSAGES,
    SECRET,
    assert_code,
    free_port,
    review_error,
    wait_until,
)
from tests.integration.rawserver import (
    Drip,
    RawServer,
    Repeat,
    Reset,
    Send,
    head,
    respond,
    sse,
)
from torghut.config import load_settings
from torghut.errors import ConfigError, ReviewErrorCode
from torghut.trading.llm.client import build_provider, jangar_config_from, openai_config_from
from torghut.trading.llm.jangar import JangarProvider
from torghut.trading.llm.openai import OpenAIConfig, OpenAIProvider

E = ReviewErrorCode
SSE_HEAD = head(200, {"content-type": "text/event-stream; charset=utf-8", "connection": "close"})


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


USAGE = {
    "id": "chatcmpl-9",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-x",
    "choices": [],
    "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
}
STREAM = sse(chunk('{"verdict":'), chunk('"approve"}'), chunk(None, "stop"), USAGE, "[DONE]")


def openai_error(status: int, code: str, message: str) -> list[Any]:
    body = json.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    ).encode()
    return respond(body, status, content_type="application/json")


ProviderFactory = Callable[..., OpenAIProvider]


@pytest.fixture
async def make_provider() -> AsyncIterator[ProviderFactory]:
    made: list[OpenAIProvider] = []

    def make(url: str, **overrides: Any) -> OpenAIProvider:
        values: dict[str, Any] = {
            "api_key": SECRET,
            "base_url": url + "/v1",
            "model": "gpt-x",
            "temperature": 0.2,
            "max_tokens": 300,
            "timeout_seconds": 10.0,
            "connect_timeout_seconds": 2.0,
            "first_token_timeout_seconds": 8.0,
            "idle_timeout_seconds": 8.0,
            "max_response_bytes": 1_048_576,
            "max_retries": 1,
            "secrets": (),
        }
        values.update(overrides)
        provider = OpenAIProvider(OpenAIConfig(**values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def test_streamed_answer(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(STREAM, pieces=5)]) as server:
        provider = make_provider(server.url)
        result = await provider.complete(MESSAGES)
    assert result.text == '{"verdict":"approve"}'
    assert result.usage is not None and result.usage.total_tokens == 13
    assert result.finish_reason == "stop" and result.model == "gpt-x"
    assert result.ttft_ms is not None
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    body = request.json()
    assert body["model"] == "gpt-x" and body["messages"] == MESSAGES
    assert body["temperature"] == 0.2 and body["max_tokens"] == 300
    assert body["response_format"] == {"type": "json_object"}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    expected = provider.request_body(MESSAGES)
    assert {k: body[k] for k in expected} == expected


async def test_401_is_an_http_error_with_the_code(make_provider: ProviderFactory) -> None:
    script = openai_error(401, "invalid_api_key", f"Incorrect API key provided: {SECRET}.")
    async with RawServer([script]) as server:
        error = await review_error(make_provider(server.url, max_retries=3).complete(MESSAGES))
        assert len(server.requests) == 1
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 401
    assert "401" in error.message and "invalid_api_key" in error.message
    assert SECRET not in error.message and "***" in error.message


async def test_500_is_retried(make_provider: ProviderFactory) -> None:
    async with RawServer([openai_error(500, "server_error", "oops")]) as server:
        error = await review_error(make_provider(server.url, max_retries=1).complete(MESSAGES))
        assert len(server.requests) == 2
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 500 and "server_error" in error.message


async def test_503_then_200(make_provider: ProviderFactory) -> None:
    async with RawServer([openai_error(503, "overloaded", "busy"), respond(STREAM)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
        assert len(server.requests) == 2
    assert result.text == '{"verdict":"approve"}'


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"data: garbage\n\n", "text/event-stream"),
        (b"<html>oops</html>", "text/html"),
        (sse({"choices": "nope"}), "text/event-stream"),
    ],
)
async def test_garbage_is_a_protocol_error(
    body: bytes, ctype: str, make_provider: ProviderFactory
) -> None:
    async with RawServer([respond(body, content_type=ctype)]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, E.PROTOCOL_ERROR)


async def test_connection_refused(make_provider: ProviderFactory) -> None:
    provider = make_provider(f"http://127.0.0.1:{free_port()}", max_retries=0)
    error = await review_error(provider.complete(MESSAGES))
    assert_code(error, E.CONNECT_ERROR)


async def test_reset_before_status_is_retried(make_provider: ProviderFactory) -> None:
    async with RawServer([[Reset()], respond(STREAM)]) as server:
        result = await make_provider(server.url).complete(MESSAGES)
        assert len(server.requests) == 2
    assert result.usage is not None


async def test_in_stream_error(make_provider: ProviderFactory) -> None:
    body = sse(chunk("{"), {"error": {"message": "context overflow", "code": "context_length"}})
    async with RawServer([respond(body)]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
    assert_code(error, E.GATEWAY_ERROR)
    assert "context_length" in error.message


async def test_stream_without_done(make_provider: ProviderFactory) -> None:
    async with RawServer([respond(sse(chunk("{"), chunk(None, "stop")))]) as server:
        error = await review_error(make_provider(server.url).complete(MESSAGES))
        assert len(server.requests) == 1
    assert_code(error, E.STREAM_INCOMPLETE)


async def test_first_token_clock(make_provider: ProviderFactory) -> None:
    async with RawServer([[Send(SSE_HEAD), Repeat(b": keepalive\n\n", 0.05)]]) as server:
        error = await review_error(
            make_provider(server.url, first_token_timeout_seconds=0.4).complete(MESSAGES)
        )
        assert await wait_until(lambda: server.active == 0)
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("first_token")


async def test_idle_clock(make_provider: ProviderFactory) -> None:
    script = [Send(SSE_HEAD), Send(sse(chunk("{"))), Repeat(b": keepalive\n\n", 0.05)]
    async with RawServer([script]) as server:
        error = await review_error(
            make_provider(server.url, idle_timeout_seconds=0.4).complete(MESSAGES)
        )
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("idle")


async def test_total_clock_with_a_byte_every_200ms(make_provider: ProviderFactory) -> None:
    async with RawServer([[Send(SSE_HEAD), Drip(STREAM, 0.2)]]) as server:
        started = time.monotonic()
        provider = make_provider(server.url, timeout_seconds=1.0)
        error = await review_error(provider.complete(MESSAGES))
        assert time.monotonic() - started < 1.5
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("total")


async def test_byte_cap(make_provider: ProviderFactory) -> None:
    async with RawServer([[Send(SSE_HEAD), Repeat(b": ka\n\n" * 500, 0.001)]]) as server:
        error = await review_error(
            make_provider(server.url, max_response_bytes=10_000).complete(MESSAGES)
        )
    assert_code(error, E.RESPONSE_TOO_LARGE)


# --- the factory -----------------------------------------------------------------------------


async def test_factory_builds_jangar() -> None:
    settings = load_settings(
        {
            "JANGAR_BASE_URL": "http://jangar.local/",
            "JANGAR_API_KEY": SECRET,
            "LLM_TIMEOUT_SECONDS": "7",
            "LLM_MAX_RETRIES": "2",
            "LLM_MODEL": "m1",
        },
        env_file=None,
    )
    provider = build_provider(settings)
    try:
        assert isinstance(provider, JangarProvider)
        cfg = jangar_config_from(settings)
        assert cfg.base_url == "http://jangar.local" and cfg.api_key == SECRET
        assert cfg.timeout_seconds == 7 and cfg.max_retries == 2 and cfg.model == "m1"
        assert SECRET in cfg.secrets
        assert provider.name == "jangar"
    finally:
        await provider.aclose()


async def test_factory_builds_openai() -> None:
    settings = load_settings(
        {
            "LLM_PROVIDER": "openai",
            "OPENAI_API_KEY": SECRET,
            "LLM_TEMPERATURE": "0.5",
            "LLM_MAX_TOKENS": "99",
        },
        env_file=None,
    )
    provider = build_provider(settings)
    try:
        assert isinstance(provider, OpenAIProvider) and provider.name == "openai"
        cfg = openai_config_from(settings)
        assert (cfg.temperature, cfg.max_tokens, cfg.api_key) == (0.5, 99, SECRET)
    finally:
        await provider.aclose()


def test_factory_requires_an_openai_key() -> None:
    settings = load_settings({"LLM_PROVIDER": "openai"}, env_file=None)
    with pytest.raises(ConfigError) as info:
        build_provider(settings)
    assert info.value.variable == "OPENAI_API_KEY"


async def test_factory_allows_a_keyless_local_openai_server() -> None:
    settings = load_settings(
        {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, env_file=None
    )
    provider = build_provider(settings)
    await provider.aclose()


# --- request parameters per model family (issue 13) ------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected", "absent"),
    [
        ("gpt-5.3-codex", {"max_completion_tokens": 300}, ("temperature", "max_tokens")),
        ("gpt-5-mini", {"max_completion_tokens": 300}, ("temperature", "max_tokens")),
        ("o3-mini", {"max_completion_tokens": 300}, ("temperature", "max_tokens")),
        ("openai/o4-mini", {"max_completion_tokens": 300}, ("temperature", "max_tokens")),
        ("gpt-4o", {"temperature": 0.2, "max_tokens": 300}, ("max_completion_tokens",)),
    ],
)
async def test_parameters_follow_the_model_family_on_the_wire(
    model: str, expected: dict[str, Any], absent: tuple[str, ...], make_provider: ProviderFactory
) -> None:
    async with RawServer([respond(STREAM)]) as server:
        provider = make_provider(server.url, model=model)
        await provider.complete(MESSAGES)
    body = server.requests[0].json()
    assert body["model"] == model
    assert {k: body[k] for k in expected} == expected
    assert not [k for k in absent if k in body]
    assert {k: body[k] for k in provider.request_body(MESSAGES)} == provider.request_body(MESSAGES)


async def test_default_model_gets_no_temperature(make_provider: ProviderFactory) -> None:
    """The provider's own default model (`gpt-5.3-codex`) refuses temperature and max_tokens."""
    defaults = OpenAIConfig(api_key="k")
    async with RawServer([respond(STREAM)]) as server:
        await make_provider(server.url, model=defaults.model).complete(MESSAGES)
    body = server.requests[0].json()
    assert "temperature" not in body and "max_tokens" not in body
    assert body["max_completion_tokens"] == defaults.max_tokens
