"""What both review providers share: the clocks, the stream limits, the SSE reading loop, the
chunk accumulator, the quoting of a gateway's error text, and the mapping of an HTTP library's
exceptions to `ReviewError` (one context manager, fed the library's exception classes by each
provider, as httpx maps httpcore's errors in one place).

No HTTP library is imported here: a provider hands in an async iterator of raw body bytes and a
`TransportErrors` naming its library's exception classes. Every string that came from the peer
passes `errors.redact` (control characters, NUL and lone surrogates replaced, secrets removed,
then cut) before it lands in an error message.

The rule after `data: [DONE]`: the answer is complete at `[DONE]`. Nothing that follows it on
the wire is read for meaning (not a data event, not an `{"error": ...}` frame, not an
`event: error`); what follows is only drained, within `DRAIN_SECONDS` and `ERROR_BODY_LIMIT`
bytes, after the review's clocks have stopped, so the connection can be reused. Jangar sends
nothing after `[DONE]` (jangar/CONTRACT.md), so anything there is a proxy's or a broken peer's
doing, and an answer that arrived in time is never lost to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torghut.domain import Usage
from torghut.errors import ReviewError, ReviewErrorCode, redact, retryable_status
from torghut.ports import Completion
from torghut.trading.llm.retry import RetryPolicy, with_retries

# An error body is only read for its message: never more than this, whatever the peer sends.
ERROR_BODY_LIMIT = 64 * 1024
# After [DONE], what follows is drained this long at most (outside the review's clocks).
DRAIN_SECONDS = 0.05
# The longest model name or finish_reason kept from a peer.
SHORT_FIELD_LIMIT = 128


def loads(text: str | bytes) -> Any:
    """`json.loads` that fails with ValueError only: nesting deeper than the interpreter's
    recursion limit (`[[[[…`) is malformed input, not a crash."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


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
        elif name == "pool":
            text = f"connect timeout: no free pooled connection within {self.connect:g}s"
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
# Errors of an HTTP library


@dataclass(frozen=True, slots=True)
class TransportErrors:
    """One HTTP library's exception classes, sorted by what they mean for a review."""

    connect_timeouts: tuple[type[BaseException], ...]
    pool_timeouts: tuple[type[BaseException], ...]
    other_timeouts: tuple[type[BaseException], ...]
    decoding: tuple[type[BaseException], ...]
    remote_protocol: tuple[type[BaseException], ...]
    every: tuple[type[BaseException], ...]  # everything the library raises for a bad transfer


