"""The queries of Torghut: the audit store the pipeline writes through, and the reads the API
and the report need. Every function takes the `Database` and runs as one transaction on it
(a plain function of a session, off the event loop), so a caller can never leave one
half-committed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from torghut.db.engine import (
    Database,
    executemany,
    expect_all_matched,
    jsonable,
    update_by_key,
)
from torghut.db.tables import (
    ExecutionRow,
    LLMDecisionReview,
    PriceReferenceRow,
    TradeDecisionRow,
    is_plain_json,
)
from torghut.domain import EffectiveAction, TradeDecision, utcnow
from torghut.ports import Execution, JudgedDecision, StoredDecision
from torghut.trading.ledger import PriceReference

__all__ = ["AuditRepository", "Execution", "StoredDecision"]

# The pipeline's writes go through Core statements on the tables: SQLAlchemy's ORM costs
# several times more CPU per statement, and these run for every decision.
_DECISIONS: Table = TradeDecisionRow.__table__  # type: ignore[assignment]
_EXECUTIONS: Table = ExecutionRow.__table__  # type: ignore[assignment]
_REVIEWS: Table = LLMDecisionReview.__table__  # type: ignore[assignment]
_REFERENCES: Table = PriceReferenceRow.__table__  # type: ignore[assignment]
# Statements run on every cycle are built once (building one costs more than running it
# on a small table); `expanding`: the IN list is rendered at execution, as `in_(list)` is.
_REFERENCES_OF = select(
    _REFERENCES.c.symbol,
    _REFERENCES.c.price,
    _REFERENCES.c.candidate_price,
    _REFERENCES.c.streak,
).where(_REFERENCES.c.symbol.in_(bindparam("symbols", expanding=True)))
# A batch writes a reference for every symbol whose price moved: `executemany`'s bulk path.
_INSERT_REFERENCES = insert(_REFERENCES)
_UPDATE_REFERENCES = update_by_key(
    _REFERENCES, "symbol", ("price", "candidate_price", "streak", "updated_at")
)
_REFERENCED = select(_REFERENCES.c.symbol).where(
    _REFERENCES.c.symbol.in_(bindparam("symbols", expanding=True))
)
_INSERT_DECISIONS = _DECISIONS.insert()
_INSERT_EXECUTIONS = _EXECUTIONS.insert()


def _update_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """UPDATE by primary key, one executemany per set of columns (each row: `id` + values)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    # Per set of keys, as the rows hold them: the columns it updates, and the parameters' names
    # in the keys' order (each row is renamed by a `zip` of them with its values).
    plans: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for row in rows:
        keys = tuple(row)
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = (
                tuple(sorted(k for k in keys if k != "id")),
                tuple("b_key" if k == "id" else f"b_{k}" for k in keys),
            )
        groups.setdefault(plan[0], []).append(dict(zip(plan[1], row.values(), strict=True)))
    conn = session.connection()
    for columns, params in groups.items():
        matched = executemany(conn, update_by_key(table, "id", columns), params)
        expect_all_matched(matched, len(params), table.name, conn)


async def insert_decision(
    db: Database, decision: TradeDecision, decision_hash: str
) -> StoredDecision:
    """Insert a `planned` decision, or return the existing one with the same hash."""
    row = _decision_row(decision, decision_hash)
    try:
        await db.run(lambda session: session.connection().execute(_DECISIONS.insert(), [row]))
        return StoredDecision(row["id"], "planned", True)
    except IntegrityError:
        return await db.run(lambda session: _stored(session, decision_hash))


def _stored_or_none(session: Session, decision_hash: str) -> StoredDecision | None:
    exists = session.execute(
        select(TradeDecisionRow.id).where(TradeDecisionRow.decision_hash == decision_hash)
    ).first()
    return None if exists is None else _stored(session, decision_hash)


def _stored(session: Session, decision_hash: str) -> StoredDecision:
    existing = session.execute(
        select(
            TradeDecisionRow.id,
            TradeDecisionRow.status,
            TradeDecisionRow.decision_json,
            TradeDecisionRow.pending_order_json,
        ).where(TradeDecisionRow.decision_hash == decision_hash)
    ).one()
    return StoredDecision(
        existing.id,
        existing.status,
        False,
        existing.decision_json,
        existing.pending_order_json,
    )


