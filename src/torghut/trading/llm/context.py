"""The reviewer's context for one decision, as of the decision's signal time t.

Point in time is the rule: nothing in the context is dated after t. The bar history is read up
to and including t (a batch of signals is fed in before its decisions are reviewed, so the
store may already hold later bars: they are filtered out, never trimmed in); recent decisions
are those of the symbol with a signal time strictly before t; the portfolio is valued at the
last price at or before t (the broker's marks may be later). Whatever cannot be supplied is
named in `missing`, so a reviewer (and an operator reading the audit row) can tell "no
history" from "a quiet market".

The review engine asks a `ReviewContextSource` for the request; the pipeline only hands over
what it holds (`ReviewFacts`) and feeds the signals it reads into the history.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from torghut.domain import (
    Account,
    BrokerOrder,
    Position,
    Signal,
    TradeDecision,
    TradingMode,
    as_utc,
)
from torghut.trading.llm.schema import LLMReviewRequest, PolicyBounds, PortfolioSnapshot
from torghut.trading.session import AFTER_HOURS, ALWAYS_OPEN, PRE_MARKET, SessionCalendar

log = logging.getLogger("torghut.review.context")

DEFAULT_CONTEXT_BARS = 30
# Returns are given over these numbers of bars (and over the whole window).
RETURN_HORIZONS_BARS: tuple[int, ...] = (1, 5, 15)
RECENT_DECISIONS = 5
_MAX_INDICATORS = 8  # numeric payload keys of a bar beyond the known ones
_OPEN_ORDERS_MAX = 10
_MAX_PAYLOAD_KEYS = 16  # of the signal's extra keys, scalars only
_MAX_PAYLOAD_TEXT = 64

# The regular US equity session when no exchange calendar is given (`session_clock`).
_EXCHANGE_TZ = ZoneInfo("America/New_York")
_OPEN, _CLOSE = time(9, 30), time(16, 0)
_PRE_OPEN, _AFTER_CLOSE = time(4, 0), time(20, 0)

RecentDecisionsReader = Callable[[str, datetime, int], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Bar:
    ts: datetime
    seq: int
    price: Decimal | None
    indicators: tuple[tuple[str, float], ...]

    @classmethod
    def from_signal(cls, signal: Signal) -> Bar:
        values: list[tuple[str, float]] = []
        for name in ("macd", "macd_signal", "rsi14"):
            value = getattr(signal, name, None)
            if isinstance(value, int | float) and math.isfinite(value):
                values.append((name, float(value)))
        extra = 0
        for name, value in sorted(signal.payload.items()):
            if extra >= _MAX_INDICATORS:
                break
            if name in ("macd", "macd_signal", "rsi14", "price"):
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and math.isfinite(value):
                values.append((str(name)[:32], float(value)))
                extra += 1
        return cls(signal.event_ts, signal.seq, signal.price, tuple(values))

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"ts": iso(self.ts)}
        row["price"] = str(self.price) if self.price is not None else None
        for name, value in self.indicators:
            row[name] = round(value, 6)
        return row


class BarHistory:
    """The latest bars of each symbol and timeframe, in signal-time order, as the signal stream
    delivers them.

    A batch is fed in whole before its decisions are reviewed (and shadow reviews may finish
    a batch or two later), so a series keeps `keep` bars beyond what the last `batches` feeds
    brought it: its memory follows the bars a series gets per batch (few per symbol with a
    wide universe), not the batch size."""

    def __init__(self, keep: int, batches: int = 3) -> None:
        self.keep = max(1, keep)
        self.batches = max(1, batches)
        self._series: dict[tuple[str, str], list[Bar]] = {}
        self._timeframes: dict[str, set[str]] = {}  # of each symbol
        # Bars each series got from each of the last `batches` feeds, newest last.
        self._fed: dict[tuple[str, str], list[int]] = {}

    def add(self, signals: Iterable[Signal]) -> None:
        added: dict[tuple[str, str], int] = {}
        for signal in signals:
            name = (signal.symbol, signal.timeframe)
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = []
                self._timeframes.setdefault(signal.symbol, set()).add(signal.timeframe)
            bar = Bar.from_signal(signal)
            key = (bar.ts, bar.seq)
            added[name] = added.get(name, 0) + 1
            if not series or (series[-1].ts, series[-1].seq) < key:
                series.append(bar)  # the usual case: in order
                continue
            at = bisect.bisect_left(series, key, key=lambda b: (b.ts, b.seq))
            if at < len(series) and (series[at].ts, series[at].seq) == key:
                series[at] = bar  # the same signal read again
            else:
                series.insert(at, bar)
        for name in self._series:
            fed = self._fed.setdefault(name, [])
            fed.append(added.get(name, 0))
            del fed[: -self.batches]
            series = self._series[name]
            capacity = self.keep + sum(fed)
            if len(series) > capacity:
                del series[: len(series) - capacity]

    def until(self, symbol: str, timeframe: str, t: datetime, n: int) -> list[Bar]:
        """The last `n` bars at or before `t`."""
        series = self._series.get((symbol, timeframe), [])
        end = bisect.bisect_right(series, t, key=lambda b: b.ts)
        return series[max(0, end - n) : end]

    def price_at(self, symbol: str, t: datetime) -> Decimal | None:
        """The last known price of `symbol` at or before `t`, any timeframe."""
        best: tuple[datetime, Decimal] | None = None
        for timeframe in self._timeframes.get(symbol, ()):
            series = self._series[(symbol, timeframe)]
            end = bisect.bisect_right(series, t, key=lambda b: b.ts)
            for bar in reversed(series[:end]):
                if bar.price is not None:
                    if best is None or bar.ts > best[0]:
                        best = (bar.ts, bar.price)
                    break
        return best[1] if best else None


@dataclass(frozen=True)
class ReviewFacts:
    """What the caller holds when a decision is reviewed: the signal behind it and the book
    as it was read before the decision's batch (None: the caller has no account)."""

    signal: Signal | None = None
    account: Account | None = None
    positions: Sequence[Position] = ()
    open_orders: Sequence[BrokerOrder] = ()


