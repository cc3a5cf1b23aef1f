"""Hypothesis over the two files an operator or a feed hands us (issue 12): signal lines and
decision files. Whatever they hold, the parser answers with a value the rest of the service can
carry, or with `InputError` naming where; never another exception, never a stored value
PostgreSQL would refuse (NUL, a lone surrogate, an integer past BIGINT, deep nesting)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torghut.cli import _one_line, parse_decision
from torghut.domain import Signal
from torghut.errors import InputError
from torghut.limits import DEPTH_MAX, INT_MAX, check_json_value
from torghut.trading.signals import (
    _COLUMNS,
    ReplaySignalSource,
    _row_signal,
    parse_signal_line,
)

# Values an adversarial feed would try: huge and tiny numbers, NaN spelled out, nesting,
# control characters, lone surrogates, long strings.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**70),
    st.floats(),
    st.decimals(allow_nan=True).map(str),
    st.text(),
    st.text(alphabet=st.characters(codec=None), max_size=8),
    st.sampled_from(["\x00", "\x1b[31m", "\ud800", "NaN", "1e999", "-0", "", " "]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_ts = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**16),
    st.floats(),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "2026-03-02",
            "2026-03-02T15:00:00Z",
        ]
    ),
    _scalars,
)
_signal_like = st.fixed_dictionaries(
    {"event_ts": _ts, "symbol": _scalars, "timeframe": _scalars},
    optional={
        "macd": _scalars,
        "macd_signal": _scalars,
        "rsi14": _scalars,
        "price": _scalars,
        "seq": st.one_of(st.integers(), _scalars),
        "extra": _json,
    },
)
_lines = st.one_of(
    _signal_like.map(lambda d: json.dumps(d, allow_nan=True)),
    _json.map(lambda v: json.dumps(v, allow_nan=True)),
    st.text(max_size=200),
    st.integers(1, 3000).map(lambda n: '{"x":' + "[" * n + "]" * n + "}"),
)


def _carried(signal: Signal) -> None:
    """What every store downstream needs of a parsed signal."""
    for text in (signal.symbol, signal.timeframe):
        assert text.strip() and text.isprintable(), text
        text.encode("utf-8")
    assert 0 <= signal.seq <= INT_MAX
    check_json_value(signal.payload)
    assert Signal.model_validate_json(signal.model_dump_json()) == signal


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(_lines)
def test_a_signal_line_parses_to_something_storable_or_an_input_error(line: str) -> None:
    try:
        signal = parse_signal_line(line, 7)
    except InputError as exc:
        message = str(exc)
        assert message.startswith("line 7: ")
        assert "\x00" not in message and len(message) < 1000
        return
    _carried(signal)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.one_of(_lines, st.binary(max_size=40).map(lambda b: b.decode("latin-1"))), max_size=8
    )
)
def test_a_signal_file_indexes_whatever_it_holds(tmp_path_factory: Any, lines: list[str]) -> None:
    """The replay index takes any file: each line is a signal read back whole, or skipped and
    counted; nothing raises."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "signals.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    source = ReplaySignalSource(path, db=None)  # type: ignore[arg-type]  # no cursor needed
    index = source._build_index()
    try:
        rows = index.execute(
            f"SELECT line, {_COLUMNS} FROM signals ORDER BY ts, symbol, seq"
        ).fetchall()
        assert len(rows) == source.total
        raw_lines = path.read_bytes().split(b"\n")
        blank = sum(1 for text in raw_lines if not text.decode("utf-8", "replace").strip())
        assert source.total + source.skipped + blank == len(raw_lines)
        for lineno, *columns in rows:
            signal = _row_signal(tuple(columns))
            # Read back exactly as the line parsed, then as every store needs it.
            assert signal == parse_signal_line(raw_lines[lineno - 1].decode(), lineno)
            _carried(signal)
    finally:
        index.close()


_DECISION = {
    "strategy_id": "macd-rsi-default",
    "symbol": "AAPL",
    "action": "buy",
    "qty": 5,
    "event_ts": "2026-02-03T15:30:00Z",
    "timeframe": "1Min",
    "params": {"price": 100.98},
}
_decision_like = st.fixed_dictionaries(
    {},
    optional={k: st.one_of(st.just(v), _scalars, _json) for k, v in _DECISION.items()}
    | {
        "rationale": st.one_of(st.text(), st.just("x" * 5000)),
        "limit_price": _scalars,
        "order_type": st.sampled_from(["market", "limit", "stop", "bogus"]),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        _decision_like.map(lambda d: json.dumps(d, allow_nan=True)),
        _json.map(lambda v: json.dumps(v, allow_nan=True)),
        st.text(max_size=100),
    )
)
def test_a_decision_file_is_a_reviewable_decision_or_one_input_error(raw: str) -> None:
    try:
        decision = parse_decision(raw, max_shares=Decimal(10_000))
    except InputError as exc:
        line = _one_line(f"torghut: {exc}")
        assert line.isprintable() and "\n" not in line and len(line) < 2000
        return
    assert decision.qty.is_finite() and 0 < decision.qty <= 10_000
    assert len(decision.rationale or "") <= 4000
    assert decision.symbol.isprintable()
    check_json_value(decision.params)


def test_the_good_decision_passes() -> None:
    assert parse_decision(json.dumps(_DECISION), max_shares=Decimal(10_000)).symbol == "AAPL"


@pytest.mark.parametrize("depth", [DEPTH_MAX + 1, 5000])
def test_deep_decisions_are_refused(depth: int) -> None:
    raw = '{"params": {"a": ' + "[" * depth + "]" * depth + "}}"
    with pytest.raises(InputError, match="nested"):
        parse_decision(raw, max_shares=Decimal(10_000))