async def insert_decisions(
    db: Database, decisions: Sequence[tuple[TradeDecision, str]]
) -> dict[str, StoredDecision]:
    """`insert_decision` for a whole batch in one transaction (one commit instead of one per
    decision). Falls back to row-by-row when another loop inserts the same hashes meanwhile."""
    if not decisions:
        return {}

    def work(session: Session) -> dict[str, StoredDecision]:
        out: dict[str, StoredDecision] = {}
        conn = session.connection()
        hashes = list(dict.fromkeys(h for _, h in decisions))
        c = _DECISIONS.c
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            found = conn.execute(
                select(
                    c.id, c.status, c.decision_json, c.decision_hash, c.pending_order_json
                ).where(c.decision_hash.in_(chunk))
            )
            for existing in found:
                out[existing.decision_hash] = StoredDecision(
                    existing.id,
                    existing.status,
                    False,
                    existing.decision_json,
                    existing.pending_order_json,
                )
        rows: list[dict[str, Any]] = []
        for decision, h in decisions:
            if h in out:
                continue
            row = _decision_row(decision, h)
            rows.append(row)
            out[h] = StoredDecision(row["id"], "planned", True)
        if rows:
            conn.execute(_DECISIONS.insert(), rows)
        return out

    try:
        return await db.run(work)
    except IntegrityError:
        return {h: await insert_decision(db, d, h) for d, h in decisions}


async def existing_decisions(db: Database, hashes: Sequence[str]) -> dict[str, StoredDecision]:
    """The decisions already stored under these hashes (a replay, a restart, another loop)."""
    if not hashes:
        return {}

    def work(session: Session) -> dict[str, StoredDecision]:
        out: dict[str, StoredDecision] = {}
        conn = session.connection()
        unique = list(dict.fromkeys(hashes))
        c = _DECISIONS.c
        for start in range(0, len(unique), 500):
            found = conn.execute(
                select(
                    c.id, c.status, c.decision_json, c.decision_hash, c.pending_order_json
                ).where(c.decision_hash.in_(unique[start : start + 500]))
            )
            for row in found:
                out[row.decision_hash] = StoredDecision(
                    row.id, row.status, False, row.decision_json, row.pending_order_json
                )
        return out

    return await db.run(work)


async def insert_judged_decisions(
    db: Database, decisions: Sequence[JudgedDecision]
) -> dict[str, StoredDecision]:
    """Insert decisions already judged, in one transaction: `planned`, or `rejected` with
    their reason when one is given (the row and its rejection in one statement). A hash that
    another loop stored meanwhile comes back as it is stored (`created` False)."""
    if not decisions:
        return {}

    def work(session: Session) -> dict[str, StoredDecision]:
        rows = [_decision_row(d, h, reason) for d, h, reason in decisions]
        executemany(session.connection(), _INSERT_DECISIONS, rows)
        return {r["decision_hash"]: StoredDecision(r["id"], r["status"], True) for r in rows}

    try:
        return await db.run(work)
    except IntegrityError:
        # Another loop stored some of these meanwhile: one at a time, theirs are read back.
        out: dict[str, StoredDecision] = {}
        for d, h, reason in decisions:
            out[h] = await _insert_one(db, _decision_row(d, h, reason))
        return out


async def _insert_one(db: Database, row: dict[str, Any]) -> StoredDecision:
    def insert(session: Session) -> None:
        session.connection().execute(_DECISIONS.insert(), [row])

    try:
        await db.run(insert)
        return StoredDecision(row["id"], row["status"], True)
    except IntegrityError:
        stored = await db.run(lambda session: _stored_or_none(session, row["decision_hash"]))
        if stored is None:
            raise  # not a duplicate (a foreign key, say): the error says what
        return stored


def _decision_row(
    decision: TradeDecision, decision_hash: str, reason: str | None = None
) -> dict[str, Any]:
    # Each its own moment (not the batch's): listings order decisions by `created_at`.
    now = utcnow()
    return {
        "id": uuid.uuid4(),
        "strategy_id": decision.strategy_id,
        "symbol": decision.symbol,
        "timeframe": decision.timeframe,
        "action": decision.action.value,
        "qty": decision.qty,
        # mode="json" dumps only JSON types already: no `jsonable` walk needed.
        "decision_json": decision.model_dump(mode="json"),
        "decision_hash": decision_hash,
        "status": "planned" if reason is None else "rejected",
        "reason": reason,
        "event_ts": decision.event_ts,
        "created_at": now,
        "updated_at": now,
    }


