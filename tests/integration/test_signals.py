"""Signal sources: the replay file on both databases, the ClickHouse SQL against a real
in-process ClickHouse engine (chdb), and the ClickHouse HTTP transport against a local server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.conftest import Database
from torghut.db.tables import SignalCursor
from torghut.domain import Signal
from torghut.errors import InputError
from torghut.trading.signals import (
    ClickHouseConfig,
    ClickHouseSignalSource,
    ReplaySignalSource,
    SignalSourceError,
    build_signals_query,
    iso_duration_to_timeframe,
    parse_clickhouse_row,
    parse_signal_line,
    signal_key,
)

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)


def line(ts: datetime, symbol: str, **extra: Any) -> str:
    row: dict[str, Any] = {
        "event_ts": ts.isoformat().replace("+00:00", "Z"),
        "symbol": symbol,
        "timeframe": "1Min",
        "macd": 0.5,
        "macd_signal": 0.2,
        "rsi14": 30.0,
        "price": 100.0,
    }
    row.update(extra)
    return json.dumps(row)


def keys(signals: list[Signal]) -> list[tuple[str, str, int]]:
    return [(s.event_ts.strftime("%H:%M"), s.symbol, s.seq) for s in signals]


# --- parse_signal_line ---------------------------------------------------------------------


def test_parse_signal_line_keeps_extra_keys_and_defaults_seq_to_line_number() -> None:
    signal = parse_signal_line(line(T0, "aapl", volume=1200, vwap=99.5), 7)
    assert signal.symbol == "AAPL"
    assert signal.event_ts == T0
    assert signal.price == Decimal("100.0")
    assert signal.seq == 7
    assert signal.payload == {"volume": 1200, "vwap": 99.5}


def test_parse_signal_line_accepts_nulls_and_epoch_and_explicit_seq() -> None:
    raw = json.dumps(
        {
            "event_ts": T0.timestamp(),
            "symbol": "SPY",
            "timeframe": "1Min",
            "seq": 3,
            "macd": None,
            "price": None,
        }
    )
    signal = parse_signal_line(raw, 1)
    assert (signal.event_ts, signal.seq, signal.macd, signal.price) == (T0, 3, None, None)
    millis = json.dumps({"event_ts": T0.timestamp() * 1000, "symbol": "SPY", "timeframe": "1Min"})
    assert parse_signal_line(millis, 1).event_ts == T0


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        pytest.param("{not json", r"^line 4: not valid JSON", id="json"),
        pytest.param("[1, 2]", r"^line 4: expected a JSON object", id="array"),
        pytest.param('{"symbol": "A", "timeframe": "1Min"}', r"'event_ts' is required", id="ts"),
        pytest.param(line(T0, "A", event_ts="yesterday"), r"field 'event_ts'", id="bad-ts"),
        pytest.param(line(T0, "A").replace('"A"', "5"), r"field 'symbol'", id="symbol-type"),
        pytest.param(line(T0, "X" * 40), r"field 'symbol'", id="symbol-long"),
        pytest.param(line(T0, "  "), r"field 'symbol': must not be blank", id="symbol-blank"),
        pytest.param(line(T0, "A", timeframe="M" * 17), r"field 'timeframe'", id="tf-long"),
        pytest.param(line(T0, "A", rsi14="high"), r"field 'rsi14'", id="rsi"),
        pytest.param(line(T0, "A", macd=True), r"field 'macd'", id="bool"),
        pytest.param(line(T0, "A", price=-1), r"field 'price'", id="price"),
        pytest.param(line(T0, "A", seq=-1), r"field 'seq'", id="seq"),
        pytest.param(line(T0, "A").replace("100.0", "NaN"), r"field 'price'", id="nan"),
        pytest.param(line(T0, "A", price=1e-25), r"field 'price': expected a price", id="tiny"),
        pytest.param(line(T0, "A", price=1e20), r"field 'price': expected a price", id="huge"),
    ],
)
def test_parse_signal_line_names_line_and_field(raw: str, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern) as info:
        parse_signal_line(raw, 4)
    assert str(info.value).startswith("line 4:")


_numbers = st.one_of(
    st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**6), 10**6)
)
# Identifiers must be printable: control characters (a NUL stops PostgreSQL), format
# characters and unassigned code points are refused; lone surrogates are not text at all.
_printable = st.characters(exclude_categories=("Cc", "Cs"))
_valid_lines = st.fixed_dictionaries(
    {
        "event_ts": st.one_of(
            st.integers(0, 4_000_000_000),
            st.datetimes(
                min_value=datetime(1971, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.sampled_from([UTC, None]),
            ).map(lambda d: d.isoformat()),
        ),
        "symbol": st.text(_printable, min_size=1, max_size=32).filter(
            lambda t: t.strip() != "" and t.isprintable()
        ),
        "timeframe": st.text(_printable, min_size=1, max_size=16).filter(
            lambda t: t.strip() != "" and t.isprintable()
        ),
        "macd": _numbers,
        "macd_signal": _numbers,
        "rsi14": _numbers,
    },
    optional={
        "price": st.one_of(
            st.none(),
            st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**9), places=4).map(float),
        ),
        "seq": st.integers(0, 2**40),
        "volume": st.integers(0, 10**9),
    },
)


@settings(max_examples=300, deadline=None)
@given(_valid_lines)
def test_parse_signal_line_builds_what_full_validation_builds(data: dict[str, Any]) -> None:
    # The parser's own checks and `Signal`'s validation must agree on what a valid line means.
    parsed = parse_signal_line(json.dumps(data), 9)
    fields = {k: v for k, v in data.items() if k in Signal.model_fields}
    payload = {k: v for k, v in data.items() if k not in Signal.model_fields}
    if isinstance(fields["event_ts"], int):
        fields["event_ts"] = datetime.fromtimestamp(fields["event_ts"], UTC)
    if fields.get("price") is not None:
        fields["price"] = Decimal(str(fields["price"]))
    fields.setdefault("seq", 9)
    validated = Signal.model_validate({**fields, "payload": payload})
    assert parsed.model_dump() == validated.model_dump()
    assert parsed == validated


@pytest.mark.parametrize(
    ("duration", "timeframe"),
    [
        ("PT1S", "1Sec"),
        ("PT1M", "1Min"),
        ("PT5M", "5Min"),
        ("PT1H", "1Hour"),
        ("PT15M", "15Min"),
        ("P1D", "1Day"),
        ("PT1H30M", "90Min"),
        ("PT90S", "90Sec"),
        ("pt1m", "1Min"),
    ],
)
def test_iso_duration_to_timeframe(duration: str, timeframe: str) -> None:
    assert iso_duration_to_timeframe(duration) == timeframe


@pytest.mark.parametrize("bad", ["", "P", "PT", "1M", "PT0S", "PT1X", "PT-1M", "P1DT"])
def test_iso_duration_rejects_garbage(bad: str) -> None:
    with pytest.raises(InputError, match="window_size"):
        iso_duration_to_timeframe(bad)


def test_bundled_sample_parses_cleanly() -> None:
    path = Path(str(resources.files("torghut") / "data" / "sample_signals.jsonl"))
    assert path.stat().st_size < 1_500_000
    lines = path.read_text(encoding="utf-8").splitlines()
    signals = [parse_signal_line(text, n) for n, text in enumerate(lines, start=1)]
    assert len({s.symbol for s in signals}) == 5
    assert all(s.price is not None and s.rsi14 is not None for s in signals)


# --- replay --------------------------------------------------------------------------------


@pytest.fixture
def signal_file(tmp_path: Path) -> Path:
    # Out of order on purpose; two lines share (event_ts, symbol) and differ by seq.
    rows = [
        line(T0 + timedelta(minutes=1), "MSFT"),
        line(T0, "MSFT"),
        line(T0 + timedelta(minutes=1), "AAPL", seq=9),
        line(T0, "AAPL", seq=2),
        line(T0, "AAPL", seq=1),
        line(T0 + timedelta(minutes=2), "NVDA"),
    ]
    path = tmp_path / "signals.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


ORDER = [
    ("14:30", "AAPL", 1),
    ("14:30", "AAPL", 2),
    ("14:30", "MSFT", 2),
    ("14:31", "AAPL", 9),
    ("14:31", "MSFT", 1),
    ("14:32", "NVDA", 6),
]


async def test_replay_orders_by_time_symbol_seq(database: Database, signal_file: Path) -> None:
    source = ReplaySignalSource(signal_file, database.db)
    assert keys(await source.fetch(100)) == ORDER
    assert source.skipped == 0
    assert source.source_key == f"replay:{signal_file}"  # tmp_path is absolute


async def test_fetch_does_not_move_the_cursor_and_commit_does(
    database: Database, signal_file: Path
) -> None:
    source = ReplaySignalSource(signal_file, database.db)
    first = await source.fetch(2)
    assert keys(first) == ORDER[:2]
    assert keys(await source.fetch(2)) == ORDER[:2]  # nothing committed yet
    await source.commit(first)
    assert keys(await source.fetch(2)) == ORDER[2:4]
    assert await source.remaining() == 4
    async with database.sessions() as session:
        row = (await session.execute(select(SignalCursor))).scalar_one()
    assert (row.event_ts.replace(tzinfo=UTC), row.symbol, row.seq) == (T0, "AAPL", 2)


async def test_a_source_reads_where_another_process_left_the_cursor(
    database: Database, signal_file: Path
) -> None:
    """Two processes take turns as leader on one source: each fetch starts from the cursor in
    the database, never from what this process last committed itself."""
    first = ReplaySignalSource(signal_file, database.db)
    second = ReplaySignalSource(signal_file, database.db)
    await first.commit(await first.fetch(2))
    await second.commit(await second.fetch(2))
    await second.commit(await second.fetch(2))
    assert keys(await first.fetch(2)) == ORDER[6:8]
    assert await first.remaining() == len(ORDER) - 6


async def test_restart_neither_skips_nor_repeats(database: Database, signal_file: Path) -> None:
    source = ReplaySignalSource(signal_file, database.db)
    batch = await source.fetch(3)
    await source.commit(batch)
    uncommitted = await source.fetch(2)  # fetched, then the process dies before commit
    assert keys(uncommitted) == ORDER[3:5]
    await source.aclose()

    restarted = ReplaySignalSource(signal_file, database.db)
    seen: list[Signal] = []
    while batch := await restarted.fetch(2):
        seen.extend(batch)
        await restarted.commit(batch)
    assert keys(seen) == ORDER[3:]
    assert await restarted.fetch(10) == []


async def test_commit_never_moves_backwards(database: Database, signal_file: Path) -> None:
    source = ReplaySignalSource(signal_file, database.db)
    everything = await source.fetch(100)
    await source.commit(everything[:4])
    await source.commit(everything[:1])  # a late commit of an older batch
    assert keys(await source.fetch(100)) == ORDER[4:]


async def test_sources_keep_separate_cursors(database: Database, signal_file: Path) -> None:
    a = ReplaySignalSource(signal_file, database.db, source_key="a")
    b = ReplaySignalSource(signal_file, database.db, source_key="b")
    await a.commit(await a.fetch(5))
    assert len(await a.fetch(100)) == 1
    assert len(await b.fetch(100)) == 6


async def test_bad_lines_are_skipped_counted_and_logged(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                line(T0, "AAPL").encode(),
                b"{broken",
                b"",  # blank lines are not signals, and not errors either
                line(T0, "MSFT", rsi14="x").encode(),
                b"\xff\xfe not utf-8",
                line(T0, "AAPL", seq=1).encode(),  # same key as line 1: a duplicate
                line(T0 + timedelta(minutes=1), "NVDA").encode(),
            ]
        )
    )
    source = ReplaySignalSource(path, database.db)
    with caplog.at_level(logging.WARNING, logger="torghut.trading.signals"):
        signals = await source.fetch(100)
    assert keys(signals) == [("14:30", "AAPL", 1), ("14:31", "NVDA", 7)]
    assert source.skipped == 4
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "line 2: not valid JSON" in messages
    assert "line 4: field 'rsi14'" in messages
    assert "line 5: not UTF-8" in messages
    assert "line 6: duplicate" in messages


async def test_missing_file_is_an_input_error_naming_it(database: Database, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    source = ReplaySignalSource(missing, database.db)
    with pytest.raises(InputError, match=str(missing)):
        await source.fetch(10)


async def test_long_paths_get_a_bounded_cursor_key(database: Database, tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d" * 50] * 6)
    deep.mkdir(parents=True)
    path = deep / "s.jsonl"
    path.write_text(line(T0, "AAPL") + "\n" + line(T0, "MSFT") + "\n", encoding="utf-8")
    source = ReplaySignalSource(path, database.db)
    assert len(source.source_key) <= 256
    await source.commit(await source.fetch(1))
    assert keys(await ReplaySignalSource(path, database.db).fetch(5)) == [("14:30", "MSFT", 2)]


async def test_the_file_is_read_once_off_the_event_loop(
    database: Database, signal_file: Path
) -> None:
    loop_thread = threading.get_ident()
    reads: list[int] = []

    class Recording(ReplaySignalSource):
        def _build_index(self) -> sqlite3.Connection:
            reads.append(threading.get_ident())
            return super()._build_index()

    source = Recording(signal_file, database.db)
    await asyncio.gather(source.fetch(1), source.fetch(1), source.remaining())
    await source.commit(await source.fetch(2))
    await source.fetch(2)
    assert len(reads) == 1  # cached, even with concurrent first fetches
    assert reads[0] != loop_thread


# --- ClickHouse SQL, against a real engine -------------------------------------------------

chdb = pytest.importorskip("chdb")


class ChSession(Protocol):
    def query(
        self, sql: str, fmt: str = ..., udf_path: str = ..., params: dict[str, str] | None = ...
    ) -> Any: ...

    def close(self) -> None: ...


@pytest.fixture(scope="module")
def clickhouse() -> Iterator[ChSession]:
    from chdb import session as chdb_session

    sess = cast(ChSession, chdb_session.Session())  # type: ignore[no-untyped-call]
    sess.query("CREATE DATABASE IF NOT EXISTS torghut")
    # As in production: ReplacingMergeTrees, whose older versions stay until a merge.
    sess.query(
        "CREATE TABLE torghut.ta_signals (event_ts DateTime64(3, 'UTC'), seq UInt64, "
        "symbol String, window_size String, macd Nullable(Float64), "
        "macd_signal Nullable(Float64), rsi14 Nullable(Float64), version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY (symbol, event_ts, seq)"
    )
    sess.query(
        "CREATE TABLE torghut.ta_microbars (event_ts DateTime64(3, 'UTC'), symbol String, "
        "c Float64, version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY (symbol, event_ts)"
    )
    sess.query("SYSTEM STOP MERGES torghut.ta_signals")
    sess.query("SYSTEM STOP MERGES torghut.ta_microbars")
    sess.query(
        """INSERT INTO torghut.ta_signals VALUES
        ('2025-03-03 14:30:00.000', 1, 'AAPL', 'PT1M', 0.5, 0.2, 30, 2),
        ('2025-03-03 14:30:00.000', 2, 'O''REILLY', 'PT1M', 0.4, 0.1, 31, 1),
        ('2025-03-03 14:30:00.000', 7, 'AAPL', 'PT1M', 0.6, 0.2, 29, 1),
        ('2025-03-03 14:30:00.500', 3, 'AAPL', 'PT1S', 0.5, 0.2, 30, 1),
        ('2025-03-03 14:31:00.000', 4, 'MSFT', 'PT5M', NULL, 0.2, 30, 1),
        ('2025-03-03 14:32:00.000', 5, 'NVDA', 'PT1H', 0.1, 0.2, 70, 1),
        ('2025-03-03 14:29:00.000', 9, 'SPY', 'PT1M', 0.1, 0.2, 70, 1)"""
    )
    # Unmerged older versions, written last (a late re-delivery): never read, never twice.
    sess.query(
        """INSERT INTO torghut.ta_signals VALUES
        ('2025-03-03 14:30:00.000', 1, 'AAPL', 'PT1M', -9, -9, 99, 1)"""
    )
    sess.query(
        """INSERT INTO torghut.ta_microbars VALUES
        ('2025-03-03 14:30:00.000', 'AAPL', 238.5, 3),
        ('2025-03-03 14:30:00.000', 'O''REILLY', 1000.25, 1),
        ('2025-03-03 14:32:00.000', 'NVDA', 117.1, 1), ('2025-03-03 14:29:00.000', 'SPY', 570, 1)"""
    )
    sess.query(
        """INSERT INTO torghut.ta_microbars VALUES
        ('2025-03-03 14:30:00.000', 'AAPL', 1.5, 1), ('2025-03-03 14:30:00.000', 'AAPL', 2.5, 2)"""
    )
    yield sess
    sess.close()


def run(sess: ChSession, cursor: tuple[datetime, str, int], limit: int = 100) -> list[Signal]:
    sql, params = build_signals_query(cursor=cursor, limit=limit)
    out = str(sess.query(sql, "JSONEachRow", params=params))
    signals = []
    for text in out.splitlines():
        _, signal, reason = parse_clickhouse_row(text)
        assert signal is not None, reason
        signals.append(signal)
    return signals


def test_query_orders_joins_price_and_maps_timeframes(clickhouse: ChSession) -> None:
    signals = run(clickhouse, (T0, "", 0))
    assert [(s.symbol, s.seq) for s in signals] == [
        ("AAPL", 1),
        ("AAPL", 7),
        ("O'REILLY", 2),
        ("AAPL", 3),
        ("MSFT", 4),
        ("NVDA", 5),
    ]
    by_seq = {s.seq: s for s in signals}
    assert by_seq[1].price == Decimal("238.5")  # the bar's latest version
    assert (by_seq[1].macd, by_seq[1].rsi14) == (0.5, 30)  # the signal's latest version
    assert by_seq[2].price == Decimal("1000.25")
    assert by_seq[3].price is None  # no bar at that instant: NULL, not 0
    assert by_seq[4].price is None and by_seq[4].macd is None
    assert [by_seq[n].timeframe for n in (1, 3, 4, 5)] == ["1Min", "1Sec", "5Min", "1Hour"]
    assert by_seq[3].event_ts == T0 + timedelta(milliseconds=500)
    assert by_seq[1].payload == {"window_size": "PT1M"}


def test_query_cursor_is_a_strict_tuple_comparison(clickhouse: ChSession) -> None:
    after = run(clickhouse, (T0, "AAPL", 1))
    assert [(s.symbol, s.seq) for s in after][:2] == [("AAPL", 7), ("O'REILLY", 2)]
    # A symbol holding a quote travels as data: the cursor resumes right after it.
    after_quote = run(clickhouse, (T0, "O'REILLY", 2))
    assert [s.seq for s in after_quote] == [3, 4, 5]
    assert run(clickhouse, (T0 + timedelta(minutes=2), "NVDA", 5)) == []


def test_query_limit_and_injection_attempts_are_data(clickhouse: ChSession) -> None:
    assert [s.seq for s in run(clickhouse, (T0, "", 0), limit=2)] == [1, 7]
    hostile = "x') OR 1=1 --"
    signals = run(clickhouse, (T0 + timedelta(minutes=1), hostile, 0))
    assert [s.seq for s in signals] == [5]  # MSFT sorts before the hostile string


def test_query_refuses_a_spliced_database_name() -> None:
    with pytest.raises(ValueError, match="identifier"):
        build_signals_query(cursor=(T0, "", 0), limit=1, database="torghut; DROP")
    sql, params = build_signals_query(cursor=(T0, "O'REILLY", 3), limit=5)
    assert "O'REILLY" not in sql
    assert params == {
        "cursor_ts": "2025-03-03 14:30:00.000000",
        "cursor_symbol": "O'REILLY",
        "cursor_seq": "3",
        "limit": "5",
        "settle_ms": "0",
        "upper_ts": "2299-12-31 00:00:00.000000",
    }


# --- ClickHouse HTTP transport, against a local server -------------------------------------


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    target: str


Handler = Callable[[Request], tuple[int, str]]


@dataclass
class FakeClickHouse:
    handler: Handler
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    hang: bool = False


async def _serve(
    fake: FakeClickHouse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        _method, target, _version = request_line.split(" ", 2)
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (h.partition(":") for h in header_lines if h)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        request = Request(parts.path, query, headers, body.decode(), target)
        fake.requests.append(request)
        if fake.hang:
            await asyncio.sleep(3600)
        status, text = fake.handler(request)
        payload = text.encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def fake_clickhouse() -> AsyncIterator[FakeClickHouse]:
    fake = FakeClickHouse(handler=lambda _r: (200, ""))
    server = await asyncio.start_server(lambda r, w: _serve(fake, r, w), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.close()
        await asyncio.sleep(0)


def ch_row(ts: str, symbol: str, seq: int, **extra: Any) -> str:
    row: dict[str, Any] = {
        "event_ts": ts,
        "seq": str(seq),
        "symbol": symbol,
        "window_size": "PT1M",
        "macd": 0.5,
        "macd_signal": 0.2,
        "rsi14": 30,
        "price": 101.5,
    }
    row.update(extra)
    return json.dumps(row)


def source_for(fake: FakeClickHouse, database: Database, **config: Any) -> ClickHouseSignalSource:
    settings: dict[str, Any] = {
        "url": fake.url,
        "username": "trader",
        "password": "s3cret-pw",
        "initial_lookback": timedelta(days=3650),
    }
    settings.update(config)
    return ClickHouseSignalSource(ClickHouseConfig(**settings), database.db)


async def test_transport_params_credentials_and_bad_rows(
    database: Database, fake_clickhouse: FakeClickHouse
) -> None:
    rows = [
        ch_row("2025-03-03T14:30:00.000Z", "AAPL", 1),
        "{this is not json",
        ch_row("2025-03-03T14:30:00.000Z", "MSFT", 2, window_size="every minute"),
        ch_row("2025-03-03T14:30:00.000Z", "O'REILLY", 3, price=None),
    ]
    fake_clickhouse.handler = lambda _r: (200, "\n".join(rows) + "\n")
    source = source_for(fake_clickhouse, database)
    try:
        signals = await source.fetch(50)
        assert [(s.symbol, s.seq, s.price) for s in signals] == [
            ("AAPL", 1, Decimal("101.5")),
            ("O'REILLY", 3, None),
        ]
        assert source.skipped == 2
        request = fake_clickhouse.requests[0]
        assert request.path == "/"
        assert request.headers["x-clickhouse-user"] == "trader"
        assert request.headers["x-clickhouse-key"] == "s3cret-pw"
        assert "s3cret" not in request.target and "trader" not in request.target
        assert "FORMAT JSONEachRow" in request.body and "{cursor_symbol:String}" in request.body
        assert request.query["param_cursor_symbol"] == ""
        assert request.query["param_cursor_seq"] == "0"
        assert request.query["param_limit"] == "50"
        assert request.query["max_execution_time"] == "10"

        await source.commit(signals)
        await source.fetch(50)
        again = fake_clickhouse.requests[1].query
        assert again["param_cursor_ts"] == "2025-03-03 14:30:00.000000"
        assert again["param_cursor_symbol"] == "O'REILLY"
        assert again["param_cursor_seq"] == "3"
    finally:
        await source.aclose()


async def test_a_trailing_run_of_bad_rows_does_not_stall_the_source(
    database: Database, fake_clickhouse: FakeClickHouse
) -> None:
    pages = {
        "": [
            ch_row("2025-03-03T14:30:00Z", "AAPL", 1),
            ch_row("2025-03-03T14:30:00Z", "MSFT", 2, rsi14="bad"),
        ],
        "AAPL": [ch_row("2025-03-03T14:30:00Z", "MSFT", 2, rsi14="bad")],
        "MSFT": [ch_row("2025-03-03T14:31:00Z", "NVDA", 3)],
        "NVDA": [],
    }

    def answer(request: Request) -> tuple[int, str]:
        # Past the data, a range after the last row (cursor symbol "") holds nothing.
        late = request.query["param_cursor_ts"] > "2025-03-03 14:31"
        symbol = request.query["param_cursor_symbol"]
        return 200, "\n".join([] if late and not symbol else pages[symbol])

    fake_clickhouse.handler = answer
    source = source_for(fake_clickhouse, database)
    try:
        first = await source.fetch(2)
        assert [s.symbol for s in first] == ["AAPL"]
        await source.commit(first)
        second = await source.fetch(2)  # starts past the bad MSFT row, not on it
        assert [s.symbol for s in second] == ["NVDA"]
        assert source.skipped == 1
        assert [r.query["param_cursor_symbol"] for r in fake_clickhouse.requests] == ["", "MSFT"]
        # A page of nothing but bad rows is followed to the next page in the same fetch.
        await source.commit(second)
        assert await source.fetch(2) == []
    finally:
        await source.aclose()


async def test_server_error_is_a_source_error_without_the_password(
    database: Database, fake_clickhouse: FakeClickHouse
) -> None:
    fake_clickhouse.handler = lambda _r: (
        500,
        "Code: 516. DB::Exception: trader: Authentication failed: password s3cret-pw",
    )
    source = source_for(fake_clickhouse, database)
    try:
        with pytest.raises(SignalSourceError, match="500") as info:
            await source.fetch(10)
        assert "s3cret-pw" not in str(info.value)
        assert "***" in str(info.value)
    finally:
        await source.aclose()


async def test_a_server_that_never_answers_times_out(
    database: Database, fake_clickhouse: FakeClickHouse
) -> None:
    fake_clickhouse.hang = True
    source = source_for(fake_clickhouse, database, timeout_seconds=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(SignalSourceError, match=r"timed out after 0.5s"):
            await source.fetch(10)
    finally:
        await source.aclose()
    assert time.monotonic() - started < 3
    assert fake_clickhouse.requests[0].query["max_execution_time"] == "1"


async def test_unreachable_server_is_a_source_error(database: Database) -> None:
    source = ClickHouseSignalSource(
        ClickHouseConfig(url="http://127.0.0.1:9", timeout_seconds=2), database.db
    )
    try:
        with pytest.raises(SignalSourceError, match="unreachable"):
            await source.fetch(1)
    finally:
        await source.aclose()


async def test_a_fresh_source_starts_at_the_lookback_not_at_the_dawn_of_time(
    database: Database, fake_clickhouse: FakeClickHouse
) -> None:
    source = source_for(fake_clickhouse, database, initial_lookback=timedelta(minutes=5))
    try:
        await source.fetch(1)
    finally:
        await source.aclose()
    sent = datetime.strptime(
        fake_clickhouse.requests[0].query["param_cursor_ts"], "%Y-%m-%d %H:%M:%S.%f"
    ).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - sent) - timedelta(minutes=5)) < timedelta(seconds=30)


def test_config_repr_hides_the_password() -> None:
    config = ClickHouseConfig(url="http://ch:8123", password="s3cret-pw")
    assert "s3cret-pw" not in repr(config)


def test_rows_younger_than_the_settle_time_wait_for_a_later_fetch(clickhouse: ChSession) -> None:
    """The cursor never moves back, so the newest rows (other symbols of that moment may still
    be on their way) are only read once they are `settle_seconds` old."""
    clickhouse.query(
        "INSERT INTO torghut.ta_signals VALUES "
        "(now64(3) + INTERVAL 1 HOUR, 1, 'LATE', 'PT1M', 0.1, 0.2, 30, 1)"
    )
    sql, params = build_signals_query(cursor=(T0, "", 0), limit=100, settle_seconds=2.0)
    out = str(clickhouse.query(sql, "JSONEachRow", params=params))
    assert "LATE" not in out and "AAPL" in out


# --- ClickHouse catch-up and TLS ----------------------------------------------------------


def _backlog(sess: ChSession, symbols: int, seconds: int) -> int:
    """`symbols` x `seconds` of 1-second signals and bars in a database of their own, every
    key written twice (the older version with other values), merges stopped; a small index
    granularity so that rows read show what a query needs, as on a big table."""
    sess.query("DROP DATABASE IF EXISTS backlog")
    sess.query("CREATE DATABASE backlog")
    sess.query(
        "CREATE TABLE backlog.ta_signals (event_ts DateTime64(3, 'UTC'), seq UInt64, "
        "symbol String, window_size String, macd Nullable(Float64), "
        "macd_signal Nullable(Float64), rsi14 Nullable(Float64), version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY (symbol, event_ts, seq) "
        "SETTINGS index_granularity = 16"
    )
    sess.query(
        "CREATE TABLE backlog.ta_microbars (event_ts DateTime64(3, 'UTC'), symbol String, "
        "c Float64, version UInt64) ENGINE = ReplacingMergeTree(version) "
        "ORDER BY (symbol, event_ts) SETTINGS index_granularity = 16"
    )
    for table in ("ta_signals", "ta_microbars"):
        sess.query(f"SYSTEM STOP MERGES backlog.{table}")
    for version in (2, 1):  # the newest first: the order parts are read in proves nothing
        ts = f"toDateTime64('2025-03-03 14:30:00', 3, 'UTC') + intDiv(number, {symbols})"
        sess.query(
            f"INSERT INTO backlog.ta_signals SELECT {ts}, number, "
            f"concat('S', toString(number % {symbols})), 'PT1S', {version}, 0, {version}, "
            f"{version} FROM numbers({symbols * seconds})"
        )
        sess.query(
            f"INSERT INTO backlog.ta_microbars SELECT {ts}, "
            f"concat('S', toString(number % {symbols})), 100 + {version}, {version} "
            f"FROM numbers({symbols * seconds})"
        )
    return symbols * seconds


async def test_catch_up_reads_each_latest_signal_once_and_a_page_reads_a_page_of_rows(
    database: Database, fake_clickhouse: FakeClickHouse, clickhouse: ChSession
) -> None:
    """After an outage, each page reads about a page of rows, not the rest of the backlog (which
    made a catch-up quadratic), and every signal comes once, at its latest version, priced
    with its bar's latest version."""
    total = _backlog(clickhouse, symbols=10, seconds=600)
    stored_rows = 4 * total  # two tables, two versions
    rows_read: list[int] = []

    def answer(request: Request) -> tuple[int, str]:
        params = {
            k.removeprefix("param_"): v for k, v in request.query.items() if k.startswith("param_")
        }
        sql = request.body.replace("FORMAT JSONEachRow", "")
        result = clickhouse.query(sql, "JSONEachRow", params=params)
        rows_read.append(int(result.storage_rows_read()))
        return 200, str(result)

    fake_clickhouse.handler = answer
    # The cursor where the outage began: just before the backlog.
    lookback = datetime.now(UTC) - datetime(2025, 3, 3, 14, 29, 59, tzinfo=UTC)
    source = source_for(fake_clickhouse, database, settle_seconds=0, initial_lookback=lookback)
    source._config = dataclasses.replace(source._config, database="backlog")
    seen: list[Signal] = []
    try:
        while page := await source.fetch(200):
            seen.extend(page)
            await source.commit(page)
    finally:
        await source.aclose()
    assert len(seen) == total
    assert len({s.seq for s in seen}) == total
    assert [signal_key(s) for s in seen] == sorted(signal_key(s) for s in seen)
    assert {(s.macd, s.rsi14, s.price) for s in seen} == {(2.0, 2.0, Decimal("102"))}
    # Each query read a small part of what is stored (before: the first pages read it all).
    assert max(rows_read) < stored_rows / 4, (max(rows_read), stored_rows)
    assert len(rows_read) < 2 * total / 200  # a few widening steps, no more


