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

A broker that can list its orders (`OrderListing`: Alpaca) is asked once a pass, not once per
order: one request for the open orders, and, when some working executions are no longer open,
one for the orders closed since the oldest of those was recorded (Alpaca filters on submission
time). Only an order neither list holds (adopted long after it was sent, or unknown to the
broker) is then asked for by client order id. 200 working orders polled every 15 s were 800
requests a minute against Alpaca's 200; now 4, plus those few.

The sweep: a decision the pipeline rejected as `broker_no_answer` (its order's answer was lost
and the broker still did not know it after the resend window) is looked for again for
`NO_ANSWER_SWEEP` after that, by its client order id (the decision hash): a request that
outlived every deadline may still have placed it. Found, the order is recorded as the
decision's execution (reason `found_after_broker_no_answer`) and reconciled from then on:
a live order is never left unaccounted for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from torghut.db.engine import Database
from torghut.db.tables import ExecutionRow, TradeDecisionRow
from torghut.domain import TERMINAL_ORDER_STATUSES, BrokerOrder, as_utc, utcnow
from torghut.ports import Broker

log = logging.getLogger("torghut.reconcile")

MISSING_POLLS_KEY = "reconcile_missing_polls"
WORKING_STATUSES = frozenset({"new", "accepted", "pending_new"})
# The pipeline's reason for an order the broker never confirmed (trading/pipeline.py).
NO_ANSWER_REASON = "broker_no_answer"
FOUND_REASON = "found_after_broker_no_answer"
# How long after its rejection a `broker_no_answer` decision is looked for again.
NO_ANSWER_SWEEP = timedelta(hours=1)
# Between our clock (when a row was written) and the broker's (when it took the order).
_CLOCK_SLACK = timedelta(minutes=5)
_LIST_PAGE = 500  # the most orders one list request returns (Alpaca's largest page)


@runtime_checkable
class OrderListing(Protocol):
    """A broker that lists its orders in one request. Defined here, where it is used: only
    reconciliation needs it, and a broker without it is asked order by order."""

    async def list_open_orders(self) -> list[BrokerOrder]: ...

    async def list_orders_since(
        self, after: datetime, *, closed: bool = False
    ) -> list[BrokerOrder]: ...


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    polled: int = 0  # working executions looked at
    updated: int = 0  # executions whose status, fill or error count changed
    finalised: int = 0  # executions that reached a final status in this pass
    errors: int = 0  # orders whose broker call or update failed (retried next pass)
    requests: int = 0  # requests to the broker (lists and look-ups, the sweep's included)
    found: int = 0  # `broker_no_answer` decisions whose order the sweep found and recorded
    broker_rejected: int = 0  # orders the broker rejected after taking them (a metric counts)


@dataclass(frozen=True, slots=True)
class _Outcome:
    updated: bool = False
    finalised: bool = False
    error: bool = False
    asked: bool = False  # a look-up request was made
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
    """One pass over at most `limit` working executions of `broker`, then the sweep of
    `broker_no_answer` decisions; see the module doc."""
    stamp = as_utc(now) if now is not None else utcnow()
    query = (
        select(ExecutionRow.id, ExecutionRow.client_order_id, ExecutionRow.created_at)
        .where(
            ExecutionRow.broker == broker.name,
            ExecutionRow.status.not_in(sorted(TERMINAL_ORDER_STATUSES)),
        )
        .order_by(ExecutionRow.last_polled_at.nulls_first(), ExecutionRow.created_at)
        .limit(limit)
    )
    rows = await db.run(lambda session: session.execute(query).all())
    listed: dict[str, BrokerOrder] | None = None
    list_requests = 0
    if rows and isinstance(broker, OrderListing):
        listed, list_requests = await _listed(broker, rows)
        if listed is None:  # the broker cannot list now: asking order by order would fail too
            return ReconcileResult(polled=len(rows), errors=len(rows), requests=list_requests)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(execution_id: uuid.UUID, client_order_id: str) -> _Outcome:
        async with gate:
            return await _reconcile_one(
                db,
                broker,
                execution_id,
                client_order_id,
                stamp,
                max_missing_polls,
                None if listed is None else listed.get(client_order_id),
            )

    outcomes = await asyncio.gather(*(one(row.id, row.client_order_id) for row in rows))
    found, sweep_requests = await _sweep_unanswered(db, broker, stamp)
    return ReconcileResult(
        polled=len(outcomes),
        updated=sum(o.updated for o in outcomes),
        finalised=sum(o.finalised for o in outcomes),
        errors=sum(o.error for o in outcomes),
        requests=list_requests + sum(o.asked for o in outcomes) + sweep_requests,
        found=found,
        broker_rejected=sum(o.rejected for o in outcomes),
    )


async def _listed(
    broker: OrderListing, rows: Sequence[Any]
) -> tuple[dict[str, BrokerOrder] | None, int]:
    """The broker's orders for these executions, by client order id, from one or two list
    requests; None when it could not be asked. Also the number of requests made."""
    try:
        by_id = {o.client_order_id: o for o in await broker.list_open_orders()}
    except Exception as exc:
        log.warning("reconcile: the broker cannot list its open orders: %s", exc)
        return None, 1
    closed = [row for row in rows if row.client_order_id not in by_id]
    if not closed:
        return by_id, 1
    after = min(as_utc(row.created_at) for row in closed) - _CLOCK_SLACK
    try:
        for order in await broker.list_orders_since(after, closed=True):
            by_id.setdefault(order.client_order_id, order)
    except Exception as exc:  # those not open are looked up one by one instead
        log.warning("reconcile: the broker cannot list its closed orders: %s", exc)
    return by_id, 2


