from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select

from tests.conftest import Database
from torghut.db.tables import SimOrder
from torghut.domain import Action, BrokerOrder, OrderRequest, OrderType, TimeInForce
from torghut.errors import BrokerError
from torghut.ports import Broker
from torghut.trading.brokers import SimBroker


def order(
    coid: str = "c1",
    *,
    symbol: str = "AAPL",
    side: Action = Action.BUY,
    qty: str = "10",
    ref: str | None = "100",
    order_type: OrderType = OrderType.MARKET,
    limit: str | None = None,
    tif: TimeInForce = TimeInForce.DAY,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=coid,
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        order_type=order_type,
        time_in_force=tif,
        limit_price=None if limit is None else Decimal(limit),
        reference_price=None if ref is None else Decimal(ref),
    )


def broker(database: Database, cash: str = "100000") -> SimBroker:
    return SimBroker(database.db, starting_cash=Decimal(cash))


async def test_is_a_broker(database: Database) -> None:
    b: Broker = broker(database)
    assert b.name == "sim"
    await b.aclose()


async def test_new_account_has_the_starting_cash(database: Database) -> None:
    account = await broker(database).get_account()
    assert account.cash == account.equity == account.buying_power == Decimal(100_000)
    assert await broker(database).list_positions() == []


async def test_market_buy_fills_at_the_reference_price(database: Database) -> None:
    b = broker(database)
    placed = await b.submit_order(order(qty="10", ref="101.5"))
    assert placed.status == "filled"
    assert placed.filled_qty == Decimal(10)
    assert placed.avg_fill_price == Decimal("101.5")
    assert placed.broker_order_id.startswith("sim-")
    assert placed.raw["side"] == "buy" and placed.raw["qty"] == "10.00000000"
    account = await b.get_account()
    assert account.cash == Decimal("98985")
    assert account.equity == Decimal(100_000)
    [position] = await b.list_positions()
    assert (position.symbol, position.qty, position.avg_entry_price) == (
        "AAPL",
        Decimal(10),
        Decimal("101.5"),
    )
    assert await b.get_order("c1") == placed


async def test_buys_average_and_sells_return_cash(database: Database) -> None:
    b = broker(database)
    await b.submit_order(order("b1", qty="10", ref="100"))
    await b.submit_order(order("b2", qty="10", ref="110"))
    [position] = await b.list_positions()
    assert position.qty == Decimal(20)
    assert position.avg_entry_price == Decimal(105)
    sold = await b.submit_order(order("s1", side=Action.SELL, qty="5", ref="120"))
    assert sold.status == "filled"
    account = await b.get_account()
    assert account.cash == Decimal(100_000 - 1000 - 1100 + 600)
    assert account.equity == account.cash + Decimal(15 * 120)
    await b.submit_order(order("s2", side=Action.SELL, qty="15", ref="90"))
    assert await b.list_positions() == []
    assert (await b.get_account()).cash == Decimal(100_000 - 1000 - 1100 + 600 + 1350)


async def test_mark_revalues_positions(database: Database) -> None:
    b = broker(database)
    await b.submit_order(order(qty="10", ref="100"))
    await b.mark("aapl", Decimal("150"))
    account = await b.get_account()
    assert account.equity == Decimal(99_000 + 1500)
    [position] = await b.list_positions()
    assert position.market_value == Decimal(1500)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (order(ref=None), "missing_price"),
        (order(qty="2000", ref="100"), "insufficient_buying_power"),
        (order(side=Action.SELL), "shorts_not_allowed"),
        (order(order_type=OrderType.STOP), "unsupported_order_type"),
    ],
    ids=["no-price", "no-cash", "short", "stop"],
)
async def test_refusals_raise_and_leave_nothing(
    database: Database, request_: OrderRequest, reason: str
) -> None:
    b = broker(database)
    with pytest.raises(BrokerError) as caught:
        await b.submit_order(request_)
    assert caught.value.rejected
    assert str(caught.value).startswith(reason)
    assert await b.get_order(request_.client_order_id) is None
    assert (await b.get_account()).cash == Decimal(100_000)
    assert await b.list_positions() == []


