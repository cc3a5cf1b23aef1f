"""The HTTP API (CONTRACT §5) through a real uvicorn server on 127.0.0.1, on both databases."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import uvicorn

from tests.conftest import Database
from torghut.bootstrap import Container, build_container
from torghut.config import load_settings
from torghut.db.tables import LLMDecisionReview, Strategy, TradeDecisionRow
from torghut.main import create_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def served(database: Database) -> AsyncIterator[tuple[str, Container]]:
    settings = load_settings({"DB_DSN": database.dsn, "TORGHUT_API_TOKEN": TOKEN}, env_file=None)
    container = await build_container(settings)
    app = create_app(container, run_scheduler=False)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        assert not task.done(), "uvicorn stopped during start-up"
    try:
        yield f"http://127.0.0.1:{port}", container
    finally:
        server.should_exit = True
        await task
        await container.aclose()


async def _seed(database: Database) -> None:
    now = datetime.now(UTC)
    async with database.sessions() as session, session.begin():
        session.add(Strategy(id="s", params={}))
        for i, symbol in enumerate(["AAPL", "MSFT", "AAPL"]):
            decision_id = uuid.uuid4()
            session.add(
                TradeDecisionRow(
                    id=decision_id,
                    strategy_id="s",
                    symbol=symbol,
                    timeframe="1Min",
                    action="buy",
                    qty=Decimal(10),
                    decision_json={"i": i},
                    decision_hash=f"h{i}",
                    status="submitted",
                    event_ts=now,
                    created_at=now - timedelta(minutes=10 - i),
                )
            )
            await session.flush()
            session.add(
                LLMDecisionReview(
                    trade_decision_id=decision_id,
                    provider="jangar",
                    model="m",
                    prompt_version="v1",
                    input_json={"messages": []},
                    response_json=None,
                    verdict="approve" if i else "veto",
                    shadow=True,
                    fail_mode="pass_through",
                    trading_mode="paper",
                    effective_action="submitted_original",
                    created_at=now - timedelta(minutes=10 - i),
                )
            )


async def test_health_ready_and_status(served: tuple[str, Container]) -> None:
    base, _ = served
    async with httpx.AsyncClient(base_url=base, timeout=5, headers=AUTH) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        status = (await client.get("/trading/status")).json()
        assert set(status) >= {
            "enabled",
            "mode",
            "running",
            "last_run_at",
            "last_error",
            "metrics",
            "llm",
        }
        assert status["llm"]["circuit"]["state"] == "closed"
        assert set(status["llm"]) >= {"enabled", "provider", "model", "shadow_mode", "fail_mode"}
        assert {"open_until", "recent_error_count"} <= set(status["llm"]["circuit"])
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "torghut_llm_circuit_state" in metrics.text


async def test_lists_newest_first_with_filters(
    served: tuple[str, Container], database: Database
) -> None:
    base, _ = served
    await _seed(database)
    async with httpx.AsyncClient(base_url=base, timeout=5, headers=AUTH) as client:
        decisions = (await client.get("/trading/decisions")).json()
        assert [d["decision_hash"] for d in decisions] == ["h2", "h1", "h0"]
        aapl = (await client.get("/trading/decisions", params={"symbol": "aapl"})).json()
        assert {d["symbol"] for d in aapl} == {"AAPL"} and len(aapl) == 2
        limited = (await client.get("/trading/decisions", params={"limit": 1})).json()
        assert len(limited) == 1
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert (await client.get("/trading/decisions", params={"since": future})).json() == []
        vetoes = (await client.get("/trading/reviews", params={"verdict": "veto"})).json()
        assert len(vetoes) == 1 and vetoes[0]["verdict"] == "veto"
        assert vetoes[0]["symbol"] == "AAPL"
        assert (await client.get("/trading/executions")).json() == []


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/trading/decisions", {"limit": "0"}, "limit"),
        ("/trading/decisions", {"limit": "501"}, "limit"),
        ("/trading/executions", {"since": "yesterday"}, "since"),
        ("/trading/decisions", {"since": "1700000000"}, "since"),
        ("/trading/reviews", {"since": "2026-13-01T00:00:00"}, "since"),
        ("/trading/reviews", {"verdict": "maybe"}, "verdict"),
        ("/trading/reviews", {"limit": "ten"}, "limit"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    served: tuple[str, Container], path: str, params: dict[str, str], parameter: str
) -> None:
    base, _ = served
    async with httpx.AsyncClient(base_url=base, timeout=5, headers=AUTH) as client:
        response = await client.get(path, params=params)
    assert response.status_code == 422
    assert parameter in response.json()["error"]


async def test_readyz_fails_naming_the_database_when_it_is_gone(tmp_path: object) -> None:
    # Nothing listens on port 1: the database check must fail, fast and by name.
    settings = load_settings({"DB_DSN": "postgresql://postgres@127.0.0.1:1/test"}, env_file=None)
    container = await build_container(settings)
    app = create_app(container, run_scheduler=False)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await container.aclose()
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
    assert "postgres@" not in response.text


async def test_readyz_follows_the_trading_loop(database: Database, tmp_path: object) -> None:
    settings = load_settings(
        {
            "DB_DSN": database.dsn,
            "TRADING_ENABLED": "true",
            "TRADING_POLL_INTERVAL_SECONDS": "0.2",
            "TORGHUT_API_PUBLIC_READS": "true",
        },
        env_file=None,
    )
    container = await build_container(settings)
    app = create_app(container, run_scheduler=False)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            stale = await client.get("/readyz")
            assert stale.status_code == 503
            assert stale.json()["failing"] == ["trading_loop"]
            container.scheduler.start()
            for _ in range(100):
                if container.scheduler.status.last_run_at is not None:
                    break
                await asyncio.sleep(0.05)
            assert (await client.get("/readyz")).status_code == 200
            status = (await client.get("/trading/status")).json()
            assert status["running"] is True and status["last_run_at"] is not None
            assert status["last_error"] is None
    finally:
        await container.scheduler.stop()
        await container.aclose()
