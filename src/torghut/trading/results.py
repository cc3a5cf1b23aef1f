"""Trading results from fills and prices: equity, realised and unrealised P&L, maximum
drawdown, exposure per strategy and in total. Pure: no I/O, no clock.

Method, so that the numbers can be checked by hand:
- Positions are kept per (strategy, symbol) at average cost. A fill that reduces a position
  realises `(fill price - average cost) x closed qty` (the opposite sign for a short); a fill
  that crosses zero closes the old position and opens the rest at the fill price.
- Prices: every fill marks its symbol at the fill price, every `Mark` at its price; the
  `last_prices` given at the end (the broker's current marks) are applied last.
- Equity = cash + the market value of every position. Cash starts at `starting_cash` and moves
  by each fill's `qty x price` (no fees: the simulated broker charges none).
- The equity curve has one point per event (fill or mark), in time order; marks sort before
  fills of the same time. The maximum drawdown is the largest fall from a running peak of
  that curve, in money and as a share of the peak. Prices between events are not seen, so it
  is a lower bound of the drawdown a tick-by-tick curve would show.
- Exposure is the absolute market value of positions (gross), per strategy and in total.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Fill:
    ts: datetime
    strategy_id: str
    symbol: str
    side: str  # "buy" | "sell"
    qty: Decimal
    price: Decimal


@dataclass(frozen=True, slots=True)
class Mark:
    ts: datetime
    symbol: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Holding:
    strategy_id: str
    symbol: str
    qty: Decimal  # negative: short
    avg_cost: Decimal
    price: Decimal
    market_value: Decimal
    unrealised_pnl: Decimal


@dataclass(frozen=True, slots=True)
class StrategyResult:
    strategy_id: str
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    exposure: Decimal
    fills: int


@dataclass(frozen=True, slots=True)
class Results:
    starting_cash: Decimal
    cash: Decimal
    equity: Decimal
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    peak_equity: Decimal
    max_drawdown: Decimal
    max_drawdown_pct: float
    exposure: Decimal
    fills: int
    curve_points: int
    holdings: list[Holding]
    strategies: list[StrategyResult]
    first_ts: datetime | None = None
    last_ts: datetime | None = None

    @property
    def total_pnl(self) -> Decimal:
        return self.realised_pnl + self.unrealised_pnl

    def as_dict(self) -> dict[str, object]:
        """Plain JSON values (money as numbers rounded to cents, for reading)."""

        def money(value: Decimal) -> float:
            return float(round(value, 2))

        return {
            "starting_cash": money(self.starting_cash),
            "cash": money(self.cash),
            "equity": money(self.equity),
            "realised_pnl": money(self.realised_pnl),
            "unrealised_pnl": money(self.unrealised_pnl),
            "total_pnl": money(self.total_pnl),
            "peak_equity": money(self.peak_equity),
            "max_drawdown": money(self.max_drawdown),
            "max_drawdown_pct": round(self.max_drawdown_pct, 6),
            "exposure": {
                "total": money(self.exposure),
                "by_strategy": {s.strategy_id: money(s.exposure) for s in self.strategies},
            },
            "by_strategy": {
                s.strategy_id: {
                    "realised_pnl": money(s.realised_pnl),
                    "unrealised_pnl": money(s.unrealised_pnl),
                    "exposure": money(s.exposure),
                    "fills": s.fills,
                }
                for s in self.strategies
            },
            "fills": self.fills,
            "curve_points": self.curve_points,
            "first_ts": self.first_ts.isoformat() if self.first_ts else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
        }


@dataclass
class _Lot:
    qty: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realised: Decimal = ZERO
    fills: int = 0

    def apply(self, signed_qty: Decimal, price: Decimal) -> None:
        self.fills += 1
        if self.qty == 0 or (self.qty > 0) == (signed_qty > 0):
            total = self.qty + signed_qty
            self.avg_cost = (self.qty * self.avg_cost + signed_qty * price) / total
            self.qty = total
            return
        closed = min(abs(signed_qty), abs(self.qty))
        direction = Decimal(1) if self.qty > 0 else Decimal(-1)
        self.realised += (price - self.avg_cost) * closed * direction
        rest = signed_qty + closed * direction  # what is left after closing
        self.qty -= closed * direction
        if rest != 0:
            self.qty, self.avg_cost = rest, price
        elif self.qty == 0:
            self.avg_cost = ZERO


@dataclass
class _Curve:
    peak: Decimal
    max_drawdown: Decimal = ZERO
    max_drawdown_pct: float = 0.0
    points: int = 0

    def add(self, equity: Decimal) -> None:
        self.points += 1
        if equity > self.peak:
            self.peak = equity
        fall = self.peak - equity
        if fall > self.max_drawdown:
            self.max_drawdown = fall
            self.max_drawdown_pct = float(fall / self.peak) if self.peak > 0 else 0.0


@dataclass
class _Book:
    cash: Decimal
    lots: dict[tuple[str, str], _Lot] = field(default_factory=dict)
    held: dict[str, Decimal] = field(default_factory=dict)  # symbol -> qty, all strategies
    prices: dict[str, Decimal] = field(default_factory=dict)
    market_value: Decimal = ZERO

    def mark(self, symbol: str, price: Decimal) -> None:
        old = self.prices.get(symbol)
        self.prices[symbol] = price
        qty = self.held.get(symbol, ZERO)
        if qty:
            self.market_value += qty * (price - (old if old is not None else price))

    def fill(self, fill: Fill) -> None:
        self.mark(fill.symbol, fill.price)
        signed = fill.qty if fill.side == "buy" else -fill.qty
        self.cash -= signed * fill.price
        self.lots.setdefault((fill.strategy_id, fill.symbol), _Lot()).apply(signed, fill.price)
        self.held[fill.symbol] = self.held.get(fill.symbol, ZERO) + signed
        self.market_value += signed * fill.price

    @property
    def equity(self) -> Decimal:
        return self.cash + self.market_value


# Time, then marks before fills at one instant (a C key: the sort runs once per event).
_BY_TIME_THEN_KIND = operator.itemgetter(0, 1)


def compute_results(
    starting_cash: Decimal,
    fills: Iterable[Fill],
    marks: Iterable[Mark] = (),
    last_prices: Mapping[str, Decimal] | None = None,
) -> Results:
    """Replay `fills` and `marks` in time order (see the module docstring)."""
    events: list[tuple[datetime, int, Fill | Mark]] = [(m.ts, 0, m) for m in marks]
    fill_count = 0
    for f in fills:
        if f.qty <= 0 or f.price <= 0:
            continue  # nothing was filled
        events.append((f.ts, 1, f))
        fill_count += 1
    events.sort(key=_BY_TIME_THEN_KIND)
    book = _Book(cash=starting_cash)
    curve = _Curve(peak=starting_cash)
    for _ts, _kind, event in events:
        if isinstance(event, Fill):
            book.fill(event)
        else:
            book.mark(event.symbol, event.price)
        curve.add(book.equity)
    if last_prices:
        for symbol, price in last_prices.items():
            book.mark(symbol, price)
        curve.add(book.equity)

    holdings: list[Holding] = []
    per_strategy: dict[str, StrategyResult] = {}
    for (strategy_id, symbol), lot in sorted(book.lots.items()):
        price = book.prices.get(symbol, lot.avg_cost)
        unrealised = (price - lot.avg_cost) * lot.qty
        before = per_strategy.get(strategy_id, StrategyResult(strategy_id, ZERO, ZERO, ZERO, 0))
        per_strategy[strategy_id] = StrategyResult(
            strategy_id,
            realised_pnl=before.realised_pnl + lot.realised,
            unrealised_pnl=before.unrealised_pnl + unrealised,
            exposure=before.exposure + abs(lot.qty * price),
            fills=before.fills + lot.fills,
        )
        if lot.qty != 0:
            holdings.append(
                Holding(
                    strategy_id, symbol, lot.qty, lot.avg_cost, price, lot.qty * price, unrealised
                )
            )
    strategies = list(per_strategy.values())
    return Results(
        starting_cash=starting_cash,
        cash=book.cash,
        equity=book.equity,
        realised_pnl=sum((s.realised_pnl for s in strategies), ZERO),
        unrealised_pnl=sum((s.unrealised_pnl for s in strategies), ZERO),
        peak_equity=curve.peak,
        max_drawdown=curve.max_drawdown,
        max_drawdown_pct=curve.max_drawdown_pct,
        exposure=sum((s.exposure for s in strategies), ZERO),
        fills=fill_count,
        curve_points=curve.points,
        holdings=holdings,
        strategies=strategies,
        first_ts=events[0][0] if events else None,
        last_ts=events[-1][0] if events else None,
    )
