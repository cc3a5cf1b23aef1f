"""Results read from the database (db/results_query.py) on both databases: fills dated at
their decision's signal time, every decision's reference price a mark, the broker's prices
last."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

from tests.conftest import Database
from torghut.db.results_query import current_results, latest_decisions
from torghut.db.tables import ExecutionRow, Strategy, TradeDecisionRow
from torghut.domain import Account, Book, Position

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


async def _decision(
    database: Database,
    minute: int,
    price: Any,
    status: str,
    fill: tuple[str, int, int] | None = None,
    reason: str | None = None,
) -> None:
    async with database.sessions() as session, session.begin():
        if await session.get(Strategy, "s") is None:
            session.add(Strategy(id="s"))
            await session.flush()
        decision_id = uuid.uuid4()
        session.add(
            TradeDecisionRow(
                id=decision_id,
                strategy_id="s",
                symbol="X",
                timeframe="1Min",
                action="buy",
                qty=D(10),
                decision_json={"params": {"price": price}},
                decision_hash=f"h-{uuid.uuid4().hex}",
                status=status,
                reason=reason,
                event_ts=T0 + timedelta(minutes=minute),
            )
        )
        await session.flush()
        if fill is not None:
            side, qty, fill_price = fill
            session.add(
                ExecutionRow(
                    trade_decision_id=decision_id,
                    client_order_id=f"c-{uuid.uuid4().hex}",
                    broker="sim",
                    symbol="X",
                    side=side,
                    order_type="market",
                    time_in_force="day",
                    submitted_qty=D(qty),
                    filled_qty=D(qty),
                    avg_fill_price=D(fill_price),
                    status="filled",
                )
            )


async def test_rejected_decisions_mark_the_curve_and_the_broker_marks_last(
    database: Database,
) -> None:
    await _decision(database, 0, 100, "filled", ("buy", 10, 100))
    await _decision(database, 5, "80", "rejected")  # the price fell to 80 meanwhile
    await _decision(database, 6, "not a price", "rejected")  # ignored
    await _decision(database, 7, None, "rejected")  # ignored
    book = Book(
        account=Account(cash=D(9000), equity=D(9900), buying_power=D(9000)),
        positions=[Position("X", D(10), D(100), D(900))],
        open_orders=[],
    )
    r = await current_results(database.db, book)
    assert r.starting_cash == D(10_000)  # 9000 now + the 1000 the buy cost
    assert r.max_drawdown == D(200)  # 10 x (100 - 80)
    assert r.equity == D(9900) and r.unrealised_pnl == D(-100)  # marked at 90 by the broker
    latest = await latest_decisions(database.db, 2)
    assert [d.event_ts for d in latest] == [T0 + timedelta(minutes=7), T0 + timedelta(minutes=6)]


async def test_a_price_the_band_refused_is_no_mark(database: Database) -> None:
    # A bad tick (x100) fired a decision that the band refused: the book never saw that
    # price, so the curve has no peak at 100,000 and no drawdown from it.
    await _decision(database, 0, 100, "filled", ("buy", 10, 100))
    await _decision(database, 1, "10000", "rejected", reason="price_out_of_band")
    await _decision(database, 2, "95", "rejected", reason="insufficient_buying_power")
    book = Book(
        account=Account(cash=D(9000), equity=D(9950), buying_power=D(9000)),
        positions=[Position("X", D(10), D(100), D(950))],
        open_orders=[],
    )
    r = await current_results(database.db, book)
    assert r.peak_equity == D(10_000)
    assert r.max_drawdown == D(50)  # 10 x (100 - 95): the accepted price marks the curve
