"""The fast read path of a replay (issue 16) against what it replaced, on random input.

`parse_signal_line` no longer runs `Signal.model_validate` after its own checks, the replay
index is written by chunks, and rows are read back without pydantic. The previous
implementation is kept below, verbatim (with the `limits` checks it called), as the
reference: for any line, both give the same `Signal` (same fields, same types, same repr, same
fields set) or the same `InputError` text; for any file, the same index, the same counts and
the same skipped lines in the same order."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.unit.test_input_fuzz import _lines, _scalars
from torghut.domain import Signal, as_utc
from torghut.errors import InputError
from torghut.limits import check_identifier, check_price
from torghut.trading import signals
from torghut.trading.signals import (
    _COLUMNS,
    ReplaySignalSource,
    _row_signal,
    _rows_signals,
    parse_signal_line,
    signal_from_fields,
)

# --- the reference: parse_signal_line and the limits it used, before issue 16 -------------

_INT_MAX = 2**63 - 1
_INT_MIN = -(2**63)
_DEPTH_MAX = 16
_PRICE_MIN = Decimal("0.00000001")
_PRICE_MAX = Decimal("1000000000")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_REQUIRED = ("event_ts", "symbol", "timeframe")
_NUMBERS = ("macd", "macd_signal", "rsi14")
_KNOWN = frozenset({*_REQUIRED, *_NUMBERS, "price", "seq"})
_LINE_MAX_CHARS = 64 * 1024


def _ref_check_json_value(value: Any, depth: int = 0) -> None:
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if level > _DEPTH_MAX:
            raise ValueError(f"nested deeper than {_DEPTH_MAX} levels")
        if isinstance(item, str):
            _ref_check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("not a finite number")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not _INT_MIN <= item <= _INT_MAX:
                raise ValueError("integer out of the 64-bit range")
        elif isinstance(item, dict):
            for key, child in item.items():
                _ref_check_text(str(key), "a key")
                stack.append((child, level + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, level + 1) for child in item)


def _ref_check_text(text: str, what: str = "text") -> None:
    if "\x00" in text:
        raise ValueError(f"{what} holds a NUL character")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode") from None


def _ref_check_identifier(value: Any, longest: int) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if not value.strip():
        raise ValueError("must not be blank")
    if len(value) > longest:
        raise ValueError(f"at most {longest} characters")
    _ref_check_text(value, "it")
    if _CONTROL.search(value):
        raise ValueError("holds a control character")
    if not value.isprintable():
        raise ValueError("holds a character that is not printable")
    return value


def _ref_check_price(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("expected a number")
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("expected a number") from None
    if not price.is_finite() or price <= 0:
        raise ValueError("expected a positive number")
    if not _PRICE_MIN <= price <= _PRICE_MAX:
        raise ValueError(f"expected a price between {_PRICE_MIN} and {_PRICE_MAX}")
    return price


def _ref_parse_ts(value: Any) -> datetime:
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 datetime or epoch seconds")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        return as_utc(datetime.fromisoformat(text))
    raise ValueError("expected an ISO 8601 datetime or epoch seconds")


def _ref_parse_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _ref_parse_seq(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a non-negative integer")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise ValueError("expected a non-negative integer")
    if value > _INT_MAX:
        raise ValueError(f"at most {_INT_MAX} (a 64-bit column)")
    return value


def _ref_decode_line(line: str, where: str) -> dict[str, Any]:
    if len(line) > _LINE_MAX_CHARS:
        raise InputError(f"{where}: longer than {_LINE_MAX_CHARS} characters")
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deep") from None
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object")
    return data


def ref_parse_signal_line(line: str, lineno: int) -> Signal:
    where = f"line {lineno}"
    data = _ref_decode_line(line, where)
    for name in _REQUIRED:
        if data.get(name) is None:
            raise InputError(f"{where}: field {name!r} is required")
    fields: dict[str, Any] = {}
    name = "event_ts"
    try:
        fields["event_ts"] = _ref_parse_ts(data["event_ts"])
        name = "symbol"
        fields["symbol"] = _ref_check_identifier(data["symbol"], 32)
        name = "timeframe"
        fields["timeframe"] = _ref_check_identifier(data["timeframe"], 16)
        for name in _NUMBERS:
            fields[name] = _ref_parse_float(data.get(name))
        name = "price"
        price = data.get("price")
        fields["price"] = None if price is None else _ref_check_price(price)
        name = "seq"
        fields["seq"] = _ref_parse_seq(data["seq"]) if data.get("seq") is not None else lineno
        payload = {k: v for k, v in data.items() if k not in _KNOWN}
        name = "payload"
        _ref_check_json_value(payload)
    except (ValueError, OverflowError, OSError) as exc:
        raise InputError(f"{where}: field {name!r}: {exc}") from None
    try:
        return Signal.model_validate({**fields, "payload": payload})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"]) or "signal"
        raise InputError(f"{where}: field {name!r}: {first['msg']}") from None


def ref_build_index(source: ReplaySignalSource) -> sqlite3.Connection:
    """The index as it was built before: one INSERT per line, each skip reported at once."""
    index = sqlite3.connect("", check_same_thread=False, isolation_level=None)
    index.execute(
        "CREATE TABLE signals (ts INTEGER NOT NULL, symbol TEXT NOT NULL,"
        " seq INTEGER NOT NULL, line INTEGER NOT NULL, timeframe TEXT NOT NULL,"
        " macd REAL, macd_signal REAL, rsi14 REAL, price TEXT, payload TEXT,"
        " PRIMARY KEY (ts, symbol, seq)) WITHOUT ROWID"
    )
    source.skipped, source.skipped_lines, source.total = 0, [], 0
    index.execute("BEGIN")
    for lineno, raw in source._lines():
        if raw is None:
            source._skip(lineno, f"longer than {_LINE_MAX_CHARS} characters")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            source._skip(lineno, "not UTF-8")
            continue
        if not text.strip():
            continue
        try:
            signal = ref_parse_signal_line(text, lineno)
        except InputError as exc:
            source._skip(lineno, str(exc).removeprefix(f"line {lineno}: "))
            continue
        ts, symbol, seq = signal.event_ts, signal.symbol, signal.seq
        delta = as_utc(ts) - datetime(1970, 1, 1, tzinfo=UTC)
        key = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        inserted = index.execute(
            "INSERT INTO signals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                key,
                symbol,
                seq,
                lineno,
                signal.timeframe,
                signal.macd,
                signal.macd_signal,
                signal.rsi14,
                None if signal.price is None else str(signal.price),
                json.dumps(signal.payload) if signal.payload else None,
            ),
        ).rowcount
        if inserted:
            source.total += 1
        else:
            source._skip(lineno, f"duplicate (event_ts, symbol, seq) {(ts, symbol, seq)}")
    index.execute("COMMIT")
    return index


# --- comparisons ---------------------------------------------------------------------------


def _exactly(signal: Signal) -> tuple[Any, ...]:
    """Everything observable of a signal: values with their types and reprs, in field
    order, what pydantic thinks was set, and its JSON."""
    return (
        [(k, type(v), repr(v)) for k, v in signal.__dict__.items()],
        signal.__pydantic_fields_set__,
        signal.__pydantic_extra__,
        signal.__pydantic_private__,
        repr(signal),
        signal.model_dump_json(),
    )


def _outcome(parse: Any, line: str, lineno: int) -> tuple[str, Any]:
    try:
        return "signal", _exactly(parse(line, lineno))
    except InputError as exc:
        return "error", str(exc)


_VALUE = st.one_of(
    st.none(), st.floats(), st.integers(-(10**20), 10**20), st.decimals().map(str), _scalars
)
_likely = st.fixed_dictionaries(
    {
        "event_ts": st.one_of(
            st.integers(-(10**13), 10**13),
            st.floats(-1e13, 1e13),
            st.datetimes(timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat()),
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
        ),
        "symbol": st.one_of(st.text(max_size=40), st.text("abcXYZ .-", max_size=34)),
        "timeframe": st.one_of(st.text(max_size=20), st.sampled_from(["1Min", " 5Min", "1Day"])),
    },
    optional={
        "macd": _VALUE,
        "macd_signal": _VALUE,
        "rsi14": _VALUE,
        "price": st.one_of(_VALUE, st.floats(1e-9, 2e9)),
        "seq": st.one_of(st.integers(-5, 2**64), _scalars),
        "volume": _VALUE,
        "note": st.text(max_size=5),
    },
).map(lambda d: json.dumps(d, allow_nan=True))


_NUMBER = st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-(10**6), 10**6))
_mostly_valid = st.fixed_dictionaries(
    {
        "event_ts": st.one_of(
            st.integers(0, 4_000_000_000_000),
            st.floats(0, 4e9),
            st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])).map(
                lambda d: d.isoformat()
            ),
        ),
        "symbol": st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=33),
        "timeframe": st.text(st.characters(max_codepoint=0x2FF), min_size=1, max_size=17),
        "macd": _NUMBER,
        "macd_signal": _NUMBER,
        "rsi14": _NUMBER,
    },
    optional={
        "price": st.one_of(
            st.floats(0, 2e9), st.integers(0, 2 * 10**9), st.decimals(0, 10**10).map(str)
        ),
        "seq": st.one_of(st.integers(0, 2**63), st.integers(0, 10**6).map(str)),
        "volume": st.one_of(st.integers(0, 2**63), st.floats(allow_nan=False)),
        "tags": st.lists(st.text(max_size=3), max_size=2),
    },
).map(lambda d: json.dumps(d, allow_nan=True))


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(_lines, _likely, _mostly_valid, _mostly_valid), st.integers(0, 2**40))
@example('{"event_ts": 1741012200, "symbol": " aapl ", "timeframe": "1Min", "price": 100}', 3)
@example('{"event_ts": "2025-03-03T14:30:00+01:00", "symbol": "ß", "timeframe": "1Min"}', 1)
@example('{"event_ts": 1.5e12, "symbol": "A", "timeframe": "1Min", "seq": "7"}', 1)
@example('{"event_ts": 0, "symbol": "A", "timeframe": "1Min", "macd": 1e999}', 1)
@example('{"event_ts": 0, "symbol": "A", "timeframe": "1Min", "rsi14": 10' + "0" * 400 + "}", 1)
@example('{"event_ts": 0, "symbol": "A", "timeframe": "1Min", "price": "1E+2"}', 1)
def test_a_line_parses_as_it_did_before(line: str, lineno: int) -> None:
    assert _outcome(parse_signal_line, line, lineno) == _outcome(
        ref_parse_signal_line, line, lineno
    )


def test_signal_from_fields_builds_what_validation_builds() -> None:
    fields = (
        datetime(2025, 3, 3, 14, 30, tzinfo=UTC),
        "AAPL",
        "1Min",
        0.5,
        None,
        30.0,
        Decimal("100.10"),
        7,
        {"volume": 3},
    )
    built = signal_from_fields(fields)
    validated = Signal.model_validate(dict(zip(Signal.model_fields, fields, strict=True)))
    assert _exactly(built) == _exactly(validated)
    assert built == validated
    assert tuple(Signal.model_fields) == (
        "event_ts",
        "symbol",
        "timeframe",
        "macd",
        "macd_signal",
        "rsi14",
        "price",
        "seq",
        "payload",
    )


# Identifiers: printable ASCII takes a shortcut; whatever the value, the answer is the same.
@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.text(st.characters(max_codepoint=0x7F), max_size=40),
        st.text(" \t\x7f\x00aZ", max_size=4),
        _scalars,
    ),
    st.sampled_from([16, 32, 128]),
)
def test_check_identifier_answers_as_before(value: Any, longest: int) -> None:
    def answer(check: Any) -> tuple[str, Any]:
        try:
            return "ok", check(value, longest)
        except ValueError as exc:
            return "error", str(exc)

    assert answer(check_identifier) == answer(_ref_check_identifier)


# --- the index -------------------------------------------------------------------------------

_good = st.builds(
    lambda minute, symbol, seq, extra: json.dumps(
        {
            "event_ts": 1_741_012_200 + 60 * minute,
            "symbol": symbol,
            "timeframe": "1Min",
            "macd": 0.1,
            "macd_signal": 0.2,
            "rsi14": 50.5,
            "price": 100.25,
            **({"seq": seq} if seq is not None else {}),
            **extra,
        }
    ),
    st.integers(0, 3),
    st.sampled_from(["AAPL", "msft", "Q1"]),
    st.one_of(st.none(), st.integers(0, 3)),
    st.one_of(st.just({}), st.fixed_dictionaries({"v": st.integers(0, 9)})),
)
_file_lines = st.lists(
    st.one_of(_good, _good, _good, _lines, st.just(""), st.just("x" * 70_000)), max_size=30
)


def _index_state(source: ReplaySignalSource, index: sqlite3.Connection) -> tuple[Any, ...]:
    rows = index.execute(f"SELECT line, {_COLUMNS} FROM signals ORDER BY ts, symbol, seq")
    return (source.total, source.skipped, list(source.skipped_lines), rows.fetchall())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(_file_lines, st.sampled_from([1, 2, 3, 1024]))
def test_a_file_indexes_as_it_did_before(
    tmp_path_factory: Any, lines: list[str], chunk: int
) -> None:
    """Same rows, same counts, the same skipped lines in the same order (duplicates among
    them), whatever the chunk size."""
    path: Path = tmp_path_factory.mktemp("index") / "signals.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    before = ReplaySignalSource(path, db=None)  # type: ignore[arg-type]  # no cursor needed
    after = ReplaySignalSource(path, db=None)  # type: ignore[arg-type]
    old = ref_build_index(before)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signals, "_INDEX_CHUNK", chunk)
        new = after._build_index()
    try:
        assert _index_state(after, new) == _index_state(before, old)
        rows = new.execute(f"SELECT line, {_COLUMNS} FROM signals ORDER BY ts, symbol, seq")
        lines, columns = [], []
        for row in rows:
            lines.append(row[0])
            columns.append(row[1:])
        read = _rows_signals(columns)
        assert [_exactly(s) for s in read] == [_exactly(_row_signal(c)) for c in columns]
        for lineno, signal in zip(lines, read, strict=True):
            text = path.read_bytes().split(b"\n")[lineno - 1].decode()
            assert _exactly(signal) == _exactly(ref_parse_signal_line(text, lineno))
    finally:
        old.close()
        new.close()


def test_duplicates_across_chunks_are_named_in_line_order(tmp_path: Path) -> None:
    def line(symbol: str, seq: int | None = None) -> str:
        data: dict[str, Any] = {"event_ts": 0, "symbol": symbol, "timeframe": "1Min"}
        if seq is not None:
            data["seq"] = seq
        return json.dumps(data)

    path = tmp_path / "dups.jsonl"
    path.write_text(
        "\n".join([line("A", 1), "{bad", line("B", 1), line("A", 1), "[]", line("B", 1), line("C")])
    )
    source = ReplaySignalSource(path, db=None)  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signals, "_INDEX_CHUNK", 2)
        index = source._build_index()
    index.close()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (source.total, source.skipped) == (3, 4)
    assert source.skipped_lines == [
        (2, "not valid JSON (Expecting property name enclosed in double quotes)"),
        (4, f"duplicate (event_ts, symbol, seq) {(epoch, 'A', 1)}"),
        (5, "expected a JSON object"),
        (6, f"duplicate (event_ts, symbol, seq) {(epoch + timedelta(0), 'B', 1)}"),
    ]


# Prices: floats and ints inside the band take a shortcut; whatever the value, the same answer.
@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.floats(),
        st.floats(0, 2e9),
        st.floats(0, 1e-6),
        st.integers(-5, 2 * 10**9),
        st.sampled_from(
            [1e-8, 1.0000000000000002e-08, 9.999999999999999e-09, 1e9, 999999999.9999999, 1]
        ),
        st.sampled_from([10**9, 10**9 + 1, 0, True, False, "1e-8", "100", Decimal("1E+2")]),
        _scalars,
    )
)
def test_check_price_answers_as_before(value: Any) -> None:
    def answer(check: Any) -> tuple[str, str]:
        try:
            return "ok", repr(check(value))
        except ValueError as exc:
            return "error", str(exc)

    assert answer(check_price) == answer(_ref_check_price)