async def test_limit_buy_fills_at_once_when_the_price_allows(database: Database) -> None:
    b = broker(database)
    placed = await b.submit_order(order(order_type=OrderType.LIMIT, limit="101", ref="100"))
    assert placed.status == "filled"
    assert placed.avg_fill_price == Decimal(100)


async def test_limit_buy_rests_then_fills_on_mark(database: Database) -> None:
    b = broker(database)
    placed = await b.submit_order(order(order_type=OrderType.LIMIT, limit="95", ref="100"))
    assert placed.status == "new"
    assert [o.client_order_id for o in await b.list_open_orders()] == ["c1"]
    # The resting buy reserves its limit × qty of buying power, not cash.
    account = await b.get_account()
    assert account.cash == Decimal(100_000)
    assert account.buying_power == Decimal(100_000 - 950)

    await b.mark("AAPL", Decimal("96"))  # not low enough
    assert (await b.get_order("c1")).status == "new"  # type: ignore[union-attr]
    await b.mark("MSFT", Decimal("1"))  # another symbol
    assert (await b.get_order("c1")).status == "new"  # type: ignore[union-attr]

    await b.mark("AAPL", Decimal("94"))
    filled = await b.get_order("c1")
    assert filled is not None
    assert filled.status == "filled"
    assert filled.avg_fill_price == Decimal(94)
    assert await b.list_open_orders() == []
    account = await b.get_account()
    assert account.cash == account.buying_power == Decimal(100_000 - 940)


async def test_limit_sell_rests_then_fills_on_mark(database: Database) -> None:
    b = broker(database)
    await b.submit_order(order("b1", qty="10", ref="100"))
    placed = await b.submit_order(
        order("s1", side=Action.SELL, order_type=OrderType.LIMIT, limit="110", ref="100")
    )
    assert placed.status == "new"
    # The resting sell holds the shares: another sell of them would be a short.
    with pytest.raises(BrokerError, match="shorts_not_allowed"):
        await b.submit_order(order("s2", side=Action.SELL, qty="1", ref="100"))
    await b.mark("AAPL", Decimal("111"))
    sold = await b.get_order("s1")
    assert sold is not None and sold.status == "filled"
    assert sold.avg_fill_price == Decimal(111)
    assert await b.list_positions() == []


async def test_limit_without_a_reference_price_rests(database: Database) -> None:
    b = broker(database)
    placed = await b.submit_order(order(order_type=OrderType.LIMIT, limit="50", ref=None))
    assert placed.status == "new"


async def test_ioc_limit_that_cannot_fill_is_canceled(database: Database) -> None:
    b = broker(database)
    placed = await b.submit_order(
        order(order_type=OrderType.LIMIT, limit="95", ref="100", tif=TimeInForce.IOC)
    )
    assert placed.status == "canceled"
    assert await b.list_open_orders() == []


async def test_resting_buy_that_cannot_be_paid_for_is_rejected_on_mark(
    database: Database,
) -> None:
    b = broker(database, cash="1000")
    await b.submit_order(order("l1", order_type=OrderType.LIMIT, limit="100", qty="10", ref=None))
    # The reservation keeps a second order from spending the same cash...
    with pytest.raises(BrokerError, match="insufficient_buying_power"):
        await b.submit_order(order("m1", qty="1", ref="1"))
    # ...and cancelling releases it.
    canceled = await b.cancel_order("l1")
    assert canceled is not None and canceled.status == "canceled"
    assert (await b.submit_order(order("m1", qty="1", ref="1"))).status == "filled"
    assert await b.cancel_order("unknown") is None


