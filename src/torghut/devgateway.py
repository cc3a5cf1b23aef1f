"""A local gateway that speaks Jangar's chat-completions contract (shared/jangar/CONTRACT.md).

It exists so that development, tests and `torghut demo` can exercise the real client over real
sockets without a cluster: same routes, same SSE framing, same pre-stream error bodies, the same
quirks in `delta.content` (leading newline, rate-limit block), plus injectable faults.

The answer comes from a small deterministic "reviewer" that reads the review request JSON out of
the last user message. Nothing here is shared with the client (`torghut.trading.llm`): the
gateway only produces bytes, so a parsing bug on one side cannot hide one on the other.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import json
import math
import os
import random
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NoReturn

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "FAULTS",
    "REVIEWERS",
    "DevGateway",
    "DevGatewayConfig",
    "Oracle",
    "build_parser",
    "config_from_args",
    "create_app",
    "main",
    "review_answer",
    "run",
]

DEFAULT_MODEL = "gpt-5.3-codex"
FAULTS: tuple[str, ...] = (
    "error-frame",
    "truncate",
    "slow",
    "keepalive-forever",
    "http-500",
    "garbage",
)

REVIEWERS: tuple[str, ...] = ("rules", "random", "oracle")

KEEPALIVE = b": keepalive\n\n"
DONE = b"data: [DONE]\n\n"
# Piece lengths used to cut the answer into content deltas; irregular on purpose, like the
# token-sized pieces in the recorded streams, so that JSON tokens straddle delta boundaries.
_PIECE_LENGTHS = (5, 11, 16, 7, 13, 9, 17, 6, 12)
_REASONING_TOKENS = 64
_SLOW_BYTE_SECONDS = 1.0

_SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
}


@dataclass(frozen=True)
class DevGatewayConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port
    model: str = DEFAULT_MODEL
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    latency_seconds: float = 0.0
    keepalive_seconds: float = 5.0
    fault: str | None = None
    fault_rate: float = 1.0
    seed: int = 0
    veto_notional: float = 50_000.0
    adjust_exposure_pct: float = 0.2
    include_rate_limit_block: bool = True
    # Who answers: `rules` (notional and exposure thresholds above), `random` (vetoes a seeded
    # share `veto_rate` of decisions, the same ones for the same seed), `oracle` (reads
    # `oracle_signals` and vetoes exactly the decisions whose forward return over
    # `oracle_horizon_seconds`, signed by side and net of `oracle_cost_bps`, is negative).
    reviewer: str = "rules"
    veto_rate: float = 0.2
    oracle_signals: str | None = None
    oracle_horizon_seconds: float = 1800.0
    oracle_cost_bps: float = 2.0

    def __post_init__(self) -> None:
        if self.reviewer not in REVIEWERS:
            raise ValueError(
                f"reviewer must be one of {', '.join(REVIEWERS)} (got {self.reviewer!r})"
            )
        if not 0.0 <= self.veto_rate <= 1.0:
            raise ValueError(f"veto_rate must be between 0 and 1 (got {self.veto_rate})")
        if self.reviewer == "oracle" and not self.oracle_signals:
            raise ValueError("the oracle reviewer needs a signals file (--oracle-signals)")
        if self.oracle_horizon_seconds <= 0:
            raise ValueError("oracle_horizon_seconds must be > 0")
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)} (got {self.fault!r})")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1 (got {self.fault_rate})")
        if self.latency_seconds < 0:
            raise ValueError(f"latency_seconds must be >= 0 (got {self.latency_seconds})")
        if self.keepalive_seconds <= 0:
            raise ValueError(f"keepalive_seconds must be > 0 (got {self.keepalive_seconds})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535 (got {self.port})")
        if not self.model:
            raise ValueError("model must not be empty")
        # The served model is always listed, whatever `models` says, so a config that only
        # changes `model` stays coherent.
        if self.model not in self.models:
            object.__setattr__(self, "models", (self.model, *self.models))


# --------------------------------------------------------------------------------------------
# The deterministic reviewer


def _num(value: object) -> float | None:
    """A finite number from a JSON value; decisions may carry Decimals serialized as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _find_request_object(text: str) -> dict[str, Any] | None:
    """The first JSON object embedded in `text` (prompt prose may surround it)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    return None


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _last_user_text(messages: Sequence[object]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message.get("content"))
    return ""


def _answer(
    verdict: str,
    confidence: float,
    rationale: str,
    risk_flags: list[str],
    *,
    adjusted_qty: int | None = None,
    adjusted_order_type: str | None = None,
    limit_price: float | None = None,
) -> dict[str, Any]:
    return {
        "verdict": verdict,
        "confidence": confidence,
        "adjusted_qty": adjusted_qty,
        "adjusted_order_type": adjusted_order_type,
        "limit_price": limit_price,
        "rationale": rationale,
        "risk_flags": risk_flags,
    }


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Oracle:
    """Knows every price of a signal file: the perfect reviewer for testing an evaluation.
    Its own small reader, not the service's: an evaluation bug must not agree with itself."""

    def __init__(self, path: str, horizon_seconds: float, cost_bps: float) -> None:
        self.horizon = timedelta(seconds=horizon_seconds)
        self.cost_bps = cost_bps
        points: dict[str, dict[datetime, float]] = {}
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(row, dict):
                    continue
                moment, price = _parse_time(row.get("event_ts")), _num(row.get("price"))
                symbol = row.get("symbol")
                if moment and price and price > 0 and isinstance(symbol, str):
                    points.setdefault(symbol.strip().upper(), {})[moment] = price
        self._times = {s: sorted(p) for s, p in points.items()}
        self._prices = {s: [points[s][t] for t in self._times[s]] for s in points}

    def forward_bps(self, symbol: str, action: str, at: datetime) -> float | None:
        times = self._times.get(symbol.upper())
        if not times:
            return None
        i = bisect.bisect_right(times, at)
        j = bisect.bisect_left(times, at + self.horizon)
        if i == 0 or j >= len(times):
            return None
        entry, later = self._prices[symbol.upper()][i - 1], self._prices[symbol.upper()][j]
        side = 1.0 if action == "buy" else -1.0
        return side * (later / entry - 1.0) * 1e4 - self.cost_bps