async def mark_decision(
    db: Database,
    decision_id: uuid.UUID,
    status: str,
    reason: str | None = None,
    *,
    executed_at: datetime | None = None,
) -> None:
    await db.run(
        lambda session: _mark(session, decision_id, status, reason, executed_at=executed_at)
    )


def _mark(
    session: Session,
    decision_id: uuid.UUID,
    status: str,
    reason: str | None,
    *,
    executed_at: datetime | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "reason": reason, "updated_at": utcnow()}
    if status == "rejected":
        values["pending_order_json"] = None  # nothing of it is pending any more
    if executed_at is not None:
        values["executed_at"] = executed_at
    session.execute(
        update(TradeDecisionRow).where(TradeDecisionRow.id == decision_id).values(**values)
    )


async def record_review(
    db: Database,
    values: Mapping[str, Any],
    *,
    reject: tuple[uuid.UUID, str] | None = None,
    pending: tuple[uuid.UUID, dict[str, Any]] | None = None,
) -> uuid.UUID:
    """Write one `llm_decision_reviews` row; with `reject`, mark that decision rejected in the
    same transaction, so a rejection and its audit row are never apart; with `pending`, write
    the order it lets out ahead on its decision in the same transaction, so that a crash after
    the review leaves an order to finish, never a decision to review again."""
    columns = {k: jsonable_if_json(k, v) for k, v in values.items()}
    row = LLMDecisionReview(id=uuid.uuid4(), **columns)

    def work(session: Session) -> None:
        session.add(row)
        if reject is not None:
            _mark(session, reject[0], "rejected", reject[1])
        if pending is not None:
            _update_rows(
                session,
                _DECISIONS,
                [{"id": pending[0], "pending_order_json": pending[1], "updated_at": utcnow()}],
            )

    await db.run(work)
    return row.id


_JSON_COLUMNS = frozenset({"input_json", "response_json", "risk_flags", "real_request_json"})


def jsonable_if_json(column: str, value: Any) -> Any:
    return jsonable(value) if column in _JSON_COLUMNS else value


async def record_execution(
    db: Database,
    decision_id: uuid.UUID,
    order: Any,
    placed: Any,
    *,
    broker: str,
) -> None:
    """Store the broker's answer and move the decision to `submitted` (or the broker's final
    status). Idempotent on `client_order_id`: an adopted order updates the existing row."""
    await record_executions(db, [(decision_id, order, placed)], broker=broker)


async def record_executions(db: Database, executions: Sequence[Execution], *, broker: str) -> None:
    """`record_execution` for several orders in one transaction: all of them or none."""
    if executions:
        await db.run(lambda session: _record_executions(session, executions, broker))


def _record_executions(session: Session, executions: Sequence[Execution], broker: str) -> None:
    now = utcnow()
    conn = session.connection()
    ids = list(dict.fromkeys(order.client_order_id for _, order, _ in executions))
    existing: dict[str, uuid.UUID] = {}
    c = _EXECUTIONS.c
    for start in range(0, len(ids), 500):
        found = conn.execute(
            select(c.client_order_id, c.id).where(c.client_order_id.in_(ids[start : start + 500]))
        )
        existing.update((coid, row_id) for coid, row_id in found)
    new_rows: dict[str, dict[str, Any]] = {}
    # Keyed by order and by decision: should one come twice, its last answer is the one kept.
    execution_updates: dict[uuid.UUID, dict[str, Any]] = {}
    decision_updates: dict[uuid.UUID, dict[str, Any]] = {}
    for decision_id, order, placed in executions:
        row_id = existing.get(order.client_order_id)
        if row_id is not None:
            execution_updates[row_id] = {
                "id": row_id,
                "broker_order_id": placed.broker_order_id,
                "filled_qty": placed.filled_qty,
                "avg_fill_price": placed.avg_fill_price,
                "status": placed.status,
                "updated_at": now,
            }
        else:
            new_rows[order.client_order_id] = {
                "id": uuid.uuid4(),
                "trade_decision_id": decision_id,
                "client_order_id": order.client_order_id,
                "broker_order_id": placed.broker_order_id,
                "broker": broker,
                "symbol": order.symbol,
                "side": order.side.value,
                "order_type": order.order_type.value,
                "time_in_force": order.time_in_force.value,
                "submitted_qty": order.qty,
                # The limit the broker holds (Alpaca's is on its tick), when it says which:
                # the audit shows the order as it was placed, not as it was asked for.
                "limit_price": (
                    order.limit_price if placed.limit_price is None else placed.limit_price
                ),
                "stop_price": order.stop_price,
                "filled_qty": placed.filled_qty,
                "avg_fill_price": placed.avg_fill_price,
                "status": placed.status,
                "reject_reason": placed.reject_reason,
                # Plain JSON already (the simulated broker's, a parsed answer): no copy.
                "raw_json": _json_value(placed.raw) if placed.raw else None,
                "created_at": now,
                "updated_at": now,
            }
        working = placed.status in ("new", "accepted", "pending_new")
        decision_updates[decision_id] = {
            "id": decision_id,
            "status": "submitted" if working else placed.status,
            "reason": placed.reject_reason,
            "updated_at": now,
            "executed_at": now if placed.status == "filled" else None,
            "pending_order_json": None,  # the broker's answer is recorded now
        }
    if new_rows:
        executemany(conn, _INSERT_EXECUTIONS, list(new_rows.values()))
    _update_rows(session, _EXECUTIONS, list(execution_updates.values()))
    _mark_many(session, list(decision_updates.values()))
    _reviews_rejected(
        session, [u["id"] for u in decision_updates.values() if u["status"] in _REJECTED_STATUSES]
    )


