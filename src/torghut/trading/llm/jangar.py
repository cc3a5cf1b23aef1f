"""The Jangar review provider: one streamed chat completion over plain HTTP + SSE, on httpx.

Jangar speaks an OpenAI-like route that only streams (see jangar/CONTRACT.md), so this module
sends the request itself on a shared `httpx.AsyncClient` and reads the event stream with
Torghut's own SSE decoder. Every wait on the network runs under the review's clocks (connect,
first token, idle, total: CONTRACT §2), computed from deadlines rather than left to socket
read timeouts, because keep-alive comments keep a socket busy forever.

What the OpenAI provider shares with this one (clocks, stream reading, chunks, error text) is
in `stream.py`; the httpx errors are mapped there too, from `HTTPX_ERRORS`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from urllib.request import getproxies

import httpx

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
    mapped_errors,
    media_type,
    models_listed,
    read_answer,
    read_limited,
)

CHAT_PATH = "/openai/v1/chat/completions"
MODELS_PATH = "/openai/v1/models"


@dataclass(frozen=True, slots=True)
class JangarConfig:
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    model: str = "gpt-5.3-codex"
    timeout_seconds: float = 20.0
    connect_timeout_seconds: float = 3.0
    first_token_timeout_seconds: float = 15.0
    idle_timeout_seconds: float = 10.0
    max_response_bytes: int = 1_048_576
    max_retries: int = 1
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))


HTTPX_ERRORS = TransportErrors(
    connect_timeouts=(httpx.ConnectTimeout,),
    pool_timeouts=(httpx.PoolTimeout,),
    other_timeouts=(httpx.TimeoutException,),
    decoding=(httpx.DecodingError,),
    remote_protocol=(httpx.RemoteProtocolError,),
    every=(httpx.HTTPError, httpx.InvalidURL),
)


def _own_client(base_url: str, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The provider's client. httpx loads the whole CA bundle into a TLS context when a client
    is made (30-50 ms, a sixth of `llm review`'s start-up), whether or not TLS is ever used.
    Jangar at a plain http:// URL, with no proxy in the environment, never uses it: no
    redirect is followed and every request goes to that URL. So that client gets a context
    that loads nothing; it still verifies (fails closed) were it ever used. https://, or a
    proxy (which may itself be https), keeps httpx's default."""
    if base_url[:7].lower() == "http://" and not getproxies():
        unused = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return httpx.AsyncClient(timeout=timeout, verify=unused)
    return httpx.AsyncClient(timeout=timeout)


# --------------------------------------------------------------------------------------------
# The provider


