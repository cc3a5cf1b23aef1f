"""`serve` trades fresh signals only (issue 11): over a file whose timestamps are hours old it
submits nothing and says why in /trading/status and /metrics; the same file with fresh
timestamps trades. A real `torghut serve` subprocess; `TRADING_CALENDAR=always` so that the
test does not depend on the exchange being open while it runs (the session check has its
own tests)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.cli import clean_env

LINES = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signals(path: Path, start: datetime) -> Path:
    rows = [
        {
            "event_ts": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "symbol": f"S{i}",
            "timeframe": "1Min",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 100.0,
        }
        for i in range(LINES)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _serve_until_done(tmp_path: Path, name: str, signals: Path) -> tuple[dict[str, Any], str]:
    """Run `serve` over `signals` until every line is read; its status and metrics."""
    port = _free_port()
    env = clean_env(
        {
            "DB_DSN": f"sqlite:///{tmp_path}/{name}.db",
            "TORGHUT_PORT": str(port),
            "TORGHUT_HOST": "127.0.0.1",
            "TORGHUT_API_PUBLIC_READS": "true",  # the test reads /trading/status without a token
            "TRADING_ENABLED": "true",
            "TRADING_POLL_INTERVAL_SECONDS": "0.3",
            "TRADING_SIGNALS_PATH": str(signals),
            "TRADING_CALENDAR": "always",
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
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/trading/status", timeout=2).json()
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if status["metrics"]["decisions"] >= LINES:
                break
            time.sleep(0.2)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        return status, metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_refuses_hours_old_signals_and_trades_fresh_ones(tmp_path: Path) -> None:
    old = _signals(tmp_path / "old.jsonl", datetime.now(UTC) - timedelta(hours=3))
    status, metrics = _serve_until_done(tmp_path, "old", old)
    assert status["metrics"]["decisions"] == LINES, status
    assert status["metrics"]["submitted"] == 0, status
    assert status["metrics"]["rejected"] == {"signal_stale": LINES}, status
    assert f'torghut_decision_rejections_total{{reason="signal_stale"}} {LINES}.0' in metrics

    fresh = _signals(tmp_path / "fresh.jsonl", datetime.now(UTC) - timedelta(seconds=5))
    status, _ = _serve_until_done(tmp_path, "fresh", fresh)
    assert status["metrics"]["submitted"] == LINES, status
    assert status["metrics"]["rejected"] == {}, status