async def test_resting_order_can_be_rejected_when_its_price_comes(database: Database) -> None:
    b = broker(database)
    await b.submit_order(order("b1", qty="5", ref="100"))
    await b.submit_order(
        order("s1", side=Action.SELL, qty="5", order_type=OrderType.LIMIT, limit="120", ref=None)
    )
    # Shares leave by another path (a second book writer): the resting sell can't deliver.
    async with database.sessions() as session, session.begin():
        from torghut.db.tables import SimPosition

        row = await session.get(SimPosition, "AAPL")
        assert row is not None
        row.qty = Decimal(1)
    await b.mark("AAPL", Decimal("125"))
    rejected = await b.get_order("s1")
    assert rejected is not None
    assert rejected.status == "rejected"
    assert rejected.reject_reason is not None
    assert rejected.reject_reason.startswith("shorts_not_allowed")


async def test_resubmission_adopts_and_never_fills_twice(database: Database) -> None:
    b = broker(database)
    first = await b.submit_order(order(qty="10", ref="100"))
    # The same client_order_id, even with another price or quantity: the existing order.
    again = await b.submit_order(order(qty="20", ref="50"))
    assert again == first
    assert (await b.get_account()).cash == Decimal(99_000)
    [position] = await b.list_positions()
    assert position.qty == Decimal(10)


async def test_adoption_survives_a_new_broker_instance(database: Database) -> None:
    first = await broker(database).submit_order(order(qty="10", ref="100"))
    again = await broker(database).submit_order(order(qty="10", ref="100"))
    assert again.broker_order_id == first.broker_order_id
    assert (await broker(database).get_account()).cash == Decimal(99_000)


async def test_concurrent_double_submit_fills_once(database: Database) -> None:
    # Two brokers (as two processes would have), two sessions, racing on one client_order_id.
    a, b = broker(database), broker(database)
    results = await asyncio.gather(
        a.submit_order(order(qty="10", ref="100")),
        b.submit_order(order(qty="10", ref="100")),
    )
    assert results[0].broker_order_id == results[1].broker_order_id
    assert {r.status for r in results} == {"filled"}
    assert (await a.get_account()).cash == Decimal(99_000)
    [position] = await a.list_positions()
    assert position.qty == Decimal(10)
    async with database.sessions() as session:
        count = (await session.execute(select(func.count()).select_from(SimOrder))).scalar_one()
    assert count == 1


async def test_concurrent_orders_never_overspend(database: Database) -> None:
    # Each of the two fits the cash alone, not both together: one must be refused (no lost
    # update of the cash between two writers).
    a, b = broker(database, cash="1000"), broker(database, cash="1000")
    results = await asyncio.gather(
        a.submit_order(order("x1", qty="6", ref="100")),
        b.submit_order(order("x2", symbol="MSFT", qty="6", ref="100")),
        return_exceptions=True,
    )
    filled = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BrokerError)]
    assert len(filled) == 1 and len(refused) == 1
    assert refused[0].rejected
    assert (await a.get_account()).cash == Decimal(400)


async def test_many_concurrent_distinct_orders_all_counted(database: Database) -> None:
    b = broker(database)
    await asyncio.gather(
        *(b.submit_order(order(f"o{i}", symbol=f"S{i}", qty="1", ref="10")) for i in range(10))
    )
    account = await b.get_account()
    assert account.cash == Decimal(100_000 - 100)
    assert len(await b.list_positions()) == 10


# --- batches: submit_orders and mark_prices ---------------------------------------------------


async def order_rows(database: Database) -> list[str]:
    async with database.sessions() as session:
        ids = await session.execute(select(SimOrder.client_order_id).order_by(SimOrder.symbol))
        return list(ids.scalars())


@contextlib.contextmanager
def counting_commits(database: Database) -> Iterator[list[object]]:
    """The COMMITs issued on `database`'s engine inside the block, one entry each."""
    commits: list[object] = []

    def on_commit(connection: object) -> None:
        commits.append(connection)

    sync_engine = database.db.engine
    event.listen(sync_engine, "commit", on_commit)
    try:
        yield commits
    finally:
        event.remove(sync_engine, "commit", on_commit)


