from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from tests.conftest import Database
from torghut.db.tables import LLMDecisionReview, Strategy, TradeDecisionRow


async def test_json_columns_take_uuids_decimals_and_datetimes(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        session.add(Strategy(id="s1", params={"when": datetime(2026, 1, 1, tzinfo=UTC)}))
        decision_id = uuid.uuid4()
        session.add(
            TradeDecisionRow(
                id=decision_id,
                strategy_id="s1",
                symbol="AAPL",
                timeframe="1Min",
                action="buy",
                qty=Decimal("10"),
                status="planned",
                event_ts=datetime.now(UTC),
                decision_hash="h1",
                decision_json={"id": uuid.uuid4(), "qty": Decimal("1.5"), "nan": float("nan")},
            )
        )
    async with database.sessions() as session:
        row = (await session.execute(select(TradeDecisionRow))).scalar_one()
        assert row.decision_json["qty"] == "1.5"
        assert row.decision_json["nan"] == "nan"
        assert row.created_at.tzinfo is not None
        assert (await session.execute(select(LLMDecisionReview))).first() is None