def _uniform(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by the seed and the decision: the same decisions are vetoed
    whatever order the requests arrive in."""
    digest = hashlib.sha256(json.dumps([seed, *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _evaluation_answer(
    decision: dict[str, Any], config: DevGatewayConfig, oracle: Oracle | None
) -> tuple[dict[str, Any], str]:
    symbol, action = str(decision.get("symbol")), str(decision.get("action"))
    at = _parse_time(decision.get("event_ts"))
    if config.reviewer == "random":
        draw = _uniform(config.seed, symbol, action, decision.get("event_ts"))
        if draw < config.veto_rate:
            return _answer("veto", 0.6, "random veto", ["random"]), f"Draw {draw:.3f}: veto."
        return _answer("approve", 0.6, "random approve", []), f"Draw {draw:.3f}: approve."
    forward = oracle.forward_bps(symbol, action, at) if oracle and at else None
    if forward is not None and forward < 0:
        return (
            _answer("veto", 0.99, "loses at the horizon", ["oracle"]),
            f"Forward {forward:+.1f} bps.",
        )
    note = "no forward price" if forward is None else f"forward {forward:+.1f} bps"
    return _answer("approve", 0.99 if forward is not None else 0.5, note, []), note


def review_answer(
    text: str, config: DevGatewayConfig, oracle: Oracle | None = None
) -> tuple[dict[str, Any], str]:
    """The review for the request embedded in `text`, and a one-line reasoning summary."""
    request = _find_request_object(text)
    if request is None:
        return _answer("approve", 0.3, "no decision found", []), "No decision in the request."
    # Tolerate a bare decision object as well as the full {decision, portfolio, policy} request.
    decision = _dict(request.get("decision")) if "decision" in request else request
    if config.reviewer != "rules":
        return _evaluation_answer(decision, config, oracle)
    portfolio = _dict(request.get("portfolio"))
    policy = _dict(request.get("policy"))
    qty = _num(decision.get("qty"))
    price = _num(_dict(decision.get("params")).get("price"))
    if price is None:
        price = _num(decision.get("limit_price"))
    if qty is None or qty <= 0 or price is None or price <= 0:
        return _answer("approve", 0.3, "no decision found", []), "No usable qty and price."

    notional = qty * price
    summary = f"{qty:g} × ${price:,.2f} ≈ ${notional:,.2f} vs ${config.veto_notional:,.0f} cap."
    if notional > config.veto_notional:
        return _answer("veto", 0.9, "notional above limit", ["max_notional"]), summary

    equity = _num(portfolio.get("equity"))
    if equity is not None and equity > 0:
        symbol = decision.get("symbol")
        existing = 0.0
        positions = portfolio.get("positions")
        for position in positions if isinstance(positions, list) else []:
            if isinstance(position, dict) and position.get("symbol") == symbol:
                existing += _num(position.get("market_value")) or 0.0
        exposure = (existing + notional) / equity
        summary += f" Exposure after fill {exposure:.1%} of equity."
        if exposure > config.adjust_exposure_pct:
            multiplier = _num(policy.get("min_qty_multiplier"))
            if multiplier is None or multiplier <= 0:
                multiplier = 0.5
            order_type = decision.get("order_type")
            return (
                _answer(
                    "adjust",
                    0.75,
                    "exposure above limit",
                    ["exposure"],
                    adjusted_qty=max(1, math.floor(qty * multiplier)),
                    adjusted_order_type=order_type if isinstance(order_type, str) else None,
                    limit_price=_num(decision.get("limit_price")),
                ),
                summary,
            )
    return _answer("approve", 0.8, "within limits", []), summary


# --------------------------------------------------------------------------------------------
# Wire formatting


def _compact(obj: object) -> str:
    # Jangar serializes like JSON.stringify: compact, non-ASCII left as is.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _event(obj: object) -> bytes:
    return f"data: {_compact(obj)}\n\n".encode()


def _error_body(message: str, type_: str, code: str) -> bytes:
    return _event({"error": {"message": message, "type": type_, "code": code}}) + DONE


def _error_response(status: int, message: str, type_: str, code: str) -> Response:
    # Jangar's pre-stream errors are SSE too: one error event, then [DONE].
    return Response(
        _error_body(message, type_, code),
        status_code=status,
        headers={"content-type": "text/event-stream", "cache-control": "no-cache"},
    )


def _split(text: str) -> list[str]:
    pieces: list[str] = []
    pos = 0
    index = 0
    while pos < len(text):
        size = _PIECE_LENGTHS[index % len(_PIECE_LENGTHS)]
        pieces.append(text[pos : pos + size])
        pos += size
        index += 1
    return pieces


def _clock(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    suffix = "AM" if moment.hour < 12 else "PM"
    return f"{moment:%b} {moment.day}, {moment.year}, {hour}:{moment.minute:02d} {suffix}"


def _rate_limit_block(now: datetime) -> str:
    return (
        "\n\n> **Rate limits**\n> Plan: pro\n"
        f"> Primary: 65% left · 5h window · resets {_clock(now + timedelta(hours=2))}\n"
        f"> Secondary: 88% left · 7d window · resets {_clock(now + timedelta(days=5))}\n\n"
    )


class _Turn:
    """The chunks of one completion: shared id, model, created and thread_id."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4()}"
        self.model = model
        self.created = int(datetime.now(UTC).timestamp())
        self.thread_id = str(uuid.uuid4())

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _event(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [{"delta": delta, "index": 0, "finish_reason": finish_reason}],
                "thread_id": self.thread_id,
            }
        )

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return _event(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": _REASONING_TOKENS},
                },
                "thread_id": self.thread_id,
            }
        )

    def stop(self) -> bytes:
        return self.chunk({}, "stop")

    def error_frames(self) -> list[bytes]:
        detail = (
            "stream disconnected before completion: error sending request for url "
            "(https://chatgpt.com/backend-api/codex/responses)"
        )
        notification = {
            "error": {
                "message": detail,
                "codexErrorInfo": {"responseStreamDisconnected": {"httpStatusCode": 502}},
                "additionalDetails": None,
            },
            "willRetry": False,
            "threadId": self.thread_id,
            "turnId": f"turn-{uuid.uuid4().hex[:4]}",
        }
        return [
            _event(
                {
                    "error": {
                        "type": "upstream",
                        "code": "responseStreamDisconnected",
                        "message": detail,
                    },
                    "thread_id": self.thread_id,
                }
            ),
            _event(
                {
                    "error": {
                        "message": _compact(notification),
                        "type": "internal",
                        "code": "codex_error",
                    },
                    "thread_id": self.thread_id,
                }
            ),
        ]


