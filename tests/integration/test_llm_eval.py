"""`llm eval` tells a good reviewer from a random one (issue 14 items 4 and 6): on the bundled
sample, replayed in shadow mode on SQLite and PostgreSQL through the dev gateway, the oracle
reviewer's veto value interval is above zero and above the random-veto baseline's, and a
random reviewer's interval overlaps that baseline's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from torghut.bootstrap import bundled_signals
from torghut.config import load_settings
from torghut.devgateway import DevGateway, DevGatewayConfig
from torghut.domain import Signal
from torghut.evaluation.command import run_eval
from torghut.evaluation.evaluate import ReviewedDecision, evaluate, gate_failures
from torghut.evaluation.prices import PricePaths, parse_horizons
from torghut.replay import run_replay


async def _replay_and_eval(db_dsn: str, config: DevGatewayConfig) -> dict[str, Any]:
    async with DevGateway(config) as gateway:
        env = {
            "DB_DSN": db_dsn,
            "JANGAR_BASE_URL": gateway.base_url,
            "LLM_ENABLED": "true",
            "LLM_SHADOW_MODE": "true",
            "LLM_PROMPT_VERSION": "v2",
            "TRADING_BATCH_SIZE": "400",
        }
        summary = await run_replay(load_settings(env, env_file=None), bundled_signals())
    assert summary["complete"] and sum(summary["reviews"].values()) > 50
    return await run_eval(db_dsn, bundled_signals(), horizons="5m,30m", cost_bps=2.0)


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


REVIEWERS = {
    "oracle": DevGatewayConfig(
        reviewer="oracle",
        oracle_signals=str(bundled_signals()),
        oracle_horizon_seconds=1800,
        oracle_cost_bps=2.0,
    ),
    "random": DevGatewayConfig(reviewer="random", veto_rate=0.3, seed=3),
}


@pytest.mark.parametrize("reviewer", sorted(REVIEWERS))
async def test_oracle_beats_random_vetoes_and_a_random_reviewer_does_not(
    db_dsn: str, reviewer: str
) -> None:
    report = await _replay_and_eval(db_dsn, REVIEWERS[reviewer])
    h = report["horizons"]["30m"]
    veto, base = h["veto_value_bps"], h["random_veto_bps"]
    assert veto["n"] > 20 and h["beyond_data"] > 0
    assert base["n"] == veto["n"]
    if reviewer == "oracle":
        assert veto["ci95"][0] > 0
        assert veto["ci95"][0] > base["ci95"][1]
        assert h["by_verdict"]["veto"]["hit_rate"] == 0.0  # every veto was a loser
        assert h["brier"] < 0.01
        assert not gate_failures(report, 0.0)
    else:
        assert _overlap(veto["ci95"], base["ci95"])
        assert gate_failures(report, 0.0)


# ------------------------------------------------------------------ the numbers, by hand
T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def _paths() -> PricePaths:
    prices = {"A": [100, 101, 102, 103], "B": [50, 49, 48, 47]}
    return PricePaths.from_signals(
        Signal(event_ts=T0 + timedelta(minutes=5 * i), symbol=s, timeframe="1Min", price=p)
        for s, series in prices.items()
        for i, p in enumerate(series)
    )


def _d(
    symbol: str,
    action: str,
    minute: int,
    verdict: str,
    *,
    confidence: float = 0.8,
    adjusted: float | None = None,
) -> ReviewedDecision:
    return ReviewedDecision(
        decision_id=f"{symbol}{minute}{action}{verdict}",
        symbol=symbol,
        action=action,
        event_ts=T0 + timedelta(minutes=minute),
        qty=10,
        reference_price=None,
        verdict=verdict,
        llm_verdict=verdict,
        confidence=confidence,
        adjusted_qty=adjusted,
    )


def test_forward_returns_are_signed_by_side_net_of_costs_and_past_the_data_counted() -> None:
    decisions = [
        _d("A", "buy", 0, "approve"),  # 100 -> 101 : +100 bps - 2
        _d("B", "buy", 0, "veto"),  # 50 -> 49 : -200 - 2 (the veto avoided it)
        _d("B", "sell", 5, "veto"),  # 49 -> 48, sold: +204.08 - 2 (a wrong veto)
        _d("A", "buy", 5, "adjust", adjusted=5),  # 101 -> 102: +99.01 - 2, half the size
        _d("A", "buy", 15, "approve"),  # no price 5 minutes later: left out
    ]
    report = evaluate(decisions, _paths(), parse_horizons("5m"), cost_bps=2.0)
    h = report["horizons"]["5m"]
    assert (h["evaluated"], h["beyond_data"], h["no_price"]) == (4, 1, 0)
    assert h["by_verdict"]["approve"] == {"n": 1, "mean_bps": 98.0, "hit_rate": 1.0}
    veto = h["veto_value_bps"]
    assert veto["n"] == 2
    assert veto["mean"] == pytest.approx(-((-202.0) + (1e4 / 49 - 2)) / 2, abs=0.01)
    assert veto["ci95"][0] <= veto["mean"] <= veto["ci95"][1]
    assert h["adjust_value_bps"] == {
        "mean": pytest.approx(-0.5 * (1e4 / 101 - 2), abs=0.01),
        "n": 1,
    }
    # Right: approve A (+), veto B buy (-), adjust A (+); wrong: veto B sell (+).
    assert h["brier"] == pytest.approx((3 * 0.2**2 + 0.8**2) / 4, abs=1e-4)
    assert sum(b["n"] for b in h["reliability"]) == 4
    assert h["_pnl_series"]["all_bps"][-1] == pytest.approx(
        98 + -202 + (1e4 / 49 - 2) + (1e4 / 101 - 2), abs=0.02
    )


def test_the_gate_names_the_horizon_and_the_flag() -> None:
    report = evaluate(
        [_d("A", "buy", 0, "veto"), _d("A", "buy", 5, "veto")],
        _paths(),
        parse_horizons("5m,1d"),
        cost_bps=0.0,
    )
    failures = gate_failures(report, 0.0)
    assert failures[0].startswith("5m: veto value lower bound -")
    assert "--min-veto-value-bps 0" in failures[0]
    assert failures[1].startswith("1d: no vetoed decision to measure")


@pytest.mark.parametrize("bad", ["5", "0m", "5x", "", "m5", "5m,,30m"])
def test_bad_horizons_name_the_flag(bad: str) -> None:
    from torghut.errors import InputError

    with pytest.raises(InputError, match="--horizons"):
        parse_horizons(bad)


def test_same_rows_same_numbers_whatever_their_order() -> None:
    decisions = [_d("A", "buy", m, v) for m in (0, 5, 10) for v in ("approve", "veto")]
    decisions += [_d("B", "sell", m, "veto") for m in (0, 5)]
    forward = evaluate(decisions, _paths(), parse_horizons("5m"), cost_bps=2.0, seed=1)
    backward = evaluate(decisions[::-1], _paths(), parse_horizons("5m"), cost_bps=2.0, seed=1)
    assert forward == backward


# ------------------------------------------------------------- the ClickHouse price source
async def test_clickhouse_bars_give_the_same_evaluation_as_the_signal_file(db_dsn: str) -> None:
    import json
    from urllib.parse import parse_qs, urlsplit

    from tests.integration.rawserver import RawServer, respond
    from torghut.evaluation.clickhouse import ClickHouseAccess

    report_file = await _replay_and_eval(db_dsn, REVIEWERS["oracle"])
    rows = [json.loads(line) for line in bundled_signals().read_text().splitlines()]
    body = "".join(
        json.dumps(
            {"symbol": r["symbol"], "event_ts": r["event_ts"].replace("Z", ""), "price": r["price"]}
        )
        + "\n"
        for r in rows
    ).encode()
    async with RawServer([respond(body, content_type="text/plain", length=True)]) as server:
        access = ClickHouseAccess(
            url=server.url, username="eval", password="ch-secret-123", timeout_seconds=10
        )
        report_ch = await run_eval(db_dsn, None, horizons="5m,30m", cost_bps=2.0, clickhouse=access)
    assert report_ch == report_file
    request = server.requests[0]
    query = parse_qs(urlsplit(request.path).query)
    symbols = query["param_symbols"][0]
    assert symbols.startswith("['") and symbols.endswith("']") and "'AMZN'" in symbols
    # An hour before the first decision (16:03) for its entry price, to days past the last.
    assert query["param_start"] == ["2025-03-03 15:03:00.000000"]
    assert query["param_end"][0] > "2025-03-08"
    assert b"ta_microbars" in request.body and b"{symbols:Array(String)}" in request.body
    assert request.headers["x-clickhouse-user"] == "eval"


async def test_clickhouse_errors_are_named_and_redacted() -> None:
    from tests.integration.rawserver import RawServer, respond
    from torghut.evaluation.clickhouse import ClickHouseAccess, PriceSourceError, clickhouse_prices

    answer = b"Code: 516. Authentication failed for ch-secret-123"
    async with RawServer([respond(answer, 500, content_type="text/plain", length=True)]) as s:
        access = ClickHouseAccess(url=s.url, password="ch-secret-123", timeout_seconds=5)
        with pytest.raises(PriceSourceError) as info:
            await clickhouse_prices(access, ["AAPL"], T0, T0 + timedelta(days=1))
    assert "500" in str(info.value) and "ch-secret-123" not in str(info.value)
