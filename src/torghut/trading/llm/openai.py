"""The OpenAI review provider, through the official SDK (`openai.AsyncOpenAI`, on httpx2).

The SDK builds and sends the request (auth, headers, `OPENAI_BASE_URL`); its HTTP client gets
a transport of ours (`_ClockedTransport`) that holds the wait for the status line to the
review's clocks and reads a non-2xx body itself: raw bytes, capped at `ERROR_BODY_LIMIT`, no
content decoding (the SDK would read a body of any length and gunzip it). A 2xx body is read
raw, with the same reader, clocks and byte cap as the Jangar provider (`stream.py`), so both
providers time and fail a review the same way. The SDK never retries (`max_retries=0`):
retries follow Torghut's own policy (`retry.py`).

Request parameters follow the model family: GPT-5, o-series and codex models are reasoning
models that refuse `temperature` and `max_tokens`; they get `max_completion_tokens` only.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
import openai

from torghut.errors import ReviewError, ReviewErrorCode, redact
from torghut.ports import ChatMessage, Completion
from torghut.trading.llm.retry import RetryableFailure, RetryPolicy, parse_retry_after
from torghut.trading.llm.stream import (
    ERROR_BODY_LIMIT,
    Closer,
    ReviewClocks,
    TransportErrors,
    complete_in_time,
    http_error,
    map_transport_error,
    mapped_errors,
    media_type,
    models_listed,
    read_answer,
    read_limited,
)

HTTPX2_ERRORS = TransportErrors(
    connect_timeouts=(httpx2.ConnectTimeout,),
    pool_timeouts=(httpx2.PoolTimeout,),
    other_timeouts=(httpx2.TimeoutException,),
    decoding=(httpx2.DecodingError,),
    remote_protocol=(httpx2.RemoteProtocolError,),
    every=(httpx2.HTTPError, httpx2.InvalidURL),
)

# Reasoning models: `max_completion_tokens`, and no `temperature` (they refuse both others).
_REASONING_MODEL = re.compile(r"^(gpt-5|o\d|codex)", re.IGNORECASE)


def is_reasoning_model(model: str) -> bool:
    return _REASONING_MODEL.match(model.rsplit("/", 1)[-1]) is not None


def sampling_parameters(model: str, temperature: float, max_tokens: int) -> dict[str, object]:
    """The length and sampling parameters `model`'s family accepts."""
    if is_reasoning_model(model):
        return {"max_completion_tokens": max_tokens}
    return {"temperature": temperature, "max_tokens": max_tokens}


@dataclass(frozen=True, slots=True)
class OpenAIConfig:
    api_key: str = field(repr=False)
    base_url: str | None = None
    model: str = "gpt-5.3-codex"
    temperature: float = 0.2
    max_tokens: int = 300
    timeout_seconds: float = 20.0
    connect_timeout_seconds: float = 3.0
    first_token_timeout_seconds: float = 15.0
    idle_timeout_seconds: float = 10.0
    max_response_bytes: int = 1_048_576
    max_retries: int = 1
    secrets: tuple[str, ...] = field(default=(), repr=False)


# The clocks of the exchange the current task is in, for the transport (the SDK sits between).
_CLOCKS: ContextVar[ReviewClocks | None] = ContextVar("torghut_openai_clocks", default=None)


