"""Properties of everything a gateway sends, end to end through replay, on SQLite and
PostgreSQL (issues 12 and 13):

- arbitrary bytes from the gateway never cost the audit row, and no NUL reaches it;
- the API key, placed by the gateway in any field it controls (status line, headers, body,
  each JSON field and key, error frames), never appears whole or as a prefix of 8 characters
  or more in the database, the logs, `llm review`'s stdout/stderr or `/trading/reviews`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from tests.conftest import Database
from tests.integration.rawserver import Close, RawServer, Script, Send, head, respond, sse
from torghut import cli
from torghut.bootstrap import build_container
from torghut.config import load_settings
from torghut.db.tables import ExecutionRow, LLMDecisionReview, TradeDecisionRow
from torghut.main import create_app
from torghut.replay import run_replay

KEY = "JANGARCANARYk3y0123456789abcdefXYZ"
PREFIX = KEY[:8]  # any prefix of 8 or more characters contains it
REVIEW: dict[str, Any] = {
    "verdict": "approve",
    "confidence": 0.9,
    "rationale": "ok",
    "risk_flags": [],
}
_symbols = itertools.count()


def chunk(content: str | None = None, **extra: Any) -> dict[str, Any]:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    body: dict[str, Any] = {
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    body.update(extra)
    return body


STOP = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


def _signals(tmp_path: Path) -> Path:
    """One buy on a symbol never used before (a new decision, so a new review)."""
    n = next(_symbols)
    path = tmp_path / f"buy-{n}.jsonl"
    line = {
        "event_ts": "2026-03-02T15:00:00Z",
        "symbol": f"P{n:05d}",
        "timeframe": "1Min",
        "macd": 0.4,
        "macd_signal": 0.1,
        "rsi14": 28.0,
        "price": 100.0,
    }
    path.write_text(json.dumps(line) + "\n")
    return path


def _env(dsn: str, url: str) -> dict[str, str]:
    return {
        "DB_DSN": dsn,
        "JANGAR_BASE_URL": url,
        "JANGAR_API_KEY": KEY,
        "LLM_ENABLED": "true",
        "LLM_SHADOW_MODE": "false",
        "LLM_FAIL_MODE": "veto",
        "LLM_MAX_RETRIES": "0",
        "LLM_TIMEOUT_SECONDS": "3",
        "LLM_FIRST_TOKEN_TIMEOUT_SECONDS": "2",
        "LLM_IDLE_TIMEOUT_SECONDS": "2",
    }


class Switch:
    """The script the server plays next, set by each example."""

    def __init__(self) -> None:
        self.script: Script = respond(sse(chunk(json.dumps(REVIEW)), STOP, "[DONE]"))

    def __call__(self, _: int) -> Script:
        return self.script


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[RawServer, Switch]]:
    switch = Switch()
    async with RawServer(switch) as server:
        yield server, switch


async def _rows(database: Database) -> int:
    async with database.sessions() as session:
        return len((await session.execute(select(LLMDecisionReview.id))).all())


def _walk(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _walk(k) + _walk(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _walk(v)]
    return []


async def _strings(database: Database) -> list[str]:
    """Every string stored in decision, execution and audit rows (JSON keys included)."""
    found: list[str] = []
    async with database.sessions() as session:
        for table in (TradeDecisionRow, ExecutionRow, LLMDecisionReview):
            for row in (await session.execute(select(table))).scalars():
                found += _walk([getattr(row, c.key) for c in table.__table__.columns])
    return found


async def _dump(database: Database) -> str:
    """Every row of every table the service writes, as text."""
    parts: list[str] = []
    async with database.sessions() as session:
        for table in ("trade_decisions", "executions", "llm_decision_reviews"):
            rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()
            parts.append(json.dumps([list(r) for r in rows], default=str, ensure_ascii=False))
    return "\n".join(parts)


# --- arbitrary bytes -------------------------------------------------------------------------

_any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=200)


def _hostile_scripts() -> st.SearchStrategy[Script]:
    raw = st.binary(max_size=600)
    return st.one_of(
        raw.map(lambda b: respond(b)),  # an SSE body of anything
        raw.map(lambda b: respond(b, 500, content_type="text/plain")),
        raw.map(lambda b: respond(b"data: " + b + b"\n\ndata: [DONE]\n\n")),
        raw.map(lambda b: respond(b, content_type="application/json")),
        _any_text.map(lambda t: respond(sse({"error": {"message": t, "code": t}}, "[DONE]"))),
        _any_text.map(lambda t: respond(sse({"error": {"message": t, t: t}}, "[DONE]"), 400)),
        _any_text.map(
            lambda t: respond(
                sse(
                    chunk("\n" + json.dumps({**REVIEW, "rationale": t or "x", t: t})),
                    {
                        "choices": [
                            {"index": 0, "delta": {"reasoning_content": t}, "finish_reason": t}
                        ],
                        "model": t,
                    },
                    "[DONE]",
                )
            )
        ),
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=_hostile_scripts())
# The cases: a NUL in the gateway's error text; raw control bytes (a gzip body).
@example(script=respond(b'data: {"error": {"message": "bad\\u0000byte"}}\n\ndata: [DONE]\n\n'))
@example(
    script=respond(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x00", 502, content_type="text/plain")
)
async def test_arbitrary_bytes_never_cost_the_audit_row(
    script: Script, database: Database, gateway: tuple[RawServer, Switch], tmp_path: Path
) -> None:
    server, switch = gateway
    switch.script = script
    before = await _rows(database)
    summary = await run_replay(
        load_settings(_env(database.dsn, server.url), None), _signals(tmp_path)
    )
    assert await _rows(database) == before + 1, summary
    assert "audit_write_failed" not in summary.get("rejected", {}), summary
    assert not [
        v
        for v in await _strings(database)
        if "\x00" in v or (not v.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in v))
    ]


# --- the canary key in every field -----------------------------------------------------------


def _placements(pad: int) -> dict[str, Script]:
    """The key in each field a gateway controls. `pad` shifts it across the cuts (a quote's
    300 and 80 characters, the 64 KiB error body)."""
    p = "x" * pad
    at_cut = "y" * (64 * 1024 - pad % len(KEY) - 1)
    review = {**REVIEW, "rationale": f"ok {p}{KEY}", "risk_flags": [KEY], KEY: {KEY: KEY}}
    answer = sse(chunk("\n" + json.dumps(review)), STOP, "[DONE]")
    return {
        "status-line": [
            Send(
                f"HTTP/1.1 500 {p}{KEY}\r\ncontent-type: text/plain\r\n"
                "content-length: 2\r\n\r\nno".encode()
            ),
            Close(),
        ],
        "garbage-status-line": [Send(f"{p}{KEY} 200\r\n\r\n".encode()), Close()],
        "header-content-type": respond(b"<x>", content_type=f"text/{p}{KEY}"),
        "header-content-encoding": respond(answer, headers={"content-encoding": f"{p}{KEY}"}),
        "header-other": respond(answer, headers={"x-echo": KEY, "retry-after": KEY}),
        "error-body-at-the-cut": respond((at_cut + KEY).encode(), 500, content_type="text/plain"),
        "error-body-text": respond(f"{p}Bearer {KEY}".encode(), 401, content_type="text/plain"),
        "error-body-json": respond(
            json.dumps({"error": {"message": p + KEY, "code": KEY, KEY: KEY}}).encode(),
            400,
            content_type="application/json",
        ),
        "error-body-sse": respond(sse({"error": {"message": p + KEY, "code": KEY}}, "[DONE]"), 400),
        "in-stream-error-frame": respond(
            sse(chunk("\n"), {"error": {"message": p + KEY, "code": KEY, KEY: 1}}, STOP, "[DONE]")
        ),
        "event-error": respond(b"event: error\ndata: " + (p + KEY).encode() + b"\n\n" + answer),
        "data-not-json": respond(b"data: " + (p + KEY).encode() + b"\n\n"),
        "model": respond(sse(chunk("\n" + json.dumps(REVIEW), model=KEY), STOP, "[DONE]")),
        "finish-reason": respond(
            sse(
                chunk("\n" + json.dumps(REVIEW)),
                {"choices": [{"index": 0, "delta": {}, "finish_reason": p + KEY}]},
                "[DONE]",
            )
        ),
        "answer-fields-and-keys": respond(answer),
        "answer-invalid": respond(
            sse(chunk("\n" + json.dumps({KEY: p + KEY, "verdict": KEY})), STOP, "[DONE]")
        ),
        "reasoning": respond(
            sse(
                {"choices": [{"index": 0, "delta": {"reasoning_content": p + KEY}}]},
                chunk("\n" + json.dumps(REVIEW)),
                STOP,
                "[DONE]",
            )
        ),
        "usage-keys": respond(
            sse(
                chunk("\n" + json.dumps(REVIEW)),
                {"choices": [], "usage": {KEY: 1, "prompt_tokens": KEY}},
                STOP,
                "[DONE]",
            )
        ),
        "json-completion": respond(
            json.dumps(
                {
                    "model": KEY,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": KEY,
                            "message": {"content": json.dumps(review), "reasoning_content": KEY},
                        }
                    ],
                }
            ).encode(),
            content_type="application/json",
        ),
    }


PLACEMENTS = sorted(_placements(0))


def _leaks(where: str, text: str) -> list[str]:
    return [where] if PREFIX in text else []


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {
        n: logging.getLogger(n).level
        for n in ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "alembic", "uvicorn.access")
    }
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, value in noisy.items():
            logging.getLogger(name).setLevel(value)


@pytest.fixture
async def api(database: Database) -> AsyncIterator[str]:
    settings_ = load_settings(
        {
            "DB_DSN": database.dsn,
            "TORGHUT_API_PUBLIC_READS": "true",
            "TORGHUT_API_TOKEN": "t0ken-for-the-test",
        },
        env_file=None,
    )
    container = await build_container(settings_)
    app = create_app(container, run_scheduler=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        assert not task.done(), "uvicorn stopped during start-up"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await container.aclose()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(placement=st.sampled_from(PLACEMENTS), pad=st.integers(0, 320))
async def test_the_key_never_leaks_from_any_field(
    placement: str,
    pad: int,
    database: Database,
    gateway: tuple[RawServer, Switch],
    api: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, switch = gateway
    switch.script = _placements(pad)[placement]
    caplog.clear()
    # The service's log output: a handler as `setup_logging` builds it (its redacting filter
    # included), at DEBUG, so every library's records pass through it.
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(
        cli.RedactingFilter(load_settings(_env(database.dsn, server.url), None).secrets())
    )
    logging.getLogger().addHandler(handler)
    with caplog.at_level(logging.DEBUG):
        await run_replay(load_settings(_env(database.dsn, server.url), None), _signals(tmp_path))
        decision = tmp_path / "decision.json"
        decision.write_text(
            json.dumps(
                {
                    "strategy_id": "s",
                    "symbol": "AAPL",
                    "action": "buy",
                    "qty": "5",
                    "order_type": "market",
                    "time_in_force": "day",
                    "event_ts": "2026-03-02T15:00:00Z",
                    "timeframe": "1Min",
                    "params": {"price": "100"},
                }
            )
        )
        for name, value in _env(database.dsn, server.url).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        with _logging_restored():  # the CLI installs its own root handler
            await asyncio.to_thread(cli.main, ["llm", "review", "--decision", str(decision)])
    logging.getLogger().removeHandler(handler)
    out = capsys.readouterr()
    # Our own code redacts whatever the filter does: its records must be clean as emitted.
    ours = [r for r in caplog.records if r.name.startswith("torghut")]
    async with httpx.AsyncClient() as client:
        served = (await client.get(f"{api}/trading/reviews")).text
    leaks = (
        _leaks("database", await _dump(database))
        + _leaks("log output", written.getvalue())
        + _leaks("torghut's log records", "\n".join(r.getMessage() for r in ours))
        + _leaks(
            "torghut's tracebacks",
            "\n".join(logging.Formatter().formatException(r.exc_info) for r in ours if r.exc_info),
        )
        + _leaks("stdout", out.out)
        + _leaks("stderr", out.err)
        + _leaks("/trading/reviews", served)
    )
    assert not leaks, f"{placement} (pad {pad}) leaked into {leaks}"


async def test_each_placement_reaches_the_audit_row(
    database: Database, gateway: tuple[RawServer, Switch], tmp_path: Path
) -> None:
    """The property above is only worth something if every placement is played: each one
    makes a review row (an error or not)."""
    server, switch = gateway
    for name, script in _placements(300).items():
        switch.script = script
        before = await _rows(database)
        await run_replay(load_settings(_env(database.dsn, server.url), None), _signals(tmp_path))
        assert await _rows(database) == before + 1, name
    async with database.sessions() as session:
        decisions = len((await session.execute(select(TradeDecisionRow.id))).all())
    assert decisions == len(PLACEMENTS)


_: Callable[..., Any] = head  # kept for scripts built by hand above
