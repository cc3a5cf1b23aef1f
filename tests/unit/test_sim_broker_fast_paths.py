"""The simulated broker's shortcuts give what the long way gave: the order id's text, the rows'
parameters, the broker order's quantized values, and the reserve carried from order to order."""

from __future__ import annotations

import os
import random
import re
import uuid
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from torghut.domain import Action, OrderRequest, OrderType, TimeInForce
from torghut.errors import BrokerError
from torghut.trading import brokers
from torghut.trading.brokers import _AccountRow, _Book, _OrderRow, _PositionRow

AT = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)


def test_the_order_id_is_the_text_of_uuid4_of_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples = [bytes(16), b"\xff" * 16, bytes(range(16))]
    samples += [random.Random(seed).randbytes(16) for seed in range(200)]
    for sample in samples:
        monkeypatch.setattr(os, "urandom", lambda n, sample=sample: sample[:n])
        assert brokers._sim_order_id() == f"sim-{uuid.UUID(bytes=sample, version=4)}"


def test_the_order_id_is_a_random_canonical_uuid4() -> None:
    ids = {brokers._sim_order_id() for _ in range(100)}
    assert len(ids) == 100
    for text in ids:
        value = uuid.UUID(text.removeprefix("sim-"))
        assert (value.version, value.variant) == (4, uuid.RFC_4122)
        assert re.fullmatch(
            r"sim-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", text
        )


def order_row(**changes: object) -> _OrderRow:
    values: dict[str, object] = {
        "client_order_id": "c1",
        "broker_order_id": "sim-1",
        "symbol": "AAPL",
        "side": "buy",
        "order_type": "limit",
        "time_in_force": "day",
        "qty": Decimal("10"),
        "limit_price": Decimal("99.5"),
        "stop_price": Decimal("1E+1"),
        "status": "new",
        "filled_qty": Decimal("0"),
        "avg_fill_price": Decimal("98.123456789"),
        "reject_reason": None,
        "created_at": AT,
        "updated_at": AT.replace(second=1),
    }
    return _OrderRow(**{**values, **changes})  # type: ignore[arg-type]


def test_rows_are_bound_by_every_column_name_in_order() -> None:
    row = order_row()
    expected = {f.name: getattr(row, f.name) for f in fields(row)}
    assert list(brokers._order_columns(row).items()) == list(expected.items())
    position = _PositionRow("AAPL", Decimal(1), Decimal(2), Decimal(3), AT)
    expected = {f.name: getattr(position, f.name) for f in fields(position)}
    assert list(brokers._position_columns(position).items()) == list(expected.items())


def test_updates_are_bound_by_the_key_then_each_changed_column() -> None:
    row = order_row()
    assert list(brokers._order_changes(row).items()) == [
        ("b_key", "c1"),
        ("b_status", "new"),
        ("b_filled_qty", row.filled_qty),
        ("b_avg_fill_price", row.avg_fill_price),
        ("b_reject_reason", None),
        ("b_updated_at", row.updated_at),
    ]
    position = _PositionRow("AAPL", Decimal(1), Decimal(2), Decimal(3), AT)
    assert list(brokers._position_changes(position).items()) == [
        ("b_key", "AAPL"),
        ("b_qty", Decimal(1)),
        ("b_avg_entry_price", Decimal(2)),
        ("b_last_price", Decimal(3)),
        ("b_updated_at", AT),
    ]


def exact(value: Decimal | None) -> tuple[int, tuple[int, ...], int | str] | None:
    return None if value is None else tuple(value.as_tuple())  # type: ignore[return-value]


def test_the_broker_order_is_quantized_in_its_fields_and_its_text() -> None:
    placed = brokers._to_broker_order(order_row())
    assert placed.side is Action.BUY
    assert [exact(v) for v in (placed.qty, placed.filled_qty, placed.limit_price)] == [
        exact(Decimal("10.00000000")),
        exact(Decimal("0E-8")),
        exact(Decimal("99.50000000")),
    ]
    assert exact(placed.avg_fill_price) == exact(Decimal("98.12345679"))
    raw = placed.raw
    assert (raw["qty"], raw["filled_qty"], raw["limit_price"]) == (
        "10.00000000",
        "0E-8",
        "99.50000000",
    )
    assert (raw["stop_price"], raw["filled_avg_price"]) == ("10.00000000", "98.12345679")
    assert (raw["side"], raw["created_at"]) == ("buy", "2025-03-03T14:30:00+00:00")
    bare = brokers._to_broker_order(
        order_row(side="sell", limit_price=None, stop_price=None, avg_fill_price=None)
    )
    assert bare.side is Action.SELL
    assert bare.limit_price is None and bare.avg_fill_price is None
    assert (bare.raw["limit_price"], bare.raw["stop_price"], bare.raw["filled_avg_price"]) == (
        None,
    ) * 3
    with pytest.raises(ValueError):
        brokers._to_broker_order(order_row(side="short"))


def request(
    coid: str, qty: str, *, limit: str | None = None, ref: str | None = "100"
) -> OrderRequest:
    return OrderRequest(
        client_order_id=coid,
        symbol="AAPL",
        side=Action.BUY,
        qty=Decimal(qty),
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        limit_price=None if limit is None else Decimal(limit),
        reference_price=None if ref is None else Decimal(ref),
    )


def book(cash: str) -> _Book:
    return _Book(account=_AccountRow("default", Decimal(cash)), positions={}, resting=[])


def test_a_buy_resting_since_the_last_order_is_reserved() -> None:
    b = book("1000")
    b.place(request("first", "1"))  # the reserve is summed here, before anything rests
    b.place(request("resting", "5", limit="100", ref=None))
    with pytest.raises(
        BrokerError, match=r"^insufficient_buying_power: needs 500\.00000000, has 400\.00000000$"
    ):
        b.place(request("late", "5"))


def test_a_buy_filled_by_a_mark_no_longer_reserves() -> None:
    b = book("1000")
    b.place(request("resting", "5", limit="100", ref=None))
    assert b.place(request("early", "1")).status == "filled"  # reserve counted: 500
    b.mark("AAPL", Decimal("100.00000000"))  # fills the resting buy: cash 400, nothing reserved
    assert (b.resting, b.account.cash) == ([], Decimal("400.00000000"))
    assert b.place(request("after", "4")).status == "filled"
    assert b.account.cash == Decimal("0E-8")
