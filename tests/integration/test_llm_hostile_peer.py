"""Both review providers against a hostile or broken peer on 127.0.0.1 (issue 13): garbage
status lines, frames after [DONE], named events, deep nesting, answers just before the
deadline, endless and compressed error bodies, cancels during the response close."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import httpx2
import pytest

from tests.integration.conftest_llm import MESSAGES, SECRET, assert_code, review_error, wait_until
from tests.integration.rawserver import (
    Close,
    Hold,
    RawServer,
    Repeat,
    Send,
    Sleep,
    head,
    respond,
    sse,
)
from torghut.errors import ReviewErrorCode
from torghut.ports import ReviewProvider
from torghut.trading.llm.jangar import JangarConfig, JangarProvider
from torghut.trading.llm.openai import OpenAIConfig, OpenAIProvider

E = ReviewErrorCode
SSE_HEAD = head(200, {"content-type": "text/event-stream", "connection": "close"})
REVIEW = '{"verdict":"approve","confidence":0.9,"rationale":"ok","risk_flags":[]}'


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


ANSWER = sse(chunk("\n" + REVIEW), chunk(None, "stop"), "[DONE]")

Factory = Callable[..., ReviewProvider]


def _values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "model": "gpt-x",
        "timeout_seconds": 10.0,
        "connect_timeout_seconds": 2.0,
        "first_token_timeout_seconds": 8.0,
        "idle_timeout_seconds": 8.0,
        "max_response_bytes": 1_048_576,
        "max_retries": 0,
        "secrets": (),
    }
    values.update(overrides)
    return values


@pytest.fixture(params=["jangar", "openai"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """A provider of each kind against the given server URL; closed after the test."""
    made: list[ReviewProvider] = []

    def build(url: str, *, transport: Any = None, **overrides: Any) -> ReviewProvider:
        provider: ReviewProvider
        if request.param == "jangar":
            values = _values(**overrides)
            values.setdefault("api_key", SECRET)
            client = None if transport is None else httpx.AsyncClient(transport=transport)
            provider = JangarProvider(JangarConfig(base_url=url, **values), client=client)
        else:
            values = _values(**overrides)
            values.setdefault("api_key", SECRET)
            provider = OpenAIProvider(
                OpenAIConfig(base_url=url + "/v1", **values), transport=transport
            )
        made.append(provider)
        return provider

    build.kind = request.param  # type: ignore[attr-defined]
    yield build
    for provider in made:
        await provider.aclose()


# --- the status line and the frames ----------------------------------------------------------


async def test_garbage_status_line_is_a_protocol_error_and_not_retried(make: Factory) -> None:
    async with RawServer([[Send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), Hold()]]) as server:
        error = await review_error(make(server.url, max_retries=2).complete(MESSAGES))
        assert len(server.requests) == 1
    assert_code(error, E.PROTOCOL_ERROR)


async def test_a_peer_closing_before_the_status_line_is_still_a_connect_error(
    make: Factory,
) -> None:
    from tests.integration.rawserver import Close

    async with RawServer([[Close()], respond(ANSWER)]) as server:
        result = await make(server.url, max_retries=1).complete(MESSAGES)
        assert len(server.requests) == 2
    assert json.loads(result.text)["verdict"] == "approve"


@pytest.mark.parametrize(
    "after_done",
    [
        sse({"error": {"message": "late", "code": "late_error"}}),
        b'event: error\ndata: {"code":"late"}\n\n',
        b"event: error\n\n",
        b"data: not json at all\n\n",
    ],
    ids=["error-frame", "error-event", "bare-error-event", "garbage"],
)
async def test_nothing_after_done_is_read(after_done: bytes, make: Factory) -> None:
    """The one rule (stream.py): the answer is complete at [DONE]; what follows, in the same
    write or later, is never read for meaning."""
    for script in (
        [Send(SSE_HEAD), Send(ANSWER + after_done), Hold()],
        [Send(SSE_HEAD), Send(ANSWER), Sleep(0.01), Send(after_done), Hold()],
    ):
        async with RawServer([script]) as server:
            result = await make(server.url).complete(MESSAGES)
        assert json.loads(result.text)["verdict"] == "approve"


async def test_error_event_before_done_fails_the_review(make: Factory) -> None:
    body = sse(chunk("\n" + REVIEW)) + b"event: error\n\n" + sse(chunk(None, "stop"), "[DONE]")
    async with RawServer([respond(body)]) as server:
        error = await review_error(make(server.url).complete(MESSAGES))
    assert_code(error, E.GATEWAY_ERROR)


async def test_other_named_events_are_ignored(make: Factory) -> None:
    body = b"event: ping\ndata: {}\n\nevent: ping\n\n" + ANSWER
    async with RawServer([respond(body)]) as server:
        result = await make(server.url).complete(MESSAGES)
    assert json.loads(result.text)["verdict"] == "approve"


@pytest.mark.parametrize("opening", ["[", '{"a":'])
async def test_deep_nesting_is_a_protocol_error(opening: str, make: Factory) -> None:
    body = b"data: " + (opening * 100_000).encode() + b"\n\n" + ANSWER
    async with RawServer([respond(body)]) as server:
        error = await review_error(make(server.url).complete(MESSAGES))
    assert_code(error, E.PROTOCOL_ERROR)


async def test_deep_nesting_in_an_error_body_is_still_an_http_error(make: Factory) -> None:
    body = b"[" * 200_000
    async with RawServer([respond(body, 400, content_type="application/json")]) as server:
        error = await review_error(make(server.url).complete(MESSAGES))
    assert_code(error, E.HTTP_ERROR)


# --- the deadline ----------------------------------------------------------------------------


async def test_an_answer_just_before_the_deadline_is_kept(make: Factory) -> None:
    """[DONE] lands ~50 ms before the total deadline and the peer keeps the connection open:
    the drain after [DONE] (its own 50 ms) must not turn the answer into a timeout. A first
    review warms the provider up, so that its first request's one-off costs (the openai SDK's
    client, a loaded machine's imports) do not eat the 50 ms: that made the test flaky."""
    warm_up = [Send(SSE_HEAD), Send(ANSWER), Close()]
    script = [Send(SSE_HEAD), Sleep(0.9), Send(ANSWER), Hold()]
    async with RawServer([warm_up, script]) as server:
        provider = make(server.url, timeout_seconds=0.95, first_token_timeout_seconds=5)
        await provider.complete(MESSAGES)
        result = await provider.complete(MESSAGES)
    assert json.loads(result.text)["verdict"] == "approve"


