"""Poison signal lines (issue 12): each line is judged alone; a line that would stop the
loop (RecursionError, a NUL PostgreSQL refuses, a number past BIGINT) is skipped, counted and
named by its line number, and every good line around it still trades, on both databases."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from torghut.config import load_settings
from torghut.replay import run_replay
from torghut.trading import session


def _buy(i: int, **changes: Any) -> dict[str, Any]:
    line = {
        "event_ts": "2026-03-02T15:00:00Z",
        "symbol": f"S{i:03d}",
        "timeframe": "1Min",
        "macd": 0.4,
        "macd_signal": 0.1,
        "rsi14": 28.0,
        "price": 100.0,
    }
    line.update(changes)
    return line


def _raw(i: int, tail: str) -> str:
    """A buy line with raw JSON text spliced in before its closing brace."""
    return json.dumps(_buy(i))[:-1] + ", " + tail + "}"


POISON: dict[str, str] = {
    "deep nesting": _raw(0, '"x": ' + "[" * 5000 + "]" * 5000),
    "deep object": _raw(0, '"x": ' + '{"a":' * 900 + "1" + "}" * 900),
    "NUL in symbol": json.dumps(_buy(0, symbol="S\u0000X")),
    "escape in symbol": json.dumps(_buy(0, symbol="S\u001b[31mX")),
    "NUL in timeframe": json.dumps(_buy(0, timeframe="1M\u0000in")),
    "NUL in payload value": json.dumps(_buy(0, note="a\u0000b")),
    "NUL in payload key": json.dumps(_buy(0, **{"k\u0000": 1})),
    "seq 2^63": json.dumps(_buy(0, seq=2**63)),
    "payload int past 64 bits": json.dumps(_buy(0, volume=2**64)),
    "5000-digit integer": _raw(0, '"volume": 1' + "0" * 5000),
    "huge price": json.dumps(_buy(0, price=1e300)),
    "infinite macd": _raw(0, '"macd_extra": 1').replace('"macd": 0.4', '"macd": 1e999'),
    "NaN rsi": json.dumps(_buy(0, rsi14=float("nan"))),
    "year 10000": json.dumps(_buy(0, event_ts="9999-12-31T23:59:59-01:00")),
    "epoch 1e300": json.dumps(_buy(0, event_ts=1e300)),
    "100 KB line": json.dumps(_buy(0, note="x" * 100_000)),
    "not an object": "[1, 2, 3]",
    "lone surrogate in symbol": json.dumps(_buy(0, symbol="S\ud800")),
    "lone surrogate in payload": json.dumps(_buy(0, note="\udfff")),
}


@pytest.mark.parametrize("name", sorted(POISON))
async def test_the_loop_survives_each_poison_line(db_dsn: str, tmp_path: Path, name: str) -> None:
    # The poison line sits between good ones, last in its batch and first of the next.
    lines = [json.dumps(_buy(i, seq=i + 1)) for i in range(4)]
    poison_at = 3  # 1-based line number of the poison
    lines.insert(poison_at - 1, POISON[name].replace('"S000"', '"S999"'))
    path = tmp_path / "signals.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings({"DB_DSN": db_dsn, "TRADING_BATCH_SIZE": "2"}, None)

    summary = await run_replay(settings, path)

    assert summary["complete"] is True
    assert summary["signals"] == 4  # every good line, none lost
    assert summary["decisions"] == 4
    assert summary["skipped_lines"] == 1
    assert [s["line"] for s in summary["skipped"]] == [poison_at]
    # One readable line, whatever the poison held.
    reason = summary["skipped"][0]["reason"]
    assert "\x00" not in reason and "\x1b" not in reason and len(reason) < 400


@pytest.mark.parametrize("when", ["2099-03-02T15:00:00Z", "1985-03-04T15:00:00Z"])
async def test_a_time_the_exchange_calendar_cannot_place_is_closed(
    db_dsn: str, tmp_path: Path, when: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A well-formed signal from a year outside the exchange calendar (past the session
    table, 1990-2060, and the library's own range) is refused `market_closed`, never traded
    and never a crash: exchange_calendars raised into the batch, which was read again and
    failed again, so one bad timestamp stopped the loop (`torghut replay` ended in a
    traceback)."""
    lines = [json.dumps(_buy(i, seq=i + 1)) for i in range(3)]
    lines.insert(1, json.dumps(_buy(9, event_ts=when, seq=9)))
    lines.insert(2, json.dumps(_buy(8, event_ts=when, seq=8)))  # the same day: warned once
    path = tmp_path / "signals.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings({"DB_DSN": db_dsn, "TRADING_CALENDAR": "XNYS"}, None)
    session._UNPLACED_DAYS.clear()  # another test's run may have warned about this day

    with caplog.at_level(logging.WARNING, logger="torghut.trading.session"):
        summary = await run_replay(settings, path)

    assert summary["complete"] is True
    assert summary["signals"] == 5
    assert summary["decisions"] == 5
    assert summary["submitted"] == 3  # every good line traded
    assert summary["rejected"] == {"market_closed": 2}
    warned = [r.getMessage() for r in caplog.records if "no XNYS session known" in r.message]
    assert len(warned) == 1 and when[:10] in warned[0], warned
