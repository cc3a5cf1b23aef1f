"""`torghut llm eval` on the command line (CONTRACT §8): the table, one JSON line of the agreed
shape, the HTML page (self-contained), the veto-value gate (exit 1 naming the flag) and bad
input (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import torghut
from torghut.bootstrap import bundled_signals
from torghut.config import load_settings
from torghut.devgateway import DevGateway, DevGatewayConfig
from torghut.replay import run_replay


@pytest.fixture
async def reviewed_dsn(db_dsn: str) -> str:
    config = DevGatewayConfig(reviewer="oracle", oracle_signals=str(bundled_signals()))
    async with DevGateway(config) as gateway:
        env = {
            "DB_DSN": db_dsn,
            "JANGAR_BASE_URL": gateway.base_url,
            "LLM_ENABLED": "true",
            "TRADING_BATCH_SIZE": "400",
        }
        await run_replay(load_settings(env, env_file=None), bundled_signals())
    return db_dsn


def test_eval_table_json_html_and_gate(reviewed_dsn: str, tmp_path: Path) -> None:
    env = {"DB_DSN": reviewed_dsn}
    signals = str(bundled_signals())
    table = torghut("llm", "eval", "--signals", signals, env=env, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "horizon 30m" in table.stdout and "veto value" in table.stdout

    html = tmp_path / "eval.html"
    out = torghut(
        "llm",
        "eval",
        "--signals",
        signals,
        "--json",
        "--html",
        str(html),
        "--min-veto-value-bps",
        "1",
        "--horizons",
        "30m",
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    body = json.loads(lines[0])
    assert body["reviews"] > 50
    h = body["horizons"]["30m"]
    assert set(h["by_verdict"]["veto"]) >= {"n", "mean_bps", "hit_rate"}
    assert set(h["veto_value_bps"]) >= {"mean", "ci95", "n"}
    assert set(h["random_veto_bps"]) >= {"mean", "ci95"} and isinstance(h["brier"], float)
    assert not any(key.startswith("_") for key in h)
    page = html.read_text()
    assert page.count("<svg") == 2 and "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page

    # A bar no reviewer clears: exit 1, the horizon and the flag named on stderr.
    gate = torghut(
        "llm",
        "eval",
        "--signals",
        signals,
        "--horizons",
        "30m",
        "--min-veto-value-bps",
        "500",
        env=env,
        cwd=tmp_path,
    )
    assert gate.returncode == 1
    assert "--min-veto-value-bps 500" in gate.stderr and "30m" in gate.stderr
    assert len(gate.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--horizons", "5x"], "--horizons"),
        (["--cost-bps", "-1"], "--cost-bps"),
        ([], "--signals"),
        (["--signals", "/nonexistent.jsonl"], "--signals"),
        (["--min-veto-value-bps", "nan"], "--min-veto-value-bps"),
    ],
)
def test_bad_input_is_exit_2_naming_it(args: list[str], needle: str, tmp_path: Path) -> None:
    signals = (
        ["--signals", str(bundled_signals())]
        if "--signals" not in args and needle != "--signals"
        else []
    )
    db = tmp_path / "t.db"
    db.touch()
    run = torghut("llm", "eval", *signals, *args, env={"DB_DSN": f"sqlite:///{db}"}, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert needle in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert run.stdout == ""


def test_a_missing_database_is_named_not_created(tmp_path: Path) -> None:
    run = torghut(
        "llm",
        "eval",
        "--signals",
        str(bundled_signals()),
        env={"DB_DSN": f"sqlite:///{tmp_path / 'nope.db'}"},
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "DB_DSN" in run.stderr
    assert not (tmp_path / "nope.db").exists()