# --- error bodies ----------------------------------------------------------------------------


async def test_endless_500_body_is_an_http_error(make: Factory) -> None:
    script = [Send(head(500, {"content-type": "text/plain"})), Repeat(b"y" * 65536, 0.0)]
    async with RawServer([script]) as server:
        error = await review_error(make(server.url, timeout_seconds=5).complete(MESSAGES))
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 500


async def test_gzip_error_body_is_not_inflated(make: Factory) -> None:
    bomb = gzip.compress(b"0" * 50_000_000, 9)
    headers = {"content-encoding": "gzip", "content-length": str(len(bomb))}
    async with RawServer(
        [[Send(head(500, {"content-type": "text/plain", **headers})), Send(bomb), Hold()]]
    ) as server:
        error = await review_error(make(server.url).complete(MESSAGES))
    assert_code(error, E.HTTP_ERROR)
    assert error.status == 500
    assert "0000000000" not in error.message  # quoted raw (compressed), never inflated


async def test_a_dripping_error_body_ends_as_http_error_on_the_clock(make: Factory) -> None:
    script = [Send(head(503, {"content-type": "text/plain"})), Send(b"busy "), Repeat(b"z", 0.05)]
    async with RawServer([script]) as server:
        provider = make(server.url, first_token_timeout_seconds=1.0, timeout_seconds=5)
        error = await review_error(provider.complete(MESSAGES))
    assert_code(error, E.HTTP_ERROR)
    assert "busy" in error.message


