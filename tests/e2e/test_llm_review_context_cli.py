"""`torghut llm review` builds the production context (issue 14 item 3): with `--signals` the
bar history up to the decision's time, with `DB_DSN` holding the account the portfolio and
earlier decisions; without them its output names what was missing."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tests.e2e.cli import clean_env
from torghut.bootstrap import bundled_signals
from torghut.devgateway import DevGateway, DevGatewayConfig

DECISION = {
    "strategy_id": "macd-rsi-default",
    "symbol": "AMZN",
    "action": "buy",
    "qty": 2,
    "order_type": "market",
    "time_in_force": "day",
    "event_ts": "2025-03-03T17:00:00Z",
    "timeframe": "1Min",
    "params": {"price": 205.0},
}


async def _cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "torghut.cli",
        *args,
        env=clean_env(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


def _sent(gateway: DevGateway) -> dict[str, Any]:
    text = gateway.requests[-1]["messages"][-1]["content"]
    request, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
    return dict(request)


async def test_dry_run_with_signals_and_database_and_without(tmp_path: Path) -> None:
    decision = tmp_path / "d.json"
    decision.write_text(json.dumps(DECISION))
    async with DevGateway(DevGatewayConfig()) as gw:
        env = {
            "JANGAR_BASE_URL": gw.base_url,
            "LLM_PROMPT_VERSION": "v2",
            "DB_DSN": f"sqlite:///{tmp_path / 'none.db'}",
        }
        rc, out, err = await _cli(
            "llm", "review", "--decision", str(decision), env=env, cwd=tmp_path
        )
        assert rc == 0, err
        bare = json.loads(out)
        assert bare["missing"] == ["history", "market", "portfolio", "recent_decisions"]
        assert not (tmp_path / "none.db").exists()  # a dry run creates no database

        rc, out, err = await _cli(
            "llm",
            "review",
            "--decision",
            str(decision),
            "--signals",
            str(bundled_signals()),
            env=env,
            cwd=tmp_path,
        )
        assert rc == 0, err
        assert json.loads(out)["missing"] == ["portfolio", "recent_decisions"]
        sent = _sent(gw)
        bars = sent["history"]["bars"]
        assert len(bars) == 30 and bars[-1]["ts"] == "2025-03-03T17:00:00Z"
        assert sent["market"]["symbol"] == "AMZN" and sent["session"]["phase"] == "regular"

        # A database that holds the account, from a replay of the sample's first hours.
        head = tmp_path / "head.jsonl"
        lines = bundled_signals().read_text().splitlines()
        head.write_text(
            "\n".join(x for x in lines if json.loads(x)["event_ts"] < DECISION["event_ts"]) + "\n"
        )
        db_env = {**env, "DB_DSN": f"sqlite:///{tmp_path / 'book.db'}", "LLM_ENABLED": "false"}
        rc, _, err = await _cli("replay", "--signals", str(head), env=db_env, cwd=tmp_path)
        assert rc == 0, err
        rc, out, err = await _cli(
            "llm",
            "review",
            "--decision",
            str(decision),
            "--signals",
            str(bundled_signals()),
            env=db_env,
            cwd=tmp_path,
        )
        assert rc == 0, err
        assert json.loads(out)["missing"] == []
        sent = _sent(gw)
        assert sent["portfolio"]["equity"] is not None and sent["portfolio"]["positions"]
        assert [(d["event_ts"], d["status"]) for d in sent["recent_decisions"]] == [
            ("2025-03-03T16:20:00Z", "filled"),
            ("2025-03-03T16:05:00Z", "filled"),
            ("2025-03-03T16:03:00Z", "filled"),
            ("2025-03-03T14:44:00Z", "rejected"),
        ]
        assert float(sent["risk_limits"]["max_notional_per_trade"]) == 1000

        # The same database once it holds decisions after the decision: no portfolio.
        early = {**DECISION, "event_ts": "2025-03-03T16:00:00Z"}
        decision.write_text(json.dumps(early))
        rc, out, err = await _cli(
            "llm",
            "review",
            "--decision",
            str(decision),
            "--signals",
            str(bundled_signals()),
            env=db_env,
            cwd=tmp_path,
        )
        assert rc == 0, err
        assert json.loads(out)["missing"] == ["portfolio"]


async def test_dry_run_and_replay_anonymize(tmp_path: Path) -> None:
    decision = tmp_path / "d.json"
    decision.write_text(json.dumps(DECISION))
    head = tmp_path / "head.jsonl"
    head.write_text("\n".join(bundled_signals().read_text().splitlines()[:900]) + "\n")
    async with DevGateway(DevGatewayConfig()) as gw:
        env = {"JANGAR_BASE_URL": gw.base_url, "DB_DSN": f"sqlite:///{tmp_path / 'a.db'}"}
        rc, _out, err = await _cli(
            "llm",
            "review",
            "--anonymize",
            "--decision",
            str(decision),
            "--signals",
            str(bundled_signals()),
            env=env,
            cwd=tmp_path,
        )
        assert rc == 0, err
        sent = gw.requests[-1]["messages"][-1]["content"]
        assert "AMZN" not in sent and "2025-" not in sent and '"bars":[{' in sent
        before = len(gw.requests)
        rc, _out, err = await _cli(
            "replay",
            "--anonymize",
            "--signals",
            str(head),
            env={**env, "LLM_ENABLED": "true"},
            cwd=tmp_path,
        )
        assert rc == 0, err
        assert len(gw.requests) > before
        assert all("2025-" not in r["messages"][-1]["content"] for r in gw.requests[before:])
