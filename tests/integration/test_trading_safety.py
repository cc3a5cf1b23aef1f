"""Issue 11's attacks, replayed through the whole pipeline on the simulated broker, on both
databases: a bad tick, a position to close, a cooldown inside one batch, a strategy's own
limits. Each builds a small signal file and reads what the database holds afterwards."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.conftest import Database
from torghut.config import load_settings
from torghut.db.tables import ExecutionRow, PriceReferenceRow, SimPosition, TradeDecisionRow
from torghut.replay import run_replay

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York: in session
BUY = {"macd": 0.4, "macd_signal": 0.1, "rsi14": 28.0}
SELL = {"macd": -0.4, "macd_signal": -0.1, "rsi14": 72.0}
QUIET = {"macd": 0.1, "macd_signal": 0.1, "rsi14": 50.0}  # no rule fires


def tick(minute: float, price: str, kind: dict[str, float], symbol: str = "ACME") -> dict[str, Any]:
    ts = (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    return {"event_ts": ts, "symbol": symbol, "timeframe": "1Min", "price": price, **kind}


def write(tmp_path: Path, name: str, ticks: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in ticks))
    return path


async def replay(database: Database, path: Path, **env: str) -> dict[str, Any]:
    settings = load_settings({"DB_DSN": database.dsn, **env}, None)
    return await run_replay(settings, path)


async def decisions(database: Database) -> list[tuple[str, Decimal, str, str | None]]:
    """(action, qty, status, reason) of every decision, in signal order."""
    async with database.sessions() as session:
        rows = await session.execute(
            select(
                TradeDecisionRow.action,
                TradeDecisionRow.qty,
                TradeDecisionRow.status,
                TradeDecisionRow.reason,
            ).order_by(TradeDecisionRow.event_ts)
        )
        return [(a, Decimal(q), s, r) for a, q, s, r in rows]


async def held(database: Database, symbol: str = "ACME") -> Decimal:
    async with database.sessions() as session:
        qty = await session.scalar(select(SimPosition.qty).where(SimPosition.symbol == symbol))
    return Decimal(0) if qty is None else Decimal(qty)


# ------------------------------------------------------------------------------ price band


async def test_one_bad_tick_buys_nothing(database: Database, tmp_path: Path) -> None:
    """$50 a share, then one tick at $0.05 with a buy signal: refused before any sizing (it
    was a market order for 20,000 shares, filled), and the tick is not the reference."""
    path = write(
        tmp_path,
        "tick",
        [tick(0, "50", QUIET), tick(1, "0.05", BUY), tick(2, "1e-8", BUY), tick(3, "50.10", QUIET)],
    )
    summary = await replay(database, path)
    assert summary["submitted"] == 0
    assert summary["rejected"] == {"price_out_of_band": 2}
    async with database.sessions() as session:
        executions = (await session.execute(select(ExecutionRow))).scalars().all()
        reference = await session.get(PriceReferenceRow, "ACME")
    assert executions == []
    assert reference is not None and reference.price == Decimal("50.10")
    assert (reference.candidate_price, reference.streak) == (None, 0)


async def test_the_reference_survives_a_restart(database: Database, tmp_path: Path) -> None:
    """The reference lives in the database: a new replay process on the same database still
    refuses the bad tick (an in-memory reference would take it as the first price)."""
    await replay(database, write(tmp_path, "before", [tick(0, "50", QUIET)]))
    summary = await replay(database, write(tmp_path, "after", [tick(1, "0.05", BUY)]))
    assert summary["rejected"] == {"price_out_of_band": 1}


async def test_a_level_shift_is_followed_after_three_agreeing_ticks(
    database: Database, tmp_path: Path
) -> None:
    """$100, then $130 three times (each within the band of the first $130): the first two
    are refused, the third becomes the reference and trades; the next tick, $131, is in
    band of it."""
    path = write(
        tmp_path,
        "shift",
        [
            tick(0, "100", QUIET),
            tick(1, "130", BUY),
            tick(2, "131", BUY),
            tick(3, "130.5", BUY),
            tick(4, "131", BUY),
        ],
    )
    summary = await replay(database, path, TRADING_MAX_POSITION_PCT_EQUITY="1")
    rows = await decisions(database)
    assert [r[3] for r in rows] == ["price_out_of_band", "price_out_of_band", None, None]
    assert [r[2] for r in rows] == ["rejected", "rejected", "filled", "filled"]
    assert summary["submitted"] == 2


async def test_ticks_that_disagree_with_each_other_never_move_the_reference(
    database: Database, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "noise",
        [
            tick(0, "100", QUIET),
            tick(1, "150", BUY),
            tick(2, "60", BUY),
            tick(3, "150", BUY),
            tick(4, "60", BUY),
            tick(5, "101", BUY),
        ],
    )
    await replay(database, path)
    rows = await decisions(database)
    assert [r[3] for r in rows] == ["price_out_of_band"] * 4 + [None]


async def test_the_share_cap_holds_when_there_is_no_reference_yet(
    database: Database, tmp_path: Path
) -> None:
    """The first price of a symbol has nothing to be checked against: at $0.05 the $1,000
    sizing gives 20,000 shares, over the 10,000 cap."""
    summary = await replay(database, write(tmp_path, "first", [tick(0, "0.05", BUY)]))
    assert summary["rejected"] == {"max_shares_exceeded": 1}
    summary = await replay(
        database,
        write(tmp_path, "cap", [tick(1, "0.05", BUY)]),
        TRADING_MAX_SHARES_PER_ORDER="30000",
    )
    assert summary["submitted"] == 1


# ----------------------------------------------------------------------------------- exits


async def test_a_losing_position_is_closed(database: Database, tmp_path: Path) -> None:
    """Buy 10 at $100; sell signals at $90 and $89. The first sells the 10 held (sized by
    notional it was 11 shares: `shorts_not_allowed`); the second has nothing left to sell."""
    path = write(tmp_path, "exit", [tick(0, "100", BUY), tick(1, "90", SELL), tick(2, "89", SELL)])
    summary = await replay(database, path)
    rows = await decisions(database)
    assert rows == [
        ("buy", Decimal(10), "filled", None),
        ("sell", Decimal(10), "filled", None),
        ("sell", Decimal(11), "rejected", "shorts_not_allowed"),
    ]
    assert summary["submitted"] == 2
    assert await held(database) == 0


async def test_an_exit_above_the_notional_cap_is_not_refused(
    database: Database, tmp_path: Path
) -> None:
    """Bought at the $1,000 cap, closed after a gain (three ticks up, each in band): the exit
    is worth $1,200, and goes out all the same."""
    path = write(
        tmp_path,
        "gain",
        [
            tick(0, "100", BUY),
            tick(1, "108", QUIET),
            tick(2, "115", QUIET),
            tick(3, "120", SELL),
        ],
    )
    await replay(database, path)
    rows = await decisions(database)
    assert rows[-1] == ("sell", Decimal(10), "filled", None)
    assert await held(database) == 0


async def test_partial_exits_sell_no_more_than_the_sizing(
    database: Database, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "strategies:\n  - name: steps\n    partial_exits: true\n"
        "    max_notional_per_trade: 500\n    max_position_pct_equity: 0.5\n"
    )
    path = write(
        tmp_path,
        "steps",
        [
            tick(0, "100", BUY),
            tick(1, "100", BUY),
            tick(2, "100", SELL),
            tick(3, "100", SELL),
            tick(4, "100", SELL),
        ],
    )
    await replay(database, path, TRADING_STRATEGY_CONFIG_PATH=str(catalog))
    rows = await decisions(database)
    assert [(a, q, s) for a, q, s, _ in rows] == [
        ("buy", 5, "filled"),
        ("buy", 5, "filled"),
        ("sell", 5, "filled"),
        ("sell", 5, "filled"),
        ("sell", 5, "rejected"),
    ]


async def test_the_bundled_sample_leaves_no_position_open_after_a_sell(
    database: Database,
) -> None:
    """Every filled sell of the sample closes its position (37 of 40 left some behind)."""
    from torghut.bootstrap import bundled_signals

    await replay(database, bundled_signals())
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(TradeDecisionRow.symbol, TradeDecisionRow.action, ExecutionRow.filled_qty)
                .join(ExecutionRow, ExecutionRow.trade_decision_id == TradeDecisionRow.id)
                .order_by(TradeDecisionRow.event_ts, TradeDecisionRow.symbol)
            )
        ).all()
    position: dict[str, Decimal] = {}
    sells = 0
    async with database.sessions() as session:
        opening = (
            (
                await session.execute(
                    select(ExecutionRow.submitted_qty * ExecutionRow.avg_fill_price).where(
                        ExecutionRow.side == "buy"
                    )
                )
            )
            .scalars()
            .all()
        )
    # No opening order's notional at its reference price (the fill) is over the $1,000 cap.
    assert opening and max(Decimal(n) for n in opening) <= 1000
    for symbol, action, qty in rows:
        change = Decimal(qty) if action == "buy" else -Decimal(qty)
        position[symbol] = position.get(symbol, Decimal(0)) + change
        if action == "sell":
            sells += 1
            assert position[symbol] == 0, (symbol, position[symbol])
    assert sells > 0


# ------------------------------------------------------------------ cooldown and limits


async def test_the_cooldown_holds_inside_one_batch(database: Database, tmp_path: Path) -> None:
    """Three buys of one symbol within 60 s, cooldown 300 s, one batch: one order (it was
    three; batch size 1 gave one)."""
    path = write(
        tmp_path, "cool", [tick(0, "100", BUY), tick(0.33, "100", BUY), tick(0.66, "100", BUY)]
    )
    summary = await replay(
        database, path, TRADING_COOLDOWN_SECONDS="300", TRADING_MAX_POSITION_PCT_EQUITY="1"
    )
    assert summary["submitted"] == 1
    assert summary["rejected"] == {"cooldown_active": 2}


async def test_the_cooldown_holds_across_batches(database: Database, tmp_path: Path) -> None:
    """The same three buys, one batch each: the second and third are judged against the
    first one's stored decision (the batch's own ledger no longer holds it)."""
    path = write(
        tmp_path, "cool", [tick(0, "100", BUY), tick(0.33, "100", BUY), tick(0.66, "100", BUY)]
    )
    summary = await replay(
        database,
        path,
        TRADING_COOLDOWN_SECONDS="300",
        TRADING_MAX_POSITION_PCT_EQUITY="1",
        TRADING_BATCH_SIZE="1",
    )
    assert summary["submitted"] == 1
    assert summary["rejected"] == {"cooldown_active": 2}


async def test_a_strategy_cap_replaces_the_global_one(database: Database, tmp_path: Path) -> None:
    """A catalog strategy with `max_notional_per_trade: 2500` sizes 25 shares at $100, and
    risk judges them against its $2,500, not the global $1,000 (every order was rejected)."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("strategies:\n  - name: big\n    max_notional_per_trade: 2500\n")
    summary = await replay(
        database,
        write(tmp_path, "big", [tick(0, "100", BUY)]),
        TRADING_STRATEGY_CONFIG_PATH=str(catalog),
    )
    assert summary["submitted"] == 1
    assert await decisions(database) == [("buy", Decimal(25), "filled", None)]