class ReviewContextSource(Protocol):
    """The port the review engine asks for a request."""

    async def build(self, decision: TradeDecision, facts: ReviewFacts) -> LLMReviewRequest: ...

    def observe(self, signals: Sequence[Signal]) -> None: ...


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def returns_bps(prices: Sequence[float]) -> dict[str, float | None]:
    """Simple returns in basis points from the last price back over each horizon (in bars),
    and over the whole window; None where the window is too short."""
    out: dict[str, float | None] = {}
    last = prices[-1] if prices else None
    for h in RETURN_HORIZONS_BARS:
        key = f"{h}_bars"
        if last is None or len(prices) <= h or prices[-1 - h] <= 0:
            out[key] = None
        else:
            out[key] = round((last / prices[-1 - h] - 1) * 1e4, 2)
    if last is not None and len(prices) >= 2 and prices[0] > 0:
        out["window"] = round((last / prices[0] - 1) * 1e4, 2)
    else:
        out["window"] = None
    return out


def realized_vol_bps(prices: Sequence[float]) -> float | None:
    """Standard deviation of one-bar log returns, in basis points per bar (None under 3 bars)."""
    if len(prices) < 3 or any(p <= 0 for p in prices):
        return None
    steps = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    mean = sum(steps) / len(steps)
    var = sum((s - mean) ** 2 for s in steps) / (len(steps) - 1)
    return round(math.sqrt(var) * 1e4, 2)