_REJECTED_STATUSES = frozenset({"rejected", "broker_rejected"})


def _json_value(value: Any) -> Any:
    # `jsonable` makes a deep copy that is equal to plain JSON data: skip it for those.
    return value if is_plain_json(value) else jsonable(value)


async def price_references(db: Database, symbols: Sequence[str]) -> dict[str, PriceReference]:
    """The stored reference prices of `symbols` (those that have one)."""
    if not symbols:
        return {}
    params = {"symbols": list(symbols)}
    rows = await db.run(lambda session: session.connection().execute(_REFERENCES_OF, params).all())
    # Unpacked as tuples: a Row's attribute access costs about a microsecond each, and a
    # batch reads a reference for every symbol it holds.
    return {
        symbol: PriceReference(price, candidate, streak or 0)
        for symbol, price, candidate, streak in rows
    }


async def save_price_references(db: Database, references: Mapping[str, PriceReference]) -> None:
    """Store these reference prices (insert or replace), in one transaction."""
    if not references:
        return
    now = utcnow()
    values = {
        symbol: {
            "symbol": symbol,
            "price": ref.price,
            "candidate_price": ref.candidate,
            "streak": ref.streak,
            "updated_at": now,
        }
        for symbol, ref in references.items()
    }

    def work(session: Session) -> None:
        conn = session.connection()
        known = set(conn.execute(_REFERENCED, {"symbols": list(values)}).scalars())
        new = [v for s, v in values.items() if s not in known]
        if new:
            executemany(conn, _INSERT_REFERENCES, new)
        changed = [
            {
                "b_key": v["symbol"],
                "b_price": v["price"],
                "b_candidate_price": v["candidate_price"],
                "b_streak": v["streak"],
                "b_updated_at": now,
            }
            for s, v in values.items()
            if s in known
        ]
        if changed:
            executemany(conn, _UPDATE_REFERENCES, changed)

    await db.run(work)


async def record_pending_orders(
    db: Database, orders: Sequence[tuple[uuid.UUID, dict[str, Any]]]
) -> None:
    """Write, before they are sent, the orders about to go to the broker (one transaction)."""
    now = utcnow()
    rows = [
        {"id": decision_id, "pending_order_json": order, "updated_at": now}
        for decision_id, order in orders
    ]
    await db.run(lambda session: _update_rows(session, _DECISIONS, rows))


async def reject_decisions(db: Database, rejections: Sequence[tuple[uuid.UUID, str]]) -> None:
    """Mark several decisions `rejected`, each with its reason, in one transaction."""
    now = utcnow()
    rows = [
        {
            "id": decision_id,
            "status": "rejected",
            "reason": reason,
            "updated_at": now,
            "pending_order_json": None,
        }
        for decision_id, reason in rejections
    ]

    def work(session: Session) -> None:
        _mark_many(session, rows)
        _reviews_rejected(session, [decision_id for decision_id, _ in rejections])

    await db.run(work)


