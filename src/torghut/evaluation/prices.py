"""Price paths for forward returns: each symbol's prices in time order, from a signal file."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from torghut.domain import Signal
from torghut.errors import InputError

_HORIZON = re.compile(r"^(\d{1,5})([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_horizons(text: str) -> list[tuple[str, timedelta]]:
    """`5m,30m,1d` as labelled durations; an InputError naming `--horizons` otherwise."""
    out: list[tuple[str, timedelta]] = []
    for part in (p.strip() for p in text.split(",")):
        match = _HORIZON.match(part)
        if not match or int(match.group(1)) == 0:
            raise InputError(
                f"--horizons: {part!r} is not a horizon (a positive number and s, m, h or d)"
            )
        if part not in (label for label, _ in out):
            out.append((part, timedelta(**{_UNIT[match.group(2)]: int(match.group(1))})))
    return out


@dataclass
class PricePaths:
    """Prices by symbol, sorted by time (any timeframe; the last price at a time wins)."""

    _times: dict[str, list[datetime]] = field(default_factory=dict)
    _prices: dict[str, list[float]] = field(default_factory=dict)
    last_time: datetime | None = None

    @classmethod
    def from_signals(cls, signals: Iterable[Signal]) -> PricePaths:
        by_symbol: dict[str, dict[datetime, float]] = {}
        for s in signals:
            if s.price is not None:
                by_symbol.setdefault(s.symbol, {})[s.event_ts] = float(s.price)
        paths = cls()
        for symbol, points in by_symbol.items():
            times = sorted(points)
            paths._times[symbol] = times
            paths._prices[symbol] = [points[t] for t in times]
            if paths.last_time is None or times[-1] > paths.last_time:
                paths.last_time = times[-1]
        return paths

    def at_or_before(self, symbol: str, t: datetime) -> float | None:
        times = self._times.get(symbol)
        if not times:
            return None
        i = bisect.bisect_right(times, t)
        return self._prices[symbol][i - 1] if i else None

    def first_at_or_after(self, symbol: str, t: datetime) -> float | None:
        """The first price at or after `t`; None when the data ends before it."""
        times = self._times.get(symbol)
        if not times:
            return None
        i = bisect.bisect_left(times, t)
        return self._prices[symbol][i] if i < len(times) else None
