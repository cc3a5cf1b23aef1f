"""Reviewed decisions read from the audit rows of a database (read only)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from torghut.db.engine import Database
from torghut.db.tables import LLMDecisionReview, TradeDecisionRow
from torghut.evaluation.evaluate import ReviewedDecision


def _price(decision_json: dict[str, Any] | None) -> float | None:
    data = decision_json or {}
    raw_params = data.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    for value in (params.get("price"), data.get("limit_price")):
        try:
            if value is not None:
                number = Decimal(str(value))
                if number.is_finite() and number > 0:
                    return float(number)
        except InvalidOperation:
            continue
    return None


def _read(session: Session, since: datetime | None) -> list[ReviewedDecision]:
    # Only the columns needed: cheaper, and it reads databases of older schema versions too.
    review, decision = LLMDecisionReview, TradeDecisionRow
    stmt = (
        select(
            decision.id,
            decision.symbol,
            decision.action,
            decision.event_ts,
            decision.qty,
            decision.decision_json,
            review.verdict,
            review.llm_verdict,
            review.confidence,
            review.adjusted_qty,
        )
        .join(decision, review.trade_decision_id == decision.id)
        .order_by(review.created_at)
    )
    if since is not None:
        stmt = stmt.where(decision.event_ts >= since)
    latest: dict[str, ReviewedDecision] = {}
    for row in session.execute(stmt).all():
        key = str(row.id)
        # The last review of a decision counts (a decision is reviewed once; a re-run wins).
        latest[key] = ReviewedDecision(
            decision_id=key,
            symbol=row.symbol,
            action=row.action,
            event_ts=row.event_ts,
            qty=float(row.qty),
            reference_price=_price(row.decision_json),
            verdict=row.verdict,
            llm_verdict=row.llm_verdict,
            confidence=row.confidence,
            adjusted_qty=float(row.adjusted_qty) if row.adjusted_qty is not None else None,
        )
    return list(latest.values())


async def load_reviewed(db: Database, since: datetime | None = None) -> list[ReviewedDecision]:
    return await db.run(lambda session: _read(session, since))