def filled(outcome: BrokerOrder | Exception) -> BrokerOrder:
    assert isinstance(outcome, BrokerOrder), outcome
    return outcome


async def test_empty_batch_returns_nothing(database: Database) -> None:
    b = broker(database)
    assert await b.submit_orders([]) == []
    assert await order_rows(database) == []
    book = await b.mark_prices({})
    assert book.account.cash == Decimal(100_000)
    assert book.positions == []
    assert book.open_orders == []


async def test_batch_orders_see_the_cash_the_earlier_ones_left(database: Database) -> None:
    b = broker(database, cash="1000")
    outcomes = await b.submit_orders(
        [
            order("x1", symbol="AAPL", qty="6", ref="100"),  # 600 of the 1000
            order("x2", symbol="MSFT", qty="5", ref="100"),  # 500 > the 400 left: refused
            order("x3", symbol="IBM", qty="2", ref="50"),  # 100 of the 400: fills
        ]
    )
    assert len(outcomes) == 3
    assert filled(outcomes[0]).client_order_id == "x1"
    assert filled(outcomes[0]).status == "filled"
    refusal = outcomes[1]
    assert isinstance(refusal, BrokerError)
    assert refusal.rejected
    assert str(refusal).startswith("insufficient_buying_power")
    assert "has 400" in str(refusal)
    assert filled(outcomes[2]).client_order_id == "x3"
    assert filled(outcomes[2]).status == "filled"
    assert filled(outcomes[2]).avg_fill_price == Decimal(50)

    account = await b.get_account()
    assert account.cash == Decimal(300)
    assert account.equity == Decimal(1000)
    positions = {p.symbol: p.qty for p in await b.list_positions()}
    assert positions == {"AAPL": Decimal(6), "IBM": Decimal(2)}
    assert await b.get_order("x2") is None
    assert sorted(await order_rows(database)) == ["x1", "x3"]


async def test_batch_refusals_of_every_kind_leave_the_rest_of_the_batch(
    database: Database,
) -> None:
    b = broker(database)
    outcomes = await b.submit_orders(
        [
            order("r1", ref=None),
            order("ok", qty="1", ref="100"),
            order("r2", side=Action.SELL, symbol="MSFT"),
            order("r3", order_type=OrderType.STOP),
        ]
    )
    reasons = [o.status if isinstance(o, BrokerOrder) else str(o).split(":")[0] for o in outcomes]
    assert reasons == ["missing_price", "filled", "shorts_not_allowed", "unsupported_order_type"]
    assert all(o.rejected for o in outcomes if isinstance(o, BrokerError))
    assert await order_rows(database) == ["ok"]
    assert (await b.get_account()).cash == Decimal(100_000 - 100)


async def test_a_resting_buy_earlier_in_the_batch_reserves_cash_for_later_orders(
    database: Database,
) -> None:
    b = broker(database, cash="1000")
    outcomes = await b.submit_orders(
        [
            order("l1", order_type=OrderType.LIMIT, limit="95", qty="10", ref="100"),  # rests
            order("m1", symbol="MSFT", qty="1", ref="100"),  # 100 > the 50 left unreserved
            order("m2", symbol="MSFT", qty="1", ref="50"),
        ]
    )
    assert filled(outcomes[0]).status == "new"
    assert isinstance(outcomes[1], BrokerError)
    assert str(outcomes[1]).startswith("insufficient_buying_power")
    assert filled(outcomes[2]).status == "filled"
    account = await b.get_account()
    assert account.cash == Decimal(950)
    assert account.buying_power == Decimal(0)