def _peer_spoke_garbage(exc: BaseException) -> bool:
    """The peer sent bytes that are not HTTP (a garbage status line, bad headers), as opposed
    to closing before it said anything. Both httpx and httpx2 parse HTTP/1.1 with h11, which
    raises its own error for the first case only; it rides in the exception chain."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if type(seen).__module__.split(".", 1)[0] == "h11":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def map_transport_error(
    exc: BaseException,
    kinds: TransportErrors,
    *,
    status_received: bool,
    label: str,
    clocks: ReviewClocks,
    secrets: Iterable[str],
) -> ReviewError:
    """One HTTP-library exception as a review error. Before a status line, a failure is a
    connection error and may be retried (unless the peer answered with garbage); after it, the
    body broke and nothing is retried."""
    detail = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), secrets, one_line=True)
    if isinstance(exc, kinds.pool_timeouts):
        return clocks.expired("pool")
    if isinstance(exc, kinds.connect_timeouts):
        return clocks.expired("connect")
    if isinstance(exc, kinds.other_timeouts):
        return clocks.expired("idle" if status_received else "first_token")
    if isinstance(exc, kinds.remote_protocol) and _peer_spoke_garbage(exc):
        return ReviewError(
            ReviewErrorCode.PROTOCOL_ERROR, f"{label} did not answer in HTTP: {detail}"
        )
    if not status_received:
        return ReviewError(
            ReviewErrorCode.CONNECT_ERROR, f"cannot reach {label}: {detail}", retryable=True
        )
    if isinstance(exc, kinds.decoding):
        return ReviewError(
            ReviewErrorCode.PROTOCOL_ERROR, f"{label} body cannot be decoded: {detail}"
        )
    return ReviewError(
        ReviewErrorCode.STREAM_INCOMPLETE,
        f"{label} connection broke before data: [DONE]: {detail}",
    )


@contextmanager
def mapped_errors(
    kinds: TransportErrors,
    *,
    status_received: bool,
    label: str,
    clocks: ReviewClocks,
    secrets: Iterable[str],
) -> Iterator[None]:
    """The one place a provider's HTTP library errors become `ReviewError`s (OSError too:
    sockets raise it under every library)."""
    try:
        yield
    except TimeoutError:
        raise  # an OSError too, but one of our clocks: the caller names it
    except (*kinds.every, OSError) as exc:  # type: ignore[misc]  # mypy: star in a tuple
        raise map_transport_error(
            exc,
            kinds,
            status_received=status_received,
            label=label,
            clocks=clocks,
            secrets=secrets,
        ) from None


# --------------------------------------------------------------------------------------------
# A gateway's error text


def describe_error_value(value: object, secrets: Iterable[str]) -> str:
    """`code: message` of a gateway's error object, redacted, on one line, cut. Keyed on
    `code`, never on `type` (Jangar's types are not stable)."""
    code: object = None
    message: object = value
    if isinstance(value, dict):
        code = value.get("code")
        message = value.get("message")
        if message is None:
            message = value
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False, default=str)
    quoted = redact(message, secrets, one_line=True)
    if code is None or code == "":
        return quoted
    code_text = code if isinstance(code, str) else json.dumps(code, default=str)
    return f"{redact(code_text, secrets, limit=80, one_line=True)}: {quoted}"


def gateway_error(value: object, label: str, secrets: Iterable[str]) -> ReviewError:
    return ReviewError(
        ReviewErrorCode.GATEWAY_ERROR,
        f"{label} reported an error: {describe_error_value(value, secrets)}",
    )


def _error_in_body(raw: bytes, content_type: str) -> object | None:
    """The gateway's own error object in a non-2xx body: Jangar sends SSE, others JSON."""
    text = raw.decode("utf-8", "replace")
    if content_type == "text/event-stream" or text.lstrip().startswith(("data:", ":", "event:")):
        from torghut.trading.llm.sse import SSEDecoder  # see read_event_stream

        try:
            decoder = SSEDecoder(max(len(raw), 1) + 1)
            events = decoder.feed(raw) + decoder.close()
        except ValueError:
            events = []
        for event in events:
            try:
                obj = loads(event.data)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("error") is not None:
                found: object = obj["error"]
                return found
    try:
        obj = loads(text)
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
    status: int,
    content_type: str,
    raw: bytes,
    *,
    label: str,
    secrets: Iterable[str],
    cut: bool = True,
) -> ReviewError:
    """A non-2xx answer. `raw` is at most `ERROR_BODY_LIMIT` bytes of its body; `cut` says it
    may have been cut there (or by a clock), so a secret split by the cut is dropped too."""
    secrets = tuple(secrets)
    error = _error_in_body(raw, content_type)
    if error is not None:
        detail = describe_error_value(error, secrets)
    else:
        snippet = redact(raw.decode("utf-8", "replace"), secrets, one_line=True, cut=cut)
        detail = snippet or "(empty body)"
    return ReviewError(
        ReviewErrorCode.HTTP_ERROR,
        f"HTTP {status} from {label}: {detail}",
        status=status,
        retryable=retryable_status(status),
    )


def protocol_error(label: str, text: str) -> ReviewError:
    return ReviewError(ReviewErrorCode.PROTOCOL_ERROR, f"{label} {text}")


def too_large(label: str, limit: int) -> ReviewError:
    return ReviewError(
        ReviewErrorCode.RESPONSE_TOO_LARGE,
        f"{label} response passed {limit} bytes; stopped reading",
    )


def quoted_header(value: str | None, secrets: Iterable[str]) -> str:
    """A response header as quoted in an error message (a peer wrote it)."""
    return repr(redact(value or "", secrets, limit=80, one_line=True) or "(none)")


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


