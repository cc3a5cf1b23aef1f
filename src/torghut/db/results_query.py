"""Reads for the results (P&L) and the operator's page: fills, price marks, the latest
decisions with their review, the signal cursor. Each function is one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Table, func, or_, select
from sqlalchemy.orm import Session

from torghut.db.engine import Database
from torghut.db.tables import ExecutionRow, LLMDecisionReview, SignalCursor, TradeDecisionRow
from torghut.domain import Book, as_utc
from torghut.trading.results import Fill, Mark, Results, compute_results
from torghut.trading.risk import PRICE_OUT_OF_BAND

_D = TradeDecisionRow
_E = ExecutionRow
_R = LLMDecisionReview


def _price(raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() and value > 0 else None


# Core statements on the tables, built once: every fill and every decision is read.
_DT: Table = _D.__table__  # type: ignore[assignment]
_ET: Table = _E.__table__  # type: ignore[assignment]
# Events of one instant in a fixed order: the equity curve (peak, drawdown) is computed event
# by event, and rows read in whatever order the database returns them gave a different peak
# from one run to the next (bench/compare_replays.py found it, on PostgreSQL mostly).
_EVENT_ORDER = (_DT.c.event_ts, _DT.c.symbol, _DT.c.decision_hash)
_FILLS = (
    select(
        _DT.c.event_ts,
        _DT.c.strategy_id,
        _ET.c.symbol,
        _ET.c.side,
        _ET.c.filled_qty,
        _ET.c.avg_fill_price,
    )
    .join(_DT, _DT.c.id == _ET.c.trade_decision_id)
    .where(_ET.c.filled_qty > 0, _ET.c.avg_fill_price.is_not(None))
    .order_by(*_EVENT_ORDER, _ET.c.client_order_id)
)
# A decision whose price the band refused (a bad tick: x100, /100) is no mark: it would put
# a peak or a drawdown on the curve that the book never had. Refused alone (first match wins,
# `judge`), so its reason is exactly that.
_MARKS = (
    select(_DT.c.event_ts, _DT.c.symbol, _DT.c.decision_json["params"]["price"].as_string())
    .where(or_(_DT.c.reason.is_(None), _DT.c.reason != PRICE_OUT_OF_BAND))
    .order_by(*_EVENT_ORDER)
)


def _fills_and_marks(session: Session) -> tuple[list[Fill], list[Mark]]:
    conn = session.connection()
    # A fill is dated at its decision's signal time: replays then keep their own timeline.
    fills = [
        Fill(as_utc(ts), strategy_id, symbol, side, Decimal(qty), Decimal(str(price)))
        for ts, strategy_id, symbol, side, qty, price in conn.execute(_FILLS)
    ]
    # Every decision saw its symbol's price at its signal time: a mark of the equity curve.
    # Only that price is read (JSON extraction in SQL), not the whole decision.
    marks: list[Mark] = []
    for ts, symbol, raw in conn.execute(_MARKS):
        price = _price(raw)
        if price is not None:
            marks.append(Mark(as_utc(ts), symbol, price))
    return fills, marks


async def current_results(db: Database, book: Book) -> Results:
    """The results of every fill recorded, marked last at the broker's current prices, so
    that equity here is the broker's equity when it holds only what we traded. The starting
    cash is what makes the fills end at the broker's cash now."""
    fills, marks = await db.run(_fills_and_marks)
    flows = sum(((f.qty if f.side == "buy" else -f.qty) * f.price for f in fills), Decimal(0))
    last = {p.symbol: p.market_value / p.qty for p in book.positions if p.qty}
    return compute_results(book.account.cash + flows, fills, marks, last)


@dataclass(frozen=True, slots=True)
class RecentDecision:
    created_at: datetime
    event_ts: datetime
    strategy_id: str
    symbol: str
    action: str
    qty: Decimal
    status: str
    reason: str | None
    verdict: str | None
    effective_action: str | None
    rationale: str | None
    shadow: bool | None


async def latest_decisions(db: Database, limit: int = 20) -> list[RecentDecision]:
    """The decisions of the newest signals, with their latest review (if any)."""

    def read(session: Session) -> list[RecentDecision]:
        rows = (
            session.execute(
                # By signal time: a replay writes a batch at one wall-clock moment.
                select(_D).order_by(_D.event_ts.desc(), _D.created_at.desc()).limit(limit)
            )
            .scalars()
            .all()
        )
        ids = [r.id for r in rows]
        reviews: dict[Any, LLMDecisionReview] = {}
        if ids:
            for review in session.execute(
                select(_R).where(_R.trade_decision_id.in_(ids)).order_by(_R.created_at)
            ).scalars():
                reviews[review.trade_decision_id] = review
        out = []
        for r in rows:
            found = reviews.get(r.id)
            out.append(
                RecentDecision(
                    created_at=r.created_at,
                    event_ts=r.event_ts,
                    strategy_id=r.strategy_id,
                    symbol=r.symbol,
                    action=r.action,
                    qty=r.qty,
                    status=r.status,
                    reason=r.reason,
                    verdict=found.verdict if found else None,
                    effective_action=found.effective_action if found else None,
                    rationale=(found.rationale or found.error_message) if found else None,
                    shadow=found.shadow if found else None,
                )
            )
        return out

    return await db.run(read)


async def verdict_mix(db: Database, since: datetime | None = None) -> dict[str, int]:
    def read(session: Session) -> dict[str, int]:
        stmt = select(_R.verdict, func.count()).group_by(_R.verdict)
        if since is not None:
            stmt = stmt.where(_R.created_at >= since)
        counts = {v: 0 for v in ("approve", "veto", "adjust", "error")}
        for verdict, n in session.execute(stmt):
            counts[verdict] = counts.get(verdict, 0) + int(n)
        return counts

    return await db.run(read)


@dataclass(frozen=True, slots=True)
class SignalProgress:
    last_signal_at: datetime | None  # the newest signal time fully processed
    processed_at: datetime | None  # when the cursor last moved (wall clock)


async def signal_progress(db: Database) -> SignalProgress:
    def read(session: Session) -> SignalProgress:
        row = session.execute(
            select(func.max(SignalCursor.event_ts), func.max(SignalCursor.updated_at))
        ).one()
        return SignalProgress(
            as_utc(row[0]) if row[0] else None, as_utc(row[1]) if row[1] else None
        )

    return await db.run(read)
