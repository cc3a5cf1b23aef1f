"""The write path's shortcuts bind exactly what SQLAlchemy's general path binds: the fused
bind processors of `tables` (UTC datetimes, safe text, JSON serialized once) and
`engine.executemany` (rows bound in one pass), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from psycopg.types.json import Json, Jsonb
from sqlalchemy import TypeDecorator, create_engine, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from tests.conftest import Database
from torghut.db import tables
from torghut.db.binding import column_form
from torghut.db.engine import executemany, json_dumps, update_by_key
from torghut.db.tables import Strategy, TradeDecisionRow

_DECISIONS = TradeDecisionRow.__table__

_TEXTS: list[Any] = [None, "", "abc", "a\x00b", "\ud800", "x\udfffy", "ü€", "\\u0000"]
_JSONS: list[Any] = [
    None,
    {},
    {"a": 1},
    {"a": "x\x00"},
    {"k\x00": 1},
    [1, 2.5, "s", None, True],
    {"a": float("nan")},
    {"a": float("inf")},
    {"a": Decimal("1.50")},
    {"u": uuid.UUID(int=7)},
    {1: 2},
    {True: 1},
    {None: 1},
    {"a": (1, 2)},
    {"a": {"b": ["\ud800"]}},
    {"a": "\\u0000"},
    {"a": '\u2028\t\n"\\'},
    {"d": datetime(2026, 1, 1, tzinfo=UTC)},
    {"a": 10**30, "b": -0.0},
    "str",
    5,
]


def _datetimes() -> list[Any]:
    rnd = random.Random(16)
    zones = [None, UTC, timezone(timedelta(hours=-3)), timezone(timedelta(hours=5, minutes=30))]
    values: list[Any] = [None, datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)]
    for _ in range(500):
        values.append(
            datetime(
                rnd.randint(1, 9999),
                rnd.randint(1, 12),
                rnd.randint(1, 28),
                rnd.randint(0, 23),
                rnd.randint(0, 59),
                rnd.randint(0, 59),
                rnd.choice([0, rnd.randint(0, 999_999)]),
                tzinfo=rnd.choice(zones),
            )
        )
    return values


def _dialects() -> list[Dialect]:
    return [
        create_engine("sqlite://", json_serializer=json_dumps).dialect,
        create_engine("postgresql+psycopg://u@127.0.0.1:9/db", json_serializer=json_dumps).dialect,
    ]


def _as_bound(value: Any) -> Any:
    """What reaches the database: psycopg's JSON wrappers are dumped as the driver would."""
    if isinstance(value, Json | Jsonb):
        return (type(value).__name__, json_dumps(value.obj))
    return (type(value).__name__, value)


@pytest.mark.parametrize(
    ("column_type", "values"),
    [
        (tables.UTCDateTime(), _datetimes()),
        (tables.SafeString(), _TEXTS),
        (tables.SafeText(), _TEXTS),
        (tables.SafeJSON(), _JSONS),
        (tables.SafeJSON(none_as_null=True), _JSONS),
    ],
    ids=["datetime", "string", "text", "json", "json-none-as-null"],
)
def test_fused_bind_processors_bind_what_the_general_path_binds(
    column_type: TypeDecorator[Any], values: list[Any]
) -> None:
    for dialect in _dialects():
        impl = column_type.dialect_impl(dialect)
        general = TypeDecorator.bind_processor(impl, dialect)  # type: ignore[arg-type]
        fused = impl.bind_processor(dialect)
        for value in values:
            expected = general(value) if general else value
            got = fused(value) if fused else value
            assert _as_bound(got) == _as_bound(expected), (dialect.name, value)