async def test_a_strategy_position_cap_is_enforced(database: Database, tmp_path: Path) -> None:
    """`max_position_pct_equity: 0.015` of $100,000 is $1,500: the first $1,000 buy fits, the
    second would make $2,000 (the global 10 % would have let it through)."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("strategies:\n  - name: small\n    max_position_pct_equity: 0.015\n")
    summary = await replay(
        database,
        write(tmp_path, "small", [tick(0, "100", BUY), tick(1, "100", BUY)]),
        TRADING_STRATEGY_CONFIG_PATH=str(catalog),
    )
    assert summary["rejected"] == {"max_position_pct_exceeded": 1}


async def test_a_disabled_strategy_decides_and_is_rejected_as_such(
    database: Database, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("strategies:\n  - name: live-one\n  - name: paused\n    enabled: false\n")
    summary = await replay(
        database,
        write(tmp_path, "two", [tick(0, "100", BUY)]),
        TRADING_STRATEGY_CONFIG_PATH=str(catalog),
    )
    assert (summary["submitted"], summary["rejected"]) == (1, {"strategy_disabled": 1})


async def test_the_kill_switch_comes_first_and_alone(database: Database, tmp_path: Path) -> None:
    summary = await replay(
        database,
        write(tmp_path, "kill", [tick(0, "100", QUIET), tick(1, "0.05", BUY)]),
        TRADING_KILL_SWITCH="true",
    )
    assert summary["rejected"] == {"kill_switch": 1}


async def test_replay_judges_the_session_on_the_signal_time(
    database: Database, tmp_path: Path
) -> None:
    """A Saturday tick is `market_closed` in replay whatever the wall clock says; with the
    extended session, 08:00 New York on a Monday trades, 03:00 does not."""
    saturday = {**tick(0, "100", BUY), "event_ts": "2026-03-07T15:00:00Z"}
    premarket = {**tick(0, "100", BUY, "EARLY"), "event_ts": "2026-03-02T13:00:00Z"}
    night = {**tick(0, "100", BUY, "NIGHT"), "event_ts": "2026-03-02T08:00:00Z"}
    path = write(tmp_path, "session", [night, premarket, saturday])
    summary = await replay(database, path)
    assert summary["rejected"] == {"market_closed": 3}
    summary = await replay(
        database,
        write(
            tmp_path,
            "ext",
            [
                {**premarket, "symbol": "EXT"},
                {**night, "symbol": "EXT2"},
            ],
        ),
        TRADING_EXTENDED_HOURS="true",
    )
    assert (summary["submitted"], summary["rejected"]) == (1, {"market_closed": 1})


# ------------------------------------------------------------- fresh signals, in session


async def _serve_cycle(database: Database, path: Path, now: datetime, **env: str) -> Any:
    """One cycle as `serve` runs it, with the wall clock at `now`."""
    from torghut.bootstrap import build_container

    settings = load_settings(
        {
            "DB_DSN": database.dsn,
            "TRADING_SIGNALS_PATH": str(path),
            "TRADING_ENABLED": "true",
            **env,
        },
        None,
    )
    container = await build_container(settings, clock=lambda: now)
    try:
        return await container.pipeline.run_cycle()
    finally:
        await container.aclose()


async def test_serve_judges_age_then_session_on_the_wall_clock(
    database: Database, tmp_path: Path
) -> None:
    path = write(tmp_path, "serve", [tick(0, "100", BUY, "OLD"), tick(9, "100", BUY, "NEW")])
    # 10:10 New York: the first signal is 10 minutes old, the second one minute.
    result = await _serve_cycle(database, path, T0 + timedelta(minutes=10))
    assert (result.submitted, dict(result.rejected)) == (1, {"signal_stale": 1})
    assert result.committed, "stale signals do not hold the cursor back"


async def test_serve_refuses_a_signal_dated_ahead_of_the_wall_clock(
    database: Database, tmp_path: Path
) -> None:
    """A signal from 2099 among fresh ones, in `serve`: `signal_stale`, never sent; the
    fresh one still trades and the batch is committed."""
    future = {**tick(0, "100", BUY, "AHEAD"), "event_ts": "2099-03-02T15:00:00Z"}
    path = write(tmp_path, "ahead", [tick(9, "100", BUY, "NOW"), future])
    result = await _serve_cycle(database, path, T0 + timedelta(minutes=10))
    assert (result.submitted, dict(result.rejected)) == (1, {"signal_stale": 1})
    assert result.committed


async def test_serve_after_the_close_sends_nothing(database: Database, tmp_path: Path) -> None:
    """21:00 UTC is 16:00 New York, the close: fresh signals, no order; stale ones are
    `signal_stale` first (CONTRACT §8's order)."""
    close = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    fresh = {**tick(0, "100", BUY, "LATE"), "event_ts": "2026-03-02T20:59:30Z"}
    old = {**tick(0, "100", BUY, "OLDER"), "event_ts": "2026-03-02T20:50:00Z"}
    result = await _serve_cycle(database, write(tmp_path, "close", [old, fresh]), close)
    assert dict(result.rejected) == {"signal_stale": 1, "market_closed": 1}
    result = await _serve_cycle(
        database,
        write(tmp_path, "ext", [{**fresh, "symbol": "AFTER"}]),
        close,
        TRADING_EXTENDED_HOURS="true",
    )
    assert result.submitted == 1


async def test_a_planned_decision_gone_stale_is_not_sent_but_a_sent_one_is_finished(
    database: Database, tmp_path: Path
) -> None:
    """Two decisions left `planned` by a run that stopped: one never sent (now stale: not
    sent for the first time), one whose order the broker took (recorded all the same)."""
    from torghut.db import repo
    from torghut.domain import OrderRequest, decision_hash
    from torghut.trading.brokers import SimBroker
    from torghut.trading.catalog import StrategyCatalog
    from torghut.trading.signals import parse_signal_line
    from torghut.trading.strategy import DEFAULT_STRATEGY, evaluate

    lines = [tick(0, "100", BUY, "NEVER"), tick(0, "100", BUY, "SENT")]
    path = write(tmp_path, "left", lines)
    decided = [
        evaluate(DEFAULT_STRATEGY, parse_signal_line(json.dumps(x), 1), equity=Decimal(100_000))
        for x in lines
    ]
    assert all(d is not None for d in decided)
    judged = [(d, decision_hash(d), None) for d in decided if d is not None]
    await StrategyCatalog(None, "merge", database.db).load()  # the strategies row
    await repo.insert_judged_decisions(database.db, judged)
    sent = judged[1]
    order = OrderRequest.for_decision(sent[0], sent[1])
    stored = await repo.existing_decisions(database.db, [sent[1]])
    await repo.record_pending_orders(
        database.db, [(stored[sent[1]].id, {**order.to_json(), "sent_at": T0.isoformat()})]
    )
    await SimBroker(database.db, starting_cash=Decimal(100_000)).submit_order(order)

    result = await _serve_cycle(database, path, T0 + timedelta(hours=3))
    assert (result.submitted, dict(result.rejected)) == (1, {"signal_stale": 1})
    rows = {s: st for s, st in (await _statuses(database))}
    assert rows == {"NEVER": "rejected", "SENT": "filled"}


async def _statuses(database: Database) -> list[tuple[str, str]]:
    async with database.sessions() as session:
        return [
            tuple(r)
            for r in (
                await session.execute(  # type: ignore[misc]
                    select(TradeDecisionRow.symbol, TradeDecisionRow.status)
                )
            ).all()
        ]


async def test_an_execution_row_keeps_the_limit_the_broker_placed(database: Database) -> None:
    """Alpaca takes a limit on its tick ($0.01 above $1): the order asked for 100.004 and the
    broker holds 100.00. The execution row records 100.00, what is working at the broker."""
    from torghut.db import repo
    from torghut.domain import (
        Action,
        BrokerOrder,
        OrderRequest,
        OrderType,
        TimeInForce,
        decision_hash,
    )
    from torghut.trading.catalog import StrategyCatalog
    from torghut.trading.signals import parse_signal_line
    from torghut.trading.strategy import DEFAULT_STRATEGY, evaluate

    line = tick(0, "100", BUY, "TICK")
    decided = evaluate(
        DEFAULT_STRATEGY, parse_signal_line(json.dumps(line), 1), equity=Decimal(100_000)
    )
    assert decided is not None
    h = decision_hash(decided)
    await StrategyCatalog(None, "merge", database.db).load()  # the strategies row
    stored = await repo.insert_judged_decisions(database.db, [(decided, h, None)])
    order = OrderRequest(
        client_order_id=h,
        symbol="TICK",
        side=Action.BUY,
        qty=Decimal(10),
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        limit_price=Decimal("100.004"),
    )
    placed = BrokerOrder(
        broker_order_id="b-1",
        client_order_id=h,
        symbol="TICK",
        status="new",
        side=Action.BUY,
        qty=Decimal(10),
        limit_price=Decimal("100.00"),
    )
    await repo.record_executions(database.db, [(stored[h].id, order, placed)], broker="alpaca")
    async with database.sessions() as session:
        limits = (await session.execute(select(ExecutionRow.limit_price))).scalars().all()
    assert [Decimal(x) for x in limits] == [Decimal("100.00")]
