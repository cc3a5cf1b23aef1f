"""The Jangar review provider: one streamed chat completion over plain HTTP + SSE.

Jangar speaks an OpenAI-like route that only streams (see jangar/CONTRACT.md), so this module
sends the request itself on a shared `httpx.AsyncClient` and reads the event stream with
Torghut's own SSE decoder. Every wait on the network runs under the review's clocks (connect,
first token, idle, total: CONTRACT §2), computed here from deadlines rather than left to socket
read timeouts, because keep-alive comments keep a socket busy forever.

The stream reading, the clocks and the error mapping are shared with the OpenAI provider
(`torghut.trading.llm.openai`), which reads the same chunk format from the same kind of stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

import httpx
import httpx2

from torghut.domain import Usage
from torghut.errors import ReviewError, ReviewErrorCode, redact, retryable_status
from torghut.ports import ChatMessage, Completion
from torghut.trading.llm.retry import RetryableFailure, RetryPolicy, parse_retry_after, with_retries
from torghut.trading.llm.sse import SSEDecoder, SSEEventTooLarge

CHAT_PATH = "/openai/v1/chat/completions"
# An error body is only read for its message: never more than this, whatever the gateway sends.
ERROR_BODY_LIMIT = 64 * 1024
# After [DONE], wait this long at most for the body's end so the connection can be reused.
DRAIN_SECONDS = 0.05

_json_loads = json.loads


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


# --------------------------------------------------------------------------------------------
# Clocks


class ReviewClocks:
    """Deadline arithmetic of one review, on the event loop's clock (seconds).

    `total` runs from the start of the review, retries included; `first_token` from the moment
    the current request is sent to its first `data:` event; `idle` between `data:` events.
    Comments never touch these clocks: only `data_event()` does."""

    __slots__ = (
        "connect",
        "first_event_at",
        "first_token",
        "first_token_deadline",
        "idle",
        "last_event_at",
        "sent_at",
        "started",
        "total",
        "total_deadline",
    )

    def __init__(
        self, *, total: float, connect: float, first_token: float, idle: float, now: float
    ) -> None:
        self.total = total
        self.connect = connect
        self.first_token = first_token
        self.idle = idle
        self.started = now
        self.total_deadline = now + total
        self.sent_at = now
        self.first_token_deadline = now + first_token
        self.first_event_at: float | None = None
        self.last_event_at = now

    def request_sent(self, now: float) -> None:
        self.sent_at = now
        self.first_token_deadline = now + self.first_token
        self.first_event_at = None
        self.last_event_at = now

    def data_event(self, now: float) -> None:
        if self.first_event_at is None:
            self.first_event_at = now
        self.last_event_at = now

    def next_deadline(self) -> tuple[float, str]:
        """The earliest deadline now in force, and the clock it belongs to."""
        if self.first_event_at is None:
            deadline, name = self.first_token_deadline, "first_token"
        else:
            deadline, name = self.last_event_at + self.idle, "idle"
        if self.total_deadline <= deadline:
            return self.total_deadline, "total"
        return deadline, name

    def expired(self, name: str) -> ReviewError:
        # The message starts with the clock's name (CONTRACT §4) and names no other clock.
        if name == "connect":
            text = f"connect timeout: no connection within {self.connect:g}s"
        elif name == "first_token":
            text = f"first_token timeout: no data event within {self.first_token:g}s of the request"
        elif name == "idle":
            text = f"idle timeout: no data event for {self.idle:g}s"
        else:
            text = f"total timeout: the review took longer than {self.total:g}s"
        return ReviewError(ReviewErrorCode.TIMEOUT, text)

    def ttft_ms(self) -> int | None:
        if self.first_event_at is None:
            return None
        return round((self.first_event_at - self.sent_at) * 1000)


# --------------------------------------------------------------------------------------------
# Errors


_CONNECT_TIMEOUTS: tuple[type[Exception], ...] = (
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,
)
_OTHER_TIMEOUTS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
_DECODING: tuple[type[Exception], ...] = (httpx.DecodingError, httpx2.DecodingError)
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx2.HTTPError,
    httpx2.InvalidURL,
    OSError,
)


def map_transport_error(
    exc: BaseException,
    *,
    status_received: bool,
    label: str,
    clocks: ReviewClocks,
    secrets: Iterable[str],
) -> ReviewError:
    """The one mapping of HTTP-client exceptions (httpx, and httpx2 under the openai SDK) to
    review errors. Before a status line, a failure is a connection error and may be retried;
    after it, the body broke and nothing is retried."""
    detail = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), secrets)
    if isinstance(exc, _CONNECT_TIMEOUTS):
        return clocks.expired("connect")
    if isinstance(exc, _OTHER_TIMEOUTS):
        return clocks.expired("idle" if status_received else "first_token")
    if not status_received:
        return ReviewError(
            ReviewErrorCode.CONNECT_ERROR, f"cannot reach {label}: {detail}", retryable=True
        )
    if isinstance(exc, _DECODING):
        return ReviewError(
            ReviewErrorCode.PROTOCOL_ERROR, f"{label} body cannot be decoded: {detail}"
        )
    return ReviewError(
        ReviewErrorCode.STREAM_INCOMPLETE,
        f"{label} connection broke before data: [DONE]: {detail}",
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_error_value(value: object, secrets: Iterable[str]) -> str:
    """`code: message` of a gateway's error object, quoted cut and redacted. Keyed on `code`,
    never on `type` (Jangar's types are not stable)."""
    code: object = None
    message: object = value
    if isinstance(value, dict):
        code = value.get("code")
        message = value.get("message")
        if message is None:
            message = value
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False, default=str)
    quoted = redact(_one_line(message), secrets)
    if code is None or code == "":
        return quoted
    return f"{redact(str(code), secrets, limit=80)}: {quoted}"