async def test_batch_buys_sells_all_and_buys_back_one_symbol(database: Database) -> None:
    b = broker(database)
    outcomes = await b.submit_orders(
        [
            order("b1", qty="10", ref="100"),
            order("s1", side=Action.SELL, qty="10", ref="110"),
            order("b2", qty="4", ref="120"),
        ]
    )
    assert [filled(o).status for o in outcomes] == ["filled"] * 3
    [position] = await b.list_positions()
    assert (position.symbol, position.qty) == ("AAPL", Decimal(4))
    # The closed position's old entry price does not leak into the new one.
    assert position.avg_entry_price == Decimal(120)
    assert position.market_value == Decimal(480)
    account = await b.get_account()
    assert account.cash == Decimal(100_000 - 1000 + 1100 - 480)
    assert account.equity == account.cash + Decimal(480)


async def test_batch_closing_a_position_held_before_and_reopening_it(database: Database) -> None:
    b = broker(database)
    await b.submit_order(order("b0", qty="10", ref="100"))
    outcomes = await b.submit_orders(
        [
            order("s1", side=Action.SELL, qty="10", ref="110"),
            order("b1", qty="5", ref="90"),
            order("s2", side=Action.SELL, qty="5", ref="95"),
            order("s3", side=Action.SELL, qty="1", ref="95"),  # nothing left to sell
            order("b2", qty="2", ref="80"),
        ]
    )
    statuses = [o.status if isinstance(o, BrokerOrder) else str(o)[:18] for o in outcomes]
    assert statuses == ["filled", "filled", "filled", "shorts_not_allowed", "filled"]
    [position] = await b.list_positions()
    assert (position.qty, position.avg_entry_price) == (Decimal(2), Decimal(80))
    assert (await b.get_account()).cash == Decimal(100_000 - 1000 + 1100 - 450 + 475 - 160)


async def test_a_closed_position_is_skipped_by_reads_and_can_be_reopened_later(
    database: Database,
) -> None:
    b = broker(database)
    await b.submit_orders(
        [order("b1", qty="10", ref="100"), order("s1", side=Action.SELL, qty="10", ref="100")]
    )
    assert await b.list_positions() == []
    account = await b.get_account()
    assert account.cash == account.equity == Decimal(100_000)
    with pytest.raises(BrokerError, match="shorts_not_allowed"):
        await b.submit_order(order("s2", side=Action.SELL, qty="1", ref="100"))
    await b.submit_order(order("b2", qty="3", ref="70"))
    [position] = await b.list_positions()
    assert (position.qty, position.avg_entry_price) == (Decimal(3), Decimal(70))


async def test_a_duplicate_client_order_id_in_one_batch_fills_once(database: Database) -> None:
    b = broker(database)
    await b.get_account()
    with counting_commits(database) as commits:
        outcomes = await b.submit_orders(
            [order("c1", qty="10", ref="100"), order("c1", qty="20", ref="50")]
        )
    assert len(commits) == 1  # no fallback to one transaction per order
    first, again = filled(outcomes[0]), filled(outcomes[1])
    assert again == first
    assert first.filled_qty == Decimal(10)
    assert (await b.get_account()).cash == Decimal(99_000)
    [position] = await b.list_positions()
    assert position.qty == Decimal(10)
    assert await order_rows(database) == ["c1"]


async def test_a_batch_adopts_an_order_that_already_exists(database: Database) -> None:
    b = broker(database)
    first = await b.submit_order(order("c1", qty="10", ref="100"))
    with counting_commits(database) as commits:
        outcomes = await b.submit_orders(
            [
                order("n1", symbol="MSFT", qty="1", ref="200"),
                order("c1", qty="30", ref="10"),  # another quantity and price: c1 as it is
                order("n2", symbol="IBM", qty="1", ref="300"),
            ]
        )
    assert len(commits) == 1  # no fallback to one transaction per order
    assert filled(outcomes[1]) == first
    assert [filled(o).status for o in outcomes] == ["filled"] * 3
    assert (await b.get_account()).cash == Decimal(100_000 - 1000 - 200 - 300)
    positions = {p.symbol: p.qty for p in await b.list_positions()}
    assert positions == {"AAPL": Decimal(10), "IBM": Decimal(1), "MSFT": Decimal(1)}
    assert sorted(await order_rows(database)) == ["c1", "n1", "n2"]