@pytest.mark.parametrize("column_type", [tables.SafeString(), tables.SafeText()])
def test_a_whole_text_column_binds_what_each_value_binds(column_type: TypeDecorator[Any]) -> None:
    # `executemany` hands a text column to its processor's whole-column form: the same values,
    # in order, as one call per value (a NUL, a surrogate or non-text anywhere in the column).
    rnd = random.Random(7)
    pool: list[Any] = [*_TEXTS, "plain", "AAPL", 5, b"x"]
    for dialect in _dialects():
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        assert process is not None
        whole = column_form(process)
        for _ in range(300):
            column = tuple(rnd.choice(pool) for _ in range(rnd.randint(0, 6)))
            try:
                expected: Any = [process(v) for v in column]
            except TypeError as exc:
                expected = type(exc)
            try:
                got: Any = list(whole(column))
            except TypeError as exc:
                got = type(exc)
            assert got == expected, (dialect.name, column)


def test_json_on_an_engine_without_our_serializer_is_never_encoded_twice() -> None:
    dialect = create_engine("sqlite://").dialect  # SQLAlchemy's own json.dumps
    process = tables.SafeJSON().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert process({"a": 1}) == '{"a": 1}'
    assert process({"a": "x\x00"}) == '{"a": "x\\ufffd"}'


def _rows(prefix: str, n: int) -> list[dict[str, Any]]:
    now = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    return [
        {
            "id": uuid.uuid4(),
            "strategy_id": "s",
            "symbol": "A\x00PL" if i % 3 == 0 else "AAPL",
            "timeframe": "1Min",
            "action": "buy",
            "qty": Decimal("10.5") + i,
            "decision_json": {"i": i, "bad": "x\x00" if i % 2 else "ok", "d": Decimal("1.5")},
            "decision_hash": f"{prefix}{i}",
            "status": "planned",
            "reason": None if i % 2 else "r\ud800",
            "event_ts": now + timedelta(seconds=i),
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]


def _read(session: Session, prefix: str) -> list[tuple[Any, ...]]:
    c = _DECISIONS.c
    rows = session.execute(
        select(
            c.strategy_id,
            c.symbol,
            c.timeframe,
            c.action,
            c.qty,
            c.decision_json,
            c.status,
            c.reason,
            c.event_ts,
            c.created_at,
            c.updated_at,
            c.pending_order_json,
        )
        .where(c.decision_hash.like(f"{prefix}%"))
        .order_by(c.event_ts)
    )
    return [tuple(row) for row in rows]


async def test_executemany_writes_the_rows_conn_execute_writes(database: Database) -> None:
    def write(session: Session) -> None:
        session.add(Strategy(id="s", params={}))
        session.flush()
        conn = session.connection()
        conn.execute(_DECISIONS.insert(), _rows("general-", 7))
        assert executemany(conn, _DECISIONS.insert(), _rows("fast-", 7)) == 7
        # Rows whose names differ go the general way, and still land.
        mixed = _rows("mixed-", 3)
        mixed[1]["pending_order_json"] = {"qty": "1"}
        executemany(conn, _DECISIONS.insert(), mixed)

    await database.db.run(write)

    def update(session: Session) -> None:
        conn = session.connection()
        for prefix in ("general-", "fast-"):
            ids = session.execute(
                select(_DECISIONS.c.id).where(_DECISIONS.c.decision_hash.like(f"{prefix}%"))
            ).scalars()
            params = [
                {
                    "b_key": i,
                    "b_pending_order_json": {"k": "v\x00"},
                    "b_status": "submitted",
                    "b_updated_at": datetime(2026, 2, 3, tzinfo=UTC),
                }
                for i in ids
            ]
            statement = update_by_key(
                _DECISIONS, "id", ("pending_order_json", "status", "updated_at")
            )
            if prefix == "fast-":
                assert executemany(conn, statement, params) == len(params)
            else:
                conn.execute(statement, params)

    await database.db.run(update)
    general = await database.db.run(lambda s: _read(s, "general-"))
    fast = await database.db.run(lambda s: _read(s, "fast-"))
    assert len(fast) == 7
    assert fast == general
    assert fast[0][1] == "A\ufffdPL" and fast[0][7] == "r\ufffd"
    assert fast[1][5]["bad"] == "x\ufffd" and fast[1][11] == {"k": "v\ufffd"}
    assert len(await database.db.run(lambda s: _read(s, "mixed-"))) == 3