def gateway_error(value: object, label: str, secrets: Iterable[str]) -> ReviewError:
    return ReviewError(
        ReviewErrorCode.GATEWAY_ERROR,
        f"{label} reported an error: {describe_error_value(value, secrets)}",
    )


def _error_in_body(raw: bytes, content_type: str) -> object | None:
    """The gateway's own error object in a non-2xx body: Jangar sends SSE, others JSON."""
    text = raw.decode("utf-8", "replace")
    if content_type == "text/event-stream" or text.lstrip().startswith(("data:", ":", "event:")):
        try:
            decoder = SSEDecoder(max(len(raw), 1) + 1)
            events = decoder.feed(raw) + decoder.close()
        except ValueError:
            events = []
        for event in events:
            try:
                obj = _json_loads(event.data)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("error") is not None:
                found: object = obj["error"]
                return found
    try:
        obj = _json_loads(text)
    except ValueError:
        return None
    if isinstance(obj, dict):
        if obj.get("error") is not None:
            error: object = obj["error"]
            return error
        if "code" in obj or "message" in obj:
            return obj
    return None


def http_error(
    status: int, content_type: str, raw: bytes, *, label: str, secrets: Iterable[str]
) -> ReviewError:
    secrets = tuple(secrets)
    error = _error_in_body(raw, content_type)
    if error is not None:
        detail = describe_error_value(error, secrets)
    else:
        snippet = _one_line(raw.decode("utf-8", "replace"))
        detail = redact(snippet, secrets) if snippet else "(empty body)"
    return ReviewError(
        ReviewErrorCode.HTTP_ERROR,
        f"HTTP {status} from {label}: {detail}",
        status=status,
        retryable=retryable_status(status),
    )


def _protocol(label: str, text: str) -> ReviewError:
    return ReviewError(ReviewErrorCode.PROTOCOL_ERROR, f"{label} {text}")


def _too_large(label: str, limit: int) -> ReviewError:
    return ReviewError(
        ReviewErrorCode.RESPONSE_TOO_LARGE,
        f"{label} response passed {limit} bytes; stopped reading",
    )