async def test_concurrent_batches_sharing_an_id_fill_it_once(database: Database) -> None:
    a, b = broker(database), broker(database)
    results = await asyncio.gather(
        a.submit_orders([order("x1", symbol="MSFT", qty="1", ref="10"), order("shared")]),
        b.submit_orders([order("shared"), order("y1", symbol="IBM", qty="1", ref="10")]),
    )
    shared = {filled(results[0][1]).broker_order_id, filled(results[1][0]).broker_order_id}
    assert len(shared) == 1
    assert (await a.get_account()).cash == Decimal(100_000 - 1000 - 10 - 10)
    positions = {p.symbol: p.qty for p in await a.list_positions()}
    assert positions == {"AAPL": Decimal(10), "IBM": Decimal(1), "MSFT": Decimal(1)}
    assert sorted(await order_rows(database)) == ["shared", "x1", "y1"]


async def test_mark_prices_fills_resting_orders_on_several_symbols(database: Database) -> None:
    b = broker(database)
    await b.submit_order(order("m0", symbol="MSFT", qty="4", ref="60"))
    await b.submit_order(order("a1", order_type=OrderType.LIMIT, limit="95", qty="10", ref="100"))
    await b.submit_order(order("a2", order_type=OrderType.LIMIT, limit="90", qty="1", ref="100"))
    await b.submit_order(
        order("m1", symbol="MSFT", order_type=OrderType.LIMIT, limit="50", qty="2", ref="60")
    )
    await b.submit_order(
        order("i1", symbol="IBM", order_type=OrderType.LIMIT, limit="10", qty="1", ref="20")
    )
    assert len(await b.list_open_orders()) == 4

    book = await b.mark_prices({"aapl": Decimal(94), "MSFT": Decimal(49)})
    assert book == await b.get_book()  # what the marks left is what the next read sees

    a1, a2, m1, i1 = [await b.get_order(c) for c in ("a1", "a2", "m1", "i1")]
    assert a1 is not None and (a1.status, a1.avg_fill_price) == ("filled", Decimal(94))
    assert a2 is not None and a2.status == "new"  # 94 is above its limit
    assert m1 is not None and (m1.status, m1.avg_fill_price) == ("filled", Decimal(49))
    assert i1 is not None and i1.status == "new"  # IBM was not marked
    assert [o.client_order_id for o in await b.list_open_orders()] == ["a2", "i1"]
    positions = {p.symbol: (p.qty, p.market_value) for p in await b.list_positions()}
    assert positions == {
        "AAPL": (Decimal(10), Decimal(940)),
        "MSFT": (Decimal(6), Decimal(6 * 49)),  # the position held before is revalued too
    }
    account = await b.get_account()
    assert account.cash == Decimal(100_000 - 240 - 940 - 98)
    assert account.buying_power == account.cash - Decimal(90) - Decimal(10)


async def test_mark_prices_fills_oldest_first_and_rejects_what_can_no_longer_fill(
    database: Database,
) -> None:
    b = broker(database)
    await b.submit_order(order("b1", qty="10", ref="100"))
    # Named against creation order, so that only the creation time can put "z-old" first.
    for coid in ("z-old", "a-new"):
        await b.submit_order(
            order(coid, side=Action.SELL, qty="5", order_type=OrderType.LIMIT, limit="120")
        )
    async with database.sessions() as session, session.begin():
        from torghut.db.tables import SimPosition

        row = await session.get(SimPosition, "AAPL")
        assert row is not None
        row.qty = Decimal(5)  # shares gone by another path: only one of the sells can deliver
    await b.mark_prices({"AAPL": Decimal(125), "MSFT": Decimal(1)})
    old, new = await b.get_order("z-old"), await b.get_order("a-new")
    assert old is not None and old.status == "filled"
    assert new is not None and new.status == "rejected"
    assert new.reject_reason is not None and new.reject_reason.startswith("shorts_not_allowed")
    assert await b.list_positions() == []


