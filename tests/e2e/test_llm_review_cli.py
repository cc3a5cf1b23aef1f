"""`torghut llm review` against every Jangar example served byte-exact by a local server, and
against the dev gateway (CONTRACT §3, issue: the review gate)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.e2e.cli import clean_env
from tests.integration.conftest_llm import example
from tests.integration.rawserver import RawServer, respond
from torghut.devgateway import DevGateway, DevGatewayConfig

DECISION = {
    "strategy_id": "macd-rsi-default",
    "symbol": "AAPL",
    "action": "buy",
    "qty": 5,
    "order_type": "market",
    "time_in_force": "day",
    "event_ts": "2026-02-03T15:30:00Z",
    "timeframe": "1Min",
    "params": {"price": 100.98},
}

# example file -> (status, verdict, error code or None, exit code)
EXAMPLES = {
    "approve_clean.sse": (200, "approve", None, 0),
    "veto_clean.sse": (200, "veto", None, 0),
    "ratelimit_preamble.sse": (200, "approve", None, 0),
    "preamble_message.sse": (200, "approve", None, 0),
    "midstream_upstream_error.sse": (200, "error", "gateway_error", 1),
    "failed_turn.sse": (200, "error", "gateway_error", 1),
    "stream_required.sse": (400, "error", "http_error", 1),
    "model_not_found.sse": (400, "error", "http_error", 1),
    "not_json_answer.sse": (200, "error", "invalid_json", 1),
}


async def _review(base_url: str, decision_file: Path, **env: str) -> tuple[int, dict, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "torghut.cli",
        "llm",
        "review",
        "--decision",
        str(decision_file),
        env=clean_env({"JANGAR_BASE_URL": base_url, "LLM_MAX_RETRIES": "0", **env}),
        cwd=decision_file.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.decode().splitlines()
    assert len(lines) == 1, (out, err)
    return proc.returncode or 0, json.loads(lines[0]), err.decode()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
async def test_each_jangar_example(name: str, tmp_path: Path) -> None:
    status, verdict, code, exit_code = EXAMPLES[name]
    decision = tmp_path / "decision.json"
    decision.write_text(json.dumps(DECISION))
    async with RawServer([respond(example(name), status, pieces=7)]) as server:
        rc, out, err = await _review(server.url, decision, JANGAR_API_KEY="sk-demo-secret-xyz")
    assert out["verdict"] == verdict, out
    assert rc == exit_code, err
    assert (out["error"] or {}).get("code") == code
    assert set(out) == {
        "provider",
        "model",
        "llm_verdict",
        "verdict",
        "reason",
        "response",
        "error",
        "usage",
        "latency_ms",
        "ttft_ms",
        "missing",
    }
    assert out["provider"] == "jangar"
    if code is None:
        assert out["usage"] is not None and out["usage"]["total_tokens"] > 0
        assert out["llm_verdict"] == verdict
    if code == "http_error":
        assert "400" in out["error"]["message"]
    assert "sk-demo-secret-xyz" not in json.dumps(out) + err
    body = json.loads(next(r for r in server.requests if r.method == "POST").body)
    assert body["stream"] is True and "temperature" not in body


async def test_against_the_dev_gateway_and_stdin(tmp_path: Path) -> None:
    decision = tmp_path / "d.json"
    decision.write_text(json.dumps(DECISION))
    async with DevGateway(DevGatewayConfig()) as gw:
        rc, out, _ = await _review(gw.base_url, decision)
        assert (rc, out["verdict"]) == (0, "approve")
        big = {**DECISION, "qty": 1000}
        decision.write_text(json.dumps(big))
        rc, out, _ = await _review(gw.base_url, decision)
        assert (rc, out["verdict"], out["reason"]) == (0, "veto", "llm_veto")


async def test_a_model_the_gateway_does_not_serve_is_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    decision = tmp_path / "d.json"
    decision.write_text(json.dumps(DECISION))
    config = DevGatewayConfig(model="other-model", models=("other-model",))
    async with DevGateway(config) as gw:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "torghut.cli",
            "llm",
            "review",
            "--decision",
            str(decision),
            env=clean_env({"JANGAR_BASE_URL": gw.base_url, "LLM_MODEL": "gpt-5.3-codex"}),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
    assert out == b""
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "LLM_MODEL" in lines[0] and "gpt-5.3-codex" in lines[0], lines
    assert "Traceback" not in err.decode()


async def test_unreachable_gateway_is_connect_error(tmp_path: Path) -> None:
    from tests.integration.conftest_llm import free_port

    decision = tmp_path / "d.json"
    decision.write_text(json.dumps(DECISION))
    rc, out, _ = await _review(f"http://127.0.0.1:{free_port()}", decision)
    assert rc == 1 and out["error"]["code"] == "connect_error"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not JSON"),
        ("[1,2]", "one JSON object"),
        (json.dumps({**DECISION, "action": "hold"}), "action"),
        (json.dumps({**DECISION, "qty": -1}), "qty"),
    ],
)
async def test_bad_decision_file_is_exit_2(content: str, needle: str, tmp_path: Path) -> None:
    decision = tmp_path / "d.json"
    decision.write_text(content)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "torghut.cli",
        "llm",
        "review",
        "--decision",
        str(decision),
        env=clean_env({"JANGAR_BASE_URL": "http://127.0.0.1:9"}),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 2
    assert out == b""
    assert needle in err.decode() and len(err.decode().strip().splitlines()) == 1
