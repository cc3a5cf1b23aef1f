"""The operator's runtime halt (issue 15 item 1): halted, a cycle reads no signal and submits
nothing; resumed, it trades again; a restart (a new process, a new leader) keeps the halt; a
decision under review when the halt lands is rejected `halted`. On both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import select

from tests.conftest import Database
from tests.integration.test_pipeline_behaviour import GatedProvider
from torghut.bootstrap import Container, build_container
from torghut.config import load_settings
from torghut.db.tables import ExecutionRow, TradeDecisionRow, TradingHaltEvent
from torghut.replay import run_replay


def _signals(tmp_path: Path, symbols: list[str], minute: int = 0) -> Path:
    path = tmp_path / f"signals-{minute}.jsonl"
    rows = [
        {
            "event_ts": f"2026-03-02T15:{minute:02d}:00Z",
            "symbol": s,
            "timeframe": "1Min",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 100.0,
        }
        for s in symbols
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def _container(dsn: str, signals: Path, **env: str) -> Container:
    return await build_container(
        load_settings({"DB_DSN": dsn, **env}, None), signals_path=signals, trading_enabled=True
    )


async def _executions(database: Database) -> int:
    async with database.sessions() as session:
        return len((await session.execute(select(ExecutionRow))).scalars().all())


async def test_halt_stops_the_next_cycle_resume_trades_and_a_restart_keeps_it(
    database: Database, tmp_path: Path
) -> None:
    signals = _signals(tmp_path, ["AAA", "BBB"])
    first = await _container(database.dsn, signals)
    try:
        await first.halt.halt("operator: bad data feed")
        halted = await first.pipeline.run_cycle()
        assert (halted.signals, halted.decisions, halted.submitted) == (0, 0, 0)
        assert await _executions(database) == 0
        assert "torghut_trading_halted 1.0" in first.metrics.render().decode()
    finally:
        await first.aclose()

    # A new process on the same database (a restart, or the next leader) is still halted.
    second = await _container(database.dsn, signals)
    try:
        state = await second.halt.refresh()
        assert state.halted and state.reason == "operator: bad data feed"
        assert state.since is not None
        assert (await second.pipeline.run_cycle()).signals == 0
        assert await _executions(database) == 0

        await second.halt.resume("feed fixed")
        resumed = await second.pipeline.run_cycle()
        assert (resumed.signals, resumed.submitted) == (2, 2)
        assert await _executions(database) == 2
        assert "torghut_trading_halted 0.0" in second.metrics.render().decode()
    finally:
        await second.aclose()

    async with database.sessions() as session:
        events = (
            await session.execute(
                select(TradingHaltEvent.action, TradingHaltEvent.reason).order_by(
                    TradingHaltEvent.created_at
                )
            )
        ).all()
    assert [tuple(e) for e in events] == [
        ("halt", "operator: bad data feed"),
        ("resume", "feed fixed"),
    ]


async def test_a_halt_set_by_another_process_stops_this_loops_next_cycle(
    database: Database, tmp_path: Path
) -> None:
    leader = await _container(database.dsn, _signals(tmp_path, ["AAA"]))
    other = await _container(database.dsn, _signals(tmp_path, ["AAA"]))  # a standby's API
    try:
        await other.halt.halt("from the standby's API")
        assert (await leader.pipeline.run_cycle()).signals == 0
        assert leader.halt.state.reason == "from the standby's API"
    finally:
        await other.aclose()
        await leader.aclose()


async def test_a_decision_under_review_when_the_halt_lands_is_rejected_halted(
    database: Database, tmp_path: Path
) -> None:
    provider = GatedProvider("approve")
    container = await build_container(
        load_settings(
            {
                "DB_DSN": database.dsn,
                "JANGAR_BASE_URL": "http://127.0.0.1:9",
                "LLM_ENABLED": "true",
                "LLM_SHADOW_MODE": "false",
            },
            None,
        ),
        signals_path=_signals(tmp_path, ["AAA"]),
        trading_enabled=True,
        provider=provider,
    )
    try:
        cycle = asyncio.create_task(container.pipeline.run_cycle())
        async with asyncio.timeout(30):  # a guard against hanging, not a speed check
            await provider.held(1)
        await container.halt.halt("stop now")
        provider.release.set()
        result = await cycle
        assert result.submitted == 0
        assert dict(result.rejected) == {"halted": 1}
    finally:
        await container.aclose()
    async with database.sessions() as session:
        rows = (await session.execute(select(TradeDecisionRow))).scalars().all()
    assert [(r.status, r.reason) for r in rows] == [("rejected", "halted")]
    assert await _executions(database) == 0


async def test_the_kill_switch_still_rejects_without_a_halt(
    database: Database, tmp_path: Path
) -> None:
    container = await _container(
        database.dsn, _signals(tmp_path, ["AAA"]), TRADING_KILL_SWITCH="true"
    )
    try:
        result = await container.pipeline.run_cycle()
    finally:
        await container.aclose()
    assert result.signals == 1 and result.submitted == 0
    assert list(result.rejected) == ["kill_switch"]


async def test_a_replay_on_a_halted_database_trades_nothing_and_says_so(
    database: Database, tmp_path: Path
) -> None:
    signals = _signals(tmp_path, ["AAA", "BBB"])
    settings = load_settings({"DB_DSN": database.dsn}, None)
    container = await _container(database.dsn, signals)
    try:
        await container.halt.halt("replays too")
    finally:
        await container.aclose()
    halted = await run_replay(settings, signals)
    assert halted["halted"] is True and halted["signals"] == 0 and halted["submitted"] == 0
    container = await _container(database.dsn, signals)
    try:
        await container.halt.resume("go")
    finally:
        await container.aclose()
    resumed = await run_replay(settings, signals)
    assert resumed["halted"] is False and resumed["submitted"] == 2


def test_the_replay_command_on_a_halted_database_exits_1_saying_why(tmp_path: Path) -> None:
    from tests.e2e.cli import torghut

    dsn = f"sqlite:///{tmp_path / 'halted.db'}"
    signals = _signals(tmp_path, ["AAA"])

    async def halt() -> None:
        from torghut.db.engine import upgrade

        upgrade(dsn)
        container = await _container(dsn, signals)
        try:
            await container.halt.halt("maintenance")
        finally:
            await container.aclose()

    asyncio.run(halt())
    result = torghut("replay", "--signals", str(signals), env={"DB_DSN": dsn}, cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["halted"] is True
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("torghut: trading is halted on this database") and "resume" in line