async def test_mark_prices_refuses_a_non_positive_price_and_marks_nothing(
    database: Database,
) -> None:
    b = broker(database)
    await b.submit_order(order("b1", qty="10", ref="100"))
    with pytest.raises(ValueError, match="MSFT"):
        await b.mark_prices({"AAPL": Decimal(150), "MSFT": Decimal(0)})
    [position] = await b.list_positions()
    assert position.market_value == Decimal(1000)


async def test_a_batch_is_one_transaction(database: Database) -> None:
    b = broker(database)
    await b.get_account()  # creates the account row (once per broker) before counting
    with counting_commits(database) as commits:
        outcomes = await b.submit_orders(
            [
                order("o1", qty="1", ref="100"),
                order("o2", symbol="MSFT", qty="1", ref="100"),
                order("o3", ref=None),  # refused
                order("o4", symbol="IBM", order_type=OrderType.LIMIT, limit="5", ref="10"),
                order("o5", side=Action.SELL, qty="1", ref="100"),
            ]
        )
        kinds = [type(o).__name__ for o in outcomes]
        assert kinds == ["BrokerOrder", "BrokerOrder", "BrokerError", "BrokerOrder", "BrokerOrder"]
        assert len(commits) == 1
        await b.mark_prices({"AAPL": Decimal(101), "IBM": Decimal(4)})
        assert len(commits) == 2
    assert sorted(await order_rows(database)) == ["o1", "o2", "o4", "o5"]
    assert (await b.get_order("o4")).status == "filled"  # type: ignore[union-attr]


async def test_mark_prices_pays_the_oldest_resting_buy_first(database: Database) -> None:
    b = broker(database, cash="1000")
    for coid in ("z-old", "a-new"):
        await b.submit_order(
            order(coid, qty="5", order_type=OrderType.LIMIT, limit="100", ref=None)
        )
    async with database.sessions() as session, session.begin():
        from torghut.db.tables import SimAccount

        account = await session.get(SimAccount, "default")
        assert account is not None
        account.cash = Decimal(500)  # cash gone by another path: only one buy can be paid
    await b.mark_prices({"AAPL": Decimal(100)})
    old, new = await b.get_order("z-old"), await b.get_order("a-new")
    assert old is not None and old.status == "filled"
    assert new is not None and new.status == "rejected"
    assert new.reject_reason == "insufficient_buying_power: needs 500.00000000, has 0.00000000"


async def test_an_order_the_book_cannot_compute_fails_alone(database: Database) -> None:
    b = broker(database)
    outcomes = await b.submit_orders(
        [order("g1", qty="1"), order("poison", qty="1e30", ref="1"), order("g2", qty="2")]
    )
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["BrokerOrder", "InvalidOperation", "BrokerOrder"]
    assert sorted(await order_rows(database)) == ["g1", "g2"]
    [position] = await b.list_positions()
    assert position.qty == Decimal(3)


def test_the_book_rows_are_read_by_position_only_while_columns_and_fields_agree() -> None:
    """The book's rows are built from result tuples by position: a table whose columns no
    longer match its row type, name by name and in order, must stop the import, not swap a
    position's quantity and price."""
    from dataclasses import dataclass

    from torghut.trading import brokers

    brokers._same_order(brokers._POSITIONS, brokers._PositionRow)  # agrees today

    @dataclass
    class Swapped:
        symbol: str
        avg_entry_price: Decimal
        qty: Decimal
        last_price: Decimal
        updated_at: object = None

    with pytest.raises(RuntimeError, match="sim_positions columns"):
        brokers._same_order(brokers._POSITIONS, Swapped)