class JangarProvider:
    """`ports.ReviewProvider` for Jangar. One `httpx.AsyncClient` serves every review; the
    provider closes it in `aclose()` only when it created it."""

    label = "jangar"

    def __init__(self, config: JangarConfig, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._owns_client = client is None
        # Our own clocks bound every wait; socket read timeouts would only add a second,
        # weaker notion of time (keep-alives reset them). The pool has its own timeout, so an
        # exhausted pool is named as such instead of showing as a first_token timeout.
        self._timeout = httpx.Timeout(
            connect=config.connect_timeout_seconds,
            read=None,
            write=None,
            pool=config.connect_timeout_seconds,
        )
        self._client = client or _own_client(config.base_url, self._timeout)
        self._url = f"{config.base_url}{CHAT_PATH}"
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            # Compressed bodies could expand past the byte cap in one read.
            "accept-encoding": "identity",
            # Newer Jangar routes this to its stateless trade-review lane; older ones ignore it.
            "x-trade-execution": "torghut",
        }
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._headers = headers
        secrets = {s for s in config.secrets if s}
        if config.api_key:
            secrets.add(config.api_key)
        self._secrets = tuple(secrets)
        self._policy = RetryPolicy(max_retries=config.max_retries)
        self._closer = Closer()

    @property
    def name(self) -> str:
        return "jangar"

    @property
    def model(self) -> str:
        return self._config.model

    @property
    def config(self) -> JangarConfig:
        return self._config

    def request_body(self, messages: Sequence[ChatMessage]) -> dict[str, object]:
        return {
            "model": self._config.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True, "include_plan": False},
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
        content = json.dumps(
            self.request_body(messages), ensure_ascii=False, separators=(",", ":")
        ).encode()
        # The response whose answer came through, with its body iterator (drained, then closed).
        answered: list[tuple[httpx.Response, AsyncIterator[bytes]]] = []

        async def attempt(_: int) -> Completion:
            return await self._attempt(content, clocks, answered)

        async def release(response: httpx.Response) -> None:
            await self._closer.close(response.aclose)

        return await complete_in_time(
            attempt, clocks=clocks, policy=self._policy, answered=answered, release=release
        )

    async def _attempt(
        self,
        content: bytes,
        clocks: ReviewClocks,
        answered: list[tuple[httpx.Response, AsyncIterator[bytes]]],
    ) -> Completion:
        loop = asyncio.get_running_loop()
        request = self._client.build_request(
            "POST", self._url, content=content, headers=self._headers, timeout=self._timeout
        )
        clocks.request_sent(loop.time())
        deadline, name = clocks.next_deadline()
        try:
            with mapped_errors(
                HTTPX_ERRORS,
                status_received=False,
                label=self.label,
                clocks=clocks,
                secrets=self._secrets,
            ):
                async with asyncio.timeout_at(deadline):
                    response = await self._client.send(request, stream=True)
        except TimeoutError:
            raise clocks.expired(name) from None
        except ReviewError as error:
            if error.retryable:
                raise RetryableFailure(error) from None
            raise
        succeeded = False
        chunks = response.aiter_raw()
        try:
            completion = await self._read(response, chunks, clocks)
            succeeded = True
            answered.append((response, chunks))
            return completion
        finally:
            if not succeeded:
                await self._closer.close(response.aclose)

    async def _read(
        self, response: httpx.Response, chunks: AsyncIterator[bytes], clocks: ReviewClocks
    ) -> Completion:
        label, secrets = self.label, self._secrets
        status = response.status_code
        ctype = media_type(response.headers.get("content-type"))
        if not 200 <= status < 300:
            raw, cut = await read_limited(
                chunks,
                clocks,
                ERROR_BODY_LIMIT,
                HTTPX_ERRORS,
                label=label,
                secrets=secrets,
                partial_ok=True,
            )
            error = http_error(status, ctype, raw, label=label, secrets=secrets, cut=cut)
            if error.retryable:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                raise RetryableFailure(error, retry_after)
            raise error
        return await read_answer(
            status,
            ctype,
            media_type(response.headers.get("content-encoding")),
            chunks,
            clocks,
            HTTPX_ERRORS,
            max_bytes=self._config.max_response_bytes,
            label=label,
            secrets=secrets,
        )

    async def served_models(self) -> list[str]:
        """The model ids Jangar lists (`GET /openai/v1/models`), under the connect and
        first-token clocks. Raises `ReviewError` when they cannot be had."""
        clocks = self._clocks()
        label, secrets = self.label, self._secrets
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        headers["accept"] = "application/json"
        deadline, name = clocks.next_deadline()
        try:
            with mapped_errors(
                HTTPX_ERRORS, status_received=False, label=label, clocks=clocks, secrets=secrets
            ):
                async with asyncio.timeout_at(deadline):
                    response = await self._client.send(
                        self._client.build_request(
                            "GET",
                            f"{self._config.base_url}{MODELS_PATH}",
                            headers=headers,
                            timeout=self._timeout,
                        ),
                        stream=True,
                    )
        except TimeoutError:
            raise clocks.expired(name) from None
        try:
            raw, cut = await read_limited(
                response.aiter_raw(),
                clocks,
                ERROR_BODY_LIMIT * 16,
                HTTPX_ERRORS,
                label=label,
                secrets=secrets,
                partial_ok=False,
            )
            ctype = media_type(response.headers.get("content-type"))
            if not 200 <= response.status_code < 300:
                raise http_error(
                    response.status_code, ctype, raw, label=label, secrets=secrets, cut=cut
                )
            models = None if cut else models_listed(raw)
            if models is None:
                raise ReviewError(
                    ReviewErrorCode.PROTOCOL_ERROR,
                    f"{label} {MODELS_PATH} did not answer a model list",
                )
            return [redact(m, secrets, limit=None, one_line=True) for m in models]
        finally:
            await self._closer.close(response.aclose)

    async def aclose(self) -> None:
        await self._closer.wait()
        if self._owns_client:
            await self._client.aclose()