# --- cancels during the close ----------------------------------------------------------------


def _slow_close_transport(kind: str, closing: asyncio.Event) -> Any:
    """The library's own transport, with response closes that take a while: a cancel lands
    in the middle of one."""
    lib: Any = httpx if kind == "jangar" else httpx2

    class SlowClose(lib.AsyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for part in self._inner:
                yield part

        async def aclose(self) -> None:
            closing.set()
            await asyncio.sleep(0.05)
            await self._inner.aclose()
            transport.closed += 1

    class Transport(lib.AsyncBaseTransport):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            # A small pool: a connection leaked per cancel would exhaust it within the run.
            self.inner = lib.AsyncHTTPTransport(limits=lib.Limits(max_connections=4))
            self.opened = 0  # responses handed out
            self.closed = 0  # of them, closed all the way down to the pool

        async def handle_async_request(self, request: Any) -> Any:
            response = await self.inner.handle_async_request(request)
            self.opened += 1
            return lib.Response(
                response.status_code,
                headers=response.headers,
                stream=SlowClose(response.stream),
                extensions=response.extensions,
            )

        async def aclose(self) -> None:
            await self.inner.aclose()

    transport = Transport()
    return transport


@pytest.mark.parametrize("status", [200, 500])
async def test_a_cancel_during_the_close_leaks_no_connection(status: int, make: Factory) -> None:
    """100 reviews, each cancelled while its response is being closed, on a pool of 4
    connections: afterwards no connection is left open (the server counts them) and a good
    review still gets a connection from the pool."""
    kind = make.kind  # type: ignore[attr-defined]
    closing = asyncio.Event()
    if status == 200:
        bad = [Send(SSE_HEAD), Send(sse(chunk("\n{"))), Send(b"data: {not json\n\n"), Hold()]
    else:
        # An error body longer than the cap, on a connection held open.
        bad = [Send(head(500, {"content-type": "text/plain"})), Send(b"x" * 70_000), Hold()]
    scripts = [bad] * 100 + [respond(ANSWER)]
    async with RawServer(scripts) as server:
        transport = _slow_close_transport(kind, closing)
        provider = make(server.url, transport=transport, timeout_seconds=5)
        for _ in range(100):
            closing.clear()
            task = asyncio.ensure_future(provider.complete(MESSAGES))
            await asyncio.wait_for(closing.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert server.connections == 100
        # Every response went back to the pool: none is held by an interrupted close.
        assert await wait_until(lambda: transport.closed == transport.opened == 100, within=5)
        assert await wait_until(lambda: server.active == 0, within=5)
        result = await asyncio.wait_for(provider.complete(MESSAGES), 5)
    assert json.loads(result.text)["verdict"] == "approve"


async def test_an_exhausted_pool_is_named_as_such(make: Factory) -> None:
    """The pool has a timeout of its own (the connect timeout): a review that cannot get a
    connection says so, instead of waiting into a first_token or total timeout."""
    kind = make.kind  # type: ignore[attr-defined]
    lib: Any = httpx if kind == "jangar" else httpx2
    one = lib.AsyncHTTPTransport(limits=lib.Limits(max_connections=1))
    script = [Send(SSE_HEAD), Hold()]
    async with RawServer([script]) as server:
        provider = make(
            server.url,
            transport=one,
            connect_timeout_seconds=0.3,
            first_token_timeout_seconds=5,
            timeout_seconds=8,
        )
        holder = asyncio.ensure_future(provider.complete(MESSAGES))
        await wait_until(lambda: server.active == 1)
        error = await review_error(provider.complete(MESSAGES))
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
    assert_code(error, E.TIMEOUT)
    assert error.message.startswith("connect timeout: no free pooled connection")
