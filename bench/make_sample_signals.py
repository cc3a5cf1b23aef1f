"""Generate `src/torghut/data/sample_signals.jsonl`: synthetic 1-minute signals, deterministic.

    python bench/make_sample_signals.py            # rewrite the bundled sample
    python bench/make_sample_signals.py --stats    # and print what the default strategy fires

Prices are a seeded geometric random walk per symbol: a market factor shared by every symbol
(through a beta) plus the symbol's own noise, scaled so each symbol's daily volatility is
realistic, with a small overnight gap between sessions. Indicators are computed from the
generated closes exactly as a charting package would: MACD(12, 26, 9) from exponential moving
averages (alpha = 2 / (n + 1)), RSI(14) with Wilder's smoothing. A warm-up of bars before the
first session (not written) lets the indicators settle, so the first line is already valid.
The data is synthetic: no real quote is reproduced.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

SEED = 20250311
DAYS = (date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5))
BARS_PER_DAY = 390  # 09:30 to 16:00 New York time
WARMUP_BARS = 300
NEW_YORK = ZoneInfo("America/New_York")
OUTPUT = Path(__file__).resolve().parents[1] / "src/torghut/data/sample_signals.jsonl"

# Market factor: daily volatility of the index the symbols move with.
MARKET_DAILY_VOL = 0.011


@dataclass(frozen=True)
class Profile:
    symbol: str
    start_price: float
    daily_vol: float  # total daily volatility of the symbol
    beta: float  # sensitivity to the market factor


PROFILES = (
    Profile("AAPL", 238.0, 0.017, 1.1),
    Profile("AMZN", 208.0, 0.021, 1.2),
    Profile("MSFT", 392.0, 0.015, 1.0),
    Profile("NVDA", 117.0, 0.034, 1.7),
    Profile("SPY", 576.0, 0.011, 1.0),
)


class Ema:
    def __init__(self, period: int) -> None:
        self.alpha = 2.0 / (period + 1)
        self.value: float | None = None

    def update(self, x: float) -> float:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)
        return self.value


class Macd:
    """MACD(12, 26, 9): fast EMA minus slow EMA, and the 9-period EMA of that line."""

    def __init__(self) -> None:
        self.fast, self.slow, self.signal = Ema(12), Ema(26), Ema(9)

    def update(self, close: float) -> tuple[float, float]:
        line = self.fast.update(close) - self.slow.update(close)
        return line, self.signal.update(line)


class Rsi:
    """RSI(14) with Wilder's smoothing: seeded with the simple mean of the first 14 changes."""

    def __init__(self, period: int = 14) -> None:
        self.period = period
        self.prev: float | None = None
        self.gains: list[float] = []
        self.losses: list[float] = []
        self.avg_gain = 0.0
        self.avg_loss = 0.0

    def update(self, close: float) -> float | None:
        if self.prev is None:
            self.prev = close
            return None
        change, self.prev = close - self.prev, close
        gain, loss = max(change, 0.0), max(-change, 0.0)
        if len(self.gains) < self.period:
            self.gains.append(gain)
            self.losses.append(loss)
            if len(self.gains) < self.period:
                return None
            self.avg_gain = sum(self.gains) / self.period
            self.avg_loss = sum(self.losses) / self.period
        else:
            n = self.period
            self.avg_gain = (self.avg_gain * (n - 1) + gain) / n
            self.avg_loss = (self.avg_loss * (n - 1) + loss) / n
        if self.avg_loss == 0:
            return 100.0
        return 100.0 - 100.0 / (1.0 + self.avg_gain / self.avg_loss)


def session_minutes(day: date) -> list[datetime]:
    open_ = datetime.combine(day, time(9, 30), NEW_YORK)
    return [open_ + timedelta(minutes=i) for i in range(BARS_PER_DAY)]


def generate(seed: int = SEED) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    per_bar = 1.0 / math.sqrt(BARS_PER_DAY)
    market_sigma = MARKET_DAILY_VOL * per_bar
    # Idiosyncratic noise makes up what the market factor does not explain.
    idio_sigma = {
        p.symbol: math.sqrt(max(p.daily_vol**2 - (p.beta * MARKET_DAILY_VOL) ** 2, 1e-8)) * per_bar
        for p in PROFILES
    }
    price = {p.symbol: p.start_price for p in PROFILES}
    macd = {p.symbol: Macd() for p in PROFILES}
    rsi = {p.symbol: Rsi() for p in PROFILES}

    def step(emit_ts: datetime | None) -> Iterator[dict[str, object]]:
        market = rng.gauss(0.0, market_sigma)
        for p in PROFILES:
            shock = p.beta * market + rng.gauss(0.0, idio_sigma[p.symbol])
            # Geometric step with the Ito correction, so the walk has no drift of its own.
            price[p.symbol] *= math.exp(shock - 0.5 * shock * shock)
            close = round(price[p.symbol], 2)
            line, signal = macd[p.symbol].update(close)
            strength = rsi[p.symbol].update(close)
            if emit_ts is not None and strength is not None:
                yield {
                    "event_ts": emit_ts.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "symbol": p.symbol,
                    "timeframe": "1Min",
                    "macd": round(line, 4),
                    "macd_signal": round(signal, 4),
                    "rsi14": round(strength, 2),
                    "price": close,
                }

    # Warm-up: the session before the first day, not written out.
    for _ in range(WARMUP_BARS):
        yield from step(None)
    for index, day in enumerate(DAYS):
        if index:
            # Overnight gap: a fraction of a day's volatility, common and idiosyncratic.
            gap = rng.gauss(0.0, MARKET_DAILY_VOL * 0.4)
            for p in PROFILES:
                g = p.beta * gap + rng.gauss(0.0, p.daily_vol * 0.3)
                price[p.symbol] *= math.exp(g)
        for ts in session_minutes(day):
            yield from step(ts)


def write(path: Path, seed: int) -> int:
    rows = list(generate(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, separators=(",", ":")) + "\n")
    return len(rows)


def stats(path: Path) -> dict[str, object]:
    """What the default strategy does with the file (needs the package installed)."""
    from decimal import Decimal

    from torghut.trading.signals import parse_signal_line
    from torghut.trading.strategy import DEFAULT_STRATEGY, evaluate

    buys: dict[str, int] = {}
    sells: dict[str, int] = {}
    buys_at: dict[str, int] = {}
    lines = 0
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        lines += 1
        signal = parse_signal_line(line, lineno)
        decision = evaluate(DEFAULT_STRATEGY, signal, equity=Decimal(100_000))
        if decision is None:
            continue
        counts = buys if decision.action.value == "buy" else sells
        counts[signal.symbol] = counts.get(signal.symbol, 0) + 1
        if decision.action.value == "buy":
            ts = signal.event_ts.isoformat()
            buys_at[ts] = buys_at.get(ts, 0) + 1
    return {
        "lines": lines,
        "bytes": path.stat().st_size,
        "buys": sum(buys.values()),
        "sells": sum(sells.values()),
        "buys_by_symbol": dict(sorted(buys.items())),
        "sells_by_symbol": dict(sorted(sells.items())),
        "max_buys_at_one_timestamp": max(buys_at.values(), default=0),
        "timestamps_with_2plus_buys": sum(1 for n in buys_at.values() if n >= 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--stats", action="store_true", help="print the default strategy's hits")
    args = parser.parse_args()
    count = write(args.output, args.seed)
    print(f"wrote {count} lines to {args.output}")
    if args.stats:
        print(json.dumps(stats(args.output), indent=2))


if __name__ == "__main__":
    main()