@dataclass
class _Plan:
    """What one valid request will be answered with, before any timing is applied."""

    turn: _Turn
    reasoning: list[bytes]
    preamble: list[bytes]  # content before the answer (rate-limit block)
    answer: list[bytes]
    tail: list[bytes]  # usage (when asked) and the stop chunk


def _plan(
    body: dict[str, Any], model: str, config: DevGatewayConfig, oracle: Oracle | None = None
) -> _Plan:
    messages: list[object] = body["messages"]
    answer, summary = review_answer(_last_user_text(messages), config, oracle)
    answer_text = _compact(answer)
    turn = _Turn(model)
    reasoning = [
        turn.chunk({"reasoning_content": "**Checking notional and exposure", "role": "assistant"}),
        turn.chunk({"reasoning_content": f"**\n\n{summary}"}),
    ]
    preamble = []
    if config.include_rate_limit_block:
        preamble.append(turn.chunk({"content": _rate_limit_block(datetime.now(UTC))}))
    # Jangar puts a newline before the first answer text.
    answer_chunks = [turn.chunk({"content": piece}) for piece in _split("\n" + answer_text)]
    stream_options = _dict(body.get("stream_options"))
    usage: bytes | None = None
    if stream_options.get("include_usage") is True:
        prompt_chars = sum(len(_message_text(_dict(m).get("content"))) for m in messages)
        usage = turn.usage(max(1, prompt_chars // 4), len(answer_text) // 4 + _REASONING_TOKENS)
    tail = ([usage] if usage is not None else []) + [turn.stop()]
    return _Plan(turn, reasoning, preamble, answer_chunks, tail)


# --------------------------------------------------------------------------------------------
# The app


@dataclass
class _State:
    config: DevGatewayConfig
    rng: random.Random
    requests: list[dict[str, Any]] = field(default_factory=list)
    request_count: int = 0
    # Set on shutdown so that open streams (keepalive-forever, slow) end at once instead of
    # holding uvicorn's graceful shutdown hostage.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


async def _pause(state: _State, seconds: float) -> bool:
    """Sleep unless the gateway is stopping; False means stop streaming now."""
    if state.stopping.is_set():
        return False
    try:
        await asyncio.wait_for(state.stopping.wait(), timeout=seconds)
    except TimeoutError:
        return True
    return False


async def _latency(state: _State) -> AsyncIterator[bytes]:
    """The model 'thinking': keep-alive comments every keepalive_seconds until the answer."""
    remaining = state.config.latency_seconds
    while remaining > 0:
        step = min(remaining, state.config.keepalive_seconds)
        if not await _pause(state, step):
            return
        remaining -= step
        if remaining > 0:
            yield KEEPALIVE


async def _stream_ok(state: _State, plan: _Plan) -> AsyncIterator[bytes]:
    yield KEEPALIVE
    async for comment in _latency(state):
        yield comment
    if state.stopping.is_set():
        return
    for event in [*plan.reasoning, *plan.preamble, *plan.answer, *plan.tail]:
        yield event
    yield DONE


async def _stream_error_frame(state: _State, plan: _Plan) -> AsyncIterator[bytes]:
    yield KEEPALIVE
    async for comment in _latency(state):
        yield comment
    if state.stopping.is_set():
        return
    partial = plan.answer[: max(1, len(plan.answer) // 3)]
    for event in [*plan.reasoning, *plan.preamble, *partial, *plan.turn.error_frames()]:
        yield event
    for event in plan.tail:
        yield event
    yield DONE


async def _stream_truncate(state: _State, plan: _Plan) -> AsyncIterator[bytes]:
    yield KEEPALIVE
    async for comment in _latency(state):
        yield comment
    if state.stopping.is_set():
        return
    for event in [*plan.reasoning, *plan.preamble, *plan.answer[: max(1, len(plan.answer) // 2)]]:
        yield event
    # Returning here ends the body without [DONE]: what a pod restart looks like to a client.


async def _stream_slow(state: _State, plan: _Plan) -> AsyncIterator[bytes]:
    body = b"".join([KEEPALIVE, *plan.reasoning, *plan.preamble, *plan.answer, *plan.tail, DONE])
    for index in range(len(body)):
        if index and not await _pause(state, _SLOW_BYTE_SECONDS):
            return
        yield body[index : index + 1]


async def _stream_keepalive_forever(state: _State) -> AsyncIterator[bytes]:
    yield KEEPALIVE
    # Ends only when the client goes away (Starlette cancels the stream) or on shutdown.
    while await _pause(state, state.config.keepalive_seconds):
        yield KEEPALIVE


async def _stream_garbage(state: _State) -> AsyncIterator[bytes]:
    yield KEEPALIVE
    for _ in range(3):
        yield b"data: not json at all\n\n"
    yield DONE


def _sse(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(stream, status_code=200, headers=_SSE_HEADERS)


def create_app(config: DevGatewayConfig) -> Starlette:
    """The gateway as an ASGI app; its counters live in `app.state.devgateway`."""
    state = _State(config=config, rng=random.Random(config.seed))
    oracle = (
        Oracle(config.oracle_signals, config.oracle_horizon_seconds, config.oracle_cost_bps)
        if config.reviewer == "oracle" and config.oracle_signals
        else None
    )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def models(request: Request) -> Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "jangar"} for m in config.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def completions(request: Request) -> Response:
        state.request_count += 1
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            return _error_response(
                400, "Request body must be a JSON object", "invalid_request_error", "invalid_json"
            )
        state.requests.append(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error_response(
                400,
                "`messages` must be a non-empty array",
                "invalid_request_error",
                "messages_required",
            )
        if body.get("stream") is not True:
            return _error_response(
                400,
                "`stream` must be true for streaming responses",
                "invalid_request_error",
                "stream_required",
            )
        model = body.get("model")
        if model is not None and model not in config.models:
            return _error_response(
                400,
                f"Unknown model '{model}'. See /openai/v1/models.",
                "invalid_request_error",
                "model_not_found",
            )
        # One draw per valid request, in arrival order, so a seed fixes which requests fail.
        fault = config.fault
        if fault is not None and not state.rng.random() < config.fault_rate:
            fault = None
        if fault == "http-500":
            return _error_response(500, "Internal server error", "server_error", "internal_error")
        if fault == "keepalive-forever":
            return _sse(_stream_keepalive_forever(state))
        if fault == "garbage":
            return _sse(_stream_garbage(state))
        plan = _plan(body, model if isinstance(model, str) else config.model, config, oracle)
        if fault == "error-frame":
            return _sse(_stream_error_frame(state, plan))
        if fault == "truncate":
            return _sse(_stream_truncate(state, plan))
        if fault == "slow":
            return _sse(_stream_slow(state, plan))
        return _sse(_stream_ok(state, plan))

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openai/v1/models", models, methods=["GET"]),
            Route("/openai/v1/chat/completions", completions, methods=["POST"]),
        ]
    )
    app.state.devgateway = state
    return app


# --------------------------------------------------------------------------------------------
# Serving


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: _State, *, own_signals: bool) -> None:
        super().__init__(config)
        self._state = state
        self._own_signals = own_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Embedded (tests, `torghut demo`), the host process keeps its own signal handlers.
        if not self._own_signals:
            yield
            return
        with super().capture_signals():
            yield

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if should_exit:
            self._state.stopping.set()
        return should_exit


def _uvicorn_config(app: Starlette) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http="h11",
        lifespan="off",
        log_level="warning",
        access_log=False,
        # Backstop only: streams end on their own once `stopping` is set.
        timeout_graceful_shutdown=1,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class DevGateway:
    """The gateway on a loopback port inside the current event loop.

    `async with DevGateway(config) as gw:` then point a client at `gw.base_url`.
    """

    def __init__(self, config: DevGatewayConfig | None = None) -> None:
        self.config = config or DevGatewayConfig()
        self.app = create_app(self.config)
        self._state: _State = self.app.state.devgateway
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self.base_url = ""

    @property
    def request_count(self) -> int:
        return self._state.request_count

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._state.requests

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("DevGateway is not started")
        port: int = self._sock.getsockname()[1]
        return port

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("DevGateway already started")
        # A gateway may be started again after stop(); its streams must not see the old stop.
        self._state.stopping = asyncio.Event()
        # Name resolution may block: keep it off the event loop.
        self._sock = await asyncio.to_thread(_bind, self.config.host, self.config.port)
        self.base_url = _url(self._sock)
        self._server = _Server(_uvicorn_config(self.app), self._state, own_signals=False)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raises the start-up failure
                raise RuntimeError("dev gateway exited during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        self._state.stopping.set()
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=1.5)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            if self._sock is not None:
                self._sock.close()
            self._server = None
            self._task = None

    async def __aenter__(self) -> DevGateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def run(config: DevGatewayConfig) -> None:
    """Serve until interrupted (blocking; for the CLI)."""
    sock = _bind(config.host, config.port)
    app = create_app(config)
    print(f"dev-gateway listening on {_url(sock)}", file=sys.stderr, flush=True)
    server = _Server(_uvicorn_config(app), app.state.devgateway, own_signals=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl+C it handled gracefully; for the CLI that is a clean stop.
        pass
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # The CLI contract: one clear line on stderr, exit code 2.
        sys.stderr.write(f"torghut dev-gateway: {message}\n")
        raise SystemExit(2)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Adds the dev-gateway options to `parser` (a fresh one when None)."""
    p = parser or _Parser(
        prog="torghut dev-gateway",
        description=(
            "A local gateway that speaks Jangar's chat-completions contract (SSE streams, error "
            "bodies, quirks) for development, tests and the demo. A small deterministic "
            "reviewer answers: veto above --veto-notional, adjust above --adjust-exposure-pct, "
            "approve otherwise. Faults are injected per request with --fault and --fault-rate. "
            "Prints its URL on stderr; point JANGAR_BASE_URL at it."
        ),
    )
    defaults = DevGatewayConfig()
    p.add_argument("--host", default=defaults.host, help="bind address (default %(default)s)")
    p.add_argument("--port", type=int, default=defaults.port, help="0 picks a free port")
    p.add_argument(
        "--model", default=defaults.model, help="the model it answers as (default %(default)s)"
    )
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated list of served models (default: --model only); others get 400",
    )
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=defaults.latency_seconds,
        help="the model's thinking time before its answer, streamed as keep-alives "
        "(default %(default)s)",
    )
    p.add_argument(
        "--keepalive-seconds",
        type=float,
        default=defaults.keepalive_seconds,
        help="interval of SSE keep-alive comments while waiting (default %(default)s)",
    )
    p.add_argument(
        "--fault",
        choices=FAULTS,
        default=None,
        metavar="FAULT",
        help="inject a fault: " + ", ".join(FAULTS) + " (default: none)",
    )
    p.add_argument(
        "--fault-rate",
        type=float,
        default=defaults.fault_rate,
        help="share of requests that get --fault, 0..1 (default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="random seed: fixes which requests get the fault (default %(default)s)",
    )
    p.add_argument(
        "--veto-notional",
        type=float,
        default=defaults.veto_notional,
        help="veto orders above this notional in dollars (default %(default)s)",
    )
    p.add_argument(
        "--adjust-exposure-pct",
        type=float,
        default=defaults.adjust_exposure_pct,
        help="adjust orders that would take the symbol's exposure above this share of equity "
        "(default %(default)s)",
    )
    p.add_argument(
        "--no-rate-limit-block",
        dest="include_rate_limit_block",
        action="store_false",
        help="leave out the rate-limit text block Jangar puts before the answer",
    )
    p.add_argument(
        "--reviewer",
        choices=REVIEWERS,
        default=defaults.reviewer,
        help="rules (thresholds), random (seeded vetoes) or oracle (knows the future)",
    )
    p.add_argument(
        "--veto-rate",
        type=float,
        default=defaults.veto_rate,
        help="share of decisions the random reviewer vetoes",
    )
    p.add_argument(
        "--oracle-signals",
        default=None,
        metavar="FILE",
        help="signals file the oracle reads its future prices from",
    )
    p.add_argument(
        "--oracle-horizon-seconds",
        type=float,
        default=defaults.oracle_horizon_seconds,
        help="the oracle vetoes decisions that lose over this horizon (default %(default)s)",
    )
    p.add_argument(
        "--oracle-cost-bps",
        type=float,
        default=defaults.oracle_cost_bps,
        help="costs the oracle subtracts from each return (default %(default)s)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> DevGatewayConfig:
    """Raises ValueError (one-line message) on an invalid combination."""
    if args.oracle_signals and not os.path.isfile(args.oracle_signals):
        raise ValueError(f"--oracle-signals: no such file: {args.oracle_signals}")
    models: tuple[str, ...] = (args.model,)
    if args.models:
        models = tuple(m.strip() for m in str(args.models).split(",") if m.strip())
    return DevGatewayConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        models=models,
        latency_seconds=args.latency_seconds,
        keepalive_seconds=args.keepalive_seconds,
        fault=args.fault,
        fault_rate=args.fault_rate,
        seed=args.seed,
        veto_notional=args.veto_notional,
        adjust_exposure_pct=args.adjust_exposure_pct,
        include_rate_limit_block=args.include_rate_limit_block,
        reviewer=args.reviewer,
        veto_rate=args.veto_rate,
        oracle_signals=args.oracle_signals,
        oracle_horizon_seconds=args.oracle_horizon_seconds,
        oracle_cost_bps=args.oracle_cost_bps,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`torghut dev-gateway [options]`; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"torghut dev-gateway: {exc}\n")
        return 2
    try:
        run(config)
    except OSError as exc:  # e.g. the port is taken
        sys.stderr.write(
            f"torghut dev-gateway: cannot listen on {config.host}:{config.port}: {exc}\n"
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