def test_clickhouse_ca_file_setting(tmp_path: Path) -> None:
    """`CLICKHOUSE_CA_FILE`: a PEM CA file is loaded at start-up; a missing or garbled one
    stops the start with a message naming the setting."""
    from torghut.config import load_settings

    ca = TLS_DIR / "ca.pem"
    settings = load_settings({"CLICKHOUSE_CA_FILE": str(ca)})
    assert settings.clickhouse_ca_file == ca
    for bad, why in ((tmp_path / "missing.pem", "cannot read"), (tmp_path, "cannot read")):
        with pytest.raises(Exception, match=rf"(?i)clickhouse_ca_file.*{why}"):
            load_settings({"CLICKHOUSE_CA_FILE": str(bad)})
    garbled = tmp_path / "garbled.pem"
    garbled.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(Exception, match=r"(?i)clickhouse_ca_file.*no PEM certificate"):
        load_settings({"CLICKHOUSE_CA_FILE": str(garbled)})


TLS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "tls"


async def test_an_https_clickhouse_signed_by_a_private_ca_is_trusted_with_its_ca_file(
    database: Database,
) -> None:
    """The server's certificate is signed by a private CA (tests/fixtures/tls): refused with
    the system's CAs, accepted with `ca_file`."""
    import ssl

    fake = FakeClickHouse(handler=lambda _r: (200, ch_row("2025-03-03T14:30:00Z", "AAPL", 1)))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(TLS_DIR / "server.pem", TLS_DIR / "server.key")
    server = await asyncio.start_server(
        lambda r, w: _serve(fake, r, w), host="127.0.0.1", port=0, ssl=tls
    )
    fake.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        trusting = source_for(fake, database, ca_file=TLS_DIR / "ca.pem")
        try:
            assert [s.symbol for s in await trusting.fetch(10)] == ["AAPL"]
        finally:
            await trusting.aclose()
        default = source_for(fake, database)
        try:
            with pytest.raises(SignalSourceError, match=r"(?i)certificate"):
                await default.fetch(10)
        finally:
            await default.aclose()
        assert len(fake.requests) == 1  # the refused one never got its query through
        # The setting reaches the service's source.
        from torghut.bootstrap import build_container
        from torghut.config import load_settings

        env = {
            "DB_DSN": database.dsn,
            "TRADING_SIGNAL_SOURCE": "clickhouse",
            "CLICKHOUSE_URL": fake.url,
            "CLICKHOUSE_CA_FILE": str(TLS_DIR / "ca.pem"),
        }
        container = await build_container(load_settings(env, None))
        try:
            assert [s.symbol for s in await container.source.fetch(10)] == ["AAPL"]
        finally:
            await container.aclose()
        assert len(fake.requests) == 2
    finally:
        server.close()
        await asyncio.sleep(0)
