from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tests.conftest import Database
from torghut.db.tables import SimOrder
from torghut.domain import Action, OrderRequest, OrderType, TimeInForce
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
    return SimBroker(database.sessions, starting_cash=Decimal(cash))


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
