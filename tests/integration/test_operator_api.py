"""The operator's HTTP surface (issue 15 items 1-4) through a real uvicorn server on
127.0.0.1: bearer-token auth, halt and resume, results, the page and the report. Both
databases."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.conftest import Database
from torghut.bootstrap import Container, build_container
from torghut.config import load_settings
from torghut.main import create_app
from torghut.replay import run_replay

TOKEN = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READS = [
    "/trading/status",
    "/trading/decisions",
    "/trading/account",
    "/trading/positions",
    "/trading/pnl",
    "/llm/report",
    "/llm/report.json",
    "/",
]
OPEN = ["/healthz", "/readyz", "/metrics"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serve(env: dict[str, str]) -> AsyncIterator[tuple[str, Container]]:
    container = await build_container(load_settings(env, None))
    app = create_app(container, run_scheduler=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        assert not task.done(), "uvicorn stopped during start-up"
    try:
        yield f"http://127.0.0.1:{server.config.port}", container
    finally:
        server.should_exit = True
        await task
        await container.aclose()


Client = Callable[..., Awaitable[httpx.Response]]


async def test_without_a_token_state_changes_are_refused_and_say_how(database: Database) -> None:
    async with (
        serve({"DB_DSN": database.dsn}) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        for path in ("/trading/halt", "/trading/resume"):
            refused = await client.post(path, json={"reason": "x"}, headers=AUTH)
            assert refused.status_code == 403
            assert "TORGHUT_API_TOKEN" in refused.json()["error"]
        read = await client.get("/trading/status")
        assert read.status_code == 403 and "TORGHUT_API_PUBLIC_READS" in read.json()["error"]
        for path in OPEN:
            assert (await client.get(path)).status_code == 200, path


async def test_token_guards_writes_and_reads(database: Database) -> None:
    env = {"DB_DSN": database.dsn, "TORGHUT_API_TOKEN": TOKEN}
    async with serve(env) as (base, _), httpx.AsyncClient(base_url=base, timeout=10) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            halt = await client.post("/trading/halt", json={"reason": "x"}, headers=headers)
            assert halt.status_code == 401, headers
            assert halt.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in halt.text
        for path in READS:
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers=AUTH)).status_code == 200, path
        for path in OPEN:
            assert (await client.get(path)).status_code == 200, path
        # No Swagger page loading its assets from a CDN.
        assert (await client.get("/docs")).status_code in (401, 404)
        # The page's sign-in: a cookie good for reads, never for a halt.
        signed = await client.post("/signin", headers=AUTH)
        assert signed.status_code == 200
        cookie = signed.cookies.get("torghut_read")
        assert cookie and TOKEN not in cookie
        assert "httponly" in signed.headers["set-cookie"].lower()
        assert (await client.get("/trading/status")).status_code == 200  # cookie jar
        refused = await client.post("/trading/halt", json={"reason": "x"})
        assert refused.status_code == 401


async def test_public_reads(database: Database) -> None:
    env = {"DB_DSN": database.dsn, "TORGHUT_API_TOKEN": TOKEN, "TORGHUT_API_PUBLIC_READS": "true"}
    async with serve(env) as (base, _), httpx.AsyncClient(base_url=base, timeout=10) as client:
        for path in READS:
            assert (await client.get(path)).status_code == 200, path
        assert (await client.post("/trading/halt", json={"reason": "x"})).status_code == 401


async def test_halt_and_resume_over_http_are_stored_and_shown(database: Database) -> None:
    env = {"DB_DSN": database.dsn, "TORGHUT_API_TOKEN": TOKEN}
    async with (
        serve(env) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=10, headers=AUTH) as client,
    ):
        status = (await client.get("/trading/status")).json()
        assert status["halt"] == {"halted": False, "reason": None, "since": None}
        assert status["kill_switch"] is False
        assert status["signals"] == {"last_signal_at": None, "lag_seconds": None}
        for bad in (
            {},
            {"reason": ""},
            {"reason": "   "},
            {"reason": "x" * 501},
            {"reason": "x", "extra": 1},
        ):
            response = await client.post("/trading/halt", json=bad)
            assert response.status_code == 422, bad
            assert "reason" in response.json()["error"] or "extra" in response.json()["error"]
        halted = await client.post("/trading/halt", json={"reason": "<b>bad</b> feed"})
        assert halted.status_code == 200
        assert halted.json()["halt"]["halted"] is True
        status = (await client.get("/trading/status")).json()
        assert status["halt"]["halted"] is True and status["halt"]["reason"] == "<b>bad</b> feed"
        assert status["halt"]["since"] is not None
        assert "torghut_trading_halted 1.0" in (await client.get("/metrics")).text
        page = (await client.get("/")).text
        assert "HALTED" in page and "&lt;b&gt;bad&lt;/b&gt; feed" in page and "<b>bad" not in page

    # A restart of the service on the same database shows the halt still in force.
    async with (
        serve(env) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=10, headers=AUTH) as client,
    ):
        # A fresh process: the gauge is right at the first scrape, before any status read.
        assert "torghut_trading_halted 1.0" in (await client.get("/metrics")).text
        assert (await client.get("/trading/status")).json()["halt"]["halted"] is True
        resumed = await client.post("/trading/resume", json={"reason": "fixed"})
        assert resumed.json()["halt"] == {"halted": False, "reason": None, "since": None}
        assert "torghut_trading_halted 0.0" in (await client.get("/metrics")).text


def _signals(tmp_path: Path) -> Path:
    path = tmp_path / "signals.jsonl"
    rows = [
        # Buy 10 AAA at 100 and 20 BBB at 50; sell 10 AAA at 95 (-50 realised); buy 18 BBB
        # at 55: 38 BBB cost 1990, worth 2090 (+100 unrealised).
        {
            "event_ts": "2026-03-02T15:00:00Z",
            "symbol": "AAA",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 100.0,
        },
        {
            "event_ts": "2026-03-02T15:01:00Z",
            "symbol": "BBB",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 50.0,
        },
        {
            "event_ts": "2026-03-02T15:05:00Z",
            "symbol": "AAA",
            "macd": 0.1,
            "macd_signal": 0.4,
            "rsi14": 70.0,
            "price": 95.0,
        },
        {
            "event_ts": "2026-03-02T15:06:00Z",
            "symbol": "BBB",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 55.0,
        },
    ]
    path.write_text("".join(json.dumps({**r, "timeframe": "1Min"}) + "\n" for r in rows))
    return path


async def test_results_in_the_replay_summary_and_the_api(
    database: Database, tmp_path: Path
) -> None:
    # One signal a cycle, so that the sell sees the position the buy before it opened.
    env = {"DB_DSN": database.dsn, "TORGHUT_API_TOKEN": TOKEN, "TRADING_BATCH_SIZE": "1"}
    summary = await run_replay(load_settings(env, None), _signals(tmp_path))
    results = summary["results"]
    assert summary["submitted"] == 4, summary
    assert results["realised_pnl"] == -50.0
    assert results["unrealised_pnl"] == 100.0
    assert results["cash"] == 97_960.0 and results["equity"] == 100_050.0
    assert results["exposure"] == {"total": 2090.0, "by_strategy": {"macd-rsi-default": 2090.0}}
    assert results["max_drawdown"] == 50.0  # AAA marked at 95 before BBB rose
    async with (
        serve(env) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=10, headers=AUTH) as client,
    ):
        signals = (await client.get("/trading/status")).json()["signals"]
        assert signals["last_signal_at"] == "2026-03-02T15:06:00+00:00"
        assert signals["lag_seconds"] > 0
        pnl = (await client.get("/trading/pnl")).json()
        assert pnl == results
        account = (await client.get("/trading/account")).json()
        assert account["equity"] == 100_050.0 and account["results"] == results
        positions = (await client.get("/trading/positions")).json()
        assert [(p["symbol"], p["qty"], p["unrealised_pnl"]) for p in positions] == [
            ("BBB", 38.0, 100.0)
        ]
        assert positions[0]["strategies"][0]["strategy_id"] == "macd-rsi-default"
        page = (await client.get("/")).text
        assert "100,050.00" in page and "BBB" in page and "-50.00" in page


@pytest.mark.parametrize("since", ["24h", "2026-01-01T00:00:00Z"])
async def test_llm_report_over_http(database: Database, since: str) -> None:
    env = {"DB_DSN": database.dsn, "TORGHUT_API_TOKEN": TOKEN}
    async with (
        serve(env) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=10, headers=AUTH) as client,
    ):
        as_json = await client.get("/llm/report.json", params={"since": since})
        assert as_json.status_code == 200
        body = as_json.json()
        assert body["reviews"] == 0 and body["ready"] is False and body["no_criteria"] is True
        html = await client.get("/llm/report", params={"since": since})
        assert html.headers["content-type"].startswith("text/html")
        assert "NO CRITERIA" in html.text and "<svg" in html.text
        bad = await client.get("/llm/report.json", params={"since": "yesterday"})
        assert bad.status_code == 422 and "since" in bad.json()["error"]
        checked = (
            await client.get("/llm/report.json", params={"since": since, "min_reviews": 1})
        ).json()
        assert checked["ready"] is False and checked["failed"] == ["reviews 0 < min 1"]
        rate = await client.get("/llm/report.json", params={"max_error_rate": 5})
        assert rate.status_code == 422 and "max_error_rate" in rate.json()["error"]


async def test_a_broker_that_does_not_answer_is_a_503_and_the_page_still_loads(
    database: Database,
) -> None:
    # Alpaca's paper endpoint on a port where nothing listens: every broker call fails fast.
    env = {
        "DB_DSN": database.dsn,
        "TORGHUT_API_TOKEN": TOKEN,
        "TRADING_BROKER": "alpaca",
        "APCA_API_KEY_ID": "key-id-000",
        "APCA_API_SECRET_KEY": "secret-key-000",
        "APCA_API_BASE_URL": "http://127.0.0.1:1",
        "TRADING_BROKER_TIMEOUT_SECONDS": "2",
    }
    async with (
        serve(env) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as client,
    ):
        for path in ("/trading/account", "/trading/positions", "/trading/pnl"):
            response = await client.get(path)
            assert response.status_code == 503, path
            assert response.json()["error"].startswith("broker unavailable")
            assert "secret-key-000" not in response.text
        page = await client.get("/")
        assert page.status_code == 200
        assert "broker unavailable" in page.text and 'id="halt-state"' in page.text


async def test_a_symbol_with_a_control_character_is_a_422_not_a_500(database: Database) -> None:
    # PostgreSQL refuses a NUL in text: the parameter is refused before any query.
    env = {"DB_DSN": database.dsn, "TORGHUT_API_PUBLIC_READS": "true"}
    async with serve(env) as (base, _), httpx.AsyncClient(base_url=base, timeout=10) as client:
        for path in ("/trading/decisions", "/trading/executions", "/trading/reviews"):
            response = await client.get(path, params={"symbol": "AA\x00PL"})
            assert response.status_code == 422, (path, response.text)
            assert "symbol" in response.json()["error"]


def _priced_signals(tmp_path: Path) -> Path:
    """A buy of ZBRA at 100, then its price every minute for two hours (rising to 110)."""
    lines = [
        {
            "event_ts": "2026-03-02T15:00:00Z",
            "symbol": "ZBRA",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 100.0,
        }
    ]
    for minute in range(1, 121):
        lines.append(
            {
                "event_ts": f"2026-03-02T{15 + minute // 60:02d}:{minute % 60:02d}:00Z",
                "symbol": "ZBRA",
                "macd": 0.0,
                "macd_signal": 0.1,
                "rsi14": 50.0,
                "price": 100.0 + minute / 12,
            }
        )
    path = tmp_path / "priced.jsonl"
    path.write_text("".join(json.dumps({**r, "timeframe": "1Min"}) + "\n" for r in lines))
    return path


async def test_llm_eval_over_http_prices_the_reviews_from_the_services_signals(
    database: Database, tmp_path: Path
) -> None:
    from tests.integration.test_gate_table import FakeProvider

    signals = _priced_signals(tmp_path)
    env = {
        "DB_DSN": database.dsn,
        "TORGHUT_API_TOKEN": TOKEN,
        "LLM_ENABLED": "true",
        "JANGAR_BASE_URL": "http://127.0.0.1:9",
        "TRADING_SIGNALS_PATH": str(signals),
    }
    summary = await run_replay(load_settings(env, None), signals, provider=FakeProvider("approve"))
    assert summary["reviews"] == {"approve": 1}, summary
    async with (
        serve(env) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as client,
    ):
        as_json = await client.get("/llm/eval.json", params={"horizons": "5m,1h"})
        assert as_json.status_code == 200, as_json.text
        body = as_json.json()
        assert body["reviews"] == 1 and set(body["horizons"]) == {"5m", "1h"}
        hour = body["horizons"]["1h"]
        assert hour["evaluated"] == 1 and hour["by_verdict"]["approve"]["mean_bps"] > 0
        html = await client.get("/llm/eval")
        assert html.status_code == 200 and "Horizon 1d" in html.text
        page = await client.get("/")
        assert 'href="/llm/eval"' in page.text
        for params, name in (({"horizons": "5x"}, "horizons"), ({"cost_bps": -1}, "cost_bps")):
            bad = await client.get("/llm/eval.json", params=params)
            assert bad.status_code == 422 and name in bad.json()["error"], bad.text
        signals.unlink()  # the price source is gone: said, not a 500
        gone = await client.get("/llm/eval.json")
        assert gone.status_code == 409 and "price source" in gone.json()["error"], gone.text


async def test_llm_eval_over_http_says_when_clickhouse_fails(
    database: Database, tmp_path: Path
) -> None:
    from tests.integration.test_gate_table import FakeProvider

    replayed = {
        "DB_DSN": database.dsn,
        "LLM_ENABLED": "true",
        "JANGAR_BASE_URL": "http://127.0.0.1:9",
    }
    signals = _priced_signals(tmp_path)
    await run_replay(load_settings(replayed, None), signals, provider=FakeProvider("veto"))
    env = {
        "DB_DSN": database.dsn,
        "TORGHUT_API_TOKEN": TOKEN,
        "TRADING_SIGNAL_SOURCE": "clickhouse",
        "CLICKHOUSE_URL": "http://127.0.0.1:1",
        "CLICKHOUSE_PASSWORD": "ch-secret-000111",
    }
    async with (
        serve(env) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=60, headers=AUTH) as client,
    ):
        failed = await client.get("/llm/eval.json")
        assert failed.status_code == 502, failed.text
        assert failed.json()["error"].startswith("price source: clickhouse unreachable")
        assert "ch-secret-000111" not in failed.text