class _ClockedTransport(httpx2.AsyncBaseTransport):
    """httpx2's transport under the review's clocks, reading non-2xx bodies itself."""

    def __init__(
        self,
        label: str,
        secrets: tuple[str, ...],
        closer: Closer,
        inner: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._inner = inner or httpx2.AsyncHTTPTransport()
        self._label = label
        self._secrets = secrets
        self._closer = closer

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        clocks = _CLOCKS.get()
        if clocks is None:  # only our own calls run on this client
            raise RuntimeError("an OpenAI request outside a review's clocks")
        label, secrets = self._label, self._secrets
        deadline, name = clocks.next_deadline()
        try:
            with mapped_errors(
                HTTPX2_ERRORS, status_received=False, label=label, clocks=clocks, secrets=secrets
            ):
                async with asyncio.timeout_at(deadline):
                    response = await self._inner.handle_async_request(request)
        except TimeoutError:
            raise clocks.expired(name) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        try:
            body = aiter(cast(httpx2.AsyncByteStream, response.stream))
            raw, cut = await read_limited(
                body,
                clocks,
                ERROR_BODY_LIMIT,
                HTTPX2_ERRORS,
                label=label,
                secrets=secrets,
                partial_ok=True,
            )
        finally:
            await self._closer.close(response.aclose)
        ctype = media_type(response.headers.get("content-type"))
        error = http_error(status, ctype, raw, label=label, secrets=secrets, cut=cut)
        if error.retryable:
            raise RetryableFailure(error, parse_retry_after(response.headers.get("retry-after")))
        raise error

    async def aclose(self) -> None:
        await self._inner.aclose()


class OpenAIProvider:
    """`ports.ReviewProvider` for the OpenAI API (or anything speaking it at `base_url`)."""

    label = "openai"

    def __init__(
        self,
        config: OpenAIConfig,
        client: openai.AsyncOpenAI | None = None,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """`client`: an SDK client to use as it is (its requests then bypass the clocked
        transport). `transport`: the network under the clocked transport (tests fault it)."""
        self._config = config
        secrets = {s for s in config.secrets if s}
        if config.api_key:
            secrets.add(config.api_key)
        self._secrets = tuple(secrets)
        self._closer = Closer()
        self._owns_client = client is None
        if client is None:
            clocked = _ClockedTransport(self.label, self._secrets, self._closer, transport)
            timeout = httpx2.Timeout(
                None, connect=config.connect_timeout_seconds, pool=config.connect_timeout_seconds
            )
            client = openai.AsyncOpenAI(
                api_key=config.api_key,
                base_url=config.base_url,
                max_retries=0,
                timeout=timeout,
                http_client=openai.DefaultAsyncHttpxClient(transport=clocked, timeout=timeout),
            )
        self._client = client
        self._policy = RetryPolicy(max_retries=config.max_retries)

    @property
    def name(self) -> str:
        return "openai"

    @property
    def model(self) -> str:
        return self._config.model

    @property
    def config(self) -> OpenAIConfig:
        return self._config

    def _parameters(self) -> dict[str, object]:
        cfg = self._config
        return {
            **sampling_parameters(cfg.model, cfg.temperature, cfg.max_tokens),
            "response_format": {"type": "json_object"},
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def request_body(self, messages: Sequence[ChatMessage]) -> dict[str, object]:
        return {
            "model": self._config.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            **self._parameters(),
        }

    def _clocks(self) -> ReviewClocks:
        cfg = self._config
        return ReviewClocks(
            total=cfg.timeout_seconds,
            connect=cfg.connect_timeout_seconds,
            first_token=cfg.first_token_timeout_seconds,
            idle=cfg.idle_timeout_seconds,
            now=asyncio.get_running_loop().time(),
        )

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        clocks = self._clocks()
        wire_messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        answered: list[tuple[Any, AsyncIterator[bytes]]] = []

        async def attempt(_: int) -> Completion:
            return await self._attempt(wire_messages, clocks, answered)

        async def release(response: Any) -> None:
            await self._closer.close(response.close)

        token = _CLOCKS.set(clocks)
        try:
            return await complete_in_time(
                attempt, clocks=clocks, policy=self._policy, answered=answered, release=release
            )
        finally:
            _CLOCKS.reset(token)

    async def _attempt(
        self,
        messages: list[dict[str, str]],
        clocks: ReviewClocks,
        answered: list[tuple[Any, AsyncIterator[bytes]]],
    ) -> Completion:
        cfg = self._config
        clocks.request_sent(asyncio.get_running_loop().time())
        manager = self._client.chat.completions.with_streaming_response.create(
            model=cfg.model,
            messages=cast(Any, messages),
            # Compressed bodies could expand past the byte cap in one read.
            extra_headers={"accept-encoding": "identity"},
            **cast(Any, self._parameters()),
        )
        try:
            # The transport holds this wait to the clocks and raises our errors itself.
            response = await manager.__aenter__()
        except ReviewError as failed:
            if failed.retryable:
                raise RetryableFailure(failed) from None
            raise
        except openai.OpenAIError as exc:
            mapped = self._map_error(exc, clocks)
            if mapped.retryable:
                raise RetryableFailure(mapped) from None
            raise mapped from None
        succeeded = False
        http = response.http_response
        chunks = http.aiter_raw()
        try:
            completion = await read_answer(
                http.status_code,
                media_type(http.headers.get("content-type")),
                media_type(http.headers.get("content-encoding")),
                chunks,
                clocks,
                HTTPX2_ERRORS,
                max_bytes=cfg.max_response_bytes,
                label=self.label,
                secrets=self._secrets,
            )
            succeeded = True
            answered.append((response, chunks))
            return completion
        finally:
            if not succeeded:
                await self._closer.close(response.close)

    def _map_error(self, exc: openai.OpenAIError, clocks: ReviewClocks) -> ReviewError:
        """SDK exceptions that did not come from our transport (the SDK's own checks)."""
        label, secrets = self.label, self._secrets
        cause = exc.__cause__
        if isinstance(cause, ReviewError):
            return cause
        if isinstance(exc, openai.APIStatusError):  # a client of the caller's, not ours
            try:
                raw = exc.response.content[:ERROR_BODY_LIMIT]
            except Exception:  # the body could not be read: the status says enough
                raw = b""
            ctype = media_type(exc.response.headers.get("content-type"))
            return http_error(exc.status_code, ctype, raw, label=label, secrets=secrets)
        if cause is not None and isinstance(cause, (*HTTPX2_ERRORS.every, OSError)):
            return map_transport_error(
                cause,
                HTTPX2_ERRORS,
                status_received=False,
                label=label,
                clocks=clocks,
                secrets=secrets,
            )
        if isinstance(exc, openai.APITimeoutError):
            return clocks.expired("connect")
        if isinstance(exc, openai.APIConnectionError):
            return ReviewError(
                ReviewErrorCode.CONNECT_ERROR,
                f"cannot reach {label}: {redact(str(exc), secrets, one_line=True)}",
                retryable=True,
            )
        return ReviewError(
            ReviewErrorCode.PROTOCOL_ERROR,
            f"{label} SDK failed: {type(exc).__name__}: {redact(str(exc), secrets, one_line=True)}",
        )

    async def served_models(self) -> list[str]:
        """The model ids the server lists (`GET {base}/models`), under the connect and
        first-token clocks. Raises `ReviewError` when they cannot be had."""
        clocks = self._clocks()
        label, secrets = self.label, self._secrets
        token = _CLOCKS.set(clocks)
        try:
            async with self._client.models.with_streaming_response.list(
                extra_headers={"accept-encoding": "identity"}
            ) as response:
                raw, cut = await read_limited(
                    response.http_response.aiter_raw(),
                    clocks,
                    ERROR_BODY_LIMIT * 16,
                    HTTPX2_ERRORS,
                    label=label,
                    secrets=secrets,
                    partial_ok=False,
                )
        except openai.OpenAIError as exc:
            raise self._map_error(exc, clocks) from None
        except RetryableFailure as failure:
            raise failure.error from None
        finally:
            _CLOCKS.reset(token)
        models = None if cut else models_listed(raw)
        if models is None:
            raise ReviewError(
                ReviewErrorCode.PROTOCOL_ERROR, f"{label} /models did not answer a model list"
            )
        return [redact(m, secrets, limit=None, one_line=True) for m in models]

    async def aclose(self) -> None:
        await self._closer.wait()
        if self._owns_client:
            await self._client.close()
