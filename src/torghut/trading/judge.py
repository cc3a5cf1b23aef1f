"""Judging one decision at its own point in the batch: CONTRACT §8's checks in order, then
risk against the batch ledger. Pure: the clock's reading and the ledger come in.

First match wins, each alone: the kill switch, a stale signal, a closed market, a price the
band refused; then the rest of risk, which reports every failing reason. An approved
decision takes its reservation in the ledger at once (cash, shares, cooldown slot), so the
next decision of the batch sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from torghut.domain import Account, Position, TradeDecision
from torghut.trading import risk
from torghut.trading.ledger import BatchLedger, Reservation
from torghut.trading.risk import RiskLimits, StrategyLimits
from torghut.trading.session import SessionCalendar, admission
from torghut.trading.strategy import StrategySpec, size_exit


@dataclass(frozen=True, slots=True)
class JudgingSettings:
    """What decides whether an order may leave now (CONTRACT §8): the signal's age, the
    session, the price band. `clock` None: judge on each signal's own time (replay)."""

    max_signal_age_seconds: float = 120.0
    calendar: SessionCalendar = field(default_factory=SessionCalendar)
    max_price_move: Decimal = Decimal("0.10")
    clock: Callable[[], datetime] | None = None


@dataclass(frozen=True, slots=True)
class Judgment:
    """Rejected with `reason`, or approved with its `reservation` and the book as the
    decision saw it (for its review)."""

    reason: str | None
    reservation: Reservation | None = None
    account: Account | None = None
    positions: tuple[Position, ...] = ()


def strategy_limits(spec: StrategySpec | None) -> StrategyLimits | None:
    """A strategy's own limits, which replace the global ones for its decisions."""
    if spec is None:
        return None
    return StrategyLimits(
        max_notional_per_trade=spec.max_notional_per_trade,
        max_position_pct_equity=spec.max_position_pct_equity,
        universe=frozenset(spec.universe_symbols) if spec.universe_symbols else None,
    )


def exit_sized(
    decision: TradeDecision, spec: StrategySpec, ledger: BatchLedger, limits: RiskLimits
) -> TradeDecision:
    """An order that reduces a position is sized to it (see `strategy.size_exit`)."""
    return size_exit(
        decision,
        position=ledger.position(decision.symbol),
        closing=ledger.closing(decision.symbol, decision.action),
        partial=spec.partial_exits,
        max_shares=limits.max_shares_per_order,
    )


def judge(
    decision: TradeDecision,
    key: str,
    *,
    now: datetime,
    price_accepted: bool,
    spec: StrategySpec | None,
    ledger: BatchLedger,
    limits: RiskLimits,
    settings: JudgingSettings,
    with_view: bool = True,
) -> Judgment:
    """See the module docstring. `now`: the wall clock in `serve`, the signal's time in
    `replay`; `spec` None: the decision's strategy is no longer in the catalog. `with_view`:
    keep the book as the decision saw it (its reviewer needs it; a copy of every position)."""
    if limits.kill_switch:
        return Judgment(risk.KILL_SWITCH)
    reason = admission(
        decision.event_ts,
        now,
        max_age_seconds=settings.max_signal_age_seconds,
        calendar=settings.calendar,
    )
    if reason is not None:
        return Judgment(reason)
    if not price_accepted:
        return Judgment(risk.PRICE_OUT_OF_BAND)
    checked = ledger.check(
        decision,
        key,
        strategy_enabled=spec is not None and spec.enabled,
        strategy_limits=strategy_limits(spec),
    )
    if not checked.approved:
        return Judgment(checked.reason or "risk")
    account = ledger.snapshot()
    positions = tuple(ledger.positions()) if with_view else ()
    return Judgment(None, ledger.reserve(decision, key), account, positions)