async def _reconcile_one(
    db: Database,
    broker: Broker,
    execution_id: uuid.UUID,
    client_order_id: str,
    now: datetime,
    max_missing_polls: int,
    listed: BrokerOrder | None = None,
) -> _Outcome:
    """`listed`: the order as a list request gave it; None: ask the broker for it."""
    order = listed
    if order is None:
        try:
            order = await broker.get_order(client_order_id)
        except Exception as exc:  # one order's failure never stops the pass
            log.warning("reconcile: broker %s failed for %s: %s", broker.name, client_order_id, exc)
            await _touch(db, execution_id, now)
            return _Outcome(error=True, asked=True)

    def update(session: Session) -> _Outcome:
        execution = session.get(ExecutionRow, execution_id)
        if execution is None or execution.status in TERMINAL_ORDER_STATUSES:
            return _Outcome()  # finalised meanwhile (the pipeline adopting it, say)
        decision = session.get(TradeDecisionRow, execution.trade_decision_id)
        execution.last_polled_at = now
        if order is None:
            return _missing(execution, decision, now, max_missing_polls)
        return _mirror(execution, decision, order, now)

    asked = listed is None
    try:
        outcome = await db.run(update)
    except Exception:
        log.exception("reconcile: could not update execution of %s", client_order_id)
        return _Outcome(error=True, asked=asked)
    return dataclasses.replace(outcome, asked=asked)


# --- the sweep of `broker_no_answer` decisions ---------------------------------------------


async def _sweep_unanswered(
    db: Database, broker: Broker, now: datetime, *, limit: int = 50
) -> tuple[int, int]:
    """Look again for the orders of recent `broker_no_answer` decisions; record those found.
    Returns (orders found and recorded, requests made)."""
    query = (
        select(TradeDecisionRow.id, TradeDecisionRow.decision_hash, TradeDecisionRow.created_at)
        .where(
            TradeDecisionRow.status == "rejected",
            TradeDecisionRow.reason == NO_ANSWER_REASON,
            TradeDecisionRow.updated_at >= now - NO_ANSWER_SWEEP,
            ~exists().where(ExecutionRow.client_order_id == TradeDecisionRow.decision_hash),
        )
        .order_by(TradeDecisionRow.updated_at)
        .limit(limit)
    )
    try:
        candidates = await db.run(lambda session: session.execute(query).all())
    except Exception:
        log.exception("reconcile: could not read the broker_no_answer decisions")
        return 0, 0
    if not candidates:
        return 0, 0
    found: dict[str, BrokerOrder] = {}
    requests = 0
    wanted = {row.decision_hash for row in candidates}
    unlisted = list(candidates)
    if isinstance(broker, OrderListing):
        # The order, if any, was submitted after its decision was written.
        after = min(as_utc(row.created_at) for row in candidates) - _CLOCK_SLACK
        requests += 1
        try:
            orders = await broker.list_orders_since(after)
        except Exception as exc:
            log.warning("reconcile: the broker cannot list its orders for the sweep: %s", exc)
            return 0, requests
        found = {o.client_order_id: o for o in orders if o.client_order_id in wanted}
        # A full page may have stopped short of some: those are asked for one by one.
        unlisted = (
            []
            if len(orders) < _LIST_PAGE
            else [row for row in candidates if row.decision_hash not in found]
        )
    for row in unlisted:
        requests += 1
        try:
            order = await broker.get_order(row.decision_hash)
        except Exception as exc:
            log.warning(
                "reconcile: broker %s failed for %s: %s", broker.name, row.decision_hash, exc
            )
            continue
        if order is not None:
            found[row.decision_hash] = order
    recorded = 0
    for row in candidates:
        if row.decision_hash not in found:
            continue
        record = functools.partial(
            _record_found,
            decision_id=row.id,
            order=found[row.decision_hash],
            broker=broker.name,
            now=now,
        )
        try:
            recorded += await db.run(record)
        except Exception:
            log.exception("reconcile: could not record the order found for %s", row.decision_hash)
    return recorded, requests


def _record_found(
    session: Session, *, decision_id: uuid.UUID, order: BrokerOrder, broker: str, now: datetime
) -> int:
    decision = session.get(TradeDecisionRow, decision_id)
    if decision is None or (decision.status, decision.reason) != ("rejected", NO_ANSWER_REASON):
        return 0
    taken = session.execute(
        select(ExecutionRow.id).where(ExecutionRow.client_order_id == decision.decision_hash)
    ).first()
    if taken is not None:
        return 0
    log.warning(
        "reconcile: order %s, rejected as broker_no_answer, is at the broker (%s): recorded",
        decision.decision_hash,
        order.status,
    )
    raw: Mapping[str, Any] = order.raw or {}
    asked: Mapping[str, Any] = decision.decision_json or {}
    session.add(
        ExecutionRow(
            trade_decision_id=decision.id,
            client_order_id=decision.decision_hash,
            broker_order_id=order.broker_order_id,
            broker=broker,
            symbol=order.symbol,
            side=str(raw.get("side") or decision.action),
            order_type=str(
                raw.get("type") or raw.get("order_type") or asked.get("order_type") or "market"
            ),
            time_in_force=str(raw.get("time_in_force") or asked.get("time_in_force") or "day"),
            submitted_qty=_amount(raw.get("qty")) or decision.qty,
            limit_price=_amount(raw.get("limit_price")),
            stop_price=_amount(raw.get("stop_price")),
            filled_qty=order.filled_qty,
            avg_fill_price=order.avg_fill_price,
            status=order.status,
            reject_reason=order.reject_reason,
            raw_json=dict(raw) or None,
            created_at=now,
            updated_at=now,
            last_polled_at=now,
        )
    )
    decision.reason = FOUND_REASON
    _follow(decision, order, now)
    return 1


def _amount(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


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