def _reviews_rejected(session: Session, decision_ids: Sequence[uuid.UUID]) -> None:
    """An enforced review let an order out, and the order was then rejected after all (the
    broker refused it, never heard of it, or it was never sent): its row says so."""
    if not decision_ids:
        return
    session.connection().execute(
        update(_REVIEWS)
        .where(_REVIEWS.c.trade_decision_id.in_(list(decision_ids)))
        .where(_REVIEWS.c.shadow.is_(False))
        .where(_REVIEWS.c.effective_action != EffectiveAction.REJECTED.value)
        .values(effective_action=EffectiveAction.REJECTED.value)
    )


def _mark_many(session: Session, updates: Sequence[dict[str, Any]]) -> None:
    """Bulk UPDATE by primary key. `executed_at` is set only where it has a value (never
    cleared), so the rows are sent in two groups: with it and without it."""
    _update_rows(
        session,
        _DECISIONS,
        [
            u
            if u.get("executed_at") is not None
            else {k: v for k, v in u.items() if k != "executed_at"}
            for u in updates
        ],
    )


async def last_trades_by_symbol(
    db: Database, symbols: Sequence[str], *, exclude_hashes: Sequence[str] = ()
) -> dict[str, datetime]:
    """The signal time at which each symbol last had an order sent, leaving out the decisions
    now under evaluation (the original counted the decision itself and so rejected everything
    once a cooldown was set)."""
    if not symbols:
        return {}
    stmt = (
        select(TradeDecisionRow.symbol, func.max(TradeDecisionRow.event_ts))
        .where(TradeDecisionRow.symbol.in_(list(symbols)))
        .where(TradeDecisionRow.status.not_in(["planned", "rejected"]))
        .group_by(TradeDecisionRow.symbol)
    )
    if exclude_hashes:
        stmt = stmt.where(TradeDecisionRow.decision_hash.not_in(list(exclude_hashes)))
    rows = await db.run(lambda session: session.connection().execute(stmt).all())
    return {symbol: ts for symbol, ts in rows if ts is not None}


async def recent_decisions(
    db: Database,
    symbol: str,
    *,
    limit: int = 5,
    exclude_hash: str | None = None,
    before: datetime | None = None,
) -> list[dict[str, Any]]:
    """The latest decisions in `symbol`, latest signal first, for the reviewer's context; with
    `before`, only those whose signal time is earlier (point in time: a decision written
    earlier but dated later, as in a batch, is never shown). One still `planned` is labelled
    `undecided`."""
    stmt = select(TradeDecisionRow).where(TradeDecisionRow.symbol == symbol)
    if exclude_hash is not None:
        stmt = stmt.where(TradeDecisionRow.decision_hash != exclude_hash)
    if before is not None:
        stmt = stmt.where(TradeDecisionRow.event_ts < before)
    stmt = stmt.order_by(TradeDecisionRow.event_ts.desc(), TradeDecisionRow.decision_hash).limit(
        limit
    )
    rows = await db.run(lambda session: session.execute(stmt).scalars().all())
    return [
        {
            "event_ts": r.event_ts.isoformat().replace("+00:00", "Z"),
            "action": r.action,
            "qty": str(r.qty),
            "status": "undecided" if r.status == "planned" else r.status,
            "reason": r.reason,
        }
        for r in rows
    ]


# --- reads for the HTTP API ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListFilter:
    symbol: str | None = None
    since: datetime | None = None
    limit: int = 100
    verdict: str | None = None