# --------------------------------------------------------------------------------------------
# Reading a body under the clocks


async def next_chunk(
    chunks: AsyncIterator[bytes],
    clocks: ReviewClocks,
    kinds: TransportErrors,
    *,
    label: str,
    secrets: Iterable[str],
) -> bytes | None:
    """The next piece of the body, or None at its end; never waits past the clocks."""
    deadline, name = clocks.next_deadline()
    try:
        with mapped_errors(
            kinds, status_received=True, label=label, clocks=clocks, secrets=secrets
        ):
            async with asyncio.timeout_at(deadline):
                return await anext(chunks)
    except TimeoutError:
        raise clocks.expired(name) from None
    except StopAsyncIteration:
        return None


async def read_limited(
    chunks: AsyncIterator[bytes],
    clocks: ReviewClocks,
    limit: int,
    kinds: TransportErrors,
    *,
    label: str,
    secrets: Iterable[str],
    partial_ok: bool,
) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more. With `partial_ok` (error
    bodies, read only for their message) a clock or a broken connection ends the read quietly,
    and reports the body as cut."""
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await next_chunk(chunks, clocks, kinds, label=label, secrets=secrets)
        except ReviewError:
            if partial_ok:
                return b"".join(parts), True
            raise
        if chunk is None:
            return b"".join(parts), False
        size += len(chunk)
        if size > limit:
            parts.append(chunk[: len(chunk) - (size - limit)])
            return b"".join(parts), True
        parts.append(chunk)


async def complete_in_time(
    attempt: Callable[[int], Awaitable[Completion]],
    *,
    clocks: ReviewClocks,
    policy: RetryPolicy,
    answered: list[tuple[Any, AsyncIterator[bytes]]],
    release: Callable[[Any], Awaitable[None]],
) -> Completion:
    """One review for both providers: attempts (retried by `policy`) under the total clock,
    then the drain past [DONE]; every response that answered is released, whatever happens."""
    loop = asyncio.get_running_loop()
    try:
        try:
            # The outer guard is the total clock's last word, whatever happens inside.
            async with asyncio.timeout_at(clocks.total_deadline):
                completion = await with_retries(
                    attempt, policy=policy, deadline=clocks.total_deadline, clock=loop.time
                )
        except TimeoutError:
            raise clocks.expired("total") from None
        # The answer is complete at [DONE]: what follows is drained on its own short clock,
        # after the review's clocks, so an answer that came in time is never lost to it.
        await drain(answered[0][1])
        return completion
    finally:
        for response, _ in answered:
            await release(response)


async def drain(chunks: AsyncIterator[bytes], seconds: float = DRAIN_SECONDS) -> None:
    """Best effort, on its own short clock: read what little follows [DONE] so the connection
    can return to the pool. Nothing read here means anything, and nothing here raises."""
    drained = 0
    try:
        async with asyncio.timeout(seconds):
            while drained <= ERROR_BODY_LIMIT:
                drained += len(await anext(chunks))
    except (TimeoutError, StopAsyncIteration):
        pass
    except Exception:  # a broken connection after [DONE] costs only its reuse
        pass


class Closer:
    """Closes responses so that a cancellation cannot interrupt the close: an interrupted close
    leaves the pool believing the connection is still in use, for ever. Each close runs as its
    own task (tracked, so it is not collected early); the caller waits for it, and when the
    caller is cancelled the close still finishes. `wait()` lets `aclose()` finish them all."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self, aclose: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            # Closing a broken connection may fail: it is gone either way.
            with contextlib.suppress(Exception):
                await aclose()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


# --------------------------------------------------------------------------------------------
# The chat-completion chunks


def _usage(value: object, label: str) -> Usage:
    if not isinstance(value, dict):
        raise protocol_error(label, "sent a usage that is not an object")

    def count(key: str) -> int | None:
        n = value.get(key)
        return n if type(n) is int else None

    return Usage(count("prompt_tokens"), count("completion_tokens"), count("total_tokens"))


