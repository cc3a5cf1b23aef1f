"""Trading results (trading/results.py): numbers checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from torghut.trading.results import Fill, Mark, compute_results

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_no_fills_is_the_starting_cash() -> None:
    r = compute_results(D(1000), [])
    assert (r.equity, r.realised_pnl, r.unrealised_pnl, r.max_drawdown) == (D(1000), 0, 0, 0)
    assert r.exposure == 0 and r.holdings == [] and r.fills == 0


def test_round_trip_realises_and_open_position_is_unrealised() -> None:
    fills = [
        Fill(at(0), "s1", "AAPL", "buy", D(10), D(100)),
        Fill(at(1), "s1", "AAPL", "buy", D(10), D(110)),  # average cost 105
        Fill(at(2), "s1", "AAPL", "sell", D(5), D(120)),  # realises 5 x 15 = 75
    ]
    r = compute_results(D(10_000), fills, last_prices={"AAPL": D(100)})
    assert r.realised_pnl == D(75)
    # 15 left at cost 105, marked at 100: -75.
    assert r.unrealised_pnl == D(-75)
    assert r.cash == D(10_000) - D(1000) - D(1100) + D(600)
    assert r.equity == r.cash + D(15) * D(100) == D(10_000)
    assert r.exposure == D(1500)
    [h] = r.holdings
    assert (h.symbol, h.qty, h.avg_cost, h.price) == ("AAPL", D(15), D(105), D(100))


def test_drawdown_is_the_largest_fall_from_a_peak() -> None:
    fills = [Fill(at(0), "s", "X", "buy", D(10), D(100))]
    marks = [
        Mark(at(1), "X", D(120)),  # equity 1200 (peak)
        Mark(at(2), "X", D(90)),  # 900: a fall of 300 = 25 % of the peak
        Mark(at(3), "X", D(130)),  # new peak 1300
        Mark(at(4), "X", D(110)),  # a fall of 200 only
    ]
    r = compute_results(D(1000), fills, marks)
    assert r.peak_equity == D(1300)
    assert r.max_drawdown == D(300)
    assert r.max_drawdown_pct == pytest.approx(0.25)
    assert r.curve_points == 5


def test_a_fill_crossing_zero_closes_then_opens_at_the_fill_price() -> None:
    fills = [
        Fill(at(0), "s", "X", "buy", D(10), D(100)),
        Fill(at(1), "s", "X", "sell", D(15), D(110)),  # +100 realised, short 5 at 110
        Fill(at(2), "s", "X", "buy", D(5), D(100)),  # covers the short: +50
    ]
    r = compute_results(D(5000), fills)
    assert r.realised_pnl == D(150)
    assert r.holdings == [] and r.exposure == 0
    assert r.equity == D(5150)


def test_per_strategy_attribution_and_totals() -> None:
    fills = [
        Fill(at(0), "a", "X", "buy", D(2), D(50)),
        Fill(at(0), "b", "X", "buy", D(3), D(50)),
        Fill(at(1), "b", "Y", "buy", D(1), D(200)),
    ]
    r = compute_results(D(1000), fills, last_prices={"X": D(60), "Y": D(150)})
    by = {s.strategy_id: s for s in r.strategies}
    assert by["a"].unrealised_pnl == D(20) and by["a"].exposure == D(120)
    assert by["b"].unrealised_pnl == D(30) - D(50) and by["b"].exposure == D(180) + D(150)
    assert r.exposure == D(450)
    assert r.unrealised_pnl == D(0)
    assert r.as_dict()["exposure"] == {"total": 450.0, "by_strategy": {"a": 120.0, "b": 330.0}}


def test_marks_sort_before_fills_of_the_same_time_and_unfilled_rows_are_ignored() -> None:
    fills = [Fill(at(0), "s", "X", "buy", D(1), D(100)), Fill(at(0), "s", "X", "buy", D(0), D(1))]
    r = compute_results(D(100), fills, [Mark(at(0), "X", D(50))])
    # The mark at 50 comes first (nothing held), then the fill at 100: no drawdown.
    assert r.max_drawdown == 0 and r.fills == 1 and r.equity == D(100)
