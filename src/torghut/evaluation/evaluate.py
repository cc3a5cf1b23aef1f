"""The evaluation itself: pure functions from reviewed decisions and price paths to numbers.

Definitions (README "Reading `llm eval`"):
- forward return at horizon h: side x (first price at or after t + h / price at t - 1), in
  basis points, minus the round-trip cost `cost_bps`; side is +1 for a buy, -1 for a sell.
  A decision whose t + h is past the last price of its symbol is left out of that horizon and
  counted in `beyond_data`; one without a price at t in `no_price`.
- veto value: minus the mean forward return of the vetoed decisions (positive: the vetoes
  avoided losses), with a bootstrap 95 % interval (resampling the vetoed decisions).
- random-veto baseline: the same number of decisions vetoed at random among all evaluated
  ones; its mean is minus the mean of all, its interval the 2.5/97.5 percentiles of many draws.
- adjust value: for adjusted decisions, (adjusted qty / qty - 1) x forward return: what the
  size change added, in basis points of the original order's notional.
- Brier score of "the verdict was right" (approve/adjust right when the return is > 0, veto
  right when it is <= 0) against the model's confidence, with reliability bins.

Bootstraps are plain Python with a seeded `random.Random`: a few thousand resamples of a few
hundred numbers is quick, and the same database gives the same numbers every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from torghut.evaluation.prices import PricePaths

BOOTSTRAP_RESAMPLES = 2000
RELIABILITY_BINS = 5
VERDICTS = ("approve", "adjust", "veto", "error")


@dataclass(frozen=True, slots=True)
class ReviewedDecision:
    decision_id: str
    symbol: str
    action: str  # buy | sell
    event_ts: datetime
    qty: float
    reference_price: float | None
    verdict: str  # after policy: approve | veto | adjust | error
    llm_verdict: str | None
    confidence: float | None
    adjusted_qty: float | None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _round(value: float | None, places: int = 2) -> float | None:
    return None if value is None else round(value, places)


def bootstrap_ci(
    values: Sequence[float], rng: random.Random, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float] | None:
    """95 % percentile interval of the mean of `values` (None without values)."""
    if not values:
        return None
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return _percentile(means, 0.025), _percentile(means, 0.975)


def random_veto_ci(
    values: Sequence[float], k: int, rng: random.Random, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float] | None:
    """95 % interval of the veto value of `k` decisions vetoed at random among `values`."""
    if k <= 0 or not values:
        return None
    k = min(k, len(values))
    draws = sorted(-sum(rng.sample(values, k)) / k for _ in range(resamples))
    return _percentile(draws, 0.025), _percentile(draws, 0.975)


def forward_return_bps(
    d: ReviewedDecision, paths: PricePaths, horizon: timedelta, cost_bps: float
) -> tuple[str, float | None]:
    """("ok", r) | ("no_price", None) | ("beyond_data", None)."""
    entry = paths.at_or_before(d.symbol, d.event_ts) or d.reference_price
    if entry is None or entry <= 0:
        return "no_price", None
    exit_price = paths.first_at_or_after(d.symbol, d.event_ts + horizon)
    if exit_price is None:
        return "beyond_data", None
    side = 1.0 if d.action == "buy" else -1.0
    return "ok", side * (exit_price / entry - 1.0) * 1e4 - cost_bps


def _right(verdict: str, r: float) -> bool:
    return r <= 0 if verdict == "veto" else r > 0


def _reliability(pairs: Sequence[tuple[float, bool]]) -> list[dict[str, Any]]:
    bins: list[dict[str, Any]] = []
    for i in range(RELIABILITY_BINS):
        lo, hi = i / RELIABILITY_BINS, (i + 1) / RELIABILITY_BINS
        inside = [
            (c, ok) for c, ok in pairs if lo <= c < hi or (i == RELIABILITY_BINS - 1 and c == 1.0)
        ]
        bins.append(
            {
                "lo": lo,
                "hi": hi,
                "n": len(inside),
                "mean_confidence": _round(_mean([c for c, _ in inside]), 3),
                "right_rate": _round(_mean([1.0 if ok else 0.0 for _, ok in inside]), 3),
            }
        )
    return bins


def evaluate_horizon(
    decisions: Sequence[ReviewedDecision],
    paths: PricePaths,
    horizon: timedelta,
    *,
    cost_bps: float,
    seed: int = 0,
) -> dict[str, Any]:
    rng = random.Random(seed)
    counts = {"evaluated": 0, "beyond_data": 0, "no_price": 0}
    returns: list[tuple[ReviewedDecision, float]] = []
    # In signal-time order, so the seeded bootstraps give the same numbers for the same rows
    # whatever order the database returns them in.
    for d in sorted(
        decisions, key=lambda d: (d.event_ts, d.symbol, d.action, d.qty, d.decision_id)
    ):
        status, r = forward_return_bps(d, paths, horizon, cost_bps)
        if r is None:
            counts[status] += 1
            continue
        counts["evaluated"] += 1
        returns.append((d, r))
    by_verdict: dict[str, dict[str, Any]] = {}
    for verdict in VERDICTS:
        rs = [r for d, r in returns if d.verdict == verdict]
        if rs:
            by_verdict[verdict] = {
                "n": len(rs),
                "mean_bps": _round(_mean(rs)),
                "hit_rate": _round(sum(1 for r in rs if r > 0) / len(rs), 3),
            }
    every = [r for _, r in returns]
    vetoed = [r for d, r in returns if d.verdict == "veto"]
    veto_ci = bootstrap_ci(vetoed, rng)
    mean_veto = _mean(vetoed)
    random_ci = random_veto_ci(every, len(vetoed), rng)
    mean_all = _mean(every)
    adjusted = [
        ((d.adjusted_qty / d.qty) - 1.0) * r
        for d, r in returns
        if d.verdict == "adjust" and d.adjusted_qty is not None and d.qty > 0
    ]
    pairs = [
        (d.confidence, _right(d.llm_verdict or d.verdict, r))
        for d, r in returns
        if d.confidence is not None
        and (d.llm_verdict or d.verdict) in ("approve", "veto", "adjust")
    ]
    brier = _mean([(c - (1.0 if ok else 0.0)) ** 2 for c, ok in pairs])
    return {
        **counts,
        "by_verdict": by_verdict,
        "veto_value_bps": {
            "mean": _round(-mean_veto if mean_veto is not None else None),
            "ci95": [_round(veto_ci[1] * -1), _round(veto_ci[0] * -1)] if veto_ci else None,
            "n": len(vetoed),
        },
        "random_veto_bps": {
            "mean": _round(-mean_all if mean_all is not None and vetoed else None),
            "ci95": [_round(random_ci[0]), _round(random_ci[1])] if random_ci else None,
            "n": len(vetoed),
        },
        "adjust_value_bps": {"mean": _round(_mean(adjusted)), "n": len(adjusted)},
        "brier": _round(brier, 4),
        "reliability": _reliability(pairs),
        # The series is for the HTML page; the JSON keeps the totals.
        "_pnl_series": _pnl(returns),
    }


def _pnl(returns: Sequence[tuple[ReviewedDecision, float]]) -> dict[str, Any]:
    """Cumulative P&L in basis points of one unit of notional per decision, in signal-time
    order: every decision, and only the approved ones (approve, and adjust at its size)."""
    every: list[float] = []
    approved: list[float] = []
    times: list[str] = []
    total_all = total_approved = 0.0
    for d, r in sorted(returns, key=lambda dr: (dr[0].event_ts, dr[0].decision_id)):
        total_all += r
        if d.verdict == "approve":
            total_approved += r
        elif d.verdict == "adjust":
            scale = (d.adjusted_qty / d.qty) if d.adjusted_qty and d.qty > 0 else 1.0
            total_approved += r * scale
        every.append(round(total_all, 2))
        approved.append(round(total_approved, 2))
        times.append(d.event_ts.isoformat().replace("+00:00", "Z"))
    return {"times": times, "all_bps": every, "approved_bps": approved}


def evaluate(
    decisions: Sequence[ReviewedDecision],
    paths: PricePaths,
    horizons: Sequence[tuple[str, timedelta]],
    *,
    cost_bps: float,
    seed: int = 0,
) -> dict[str, Any]:
    return {
        "reviews": len(decisions),
        "cost_bps": cost_bps,
        "horizons": {
            label: evaluate_horizon(decisions, paths, delta, cost_bps=cost_bps, seed=seed)
            for label, delta in horizons
        },
    }


def gate_failures(report: dict[str, Any], min_veto_value_bps: float) -> list[str]:
    """One message per horizon whose veto value's lower bound is below the threshold (or
    unknown: no vetoes to judge)."""
    failures = []
    for label, h in report["horizons"].items():
        ci = h["veto_value_bps"]["ci95"]
        if ci is None:
            failures.append(
                f"{label}: no vetoed decision to measure, "
                f"--min-veto-value-bps {min_veto_value_bps:g} not met"
            )
        elif ci[0] < min_veto_value_bps:
            failures.append(
                f"{label}: veto value lower bound {ci[0]:g} bps is below "
                f"--min-veto-value-bps {min_veto_value_bps:g}"
            )
    return failures