def answer_text(parts: list[str]) -> str:
    text = "".join(parts)
    # Jangar puts one "\n" before the answer: it is framing, not content.
    return text[1:] if text.startswith("\n") else text


def _short(value: object, secrets: tuple[str, ...]) -> str | None:
    """A short peer-written field (`model`, `finish_reason`) as kept: redacted and cut."""
    if type(value) is not str:
        return None
    return redact(value, secrets, limit=SHORT_FIELD_LIMIT, one_line=True)


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
        label = self.label
        try:
            obj = loads(data)
        except ValueError:
            quoted = redact(data, self.secrets, limit=80, one_line=True)
            raise protocol_error(label, f"sent a data event that is not JSON: {quoted}") from None
        if type(obj) is not dict:
            raise protocol_error(label, "sent a data event that is not a JSON object")
        error = obj.get("error")
        if error is not None:
            raise gateway_error(error, label, self.secrets)
        choices = obj.get("choices")
        if choices is None and obj.get("usage") is None:
            # Neither a chunk nor a usage report: not a chat-completion stream.
            raise protocol_error(label, "sent a data event with neither choices nor usage")
        if choices is not None:
            if type(choices) is not list:
                raise protocol_error(label, "sent a chunk whose choices is not a list")
            for choice in choices:
                if type(choice) is not dict:
                    raise protocol_error(label, "sent a choice that is not an object")
                delta = choice.get("delta")
                if delta is not None:
                    if type(delta) is not dict:
                        raise protocol_error(label, "sent a delta that is not an object")
                    content = delta.get("content")
                    if content is not None:
                        if type(content) is not str:
                            raise protocol_error(label, "sent a delta.content that is not a string")
                        self.content.append(content)
                    reasoning = delta.get("reasoning_content")
                    if reasoning is not None:
                        if type(reasoning) is not str:
                            raise protocol_error(
                                label, "sent a delta.reasoning_content that is not a string"
                            )
                        self.reasoning.append(reasoning)
                finish = choice.get("finish_reason")
                if finish is not None:
                    if type(finish) is not str:
                        raise protocol_error(label, "sent a finish_reason that is not a string")
                    self.finish_reason = finish
        usage = obj.get("usage")
        if usage is not None:
            self.usage = _usage(usage, label)
        model = obj.get("model")
        if type(model) is str:
            self.model = model

    def completion(self, clocks: ReviewClocks, now: float) -> Completion:
        # Answer text and reasoning stay whole here (the review is searched in them); the
        # engine redacts them before they are stored. Short fields are redacted now.
        return Completion(
            text=answer_text(self.content),
            reasoning="".join(self.reasoning),
            usage=self.usage,
            latency_ms=round((now - clocks.started) * 1000),
            ttft_ms=clocks.ttft_ms(),
            model=_short(self.model, self.secrets),
            finish_reason=_short(self.finish_reason, self.secrets),
            deadline=clocks.total_deadline,
        )


def _event_error_value(data: str) -> object:
    if not data:
        return "event: error with no data"
    try:
        obj = loads(data)
    except ValueError:
        return data
    if isinstance(obj, dict) and obj.get("error") is not None:
        return obj["error"]
    return obj