# --------------------------------------------------------------------------------------------
# Reading a body under the clocks


async def next_chunk(
    chunks: AsyncIterator[bytes],
    clocks: ReviewClocks,
    *,
    label: str,
    secrets: Iterable[str],
) -> bytes | None:
    """The next piece of the body, or None at its end; never waits past the clocks."""
    deadline, name = clocks.next_deadline()
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(chunks)
    except TimeoutError:
        raise clocks.expired(name) from None
    except StopAsyncIteration:
        return None
    except TRANSPORT_ERRORS as exc:
        raise map_transport_error(
            exc, status_received=True, label=label, clocks=clocks, secrets=secrets
        ) from None


async def read_limited(
    chunks: AsyncIterator[bytes],
    clocks: ReviewClocks,
    limit: int,
    *,
    label: str,
    secrets: Iterable[str],
    partial_ok: bool,
) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more. With `partial_ok` (error
    bodies, read only for their message) a clock or a broken connection ends the read quietly."""
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await next_chunk(chunks, clocks, label=label, secrets=secrets)
        except ReviewError:
            if partial_ok:
                return b"".join(parts), False
            raise
        if chunk is None:
            return b"".join(parts), False
        size += len(chunk)
        if size > limit:
            parts.append(chunk[: len(chunk) - (size - limit)])
            return b"".join(parts), True
        parts.append(chunk)


def _usage(value: object, label: str) -> Usage:
    if not isinstance(value, dict):
        raise _protocol(label, "sent a usage that is not an object")

    def count(key: str) -> int | None:
        n = value.get(key)
        return n if type(n) is int else None

    return Usage(count("prompt_tokens"), count("completion_tokens"), count("total_tokens"))


def _answer_text(parts: list[str]) -> str:
    text = "".join(parts)
    # Jangar puts one "\n" before the answer: it is framing, not content.
    return text[1:] if text.startswith("\n") else text


class ChunkAccumulator:
    """Folds `chat.completion.chunk` objects into one answer, checking their shape."""

    __slots__ = ("content", "finish_reason", "label", "model", "reasoning", "secrets", "usage")

    def __init__(self, label: str, secrets: tuple[str, ...]) -> None:
        self.label = label
        self.secrets = secrets
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.usage: Usage | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None

    def add(self, data: str) -> None:
        try:
            obj = _json_loads(data)
        except ValueError:
            quoted = redact(_one_line(data), self.secrets, limit=80)
            raise _protocol(self.label, f"sent a data event that is not JSON: {quoted}") from None
        if type(obj) is not dict:
            raise _protocol(self.label, "sent a data event that is not a JSON object")
        error = obj.get("error")
        if error is not None:
            raise gateway_error(error, self.label, self.secrets)
        choices = obj.get("choices")
        if choices is None and obj.get("usage") is None:
            # Neither a chunk nor a usage report: not a chat-completion stream.
            raise _protocol(self.label, "sent a data event with neither choices nor usage")
        if choices is not None:
            if type(choices) is not list:
                raise _protocol(self.label, "sent a chunk whose choices is not a list")
            for choice in choices:
                if type(choice) is not dict:
                    raise _protocol(self.label, "sent a choice that is not an object")
                delta = choice.get("delta")
                if delta is not None:
                    if type(delta) is not dict:
                        raise _protocol(self.label, "sent a delta that is not an object")
                    content = delta.get("content")
                    if content is not None:
                        if type(content) is not str:
                            raise _protocol(self.label, "sent a delta.content that is not a string")
                        self.content.append(content)
                    reasoning = delta.get("reasoning_content")
                    if reasoning is not None:
                        if type(reasoning) is not str:
                            raise _protocol(
                                self.label, "sent a delta.reasoning_content that is not a string"
                            )
                        self.reasoning.append(reasoning)
                finish = choice.get("finish_reason")
                if finish is not None:
                    if type(finish) is not str:
                        raise _protocol(self.label, "sent a finish_reason that is not a string")
                    self.finish_reason = finish
        usage = obj.get("usage")
        if usage is not None:
            self.usage = _usage(usage, self.label)
        model = obj.get("model")
        if type(model) is str:
            self.model = model

    def completion(self, clocks: ReviewClocks, now: float) -> Completion:
        return Completion(
            text=_answer_text(self.content),
            reasoning="".join(self.reasoning),
            usage=self.usage,
            latency_ms=round((now - clocks.started) * 1000),
            ttft_ms=clocks.ttft_ms(),
            model=self.model,
            finish_reason=self.finish_reason,
        )


async def read_event_stream(
    chunks: AsyncIterator[bytes],
    clocks: ReviewClocks,
    *,
    max_bytes: int,
    label: str,
    secrets: tuple[str, ...],
) -> Completion:
    """Read a chat-completion event stream to `data: [DONE]` under the clocks and byte cap."""
    loop = asyncio.get_running_loop()
    decoder = SSEDecoder(max_bytes)
    acc = ChunkAccumulator(label, secrets)
    received = 0
    done = False
    while not done:
        chunk = await next_chunk(chunks, clocks, label=label, secrets=secrets)
        if chunk is None:
            break
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(label, max_bytes)
        try:
            events = decoder.feed(chunk)
        except SSEEventTooLarge:
            raise _too_large(label, max_bytes) from None
        if "error" in decoder.dropped_event_types:
            raise gateway_error("event: error with no data", label, secrets)
        for event in events:
            data = event.data
            if event.event == "error":
                raise gateway_error(_event_error_value(data), label, secrets)
            if not data:
                continue
            clocks.data_event(loop.time())
            if data == "[DONE]":
                done = True
                break
            acc.add(data)
    if not done:
        raise ReviewError(
            ReviewErrorCode.STREAM_INCOMPLETE,
            f"{label} stream ended after {received} bytes without data: [DONE]",
        )
    completion = acc.completion(clocks, loop.time())
    await _drain(chunks, clocks)
    return completion


def _event_error_value(data: str) -> object:
    try:
        obj = _json_loads(data)
    except ValueError:
        return data or "event: error"
    if isinstance(obj, dict) and obj.get("error") is not None:
        return obj["error"]
    return obj


async def _drain(chunks: AsyncIterator[bytes], clocks: ReviewClocks) -> None:
    """Best effort: read what little follows [DONE] so the connection returns to the pool.
    Anything odd here is ignored: the answer is already complete."""
    loop = asyncio.get_running_loop()
    deadline = min(loop.time() + DRAIN_SECONDS, clocks.total_deadline)
    drained = 0
    try:
        async with asyncio.timeout_at(deadline):
            while drained <= ERROR_BODY_LIMIT:
                drained += len(await anext(chunks))
    except (TimeoutError, StopAsyncIteration):
        pass
    except TRANSPORT_ERRORS:
        pass


def read_json_completion(
    raw: bytes, clocks: ReviewClocks, now: float, *, label: str, secrets: tuple[str, ...]
) -> Completion:
    """A non-streamed answer: one `chat.completion` object, or `{"error": …}`."""
    try:
        obj = _json_loads(raw)
    except ValueError:
        raise _protocol(label, "sent an application/json body that is not JSON") from None
    if type(obj) is not dict:
        raise _protocol(label, "sent a JSON body that is not an object")
    if obj.get("error") is not None:
        raise gateway_error(obj["error"], label, secrets)
    choices = obj.get("choices")
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        raise _protocol(label, "sent a chat.completion without choices")
    message = choices[0].get("message")
    if type(message) is not dict:
        raise _protocol(label, "sent a choice without a message object")
    content = message.get("content")
    reasoning = message.get("reasoning_content")
    if content is not None and type(content) is not str:
        raise _protocol(label, "sent a message.content that is not a string")
    if reasoning is not None and type(reasoning) is not str:
        raise _protocol(label, "sent a message.reasoning_content that is not a string")
    finish = choices[0].get("finish_reason")
    usage = obj.get("usage")
    model = obj.get("model")
    return Completion(
        text=_answer_text([content or ""]),
        reasoning=reasoning or "",
        usage=_usage(usage, label) if usage is not None else None,
        latency_ms=round((now - clocks.started) * 1000),
        ttft_ms=round((now - clocks.sent_at) * 1000),
        model=model if type(model) is str else None,
        finish_reason=finish if type(finish) is str else None,
    )


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


# --------------------------------------------------------------------------------------------
# The provider


class JangarProvider:
    """`ports.ReviewProvider` for Jangar. One `httpx.AsyncClient` serves every review; the
    provider closes it in `aclose()` only when it created it."""

    label = "jangar"

    def __init__(self, config: JangarConfig, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._owns_client = client is None
        self._timeout = httpx.Timeout(
            connect=config.connect_timeout_seconds, read=None, write=None, pool=None
        )
        # Our own clocks bound every wait; socket read timeouts would only add a second,
        # weaker notion of time (keep-alives reset them).
        self._client = client or httpx.AsyncClient(timeout=self._timeout)
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
        content = json.dumps(
            self.request_body(messages), ensure_ascii=False, separators=(",", ":")
        ).encode()

        async def attempt(_: int) -> Completion:
            return await self._attempt(content, clocks)

        try:
            # The outer guard is the total clock's last word, whatever happens inside.
            async with asyncio.timeout_at(clocks.total_deadline):
                return await with_retries(
                    attempt, policy=self._policy, deadline=clocks.total_deadline, clock=loop.time
                )
        except TimeoutError:
            raise clocks.expired("total") from None

    async def _attempt(self, content: bytes, clocks: ReviewClocks) -> Completion:
        loop = asyncio.get_running_loop()
        label = self.label
        request = self._client.build_request(
            "POST", self._url, content=content, headers=self._headers, timeout=self._timeout
        )
        clocks.request_sent(loop.time())
        deadline, name = clocks.next_deadline()
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.send(request, stream=True)
        except TimeoutError:
            raise clocks.expired(name) from None
        except TRANSPORT_ERRORS as exc:
            error = map_transport_error(
                exc, status_received=False, label=label, clocks=clocks, secrets=self._secrets
            )
            if error.retryable:
                raise RetryableFailure(error) from None
            raise error from None
        try:
            return await self._read(response, clocks)
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response, clocks: ReviewClocks) -> Completion:
        label = self.label
        status = response.status_code
        ctype = media_type(response.headers.get("content-type"))
        chunks = response.aiter_raw()
        if not 200 <= status < 300:
            raw, _ = await read_limited(
                chunks, clocks, ERROR_BODY_LIMIT, label=label, secrets=self._secrets,
                partial_ok=True,
            )
            error = http_error(status, ctype, raw, label=label, secrets=self._secrets)
            if error.retryable:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                raise RetryableFailure(error, retry_after)
            raise error
        encoding = media_type(response.headers.get("content-encoding"))
        if encoding not in ("", "identity"):
            raise _protocol(label, f"sent a body with content-encoding {encoding!r}")
        if ctype == "text/event-stream":
            return await read_event_stream(
                chunks, clocks, max_bytes=self._config.max_response_bytes, label=label,
                secrets=self._secrets,
            )
        if ctype == "application/json" or ctype.endswith("+json"):
            raw, more = await read_limited(
                chunks, clocks, self._config.max_response_bytes, label=label,
                secrets=self._secrets, partial_ok=False,
            )
            if more:
                raise _too_large(label, self._config.max_response_bytes)
            now = asyncio.get_running_loop().time()
            return read_json_completion(raw, clocks, now, label=label, secrets=self._secrets)
        raise _protocol(label, f"answered {status} with content type {ctype or '(none)'!r}")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