def session_clock(t: datetime, calendar: SessionCalendar | None = None) -> dict[str, Any]:
    """Where `t` falls in the US equity day: the phase, minutes since the regular open and
    until the regular close (None outside the regular session). With `calendar` (the one the
    trading checks use), its sessions: a holiday is closed, an early close closes early, and
    the extended phases are Alpaca's (from 04:00 New York time to 4 hours after the close).
    Without one, or with the `always` calendar, every weekday is a 09:30-16:00 session."""
    if calendar is not None and calendar.exchange != ALWAYS_OPEN:
        return _calendar_clock(t, calendar)
    local = t.astimezone(_EXCHANGE_TZ)
    weekday = local.weekday() < 5
    now = local.time()
    if not weekday:
        phase = "closed"
    elif _OPEN <= now < _CLOSE:
        phase = "regular"
    elif _PRE_OPEN <= now < _OPEN:
        phase = "pre_market"
    elif _CLOSE <= now < _AFTER_CLOSE:
        phase = "after_hours"
    else:
        phase = "closed"
    since_open = until_close = None
    if phase == "regular":
        day = local.date()
        opened = datetime.combine(day, _OPEN, tzinfo=_EXCHANGE_TZ)
        closes = datetime.combine(day, _CLOSE, tzinfo=_EXCHANGE_TZ)
        since_open = round((local - opened) / timedelta(minutes=1), 1)
        until_close = round((closes - local) / timedelta(minutes=1), 1)
    return {
        "phase": phase,
        "minutes_since_open": since_open,
        "minutes_to_close": until_close,
        "calendar": "weekdays 09:30-16:00 America/New_York, no holidays",
    }


def _calendar_clock(t: datetime, calendar: SessionCalendar) -> dict[str, Any]:
    t = as_utc(t)
    since_open = until_close = None
    try:
        hours = calendar.regular_hours(t.astimezone(_EXCHANGE_TZ).date())
    except ValueError:  # a day outside the calendar's years (exchange_calendars' own error)
        return {
            "phase": "unknown",
            "minutes_since_open": None,
            "minutes_to_close": None,
            "calendar": f"{calendar.exchange} sessions: this day is outside the calendar",
        }
    if hours is None:
        phase = "closed"  # a weekend or a holiday
    else:
        opens, closes = hours
        if opens <= t < closes:
            phase = "regular"
            since_open = round((t - opens) / timedelta(minutes=1), 1)
            until_close = round((closes - t) / timedelta(minutes=1), 1)
        elif opens - PRE_MARKET <= t < opens:
            phase = "pre_market"
        elif closes <= t < closes + AFTER_HOURS:
            phase = "after_hours"
        else:
            phase = "closed"
    return {
        "phase": phase,
        "minutes_since_open": since_open,
        "minutes_to_close": until_close,
        "calendar": f"{calendar.exchange} sessions, holidays and early closes included",
    }


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def risk_limits_json(limits: Any) -> dict[str, Any]:
    """The limits in force, as the reviewer should read them (a universe is summarised)."""
    data = dict(_plain(limits)) if limits is not None else {}
    universe = data.pop("universe", None)
    if universe:
        data["universe_size"] = len(universe)
    return data