async def read_event_stream(
    chunks: AsyncIterator[bytes],
    clocks: ReviewClocks,
    kinds: TransportErrors,
    *,
    max_bytes: int,
    label: str,
    secrets: tuple[str, ...],
) -> Completion:
    """Read a chat-completion event stream to `data: [DONE]` under the clocks and byte cap.

    Events: unnamed (`message`) events carry the chunks; `event: error` fails the review, with
    or without data; other named events (`event: ping`, …) are ignored. Nothing after
    `[DONE]` is read (module docstring)."""
    # Imported with the first answer, not at start-up: the request leaves sooner.
    from torghut.trading.llm.sse import SSEDecoder, SSEEventTooLarge

    loop = asyncio.get_running_loop()
    decoder = SSEDecoder(max_bytes, report_empty_named=True)
    acc = ChunkAccumulator(label, secrets)
    received = 0
    while True:
        chunk = await next_chunk(chunks, clocks, kinds, label=label, secrets=secrets)
        if chunk is None:
            raise ReviewError(
                ReviewErrorCode.STREAM_INCOMPLETE,
                f"{label} stream ended after {received} bytes without data: [DONE]",
            )
        received += len(chunk)
        if received > max_bytes:
            raise too_large(label, max_bytes)
        try:
            events = decoder.feed(chunk)
        except SSEEventTooLarge:
            raise too_large(label, max_bytes) from None
        for event in events:
            name = event.event
            if name == "error":
                raise gateway_error(_event_error_value(event.data), label, secrets)
            if name != "message" or not event.data:
                continue
            data = event.data
            clocks.data_event(loop.time())
            if data == "[DONE]":
                return acc.completion(clocks, loop.time())
            acc.add(data)


def read_json_completion(
    raw: bytes, clocks: ReviewClocks, now: float, *, label: str, secrets: tuple[str, ...]
) -> Completion:
    """A non-streamed answer: one `chat.completion` object, or `{"error": …}`."""
    try:
        obj = loads(raw)
    except ValueError:
        raise protocol_error(label, "sent an application/json body that is not JSON") from None
    if type(obj) is not dict:
        raise protocol_error(label, "sent a JSON body that is not an object")
    if obj.get("error") is not None:
        raise gateway_error(obj["error"], label, secrets)
    choices = obj.get("choices")
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        raise protocol_error(label, "sent a chat.completion without choices")
    message = choices[0].get("message")
    if type(message) is not dict:
        raise protocol_error(label, "sent a choice without a message object")
    content = message.get("content")
    reasoning = message.get("reasoning_content")
    if content is not None and type(content) is not str:
        raise protocol_error(label, "sent a message.content that is not a string")
    if reasoning is not None and type(reasoning) is not str:
        raise protocol_error(label, "sent a message.reasoning_content that is not a string")
    usage = obj.get("usage")
    return Completion(
        text=answer_text([content or ""]),
        reasoning=reasoning or "",
        usage=_usage(usage, label) if usage is not None else None,
        latency_ms=round((now - clocks.started) * 1000),
        ttft_ms=round((now - clocks.sent_at) * 1000),
        model=_short(obj.get("model"), secrets),
        finish_reason=_short(choices[0].get("finish_reason"), secrets),
        deadline=clocks.total_deadline,
    )


async def read_answer(
    status: int,
    content_type: str,
    content_encoding: str,
    chunks: AsyncIterator[bytes],
    clocks: ReviewClocks,
    kinds: TransportErrors,
    *,
    max_bytes: int,
    label: str,
    secrets: tuple[str, ...],
) -> Completion:
    """A 2xx body as a completion: SSE or one JSON object, identity-encoded only."""
    if content_encoding not in ("", "identity"):
        # Compressed bodies could expand past the byte cap in one read.
        raise protocol_error(
            label, f"sent a body with content-encoding {quoted_header(content_encoding, secrets)}"
        )
    if content_type == "text/event-stream":
        return await read_event_stream(
            chunks, clocks, kinds, max_bytes=max_bytes, label=label, secrets=secrets
        )
    if content_type == "application/json" or content_type.endswith("+json"):
        raw, more = await read_limited(
            chunks, clocks, max_bytes, kinds, label=label, secrets=secrets, partial_ok=False
        )
        if more:
            raise too_large(label, max_bytes)
        now = asyncio.get_running_loop().time()
        return read_json_completion(raw, clocks, now, label=label, secrets=secrets)
    raise protocol_error(
        label, f"answered {status} with content type {quoted_header(content_type, secrets)}"
    )


def models_listed(raw: bytes) -> list[str] | None:
    """The model ids of a `GET {base}/models` answer (`{"object":"list","data":[{"id":…}]}`),
    or None when the body is not that shape."""
    try:
        obj = loads(raw)
    except ValueError:
        return None
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        return None
    return [item["id"] for item in data if isinstance(item, dict) and type(item.get("id")) is str]
