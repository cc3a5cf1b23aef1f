"""Benchmark the point-in-time review context against the request it replaced.

Run: `python bench/bench_context.py` (or `--quick`). The bundled sample's signals are fed to the
bar history in batches of 500, as the pipeline does; a decision is made at every 10th signal.
For each decision the request is built and rendered to the user message:

  baseline  `build_review_request` with the signal alone and no history (what every review
            sent before issue 14), then `render_user`;
  context   `PointInTimeContext.build` (30 bars, returns, volatility, session clock, the book
            valued at t; recent decisions from an in-memory reader), then `render_user`.

Reported: microseconds per request (best of N) and bytes per message. Target: the context
costs under 1 ms per review, negligible beside a review's seconds of gateway latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

try:
    from torghut.bootstrap import bundled_signals
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torghut.bootstrap import bundled_signals

from torghut.domain import Account, Position, Signal, TradeDecision, TradingMode
from torghut.evaluation.signal_file import read_signal_file
from torghut.trading.llm.context import BarHistory, PointInTimeContext, ReviewFacts
from torghut.trading.llm.prompts import render_user
from torghut.trading.llm.review_engine import build_review_request
from torghut.trading.llm.schema import PolicyBounds

BATCH = 500
TARGET_US = 1000.0


def _decision(signal: Signal) -> TradeDecision:
    return TradeDecision(
        strategy_id="bench",
        symbol=signal.symbol,
        action="buy",
        qty=Decimal(3),
        event_ts=signal.event_ts,
        timeframe=signal.timeframe,
        params={"price": str(signal.price)},
    )


async def _recent(symbol: str, before: datetime, limit: int) -> list[dict[str, Any]]:
    return [
        {
            "event_ts": "2025-03-03T14:31:00Z",
            "action": "buy",
            "qty": "3",
            "status": "filled",
            "reason": None,
        }
    ] * min(limit, 3)


async def run(signals: list[Signal], every: int) -> dict[str, tuple[float, int]]:
    bounds = PolicyBounds()
    account = Account(cash=Decimal(90_000), equity=Decimal(100_000), buying_power=Decimal(90_000))
    positions = [Position("AAPL", Decimal(4), Decimal(230), Decimal(920))]
    context = PointInTimeContext(
        bounds=bounds,
        trading_mode=TradingMode.PAPER,
        prompt_version="v2",
        history=BarHistory(30),
        recent_decisions=_recent,
        risk_limits={"cooldown_seconds": 0},
    )
    times = {"baseline": 0.0, "context": 0.0}
    sizes = {"baseline": 0, "context": 0}
    count = 0
    for start in range(0, len(signals), BATCH):
        batch = signals[start : start + BATCH]
        began = time.perf_counter()
        context.observe(batch)
        times["context"] += time.perf_counter() - began
        for signal in batch[::every]:
            decision = _decision(signal)
            began = time.perf_counter()
            old = build_review_request(
                decision,
                account=account,
                positions=positions,
                market=signal.model_dump(mode="json"),
                recent_decisions=[],
                bounds=bounds,
                trading_mode=TradingMode.PAPER,
                prompt_version="v1",
            )
            text = render_user(old)
            times["baseline"] += time.perf_counter() - began
            sizes["baseline"] += len(text.encode())
            began = time.perf_counter()
            new = await context.build(
                decision, ReviewFacts(signal=signal, account=account, positions=positions)
            )
            text = render_user(new)
            times["context"] += time.perf_counter() - began
            sizes["context"] += len(text.encode())
            count += 1
    return {k: (times[k] / count * 1e6, sizes[k] // count) for k in times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="review context benchmark")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    signals = read_signal_file(bundled_signals())
    repeats, every = (2, 50) if args.quick else (5, 10)
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeats):
        result = asyncio.run(run(signals, every))
        for name, (us, size) in result.items():
            if name not in best or us < best[name][0]:
                best[name] = (us, size)
    print(f"{len(signals)} signals, a decision every {every}th, best of {repeats}")
    print(f"{'request':<10} {'us/request':>11} {'bytes':>7}")
    for name, (us, size) in best.items():
        print(f"{name:<10} {us:>11.1f} {size:>7}")
    ok = best["context"][0] < TARGET_US
    print(f"target: context under {TARGET_US:.0f} us per request: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
