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
    stmt = (
        select(LLMDecisionReview, TradeDecisionRow)
        .join(TradeDecisionRow, LLMDecisionReview.trade_decision_id == TradeDecisionRow.id)
        .order_by(LLMDecisionReview.created_at)
    )
    if since is not None:
        stmt = stmt.where(TradeDecisionRow.event_ts >= since)
    latest: dict[str, ReviewedDecision] = {}
    for review, decision in session.execute(stmt).all():
        key = str(decision.id)
        # The last review of a decision counts (a decision is reviewed once; a re-run wins).
        latest[key] = ReviewedDecision(
            decision_id=key,
            symbol=decision.symbol,
            action=decision.action,
            event_ts=decision.event_ts,
            qty=float(decision.qty),
            reference_price=_price(decision.decision_json),
            verdict=review.verdict,
            llm_verdict=review.llm_verdict,
            confidence=review.confidence,
            adjusted_qty=float(review.adjusted_qty) if review.adjusted_qty is not None else None,
        )
    return list(latest.values())


async def load_reviewed(db: Database, since: datetime | None = None) -> list[ReviewedDecision]:
    return await db.run(lambda session: _read(session, since))