class PointInTimeContext:
    """Builds review requests from the bar history, the book as of t and earlier decisions."""

    def __init__(
        self,
        *,
        bounds: PolicyBounds,
        trading_mode: TradingMode,
        prompt_version: str,
        context_bars: int = DEFAULT_CONTEXT_BARS,
        history: BarHistory | None = None,
        recent_decisions: RecentDecisionsReader | None = None,
        risk_limits: Any = None,
        calendar: SessionCalendar | None = None,
    ) -> None:
        self.bounds = bounds
        self.calendar = calendar
        self.trading_mode = trading_mode
        self.prompt_version = prompt_version
        self.context_bars = context_bars
        self.history = history or BarHistory(context_bars)
        self._recent = recent_decisions
        self._risk_limits = risk_limits_json(risk_limits) if risk_limits is not None else None

    def observe(self, signals: Sequence[Signal]) -> None:
        self.history.add(signals)

    async def build(self, decision: TradeDecision, facts: ReviewFacts) -> LLMReviewRequest:
        t = decision.event_ts
        missing: set[str] = set()
        bars = self.history.until(decision.symbol, decision.timeframe, t, self.context_bars)
        if not bars:
            missing.add("history")
        prices = [float(b.price) for b in bars if b.price is not None]
        history = {
            "timeframe": decision.timeframe,
            "bars": [b.as_json() for b in bars],
            "returns_bps": returns_bps(prices),
            "realized_vol_bps_per_bar": realized_vol_bps(prices),
        }
        recent: list[dict[str, Any]] = []
        if self._recent is None:
            missing.add("recent_decisions")
        else:
            try:
                recent = await self._recent(decision.symbol, t, RECENT_DECISIONS)
            except Exception:
                # Context for the model, never a reason to skip the review.
                log.warning("recent decisions of %s unavailable for the review", decision.symbol)
                missing.add("recent_decisions")
        if facts.account is None:
            missing.add("portfolio")
        if self._risk_limits is None:
            missing.add("risk_limits")
        market = _market(facts.signal) if facts.signal is not None else None
        if market is None:
            missing.add("market")
        return LLMReviewRequest(
            decision=decision.model_dump(mode="json"),
            portfolio=self._portfolio(facts, t),
            market=market,
            recent_decisions=recent,
            policy=self.bounds,
            trading_mode=self.trading_mode,
            prompt_version=self.prompt_version,
            as_of=iso(t),
            history=history,
            session=session_clock(t, self.calendar),
            open_orders=[_order_json(o) for o in facts.open_orders if o.symbol == decision.symbol][
                :_OPEN_ORDERS_MAX
            ],
            risk_limits=self._risk_limits,
            missing=sorted(missing),
        )

    def _portfolio(self, facts: ReviewFacts, t: datetime) -> PortfolioSnapshot:
        """Positions valued at their last price at or before t (else their entry price, which
        predates t too); equity is cash plus those values."""
        account = facts.account
        if account is None:
            return PortfolioSnapshot()
        positions: list[dict[str, Any]] = []
        equity = account.cash
        for p in facts.positions:
            price = self.history.price_at(p.symbol, t)
            priced_at = "last_price_before_decision"
            if price is None:
                price, priced_at = p.avg_entry_price, "entry_price"
            value = p.qty * price
            equity += value
            positions.append(
                {
                    "symbol": p.symbol,
                    "qty": str(p.qty),
                    "avg_entry_price": str(p.avg_entry_price),
                    "price": str(price),
                    "priced_at": priced_at,
                    "market_value": str(value.quantize(Decimal("0.01"))),
                }
            )
        return PortfolioSnapshot(
            equity=equity.quantize(Decimal("0.01")),
            cash=account.cash,
            buying_power=account.buying_power,
            positions=positions,
        )


def _market(signal: Signal) -> dict[str, Any]:
    """The signal behind the decision, its free-form payload bounded (a source may add any
    number of keys of any size; the prompt must not grow with them)."""
    data = signal.model_dump(mode="json")
    payload: dict[str, Any] = {}
    for key, value in sorted(data.get("payload", {}).items()):
        if len(payload) >= _MAX_PAYLOAD_KEYS:
            break
        if isinstance(value, str):
            payload[str(key)[:32]] = value[:_MAX_PAYLOAD_TEXT]
        elif value is None or isinstance(value, bool | int | float):
            payload[str(key)[:32]] = value
    data["payload"] = payload
    return data


def _order_json(order: BrokerOrder) -> dict[str, Any]:
    raw: Mapping[str, Any] = order.raw or {}
    return {
        "symbol": order.symbol,
        "side": str(order.side) if order.side is not None else raw.get("side"),
        "qty": str(order.qty) if order.qty is not None else raw.get("qty"),
        "order_type": raw.get("order_type") or raw.get("type"),
        "limit_price": (
            str(order.limit_price) if order.limit_price is not None else raw.get("limit_price")
        ),
        "status": order.status,
        "filled_qty": str(order.filled_qty),
    }


__all__ = [
    "Bar",
    "BarHistory",
    "PointInTimeContext",
    "ReviewContextSource",
    "ReviewFacts",
    "iso",
    "realized_vol_bps",
    "returns_bps",
    "session_clock",
]
