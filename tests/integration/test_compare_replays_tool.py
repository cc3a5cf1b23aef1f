"""bench/compare_replays.py, the old-versus-new replay comparison (issue 16): its scenarios are
reproducible and reach the paths they are meant to, its canonical view leaves out exactly what
is not a result, and the whole tool says "identical" for the same code and names the
difference for a changed one (a one-word change of the sizing rule)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

import torghut

ROOT = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compare_replays", ROOT / "bench" / "compare_replays.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_replays"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
WINDOW = tool.Window(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, 0, 5, tzinfo=UTC))


def test_a_seed_always_draws_the_same_scenario_and_seeds_differ() -> None:
    first, again = tool.make_scenario(7, "mix"), tool.make_scenario(7, "mix")
    assert (first.env, first.files, first.catalog) == (again.env, again.files, again.catalog)
    assert tool.make_scenario(8, "mix").files != first.files


def test_scenarios_reach_the_paths_they_are_meant_to() -> None:
    scenarios = [tool.make_scenario(seed, "mix") for seed in range(40)]
    assert {s.env["TRADING_BATCH_SIZE"] for s in scenarios} == {"1", "7", "50", "500"}
    assert {s.env["TRADING_COOLDOWN_SECONDS"] for s in scenarios} == {"0", "120"}
    assert any(s.gateway_args for s in scenarios) and any(not s.gateway_args for s in scenarios)
    assert any(len(s.files) > 1 for s in scenarios) and any(s.catalog for s in scenarios)
    lines = [line for s in scenarios for line in s.files[-1].split(b"\n")]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue
    signals = [p for p in parsed if isinstance(p, dict) and "rsi14" in p and "macd" in p]
    assert any(line == b"not json" for line in lines)  # bad lines
    assert len(set(lines)) < len(lines)  # duplicates
    assert any(p.get("price") in (0, None) for p in signals)  # bad ticks
    assert any(isinstance(p.get("price"), (int, float)) and p["price"] < 0 for p in signals)
    assert any("price" not in p for p in signals)
    buys = [p for p in signals if _fires(p, "buy")]
    sells = [p for p in signals if _fires(p, "sell")]
    assert len(buys) > 100 and len(sells) > 100
    symbol_counts = [len({p.get("symbol") for p in s}) for s in _by_scenario(scenarios)]
    assert min(symbol_counts) >= 3 and max(symbol_counts) > 20


def _fires(p: dict[str, object], side: str) -> bool:
    macd, signal, rsi = p.get("macd"), p.get("macd_signal"), p.get("rsi14")
    if not all(isinstance(v, float | int) for v in (macd, signal, rsi)):
        return False
    assert isinstance(macd, float | int) and isinstance(signal, float | int)
    assert isinstance(rsi, float | int)
    return macd > signal and rsi < 35 if side == "buy" else macd < signal and rsi > 65


def _by_scenario(scenarios: list[object]) -> list[list[dict[str, object]]]:
    out = []
    for s in scenarios:
        rows = []
        for line in s.files[-1].split(b"\n"):  # type: ignore[attr-defined]
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and "rsi14" in data:
                rows.append(data)
        out.append(rows)
    return out


def test_the_canonical_view_leaves_out_the_wall_clock_and_random_ids_only() -> None:
    inside = datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    raw = {
        "id": "sim-c6824193-9c8c-48a2-a265-0e650cd42ce9",
        "created_at": "2030-01-01T00:01:00+00:00",
        "event_ts": "2025-03-03T14:44:00Z",
        "stamp": inside.isoformat(),
        "epoch": int(inside.timestamp()),
        "qty": "4.00000000",
        "n": 4,
        "price": 205.51,
    }
    assert tool.canon_json(raw, WINDOW) == {
        "created_at": "<set>",
        "epoch": "<wall-clock>",
        "event_ts": "2025-03-03T14:44:00Z",
        "id": "sim-<uuid>",
        "price": "205.51",
        "qty": "4.00000000",  # text in JSON is kept as written
        "n": "4",  # numbers by value
        "stamp": "<wall-clock>",
    }
    # Stored values: a datetime of the run is a marker, one of the data is kept as stored.
    assert tool.canon_value(inside + timedelta(seconds=1), "timestamp", WINDOW) == "<wall-clock>"
    assert tool.canon_value("2025-03-03 14:44:00.000000", "datetime", WINDOW) == (
        "2025-03-03 14:44:00.000000"
    )
    assert tool.canon_value(4, "numeric(24, 8)", WINDOW) == tool.canon_value(4.0, "numeric", WINDOW)
    assert tool.canon_value(4, "numeric", WINDOW) != tool.canon_value(5, "numeric", WINDOW)


def test_a_review_request_is_compared_as_data_with_timing_masked() -> None:
    def prompt(status: str, qty: str) -> str:
        request = {
            "decision": {"symbol": "AAA", "qty": qty},
            "recent_decisions": [{"event_ts": "2025-01-02T15:00:00Z", "status": status}],
        }
        return "Review this. The request as JSON:\n" + json.dumps(request) + "\n" + "x" * 200

    assert tool.canon_json(prompt("undecided", "4"), WINDOW) == tool.canon_json(
        prompt("filled", "4"), WINDOW
    )
    assert tool.canon_json(prompt("filled", "4"), WINDOW) != tool.canon_json(
        prompt("filled", "5"), WINDOW
    )
    assert tool.canon_json(prompt("undecided", "4"), WINDOW, mask=False) != tool.canon_json(
        prompt("filled", "4"), WINDOW, mask=False
    )


def test_compare_names_the_row_and_the_column_that_differ() -> None:
    def result(status: str, cash: str) -> object:
        dump = {
            "trade_decisions": tool.TableDump(
                ["decision_hash", "status"],
                [
                    {"decision_hash": "th-1", "status": "filled"},
                    {"decision_hash": "th-2", "status": status},
                ],
            ),
            "sim_accounts": tool.TableDump(["id", "cash"], [{"id": "default", "cash": cash}]),
        }
        return tool.RunResult(dump, [{"exit": 0, "summary": {"submitted": 1}}], 0.0)

    same, notes = tool.compare(result("rejected", "10"), result("rejected", "10"))
    assert same == [] and notes == []
    diffs, _ = tool.compare(result("rejected", "10"), result("filled", "9.5"))
    text = "\n".join(diffs)
    assert 'trade_decisions[["th-2"]].status: OLD "rejected" NEW "filled"' in text
    assert 'sim_accounts[["default"]].cash: OLD "10" NEW "9.5"' in text


def _copy_src(into: Path) -> Path:
    src = Path(torghut.__file__).resolve().parents[1]
    target = into / "src"
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_the_tool_finds_a_one_word_change_and_nothing_in_the_same_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _copy_src(tmp_path / "base")
    changed = _copy_src(tmp_path / "changed")
    strategy = changed / "torghut" / "trading" / "strategy.py"
    text = strategy.read_text()
    rule = "shares = (budget / price).to_integral_value(rounding=ROUND_FLOOR)"
    assert rule in text, "the sizing rule moved: update this test's mutation"
    # decimal's rounding modes are their own names: the string needs no import.
    strategy.write_text(text.replace(rule, rule.replace("ROUND_FLOOR", '"ROUND_CEILING"')))
    args = ["--base", str(base), "--seeds", "1", "--first-seed", "0", "--db", "sqlite"]
    assert tool.main([*args, "--new", str(base), "--llm", "off"]) == 0
    assert "identical" in capsys.readouterr().out
    assert tool.main([*args, "--new", str(changed), "--llm", "off"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT" in out
    assert "trade_decisions[" in out and ".qty: OLD" in out
