"""Reconciliation: the broker's view of each working order onto `executions` and its decision.

One pass picks the executions of this broker whose status is not final (`TERMINAL_ORDER_STATUSES`:
`done_for_day`, `replaced` and `stopped` are final too, so nothing is polled forever), least
recently polled first, asks the broker for each by `client_order_id`, and mirrors status,
filled quantity and average fill price; the decision follows (`executed_at` once filled).

- An order the broker no longer knows is asked again on later passes; after
  `max_missing_polls` of them the execution and its decision become `error`. The count lives
  in the execution's `raw_json` (`reconcile_missing_polls`) so a restart does not reset it.
- Each order is handled on its own: a broker error or a database error on one is logged and
  counted, and the pass goes on. No database transaction is held across a broker call.
- Decision statuses follow the pipeline's convention: a working order (`new`, `accepted`,
  `pending_new`) leaves the decision `submitted`; a broker rejection makes it `rejected`
  with reason `broker_rejected:<reason>`; any other broker status is mirrored as it is.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from torghut.db.engine import Database
from torghut.db.tables import ExecutionRow, TradeDecisionRow
from torghut.domain import TERMINAL_ORDER_STATUSES, BrokerOrder, as_utc, utcnow
from torghut.ports import Broker

log = logging.getLogger("torghut.reconcile")

MISSING_POLLS_KEY = "reconcile_missing_polls"
WORKING_STATUSES = frozenset({"new", "accepted", "pending_new"})


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    polled: int = 0  # orders the broker was asked about
    updated: int = 0  # executions whose status, fill or error count changed
    finalised: int = 0  # executions that reached a final status in this pass
    errors: int = 0  # orders whose broker call or update failed (retried next pass)
    broker_rejected: int = 0  # orders the broker rejected after taking them (a metric counts)


@dataclass(frozen=True, slots=True)
class _Outcome:
    updated: bool = False
    finalised: bool = False
    error: bool = False
    rejected: bool = False


async def reconcile(
    db: Database,
    broker: Broker,
    *,
    now: datetime | None = None,
    limit: int = 200,
    max_missing_polls: int = 5,
    concurrency: int = 8,
) -> ReconcileResult:
    """One pass over at most `limit` working executions of `broker`; see the module doc."""
    stamp = as_utc(now) if now is not None else utcnow()
    query = (
        select(ExecutionRow.id, ExecutionRow.client_order_id)
        .where(
            ExecutionRow.broker == broker.name,
            ExecutionRow.status.not_in(sorted(TERMINAL_ORDER_STATUSES)),
        )
        .order_by(ExecutionRow.last_polled_at.nulls_first(), ExecutionRow.created_at)
        .limit(limit)
    )
    rows = await db.run(lambda session: session.execute(query).all())
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(execution_id: uuid.UUID, client_order_id: str) -> _Outcome:
        async with gate:
            return await _reconcile_one(
                db, broker, execution_id, client_order_id, stamp, max_missing_polls
            )

    outcomes = await asyncio.gather(*(one(row.id, row.client_order_id) for row in rows))
    return ReconcileResult(
        polled=len(outcomes),
        updated=sum(o.updated for o in outcomes),
        finalised=sum(o.finalised for o in outcomes),
        errors=sum(o.error for o in outcomes),
        broker_rejected=sum(o.rejected for o in outcomes),
    )


async def _reconcile_one(
    db: Database,
    broker: Broker,
    execution_id: uuid.UUID,
    client_order_id: str,
    now: datetime,
    max_missing_polls: int,
) -> _Outcome:
    try:
        order = await broker.get_order(client_order_id)
    except Exception as exc:  # one order's failure never stops the pass
        log.warning("reconcile: broker %s failed for %s: %s", broker.name, client_order_id, exc)
        await _touch(db, execution_id, now)
        return _Outcome(error=True)

    def update(session: Session) -> _Outcome:
        execution = session.get(ExecutionRow, execution_id)
        if execution is None or execution.status in TERMINAL_ORDER_STATUSES:
            return _Outcome()  # finalised meanwhile (the pipeline adopting it, say)
        decision = session.get(TradeDecisionRow, execution.trade_decision_id)
        execution.last_polled_at = now
        if order is None:
            return _missing(execution, decision, now, max_missing_polls)
        return _mirror(execution, decision, order, now)

    try:
        return await db.run(update)
    except Exception:
        log.exception("reconcile: could not update execution of %s", client_order_id)
        return _Outcome(error=True)


async def _touch(db: Database, execution_id: uuid.UUID, now: datetime) -> None:
    """Record the attempt, so a failing order moves behind the others next pass."""

    def touch(session: Session) -> None:
        execution = session.get(ExecutionRow, execution_id)
        if execution is not None:
            execution.last_polled_at = now

    try:
        await db.run(touch)
    except Exception:
        log.exception("reconcile: could not record the poll of execution %s", execution_id)


def _missing(
    execution: ExecutionRow,
    decision: TradeDecisionRow | None,
    now: datetime,
    max_missing_polls: int,
) -> _Outcome:
    raw: dict[str, Any] = dict(execution.raw_json or {})
    misses = int(raw.get(MISSING_POLLS_KEY, 0)) + 1
    raw[MISSING_POLLS_KEY] = misses
    execution.raw_json = raw
    execution.updated_at = now
    if misses < max_missing_polls:
        return _Outcome(updated=True)
    reason = f"broker_unknown: {execution.broker} did not know the order after {misses} polls"
    execution.status = "error"
    execution.reject_reason = reason
    if decision is not None:
        decision.status = "error"
        decision.reason = reason
        decision.updated_at = now
    return _Outcome(updated=True, finalised=True)


def _mirror(
    execution: ExecutionRow,
    decision: TradeDecisionRow | None,
    order: BrokerOrder,
    now: datetime,
) -> _Outcome:
    status = order.status
    changed = (
        execution.status != status
        or Decimal(execution.filled_qty or 0) != order.filled_qty
        or _differs(execution.avg_fill_price, order.avg_fill_price)
        or (execution.broker_order_id != order.broker_order_id)
        or bool(execution.raw_json and MISSING_POLLS_KEY in execution.raw_json)
    )
    if not changed:
        return _Outcome()
    execution.status = status
    execution.filled_qty = order.filled_qty
    execution.avg_fill_price = order.avg_fill_price
    execution.broker_order_id = order.broker_order_id
    if order.reject_reason:
        execution.reject_reason = order.reject_reason
    execution.raw_json = dict(order.raw) if order.raw else None
    execution.updated_at = now
    if decision is not None:
        _follow(decision, order, now)
    rejected = status in ("rejected", "broker_rejected")
    return _Outcome(updated=True, finalised=status in TERMINAL_ORDER_STATUSES, rejected=rejected)


def _follow(decision: TradeDecisionRow, order: BrokerOrder, now: datetime) -> None:
    if order.status in WORKING_STATUSES:
        status, reason = "submitted", decision.reason
    elif order.status in ("rejected", "broker_rejected"):
        status = "rejected"
        reason = f"broker_rejected:{order.reject_reason or 'rejected by the broker'}"[:500]
    else:
        status, reason = order.status, decision.reason
    decision.status = status
    decision.reason = reason
    decision.updated_at = now
    if order.status == "filled" and decision.executed_at is None:
        decision.executed_at = _filled_at(order) or now


def _filled_at(order: BrokerOrder) -> datetime | None:
    """The broker's own fill time when it gives one (Alpaca's `filled_at`)."""
    value = order.raw.get("filled_at")
    if not isinstance(value, str) or not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _differs(stored: Decimal | None, current: Decimal | None) -> bool:
    if stored is None or current is None:
        return stored is not current
    return Decimal(stored) != current