def _row_dict(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    return {name: jsonable(getattr(row, name)) for name in columns}


DECISION_COLUMNS = (
    "id",
    "strategy_id",
    "symbol",
    "timeframe",
    "action",
    "qty",
    "status",
    "reason",
    "decision_hash",
    "decision_json",
    "event_ts",
    "created_at",
    "executed_at",
)
EXECUTION_COLUMNS = (
    "id",
    "trade_decision_id",
    "client_order_id",
    "broker_order_id",
    "broker",
    "symbol",
    "side",
    "order_type",
    "time_in_force",
    "submitted_qty",
    "limit_price",
    "filled_qty",
    "avg_fill_price",
    "status",
    "reject_reason",
    "created_at",
    "updated_at",
)
REVIEW_COLUMNS = (
    "id",
    "trade_decision_id",
    "provider",
    "model",
    "prompt_version",
    "prompt_hash",
    "llm_verdict",
    "verdict",
    "reason",
    "confidence",
    "adjusted_qty",
    "adjusted_order_type",
    "rationale",
    "risk_flags",
    "tokens_prompt",
    "tokens_completion",
    "latency_ms",
    "ttft_ms",
    "shadow",
    "fail_mode",
    "trading_mode",
    "effective_action",
    "error_code",
    "error_message",
    "input_json",
    "response_json",
    "created_at",
)


async def list_decisions(db: Database, f: ListFilter) -> list[dict[str, Any]]:
    stmt = select(TradeDecisionRow).order_by(TradeDecisionRow.created_at.desc())
    if f.symbol:
        stmt = stmt.where(TradeDecisionRow.symbol == f.symbol.upper())
    if f.since:
        stmt = stmt.where(TradeDecisionRow.created_at >= f.since)
    rows = await db.run(lambda session: session.execute(stmt.limit(f.limit)).scalars().all())
    return [_row_dict(r, DECISION_COLUMNS) for r in rows]


async def list_executions(db: Database, f: ListFilter) -> list[dict[str, Any]]:
    stmt = select(ExecutionRow).order_by(ExecutionRow.created_at.desc())
    if f.symbol:
        stmt = stmt.where(ExecutionRow.symbol == f.symbol.upper())
    if f.since:
        stmt = stmt.where(ExecutionRow.created_at >= f.since)
    rows = await db.run(lambda session: session.execute(stmt.limit(f.limit)).scalars().all())
    return [_row_dict(r, EXECUTION_COLUMNS) for r in rows]


async def list_reviews(db: Database, f: ListFilter) -> list[dict[str, Any]]:
    stmt = (
        select(LLMDecisionReview, TradeDecisionRow.symbol)
        .join(TradeDecisionRow, TradeDecisionRow.id == LLMDecisionReview.trade_decision_id)
        .order_by(LLMDecisionReview.created_at.desc())
    )
    if f.symbol:
        stmt = stmt.where(TradeDecisionRow.symbol == f.symbol.upper())
    if f.since:
        stmt = stmt.where(LLMDecisionReview.created_at >= f.since)
    if f.verdict:
        stmt = stmt.where(LLMDecisionReview.verdict == f.verdict)
    rows = await db.run(lambda session: session.execute(stmt.limit(f.limit)).all())
    out = []
    for review, symbol in rows:
        item = _row_dict(review, REVIEW_COLUMNS)
        item["symbol"] = symbol
        out.append(item)
    return out


class AuditRepository:
    """The `AuditStore` port on a `Database`: each method is one of this module's functions
    (looked up at call time, one transaction each)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def existing_decisions(self, hashes: Sequence[str]) -> dict[str, StoredDecision]:
        return await existing_decisions(self.db, hashes)

    async def insert_judged_decisions(
        self, decisions: Sequence[JudgedDecision]
    ) -> dict[str, StoredDecision]:
        return await insert_judged_decisions(self.db, decisions)

    async def price_references(self, symbols: Sequence[str]) -> dict[str, PriceReference]:
        return await price_references(self.db, symbols)

    async def save_price_references(self, references: Mapping[str, PriceReference]) -> None:
        await save_price_references(self.db, references)

    async def last_trades_by_symbol(self, symbols: Sequence[str]) -> dict[str, datetime]:
        return await last_trades_by_symbol(self.db, symbols)

    async def recent_decisions(
        self, symbol: str, *, exclude_hash: str | None = None, before: datetime | None = None
    ) -> list[dict[str, Any]]:
        return await recent_decisions(self.db, symbol, exclude_hash=exclude_hash, before=before)

    async def record_review(
        self,
        values: Mapping[str, Any],
        *,
        reject: tuple[Any, str] | None = None,
        pending: tuple[Any, dict[str, Any]] | None = None,
    ) -> Any:
        return await record_review(self.db, values, reject=reject, pending=pending)

    async def record_executions(self, executions: Sequence[Execution], *, broker: str) -> None:
        await record_executions(self.db, executions, broker=broker)

    async def record_pending_orders(self, orders: Sequence[tuple[Any, dict[str, Any]]]) -> None:
        await record_pending_orders(self.db, orders)

    async def reject_decisions(self, rejections: Sequence[tuple[Any, str]]) -> None:
        await reject_decisions(self.db, rejections)

    async def settle(self, grace_seconds: float) -> int:
        return await self.db.settle(grace_seconds)
