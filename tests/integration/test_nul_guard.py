"""No NUL (nor a lone surrogate) reaches a text or JSON column: every write of decision,
execution and audit rows, ORM and Core, on SQLite and PostgreSQL (issue 13)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import Database
from torghut.db.engine import update_by_key
from torghut.db.tables import ExecutionRow, LLMDecisionReview, Strategy, TradeDecisionRow

BAD = "bad\x00byte \ud800 end"
BAD_JSON: dict[str, Any] = {"error": {"message": BAD, "k\x00ey": [BAD, 1]}}


def _clean(value: Any) -> bool:
    text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return "\x00" not in text and "\\u0000" not in text and "\ud800" not in text


async def test_nul_and_surrogates_never_reach_a_column(database: Database) -> None:
    decision_id, execution_id, review_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)

    def write(session: Session) -> None:
        session.add(Strategy(id="s\x00", description=BAD, params=BAD_JSON))
        session.flush()
        session.add(
            TradeDecisionRow(
                id=decision_id,
                strategy_id="s\x00",
                symbol="A\x00PL",
                timeframe="1Min",
                action="buy",
                qty=Decimal(1),
                decision_json=BAD_JSON,
                decision_hash="h\x00",
                status="planned",
                reason=BAD,
                event_ts=now,
                pending_order_json=BAD_JSON,
            )
        )
        session.flush()
        session.add(
            ExecutionRow(
                id=execution_id,
                trade_decision_id=decision_id,
                client_order_id="c\x00",
                broker="sim",
                symbol="A\x00PL",
                side="buy",
                order_type="market",
                time_in_force="day",
                submitted_qty=Decimal(1),
                status="new",
                reject_reason=BAD,
                raw_json=BAD_JSON,
            )
        )
        session.add(
            LLMDecisionReview(
                id=review_id,
                trade_decision_id=decision_id,
                provider="jangar",
                model="m\x00",
                prompt_version="v1",
                input_json=BAD_JSON,
                response_json=BAD_JSON,
                verdict="error",
                reason=BAD,
                rationale=BAD,
                risk_flags=[BAD],
                shadow=True,
                fail_mode="veto",
                trading_mode="paper",
                effective_action="submitted_original",
                error_code="gateway_error",
                error_message=BAD,
            )
        )

    await database.db.run(write)

    # Core executemany by key, as the pipeline writes.
    def update(session: Session) -> None:
        statement = update_by_key(TradeDecisionRow.__table__, "id", ("reason", "decision_json"))
        session.execute(
            statement, [{"b_key": decision_id, "b_reason": BAD, "b_decision_json": BAD_JSON}]
        )

    await database.db.run(update)

    async with database.sessions() as session:
        decision = (await session.execute(select(TradeDecisionRow))).scalar_one()
        execution = (await session.execute(select(ExecutionRow))).scalar_one()
        review = (await session.execute(select(LLMDecisionReview))).scalar_one()
    for row in (decision, execution, review):
        values = {c.name: getattr(row, c.key) for c in row.__table__.columns}
        assert _clean(values), values
    assert review.error_message == "bad\ufffdbyte \ufffd end"
    safe = "bad\ufffdbyte \ufffd end"
    assert decision.reason == safe
    assert review.response_json == {"error": {"message": safe, "k\ufffdey": [safe, 1]}}


def test_every_text_column_of_the_schema_is_guarded() -> None:
    # A column typed explicitly (`mapped_column(Text)`) bypasses the annotation map's safe
    # types: the halt reason was one, and a NUL in it was a 500 on PostgreSQL (fuzzing).
    from sqlalchemy import JSON, String

    from torghut.db.tables import Base, SafeJSON, SafeString, SafeText

    unguarded = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, String | JSON)
        and not isinstance(column.type, SafeString | SafeText | SafeJSON)
    ]
    assert unguarded == []


async def test_a_halt_reason_with_a_nul_is_stored_replaced(database: Database) -> None:
    from torghut.db.halt_store import DatabaseHaltStore
    from torghut.db.tables import TradingHaltEvent
    from torghut.trading.halt import HaltState

    store = DatabaseHaltStore(database.db)
    answered = await store.save(HaltState(True, BAD, None), action="halt", reason=BAD)
    # What the halt call answers (and POST /trading/halt shows) is what was stored.
    assert answered.reason is not None and _clean(answered.reason)
    state = await store.load()
    assert state.reason == answered.reason
    assert state.halted and state.reason is not None and _clean(state.reason)
    reasons = await database.db.run(
        lambda session: list(session.execute(select(TradingHaltEvent.reason)).scalars())
    )
    assert len(reasons) == 1 and _clean(reasons[0]) and reasons[0].startswith("bad")
