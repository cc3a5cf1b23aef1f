"""The CLI's contract: help, exit codes, one-line errors (CONTRACT §3)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.cli import clean_env, torghut
from torghut.bootstrap import bundled_signals

SAMPLE = bundled_signals()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["demo"],
        ["replay"],
        ["llm", "review"],
        ["llm", "report"],
        ["db", "upgrade"],
        ["dev-gateway"],
    ],
)
def test_help(args: list[str], tmp_path: Path) -> None:
    result = torghut(*args, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LLM_FAIL_MODE": "sometimes"}, "LLM_FAIL_MODE"),
        ({"TRADING_MODE": "live", "LLM_FAIL_MODE": "pass_through"}, "LLM_FAIL_MODE"),
        ({"LLM_PROVIDER": "jangar"}, "LLM_PROVIDER"),
        ({"JANGAR_BASE_URL": "jangar.local"}, "JANGAR_BASE_URL"),
        ({"LLM_TIMEOUT_SECONDS": "-2"}, "LLM_TIMEOUT_SECONDS"),
        ({"DB_DSN": "mysql://x/y"}, "DB_DSN"),
        ({"TRADING_MAX_PRICE_MOVE_PCT": "-0.1"}, "TRADING_MAX_PRICE_MOVE_PCT"),
        ({"TRADING_MAX_SHARES_PER_ORDER": "0"}, "TRADING_MAX_SHARES_PER_ORDER"),
        ({"TRADING_MAX_SIGNAL_AGE_SECONDS": "soon"}, "TRADING_MAX_SIGNAL_AGE_SECONDS"),
        ({"TRADING_EXTENDED_HOURS": "sometimes"}, "TRADING_EXTENDED_HOURS"),
        ({"TRADING_CALENDAR": "mars"}, "TRADING_CALENDAR"),
        ({"ALPACA_MAX_REQUESTS_PER_MINUTE": "lots"}, "ALPACA_MAX_REQUESTS_PER_MINUTE"),
        ({"CLICKHOUSE_CA_FILE": "missing-ca.pem"}, "CLICKHOUSE_CA_FILE"),
        # Sent in a header: a non-ASCII key failed every review at run time (issue 13).
        ({"JANGAR_BASE_URL": "http://j", "JANGAR_API_KEY": "clé-Ω-7"}, "JANGAR_API_KEY"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    result = torghut("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_dotenv_in_current_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LLM_FAIL_MODE=bogus\n")
    result = torghut("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 2 and "LLM_FAIL_MODE" in result.stderr


def test_bad_usage_is_exit_2(tmp_path: Path) -> None:
    result = torghut("replay", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--signals" in result.stderr


def test_missing_signal_file_is_exit_2(tmp_path: Path) -> None:
    result = torghut("replay", "--signals", "nope.jsonl", cwd=tmp_path)
    assert result.returncode == 2 and "nope.jsonl" in result.stderr


def test_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    result = torghut("db", "upgrade", env={"DB_DSN": f"sqlite:///{tmp_path}/t.db"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "t.db") as conn:
        names = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert {"strategies", "trade_decisions", "executions", "llm_decision_reviews"} <= names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("trading", ["false", "true"])
def test_serve_answers_health_and_stops_on_sigterm(tmp_path: Path, trading: str) -> None:
    port = _free_port()
    env = clean_env(
        {
            "DB_DSN": f"sqlite:///{tmp_path}/serve.db",
            "TORGHUT_PORT": str(port),
            "TORGHUT_HOST": "127.0.0.1",
            "TRADING_ENABLED": trading,
            "TRADING_POLL_INTERVAL_SECONDS": "0.5",
            "TORGHUT_API_PUBLIC_READS": "true",  # the test reads /trading/status
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "torghut.cli", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if health.status_code == 200 and ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, ready.text if ready else "none"
        status = httpx.get(f"http://127.0.0.1:{port}/trading/status", timeout=2).json()
        assert status["enabled"] is (trading == "true")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert code == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_replay_prints_one_summary_line(tmp_path: Path) -> None:
    signals = tmp_path / "s.jsonl"
    lines = [
        {
            "event_ts": f"2026-01-05T15:{m:02d}:00Z",
            "symbol": sym,
            "timeframe": "1Min",
            "macd": 0.5,
            "macd_signal": 0.1,
            "rsi14": 30.0,
            "price": 100.0,
        }
        for m, sym in enumerate(["AAPL", "MSFT", "NVDA"])
    ]
    signals.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    env = {"DB_DSN": f"sqlite:///{tmp_path}/r.db"}
    first = torghut("replay", "--signals", str(signals), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = first.stdout.strip().splitlines()
    assert len(out) == 1
    summary = json.loads(out[0])
    assert summary["signals"] == 3 and summary["decisions"] == 3 and summary["submitted"] == 3
    assert {"rejected", "reviews", "duration_ms"} <= set(summary)
    second = torghut("replay", "--signals", str(signals), env=env, cwd=tmp_path)
    again = json.loads(second.stdout)
    assert again["submitted"] == 0, "a replayed file must never submit twice"
    # A copy has its own cursor, so every signal is read again: the decision hashes stop it.
    copy = tmp_path / "copy.jsonl"
    copy.write_text(signals.read_text())
    third = json.loads(torghut("replay", "--signals", str(copy), env=env, cwd=tmp_path).stdout)
    assert third["signals"] == 3 and third["submitted"] == 0 and third["duplicates"] == 3


def test_no_secret_in_stderr_on_failure(tmp_path: Path) -> None:
    env = {"JANGAR_API_KEY": "sk-very-secret-42", "LLM_MAX_RETRIES": "lots"}
    result = torghut("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "sk-very-secret-42" not in result.stderr + result.stdout
    _ = os


def test_a_bad_log_format_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = torghut("db", "upgrade", env={"LOG_FORMAT": "xml"}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torghut: LOG_FORMAT:"), result.stderr


def test_json_log_lines_from_a_verbose_replay(tmp_path: Path) -> None:
    """`LOG_FORMAT=json`: stderr is JSON lines only (banner, one line per order), stdout the
    summary; the keys configured appear in neither."""
    key = "sk-e2e-canary-9876"
    env = {
        "LOG_FORMAT": "json",
        "JANGAR_API_KEY": key,
        "APCA_API_SECRET_KEY": key + "x",
        "DB_DSN": f"sqlite:///{tmp_path / 't.db'}",
    }
    result = torghut("replay", "--signals", str(SAMPLE), "--verbose", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    summary = json.loads(result.stdout)
    assert records[0]["event"] == "startup" and records[0]["command"] == "replay"
    assert len([r for r in records if r.get("event") == "order"]) == summary["submitted"] > 0
    assert key not in result.stderr + result.stdout
