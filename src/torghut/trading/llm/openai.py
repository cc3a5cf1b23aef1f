"""The OpenAI review provider, through the official SDK (`openai.AsyncOpenAI`).

The SDK builds and sends the request (auth, headers, `OPENAI_BASE_URL`) and turns non-2xx
answers into its exceptions; the streamed body is then read raw, with the same reader, clocks
and byte cap as the Jangar provider, so both providers time and fail a review the same way.
The SDK never retries (`max_retries=0`): retries follow Torghut's own policy (`retry.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import openai

from torghut.errors import ReviewError, ReviewErrorCode, redact
from torghut.ports import ChatMessage, Completion
from torghut.trading.llm.jangar import (
    ERROR_BODY_LIMIT,
    TRANSPORT_ERRORS,
    ReviewClocks,
    http_error,
    map_transport_error,
    media_type,
    read_event_stream,
    read_json_completion,
    read_limited,
)
from torghut.trading.llm.retry import RetryableFailure, RetryPolicy, parse_retry_after, with_retries


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


class OpenAIProvider:
    """`ports.ReviewProvider` for the OpenAI API (or anything speaking it at `base_url`)."""

    label = "openai"

    def __init__(self, config: OpenAIConfig, client: openai.AsyncOpenAI | None = None) -> None:
        self._config = config
        self._owns_client = client is None
        self._client = client or openai.AsyncOpenAI(
            api_key=config.api_key,
            base_url=config.base_url,
            max_retries=0,
            timeout=openai.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
        )
        secrets = {s for s in config.secrets if s}
        if config.api_key:
            secrets.add(config.api_key)
        self._secrets = tuple(secrets)
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

    def request_body(self, messages: Sequence[ChatMessage]) -> dict[str, object]:
        cfg = self._config
        return {
            "model": cfg.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
            "response_format": {"type": "json_object"},
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        cfg = self._config
        loop = asyncio.get_running_loop()
        clocks = ReviewClocks(
            total=cfg.timeout_seconds,
            connect=cfg.connect_timeout_seconds,
            first_token=cfg.first_token_timeout_seconds,
            idle=cfg.idle_timeout_seconds,
            now=loop.time(),
        )
        wire_messages = [{"role": m["role"], "content": m["content"]} for m in messages]

        async def attempt(_: int) -> Completion:
            return await self._attempt(wire_messages, clocks)

        try:
            async with asyncio.timeout_at(clocks.total_deadline):
                return await with_retries(
                    attempt, policy=self._policy, deadline=clocks.total_deadline, clock=loop.time
                )
        except TimeoutError:
            raise clocks.expired("total") from None

    async def _attempt(self, messages: list[dict[str, str]], clocks: ReviewClocks) -> Completion:
        cfg = self._config
        loop = asyncio.get_running_loop()
        manager = self._client.chat.completions.with_streaming_response.create(
            model=cfg.model,
            messages=cast(Any, messages),
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            response_format={"type": "json_object"},
            stream=True,
            stream_options={"include_usage": True},
            # Compressed bodies could expand past the byte cap in one read.
            extra_headers={"accept-encoding": "identity"},
        )
        clocks.request_sent(loop.time())
        deadline, name = clocks.next_deadline()
        try:
            async with asyncio.timeout_at(deadline):
                response = await manager.__aenter__()
        except TimeoutError:
            raise clocks.expired(name) from None
        except (openai.OpenAIError, *TRANSPORT_ERRORS) as exc:  # type: ignore[misc]
            error = self._map_error(exc, clocks)
            if error.retryable:
                retry_after = None
                if isinstance(exc, openai.APIStatusError):
                    retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
                raise RetryableFailure(error, retry_after) from None
            raise error from None
        try:
            http = response.http_response
            ctype = media_type(http.headers.get("content-type"))
            encoding = media_type(http.headers.get("content-encoding"))
            if encoding not in ("", "identity"):
                raise self._protocol(f"sent a body with content-encoding {encoding!r}")
            chunks = http.aiter_raw()
            if ctype == "text/event-stream":
                return await read_event_stream(
                    chunks, clocks, max_bytes=cfg.max_response_bytes, label=self.label,
                    secrets=self._secrets,
                )
            if ctype == "application/json" or ctype.endswith("+json"):
                raw, more = await read_limited(
                    chunks, clocks, cfg.max_response_bytes, label=self.label,
                    secrets=self._secrets, partial_ok=False,
                )
                if more:
                    raise ReviewError(
                        ReviewErrorCode.RESPONSE_TOO_LARGE,
                        f"openai response passed {cfg.max_response_bytes} bytes; stopped reading",
                    )
                return read_json_completion(
                    raw, clocks, loop.time(), label=self.label, secrets=self._secrets
                )
            raise self._protocol(
                f"answered {http.status_code} with content type {ctype or '(none)'!r}"
            )
        finally:
            await response.close()

    def _protocol(self, text: str) -> ReviewError:
        return ReviewError(ReviewErrorCode.PROTOCOL_ERROR, f"{self.label} {text}")

    def _map_error(self, exc: BaseException, clocks: ReviewClocks) -> ReviewError:
        """The one mapping of SDK exceptions to review errors."""
        label, secrets = self.label, self._secrets
        if isinstance(exc, openai.APIStatusError):
            response = exc.response
            try:
                raw = response.content[:ERROR_BODY_LIMIT]
            except Exception:  # the SDK could not read the body: the status still says enough
                raw = b""
            ctype = media_type(response.headers.get("content-type"))
            return http_error(exc.status_code, ctype, raw, label=label, secrets=secrets)
        if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
            cause = exc.__cause__
            if isinstance(cause, TRANSPORT_ERRORS):
                return map_transport_error(
                    cause, status_received=False, label=label, clocks=clocks, secrets=secrets
                )
            if isinstance(exc, openai.APITimeoutError):
                return clocks.expired("connect")
            return ReviewError(
                ReviewErrorCode.CONNECT_ERROR,
                f"cannot reach {label}: {redact(str(exc), secrets)}",
                retryable=True,
            )
        if isinstance(exc, TRANSPORT_ERRORS):
            return map_transport_error(
                exc, status_received=False, label=label, clocks=clocks, secrets=secrets
            )
        return ReviewError(
            ReviewErrorCode.PROTOCOL_ERROR,
            f"{label} SDK failed: {type(exc).__name__}: {redact(str(exc), secrets)}",
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()
