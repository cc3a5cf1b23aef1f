"""Every bad input of issue 12 is one line on stderr and exit 2, never a traceback; `serve`
refuses at start-up what `replay` refuses (a missing signal file, a bad catalog); a second
loop on one SQLite file is refused by `replay` with one line."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.cli import torghut

DECISION = {
    "strategy_id": "macd-rsi-default",
    "symbol": "AAPL",
    "action": "buy",
    "qty": 5,
    "event_ts": "2026-02-03T15:30:00Z",
    "timeframe": "1Min",
    "params": {"price": 100.98},
}
# Nothing listens here: a review that got as far as sending would fail with exit 1, not 2.
NO_GATEWAY = {"JANGAR_BASE_URL": "http://127.0.0.1:9", "LLM_MAX_RETRIES": "0"}


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _decision_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "decision.json"
    path.write_text(text, encoding="utf-8")
    return path


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


REVIEW_CASES: dict[str, tuple[Callable[[], str], str]] = {
    "deeply nested": (
        lambda: '{"params":' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}",
        "nested",
    ),
    "nested past the limit": (
        lambda: json.dumps({**DECISION, "params": {"a": _nested(20)}}),
        "nested deeper",
    ),
    "price abc": (lambda: json.dumps({**DECISION, "params": {"price": "abc"}}), "params.price"),
    "price -1": (lambda: json.dumps({**DECISION, "params": {"price": -1}}), "params.price"),
    "qty 1e30": (lambda: json.dumps({**DECISION, "qty": "1e30"}), "qty"),
    "qty NaN": (lambda: json.dumps({**DECISION, "qty": "NaN"}), "qty"),
    "20 MB rationale": (
        lambda: json.dumps({**DECISION, "rationale": "x" * 20_000_000}),
        "larger than",
    ),
    "100 KB rationale": (lambda: json.dumps({**DECISION, "rationale": "x" * 100_000}), "rationale"),
    "NUL in symbol": (lambda: json.dumps({**DECISION, "symbol": "AA\u0000PL"}), "NUL"),
    "limit price 1e30": (
        lambda: json.dumps({**DECISION, "order_type": "limit", "limit_price": "1e30"}),
        "limit_price",
    ),
    "5000-digit integer": (lambda: '{"qty": 1' + "0" * 5000 + "}", "not JSON"),
}


@pytest.mark.parametrize("name", sorted(REVIEW_CASES))
def test_llm_review_refuses_what_the_pipeline_would_never_send(name: str, tmp_path: Path) -> None:
    make, needle = REVIEW_CASES[name]
    path = _decision_file(tmp_path, make())
    result = torghut("llm", "review", "--decision", str(path), env=NO_GATEWAY, cwd=tmp_path)
    assert_one_line_exit_2(result, "--decision", needle)


def test_llm_review_caps_what_it_reads(tmp_path: Path) -> None:
    result = torghut(
        "llm", "review", "--decision", "/dev/zero", env=NO_GATEWAY, cwd=tmp_path, timeout=60
    )
    assert_one_line_exit_2(result, "--decision", "larger than")


def test_a_good_decision_still_goes_to_the_gateway(tmp_path: Path) -> None:
    path = _decision_file(tmp_path, json.dumps(DECISION))
    result = torghut("llm", "review", "--decision", str(path), env=NO_GATEWAY, cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # sent, and the gateway is not there
    assert json.loads(result.stdout)["error"]["code"] == "connect_error"


def test_a_dotenv_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"DB_DSN=sqlite:///x.db\nNOTE=caf\xe9\n")
    for args in (["db", "upgrade"], ["llm", "report"], ["replay", "--signals", "x"]):
        assert_one_line_exit_2(torghut(*args, cwd=tmp_path), ".env", "UTF-8")


@pytest.mark.parametrize("port", ["-1", "99999", "0", "http"])
def test_serve_refuses_a_port_that_is_not_one(port: str, tmp_path: Path) -> None:
    assert_one_line_exit_2(torghut("serve", "--port", port, cwd=tmp_path), "--port")


def test_serve_refuses_a_host_it_cannot_resolve(tmp_path: Path) -> None:
    result = torghut("serve", "--host", "no-such-host.invalid", "--port", "8181", cwd=tmp_path)
    assert_one_line_exit_2(result, "--host", "no-such-host.invalid")


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = torghut("serve", "--host", "127.0.0.1", "--port", port, cwd=tmp_path)
    assert_one_line_exit_2(result, port, "already in use")


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_serve_refuses_a_missing_signal_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    result = torghut(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        _free_port(),
        cwd=tmp_path,
        env={"TRADING_ENABLED": "true", "TRADING_SIGNALS_PATH": str(missing)},
    )
    assert_one_line_exit_2(result, "TRADING_SIGNALS_PATH", str(missing))


def test_serve_refuses_a_bad_strategy_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "strategies.yaml"
    catalog.write_text("strategies:\n  - id: [unclosed\n", encoding="utf-8")
    result = torghut(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        _free_port(),
        cwd=tmp_path,
        env={"TRADING_ENABLED": "true", "TRADING_STRATEGY_CONFIG_PATH": str(catalog)},
    )
    assert_one_line_exit_2(result, "TRADING_STRATEGY_CONFIG_PATH", str(catalog))


def test_llm_report_since_out_of_range_is_one_line(tmp_path: Path) -> None:
    result = torghut(
        "llm", "report", "--since", "9999-12-31T23:59:59-01:00", "--min-reviews", "1", cwd=tmp_path
    )
    assert_one_line_exit_2(result, "--since")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-error-rate", "nan"),
        ("--max-error-rate", "inf"),
        ("--max-error-rate", "1.5"),
        ("--max-error-rate", "-0.1"),
        ("--max-p95-ms", "nan"),
        ("--max-p95-ms", "-1"),
        ("--min-reviews", "-3"),
        ("--min-reviews", "2.5"),
    ],
)
def test_llm_report_thresholds_are_finite_and_in_range(
    flag: str, value: str, tmp_path: Path
) -> None:
    assert_one_line_exit_2(torghut("llm", "report", flag, value, cwd=tmp_path), flag)


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/version/x"])
def test_demo_refuses_a_work_folder_it_cannot_use(target: str, tmp_path: Path) -> None:
    assert_one_line_exit_2(torghut("demo", "--dir", target, cwd=tmp_path), "--dir")


@pytest.mark.parametrize("target", ["/dev/zero", "/etc"])
def test_replay_refuses_what_is_not_a_signal_file(target: str, tmp_path: Path) -> None:
    result = torghut("replay", "--signals", target, cwd=tmp_path)
    assert_one_line_exit_2(result, "--signals", "not a regular file")


def test_replay_refuses_a_database_another_loop_trades_on(tmp_path: Path) -> None:
    import filelock

    db = tmp_path / "torghut.db"
    lock = filelock.FileLock(str(db) + ".lock")
    lock.acquire(timeout=0)  # what a running `serve` on this file holds
    try:
        result = torghut(
            "replay",
            "--signals",
            str(_signals(tmp_path)),
            cwd=tmp_path,
            env={"DB_DSN": f"sqlite:///{db}"},
        )
    finally:
        lock.release()
    assert_one_line_exit_2(result, "another torghut process", str(db))
    done = torghut(
        "replay",
        "--signals",
        str(_signals(tmp_path)),
        cwd=tmp_path,
        env={"DB_DSN": f"sqlite:///{db}"},
    )
    assert done.returncode == 0, done.stderr


def _signals(tmp_path: Path) -> Path:
    path = tmp_path / "signals.jsonl"
    path.write_text(
        json.dumps(
            {
                "event_ts": "2026-03-02T15:00:00Z",
                "symbol": "AAPL",
                "timeframe": "1Min",
                "price": 100,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return path
