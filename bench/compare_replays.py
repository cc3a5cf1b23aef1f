"""Old code against new code over the whole replay: the same randomized signal files and
settings, each replay on a fresh database, and a canonical view of everything the replay left
compared row by row (issue 16, "results identical before and after").

    python bench/compare_replays.py --base e8053e4                 # 20 seeds, both databases
    python bench/compare_replays.py --base HEAD --seeds 5 --db sqlite
    python bench/compare_replays.py --base HEAD --new /tmp/changed/src --seeds 3
    python bench/compare_replays.py --base /some/other/src          # a src folder, not a ref

`--base` is a git ref (its `src/` is exported with `git archive` into a temporary folder) or a
folder holding the `torghut` package; `--new` is the `src/` of the code under test (default:
this checkout's). Each replay runs `torghut replay` in its own process (this interpreter, the
shared venv) with PYTHONPATH at one side's `src/`, in an empty folder (no `.env`) and with an
environment holding only what the seed sets; with the review gate on, a dev gateway of the same
side's code (`torghut dev-gateway`, rule reviewer, no faults) answers.

Each seed draws its file and settings: 3 to 40 symbols, random-walk prices with bad ticks
(x100, /100, zero, negative, null, missing, text, out of range) and level shifts, buy, sell and
boundary indicators, duplicate, out-of-order and malformed lines, gaps in time (past the close,
over the night), several signals of one symbol in one minute, every timestamp spelling the
reader accepts; batch size 1, 7, 50 or 500, cooldown 0 or 120 s, and other limits (cash,
caps, shorts, universe, price band, share cap, calendar, a strategy catalog); sometimes a
second replay on the same database (a restart, the file grown or unchanged). About one seed in
four (`--llm mix`) turns the review on, shadow or enforcing.

What is compared (old against new, on the same kind of database): every row of every table,
with the values that are not results left out: uuids (a review or an execution points at its
decision by `decision_hash` instead), the simulated broker's order ids, latencies, and any
timestamp taken from the wall clock (a datetime, or an ISO string or epoch number inside JSON,
that falls within the run; signal times are years before it) is replaced by a marker, so that
"set" still differs from "unset". Numbers are compared by value, JSON by content (key order
aside), SQLite datetimes as stored text. Rows are sorted; the replay's JSON summary (without
`duration_ms`) and exit status are compared too. A difference in the schema (Alembic version,
columns) is printed as a note and does not fail the run. Two runs of the same code (e8053e4)
differ in a few places, from timing or row order alone; those do not fail the run either:
the summary's equity-curve peak and drawdown are printed as a note when they differ
(`_ORDER_DEPENDENT`), and review rows leave out what their request's timing decides
(`REVIEW_TIMING_COLUMNS`, `SHADOW_CONTEXT_COLUMNS`; `--strict-reviews` compares them whole).

A differing seed prints how many differences each table has, then the first ones (tables
that cause the others first: decisions before orders before cash), e.g.
`trade_decisions[["th-..."]].status: OLD "filled" NEW "rejected"`. `--keep DIR` keeps each
seed's signal file and SQLite databases to look into. About 10 s per seed and database on the
2-core machine (20 seeds on both databases: 6.5 minutes, with other work running).

Exit 0 when every seed gives identical results on every database, 1 with the first differences
otherwise, 2 on a usage error. PostgreSQL (`--pg-url`, default TORGHUT_TEST_DATABASE_URL or
postgresql://postgres@127.0.0.1:5432/test) gets a freshly created database per replay, dropped
afterwards; when it does not answer, its half is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
NEW_YORK = ZoneInfo("America/New_York")
REPLAY_TIMEOUT_SECONDS = 900.0

# Columns that hold no result: wall-clock stamps, ids drawn at random, timings. They are kept
# as "set"/"unset" so that a row that should carry one still differs from one that does not.
VOLATILE_COLUMNS = frozenset(
    {
        "created_at",
        "updated_at",
        "executed_at",
        "last_polled_at",
        "quarantined_at",
        "since",
        "broker_order_id",
        "latency_ms",
        "ttft_ms",
    }
)
# Keys inside JSON values that hold no result (the same kinds as above).
VOLATILE_JSON_KEYS = frozenset(
    {
        "created_at",
        "updated_at",
        "submitted_at",
        "filled_at",
        "canceled_at",
        "sent_at",
        "broker_order_id",
        "latency_ms",
        "ttft_ms",
    }
)
# The order tables are compared and printed in: causes before consequences.
TABLE_ORDER = (
    "signal_cursors",
    "strategies",
    "trade_decisions",
    "llm_decision_reviews",
    "executions",
    "sim_orders",
    "sim_accounts",
    "sim_positions",
    "price_references",
)
# How a table's rows are told apart in a diff (whole rows otherwise).
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "trade_decisions": ("decision_hash",),
    "executions": ("client_order_id",),
    "sim_orders": ("client_order_id",),
    "llm_decision_reviews": ("trade_decision_id",),
    "sim_positions": ("symbol",),
    "price_references": ("symbol",),
    "sim_accounts": ("id",),
    "signal_cursors": ("source",),
    "strategies": ("id",),
    "trading_halt": ("id",),
}
SCHEMA_TABLES = frozenset({"alembic_version"})
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
# The dev gateway's rate-limit block (a Jangar quirk the client strips) says when the quota
# resets, from the wall clock: "resets Dec 5, 2026, 5:23 AM".
_RESETS = re.compile(r"resets [A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2} [AP]M")
# A review's request is built from the book, the bars held in memory and the symbol's recent
# decisions read from the database when the review starts. Two runs of the same code (seen at
# e8053e4) differ there, from timing alone:
# - enforcing: an earlier decision of the same batch is read as `undecided` or as final
#   (`recent_decisions[].status`, `.reason`), and the prompt's length with it: those are
#   masked, `tokens_prompt` is left out;
# - shadow: the review runs beside the order and may end batches later, so the whole context
#   (portfolio prices, bars, recent decisions) and so the verdict depend on timing: what
#   follows from the context is left out. The number of shadow rows, their decisions, mode and
#   effective action are still compared, and so is all they must not change (decisions,
#   orders, cash, positions).
# `--strict-reviews` compares review rows whole, masking nothing.
REVIEW_TIMING_COLUMNS = frozenset({"tokens_prompt"})
# The summary's equity curve (`results`): at e8053e4 fills and marks of one signal time are
# read with no ORDER BY and the curve takes a point after each, so its peak and drawdown
# follow the order the database returns rows in (two PostgreSQL runs of the same code differ
# on about one seed in ten). A difference there is printed as a note, not a failure; the
# rows it is computed from are compared in full.
_ORDER_DEPENDENT = re.compile(r"^summary\.results\.(peak_equity|max_drawdown|max_drawdown_pct)$")
REVIEW_TIMING_KEYS = frozenset({"status", "reason"})  # of each `recent_decisions` entry
SHADOW_CONTEXT_COLUMNS = frozenset(
    {
        "input_json",
        "real_request_json",
        "response_json",
        "tokens_prompt",
        "tokens_completion",
        "llm_verdict",
        "verdict",
        "reason",
        "confidence",
        "adjusted_qty",
        "adjusted_order_type",
        "rationale",
        "risk_flags",
    }
)


# --------------------------------------------------------------------------------------------
# Scenarios: a seed's signal files and settings


@dataclass
class Scenario:
    seed: int
    env: dict[str, str]  # the replay's settings, besides DB_DSN (and JANGAR_BASE_URL)
    files: list[bytes]  # the signal file's content for each replay on one database, in order
    catalog: str | None = None  # a strategy catalog (YAML), written beside the signal file
    gateway_args: list[str] | None = None  # `torghut dev-gateway` options; None: no review
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        keys = ("TRADING_BATCH_SIZE", "TRADING_COOLDOWN_SECONDS")
        parts = [f"{k.removeprefix('TRADING_').lower()}={self.env[k]}" for k in keys]
        lines = self.files[-1].count(b"\n")
        parts.append(f"{lines} lines")
        if len(self.files) > 1:
            parts.append(f"{len(self.files)} replays")
        if self.gateway_args is not None:
            mode = "shadow" if self.env.get("LLM_SHADOW_MODE") == "true" else "enforcing"
            parts.append(f"review {mode}")
        parts.extend(self.notes)
        return ", ".join(parts)


def _symbols(rng: random.Random, n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    names: set[str] = set()
    while len(names) < n:
        name = "".join(rng.choice(letters) for _ in range(rng.randint(1, 5)))
        if rng.random() < 0.05:
            name += rng.choice([".B", "-W", "2"])
        names.add(name)
    return sorted(names)


def _session_open(rng: random.Random) -> datetime:
    """A weekday's 09:30 in New York (a holiday now and then: the calendar says closed)."""
    day = date(2024, 1, 2) + timedelta(days=rng.randint(0, 700))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    local = datetime(day.year, day.month, day.day, 9, 30, tzinfo=NEW_YORK)
    if rng.random() < 0.15:
        local -= timedelta(minutes=rng.randint(1, 90))  # starts before the open
    return local.astimezone(UTC)


def _spell_ts(rng: random.Random, ts: datetime) -> Any:
    """Every spelling of a moment the signal reader accepts."""
    roll = rng.random()
    if roll < 0.55:
        return ts.strftime("%Y-%m-%dT%H:%M:%S") + (
            f".{ts.microsecond:06d}Z" if ts.microsecond else "Z"
        )
    if roll < 0.65:
        return ts.isoformat()
    if roll < 0.72:
        return ts.astimezone(NEW_YORK).isoformat()
    if roll < 0.80:
        return int(ts.timestamp()) if not ts.microsecond else ts.timestamp()
    if roll < 0.87:
        return int(ts.timestamp() * 1000)
    if roll < 0.93:
        return ts.replace(tzinfo=None).isoformat()  # naive: read as UTC
    return ts.strftime("%Y-%m-%d %H:%M:%S+00:00")


def _indicators(rng: random.Random, regime: str) -> tuple[Any, Any, Any]:
    """(macd, macd_signal, rsi14) for a regime; now and then a boundary or a missing value."""
    base = rng.uniform(-2.0, 2.0)
    gap = abs(rng.gauss(0, 0.3)) + 1e-4
    roll = rng.random()
    if roll < 0.02:
        return base, base, rng.choice([35.0, 65.0, 50.0])  # macd on its signal: no rule fires
    if roll < 0.04:
        return (None, base, 30.0) if rng.random() < 0.5 else (base + gap, base, None)
    if regime == "buy":
        rsi = 35.0 if roll < 0.07 else rng.uniform(1.0, 35.0)
        return round(base + gap, 4), round(base, 4), round(rsi, 2)
    if regime == "sell":
        rsi = 65.0 if roll < 0.07 else rng.uniform(65.0, 99.0)
        return round(base - gap, 4), round(base, 4), round(rsi, 2)
    return round(base, 4), round(base + rng.uniform(-0.5, 0.5), 4), round(rng.uniform(30, 70), 2)


def _bad_price(rng: random.Random, price: float) -> tuple[bool, Any]:
    """(keep the key, value) of a bad tick."""
    kind = rng.randrange(10)
    values: list[Any] = [
        round(price * 100, 2),
        round(price / 100, 4),
        0,
        -round(price, 2),
        None,
        f"{price:.2f}",
        "n/a",
        2e9,
        1e-9,
    ]
    if kind == 9:
        return False, None  # the key is missing
    return True, values[kind]


def _signal_lines(rng: random.Random, max_lines: int) -> tuple[list[bytes], list[str], list[str]]:
    """(the lines of a file, notes on what it holds, the symbols it trades)."""
    n_symbols = rng.randint(3, 40)
    symbols = _symbols(rng, n_symbols)
    explicit_seq = {s for s in symbols if rng.random() < 0.3}
    fire = rng.uniform(0.05, 0.6)  # share of a symbol's minutes in a buy or sell regime
    prices = {s: math.exp(rng.uniform(0.0, 7.0)) for s in symbols}
    vols = {s: rng.uniform(0.001, 0.02) for s in symbols}
    regimes = dict.fromkeys(symbols, "flat")
    seqs = dict.fromkeys(symbols, 0)
    minutes = max(4, max_lines // n_symbols)
    ts = _session_open(rng)
    records: list[bytes] = []
    notes: list[str] = [f"{n_symbols} symbols"]
    for _minute in range(minutes):
        roll = rng.random()
        if roll < 0.02:
            ts += timedelta(minutes=rng.randint(10, 400))  # a gap: maybe past the close
        elif roll < 0.025:
            ts += timedelta(days=1, minutes=rng.randint(0, 60))  # overnight
        else:
            ts += timedelta(minutes=1)
        for symbol in symbols:
            if rng.random() < 0.1:
                continue  # this symbol has no signal this minute
            if rng.random() < 0.15:
                regimes[symbol] = rng.choices(
                    ["buy", "sell", "flat"], [fire / 2, fire / 2, 1 - fire]
                )[0]
            prices[symbol] *= math.exp(rng.gauss(0, vols[symbol]))
            if rng.random() < 0.003:
                prices[symbol] *= rng.choice([0.7, 1.3, 3.0])  # a level shift that stays
            count = 1 if rng.random() > 0.05 else rng.randint(2, 3)
            for k in range(count):
                moment = ts + timedelta(seconds=rng.randint(0, 59) if k else 0)
                if k and rng.random() < 0.3:
                    moment += timedelta(microseconds=rng.randint(1, 999_999))
                records.append(_record(rng, symbol, moment, regimes[symbol], prices[symbol], seqs))
                if symbol in explicit_seq:
                    seqs[symbol] += 1
                    records[-1] = _with_seq(rng, records[-1], seqs[symbol])
    lines = _mess_up(rng, records, notes)
    return lines, notes, symbols


def _record(
    rng: random.Random, symbol: str, moment: datetime, regime: str, price: float, seqs: Any
) -> bytes:
    macd, macd_signal, rsi = _indicators(rng, regime)
    spelled = symbol
    if rng.random() < 0.03:
        spelled = rng.choice([symbol.lower(), f" {symbol} "])  # upper-cased and stripped
    data: dict[str, Any] = {
        "event_ts": _spell_ts(rng, moment),
        "symbol": spelled,
        "timeframe": "1Min" if rng.random() > 0.05 else "5Min",
    }
    for key, value in (("macd", macd), ("macd_signal", macd_signal), ("rsi14", rsi)):
        if value is not None or rng.random() < 0.5:
            data[key] = value
    tick = round(price, 2) if price >= 1 else round(price, 6)
    if rng.random() < 0.01:
        keep, value = _bad_price(rng, price)
        if keep:
            data["price"] = value
    else:
        data["price"] = tick if rng.random() > 0.05 else str(tick)
    if rng.random() < 0.03:
        data["source"] = rng.choice(["ta", "replay", "x"])
        data["extra"] = {"n": rng.randint(0, 9), "tags": ["a", "b"]}
    if rng.random() < 0.005:
        data["rsi14"] = float("nan")  # written as NaN: read, then refused as not finite
    separators = (",", ":") if rng.random() < 0.7 else (", ", ": ")
    return json.dumps(data, separators=separators, allow_nan=True).encode()


def _with_seq(rng: random.Random, line: bytes, seq: int) -> bytes:
    data = json.loads(line)
    data["seq"] = str(seq) if rng.random() < 0.1 else seq
    return json.dumps(data, separators=(",", ":"), allow_nan=True).encode()


_GARBAGE: tuple[bytes, ...] = (
    b"not json",
    b"{",
    b"[]",
    b"{}",
    b'"a string"',
    b'{"symbol":"AAA","timeframe":"1Min"}',
    b'{"event_ts":"2025-01-02T15:00:00Z","timeframe":"1Min","macd":1}',
    b'{"event_ts":"2025-01-02T15:00:00Z","symbol":"AAA"}',
    b'{"event_ts":"yesterday","symbol":"AAA","timeframe":"1Min"}',
    b'{"event_ts":"2025-01-02T15:00:00Z","symbol":"A\\u0000B","timeframe":"1Min"}',
    b'{"event_ts":"2025-01-02T15:00:00Z","symbol":"AAA","timeframe":"1Min","seq":-1}',
    b'{"event_ts":"2025-01-02T15:00:00Z","symbol":"AAA","timeframe":"1Min","macd":"x"}',
    b'{"event_ts":true,"symbol":"AAA","timeframe":"1Min"}',
    b"\xff\xfe not utf-8",
    b"   ",
    b"",
)


def _mess_up(rng: random.Random, records: list[bytes], notes: list[str]) -> list[bytes]:
    """Duplicates, out-of-order and malformed lines, in place of a clean file."""
    lines = list(records)
    for _ in range(int(len(lines) * rng.uniform(0.0, 0.05))):
        at = rng.randrange(len(lines))
        lines.insert(rng.randrange(at, len(lines) + 1), lines[at])  # an exact duplicate
    window = rng.choice([0, 2, 5, 30])
    if window:
        for start in range(0, len(lines), window):
            chunk = lines[start : start + window]
            rng.shuffle(chunk)
            lines[start : start + window] = chunk
    for _ in range(int(len(lines) * rng.uniform(0.0, 0.02))):
        lines.insert(rng.randrange(len(lines) + 1), lines.pop(rng.randrange(len(lines))))
    for _ in range(int(len(lines) * rng.uniform(0.0, 0.02)) + 1):
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(_GARBAGE))
    if rng.random() < 0.05:
        lines.insert(rng.randrange(len(lines) + 1), b'{"pad":"' + b"x" * 70_000 + b'"}')
        notes.append("a 70 kB line")
    return lines


def _catalog(rng: random.Random) -> str:
    """A strategy catalog of 1 to 4 strategies over the knobs the rule has."""
    entries = []
    for i in range(rng.randint(1, 4)):
        lines = [f"  - name: s{i}-{rng.choice(['momo', 'rev', 'lim'])}"]
        if i and rng.random() < 0.2:  # the first one trades: a disabled one is recorded only
            lines.append("    enabled: false")
        if rng.random() < 0.2:
            lines.append(f"    base_timeframe: {rng.choice(['1Min', '5Min'])}")
        if rng.random() < 0.3:
            lines.append(f"    max_notional_per_trade: {rng.choice([300, 2500])}")
        if rng.random() < 0.2:
            lines.append(f"    max_position_pct_equity: {rng.choice([0.01, 0.3])}")
        params = [
            f"buy_rsi_below: {rng.choice([35, 30, 45])}",
            f"sell_rsi_above: {rng.choice([65, 70, 55])}",
        ]
        if rng.random() < 0.4:
            params.append("order_type: limit")
        if rng.random() < 0.4:
            params.append("partial_exits: true")
        if rng.random() < 0.2:
            params.append("time_in_force: gtc")
        lines.append("    params: {" + ", ".join(params) + "}")
        entries.append("\n".join(lines))
    return "strategies:\n" + "\n".join(entries) + "\n"


def make_scenario(seed: int, llm: str) -> Scenario:
    """Everything a seed draws; the same seed always gives the same scenario."""
    rng = random.Random(seed)
    batch = rng.choice([1, 7, 50, 500])
    with_review = llm in ("only", "shadow", "enforcing") or (llm == "mix" and rng.random() < 0.25)
    budget = {1: 300, 7: 1200, 50: 3000, 500: 4000}[batch] // (3 if with_review else 1)
    lines, notes, symbols = _signal_lines(rng, rng.randint(budget // 4, budget))
    env = {
        "TRADING_BATCH_SIZE": str(batch),
        "TRADING_COOLDOWN_SECONDS": str(rng.choice([0, 120])),
        "TRADING_ALLOW_SHORTS": rng.choice(["false", "false", "true"]),
        "TRADING_SIM_CASH": rng.choice(["100000", "100000", "20000", "3000"]),
        "TRADING_MAX_NOTIONAL_PER_TRADE": rng.choice(["1000", "1000", "250", "5000"]),
        "TRADING_MAX_POSITION_PCT_EQUITY": rng.choice(["0.1", "0.1", "0.02", "0.5"]),
        "TRADING_MAX_SHARES_PER_ORDER": rng.choice(["10000", "10000", "10000", "200", "20"]),
        "TRADING_MAX_PRICE_MOVE_PCT": rng.choice(["0.1", "0.1", "0.02", "0.5"]),
        "TRADING_CALENDAR": rng.choice(["XNYS", "XNYS", "always"]),
    }
    if rng.random() < 0.2:
        env["TRADING_UNIVERSE"] = ",".join(rng.sample(symbols, max(1, len(symbols) // 2)))
        notes.append("universe")
    if rng.random() < 0.03:
        env["TRADING_KILL_SWITCH"] = "true"
        notes.append("kill switch")
    catalog = None
    if rng.random() < 0.35:
        catalog = _catalog(rng)
        env["TRADING_STRATEGY_CONFIG_MODE"] = rng.choice(["merge", "sync"])
        notes.append(f"catalog ({env['TRADING_STRATEGY_CONFIG_MODE']})")
    gateway_args = None
    if with_review:
        gateway_args = [
            "--veto-notional",
            rng.choice(["50000", "900", "300"]),
            "--adjust-exposure-pct",
            rng.choice(["0.2", "0.01"]),
        ]
        env |= {
            "LLM_ENABLED": "true",
            "LLM_SHADOW_MODE": rng.choice(["true", "false"]),
            "LLM_FAIL_MODE": rng.choice(["veto", "pass_through"]),
            "LLM_ADJUSTMENT_ALLOWED": rng.choice(["true", "false"]),
            "LLM_MAX_CONCURRENCY": rng.choice(["1", "8"]),
            "LLM_CONTEXT_BARS": rng.choice(["0", "30"]),
            # Generous clocks: a slow machine must not turn into a different verdict.
            "LLM_TIMEOUT_SECONDS": "300",
            "LLM_FIRST_TOKEN_TIMEOUT_SECONDS": "300",
            "LLM_IDLE_TIMEOUT_SECONDS": "300",
            "LLM_CONNECT_TIMEOUT_SECONDS": "60",
        }
        if llm in ("shadow", "enforcing"):
            env["LLM_SHADOW_MODE"] = "true" if llm == "shadow" else "false"
    files = [b"\n".join(lines) + b"\n"]
    roll = rng.random()
    if roll < 0.2:
        cut = rng.randrange(1, len(lines))
        files = [b"\n".join(lines[:cut]) + b"\n", files[0]]  # a restart on a grown file
        notes.append("restart, file grown")
    elif roll < 0.3:
        files = files * 2  # a restart on the same file: nothing new to do
        notes.append("restart, same file")
    return Scenario(seed, env, files, catalog, gateway_args, notes)


# --------------------------------------------------------------------------------------------
# Databases


class Postgres:
    """Creates and drops one database per replay on the server of `url`."""

    def __init__(self, url: str) -> None:
        self.url = url

    def unavailable(self) -> str | None:
        try:
            import psycopg

            with psycopg.connect(self.url, connect_timeout=3) as conn:
                conn.execute("select 1")
        except Exception as exc:  # any failure: skip PostgreSQL, saying why
            return f"PostgreSQL does not answer at {self.url}: {type(exc).__name__}: {exc}"
        return None

    def create(self) -> str:
        import psycopg

        name = f"cmp_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def drop(self, dsn: str) -> None:
        import psycopg

        name = urlsplit(dsn).path.lstrip("/")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# The canonical view of a database


@dataclass
class Window:
    """The wall-clock span of a run: a stamp inside it came from the clock, not the data."""

    start: datetime
    end: datetime

    def holds(self, moment: datetime) -> bool:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return self.start <= moment <= self.end

    def holds_epoch(self, value: float) -> bool:
        for seconds in (value, value / 1000):
            if self.start.timestamp() <= seconds <= self.end.timestamp():
                return True
        return False


def _number(value: Any) -> str:
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return repr(value)
    if not number.is_finite():
        return str(number)
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _parse_iso(text: str) -> datetime | None:
    if not _ISO.match(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _embedded_request(text: str, window: Window, mask: bool) -> str | None:
    """A prompt that quotes a review request as JSON, with the request made canonical."""
    start = text.find("{")
    if start < 0 or '"decision"' not in text:
        return None
    try:
        found, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    if not isinstance(found, dict) or "decision" not in found:
        return None
    request = json.dumps(canon_json(found, window, mask), sort_keys=True, ensure_ascii=False)
    return text[:start] + request + text[end:]


def canon_json(value: Any, window: Window, mask: bool = True) -> Any:
    """JSON data with wall-clock stamps and random ids replaced by markers; `mask`: and the
    review request's parts that depend on timing (`REVIEW_TIMING_KEYS`)."""
    if isinstance(value, dict):
        out = {
            str(k): ("<set>" if v is not None else None)
            if k in VOLATILE_JSON_KEYS
            else canon_json(v, window, mask)
            for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
        }
        recent = out.get("recent_decisions")
        if mask and isinstance(recent, list):
            for entry in recent:
                if isinstance(entry, dict):
                    entry.update({k: "<timing>" for k in REVIEW_TIMING_KEYS if k in entry})
        return out
    if isinstance(value, list):
        return [canon_json(v, window, mask) for v in value]
    if isinstance(value, str):
        moment = _parse_iso(value)
        if moment is not None and window.holds(moment):
            return "<wall-clock>"
        embedded = _embedded_request(value, window, mask) if len(value) > 200 else None
        if embedded is not None:
            return embedded
        return _RESETS.sub("resets <wall-clock>", _UUID.sub("<uuid>", value))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        if isinstance(value, int | float) and window.holds_epoch(float(value)):
            return "<wall-clock>"
        return _number(value)
    return repr(value)


def canon_value(value: Any, kind: str, window: Window, mask: bool = True) -> Any:
    """One stored value; `kind` is the column's declared type, lower case."""
    if value is None:
        return None
    if "json" in kind:
        if isinstance(value, str | bytes):
            try:
                value = json.loads(value)
            except ValueError:
                return f"<not json> {value!r}"
        return canon_json(value, window, mask)
    if isinstance(value, datetime):
        if window.holds(value):
            return "<wall-clock>"
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if "date" in kind or "time" in kind:
        moment = _parse_iso(str(value))
        if moment is not None and window.holds(moment):
            return "<wall-clock>"
        return str(value)  # SQLite: the stored text itself (its spelling is what queries sort)
    if isinstance(value, bool):
        return value
    if "bool" in kind:
        return bool(value)
    if isinstance(value, int | float | Decimal):
        return _number(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


@dataclass
class TableDump:
    columns: list[str]
    rows: list[dict[str, Any]]


def _sqlite_tables(dsn: str) -> dict[str, tuple[list[tuple[str, str]], list[tuple[Any, ...]]]]:
    path = dsn.removeprefix("sqlite:///")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        out = {}
        for name in names:
            cols = [(r[1], str(r[2]).lower()) for r in conn.execute(f'PRAGMA table_info("{name}")')]
            rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()
            out[name] = (cols, rows)
        return out
    finally:
        conn.close()


def _postgres_tables(dsn: str) -> dict[str, tuple[list[tuple[str, str]], list[tuple[Any, ...]]]]:
    import psycopg

    out = {}
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        for name in names:
            cols = [
                (str(r[0]), str(r[1]).lower())
                for r in conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                    (name,),
                )
            ]
            rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()
            out[name] = (cols, list(rows))
    return out


def dump_database(dsn: str, window: Window, mask: bool = True) -> dict[str, TableDump]:
    """Every table's rows, canonical and sorted."""
    raw = _postgres_tables(dsn) if dsn.startswith("postgres") else _sqlite_tables(dsn)
    hashes: dict[str, str] = {}  # a decision's id (as text, no dashes) -> its decision_hash
    if "trade_decisions" in raw:
        cols, rows = raw["trade_decisions"]
        names = [c for c, _ in cols]
        if "id" in names and "decision_hash" in names:
            at_id, at_hash = names.index("id"), names.index("decision_hash")
            for row in rows:
                hashes[str(row[at_id]).replace("-", "")] = str(row[at_hash])
    dump = {}
    for table, (cols, rows) in sorted(raw.items()):
        kept: list[str] = []
        for name, kind in cols:
            if name == "id" and ("uuid" in kind or "char(32)" in kind):
                continue  # a random primary key; what points at it is mapped below
            kept.append(name)
        out_rows = []
        for row in rows:
            canon: dict[str, Any] = {}
            for (name, kind), value in zip(cols, row, strict=True):
                if name not in kept:
                    continue
                if name in VOLATILE_COLUMNS:
                    canon[name] = None if value is None else "<set>"
                elif name.endswith("trade_decision_id"):
                    key = str(value).replace("-", "")
                    canon[name] = hashes.get(key, "<unknown decision>") if value else None
                else:
                    canon[name] = canon_value(value, kind, window, mask)
            out_rows.append(canon)
        out_rows.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
        dump[table] = TableDump(kept, out_rows)
    return dump


# --------------------------------------------------------------------------------------------
# Running one side


@dataclass
class RunResult:
    dump: dict[str, TableDump]
    summaries: list[Any]  # per replay: (exit code, JSON summary without duration_ms or None)
    seconds: float  # the replays' wall time (not the database set-up nor the dump)


def _base_env(src: Path) -> dict[str, str]:
    env = {
        k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if k in os.environ
    }
    env["PYTHONPATH"] = str(src)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Gateway:
    """`torghut dev-gateway` of one side's code, in its own process."""

    def __init__(self, src: Path, args: Sequence[str], workdir: Path) -> None:
        code = "import sys; from torghut.devgateway import main; sys.exit(main(sys.argv[1:]))"
        self.log = (workdir / "gateway.log").open("w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--port", "0", "--keepalive-seconds", "5", *args],
            env=_base_env(src),
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.log.seek(0)
            text = self.log.read().decode(errors="replace")
            found = re.search(r"listening on (http://\S+)", text)
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"dev gateway exited {self.proc.returncode}: {text[-500:]}")
            time.sleep(0.05)
        self.close()
        raise RuntimeError("dev gateway did not start within 60 s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_side(
    src: Path, scenario: Scenario, dsn: str, workdir: Path, signals: Path, mask: bool = True
) -> RunResult:
    """Every replay of the scenario, in order, on the database `dsn`, with the code of `src`."""
    env = _base_env(src) | scenario.env | {"DB_DSN": dsn}
    if scenario.catalog is not None:
        catalog = signals.parent / "strategies.yaml"
        catalog.write_text(scenario.catalog)
        env["TRADING_STRATEGY_CONFIG_PATH"] = str(catalog)
    gateway = Gateway(src, scenario.gateway_args, workdir) if scenario.gateway_args else None
    code = "import sys; from torghut.cli import main; sys.exit(main(sys.argv[1:]))"
    summaries: list[Any] = []
    seconds = 0.0
    start = datetime.now(UTC) - timedelta(seconds=5)
    try:
        if gateway is not None:
            env["JANGAR_BASE_URL"] = gateway.url
        for content in scenario.files:
            signals.write_bytes(content)
            began = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code, "replay", "--signals", str(signals)],
                env=env,
                cwd=workdir,
                capture_output=True,
                timeout=REPLAY_TIMEOUT_SECONDS,
                check=False,
            )
            seconds += time.perf_counter() - began
            summaries.append(_summary(proc))
    finally:
        if gateway is not None:
            gateway.close()
    window = Window(start, datetime.now(UTC) + timedelta(seconds=5))
    return RunResult(dump_database(dsn, window, mask), summaries, seconds)


def _summary(proc: subprocess.CompletedProcess[bytes]) -> Any:
    lines = [x for x in proc.stdout.decode(errors="replace").splitlines() if x.strip()]
    try:
        summary = json.loads(lines[-1]) if lines else None
    except ValueError:
        summary = None
    if isinstance(summary, dict):
        summary.pop("duration_ms", None)
        return {"exit": proc.returncode, "summary": summary}
    tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
    return {"exit": proc.returncode, "summary": None, "stderr": tail}


# --------------------------------------------------------------------------------------------
# Comparing


def _key(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    return json.dumps([row.get(c) for c in columns], default=str)


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            yield from _flatten(value[k], f"{path}.{k}" if path else str(k))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{path}[{i}]")
    else:
        yield path, value


def _text_diff(a: str, b: str, context: int = 70) -> tuple[str, str]:
    """Both texts around where they first differ (long texts: prompts, JSON in a prompt)."""
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    start = max(0, at - context)
    prefix = f"[char {at}] ..." if start else ""
    return prefix + a[start : at + context], prefix + b[start : at + context]


def _diff_values(where: str, old: Any, new: Any) -> list[str]:
    flat_old, flat_new = dict(_flatten(old)), dict(_flatten(new))
    out = []
    for path in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(path, "<absent>"), flat_new.get(path, "<absent>")
        if a == b:
            continue
        if isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) > 160:
            a, b = _text_diff(a, b)
        out.append(
            f"{where}{'.' + path if path else ''}: OLD {_short(a, 240)} NEW {_short(b, 240)}"
        )
    return out


def compare(old: RunResult, new: RunResult) -> tuple[list[str], list[str]]:
    """(differences, notes): the notes (schema changes, the summary's order-dependent curve)
    do not fail the comparison. Tables come first, those that cause the others first: the
    first lines printed are the likeliest root cause."""
    diffs: list[str] = []
    notes: list[str] = []

    def rank(table: str) -> tuple[int, str]:
        at = TABLE_ORDER.index(table) if table in TABLE_ORDER else len(TABLE_ORDER)
        return at, table

    for table in sorted(set(old.dump) | set(new.dump), key=rank):
        if table not in new.dump or table not in old.dump:
            side = "NEW" if table in old.dump else "OLD"
            notes.append(f"table {table} is missing in {side}")
            continue
        a_dump, b_dump = old.dump[table], new.dump[table]
        if a_dump.columns != b_dump.columns:
            notes.append(f"{table}: columns OLD {a_dump.columns} NEW {b_dump.columns}")
        common = [c for c in a_dump.columns if c in b_dump.columns]
        a_rows = [{c: r[c] for c in common} for r in a_dump.rows]
        b_rows = [{c: r[c] for c in common} for r in b_dump.rows]
        if a_rows == b_rows:
            continue
        if table in SCHEMA_TABLES:
            notes.append(f"{table}: OLD {_short(a_rows)} NEW {_short(b_rows)}")
            continue
        diffs.extend(_diff_rows(table, a_rows, b_rows))
    for i, (a, b) in enumerate(zip(old.summaries, new.summaries, strict=True)):
        if a == b:
            continue
        flat_a, flat_b = dict(_flatten(a)), dict(_flatten(b))
        for line in _diff_values(f"replay {i + 1}", a, b):
            path = line.split(":", 1)[0].removeprefix(f"replay {i + 1}.")
            numbers = all(isinstance(f.get(path), int | float) for f in (flat_a, flat_b))
            if numbers and _ORDER_DEPENDENT.search(path):
                notes.append(f"{line} (depends on row order, as between two runs of OLD)")
            else:
                diffs.append(line)
    return diffs, notes


def sections(diffs: Sequence[str]) -> str:
    """How many differences each table (or replay summary) has, in order of appearance."""
    counts: dict[str, int] = {}
    for line in diffs:
        name = re.split(r"[\[.:]", line, maxsplit=1)[0]
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _diff_rows(table: str, a_rows: list[dict[str, Any]], b_rows: list[dict[str, Any]]) -> list[str]:
    columns = TABLE_KEYS.get(table)
    if columns is None or not all(c in (a_rows or b_rows)[0] for c in columns):
        columns = tuple((a_rows or b_rows)[0])  # the whole row is its key
    groups: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for side, rows in ((0, a_rows), (1, b_rows)):
        for row in rows:
            groups.setdefault(_key(row, columns), ([], []))[side].append(row)
    out = [f"{table}: {len(a_rows)} rows OLD, {len(b_rows)} rows NEW"]
    for key in sorted(groups):
        olds, news = groups[key]
        if olds == news:
            continue
        where = f"{table}[{key}]"
        if not news:
            out.extend(f"{where}: only in OLD: {_short(r, 400)}" for r in olds)
        elif not olds:
            out.extend(f"{where}: only in NEW: {_short(r, 400)}" for r in news)
        elif len(olds) == len(news):
            for a, b in zip(olds, news, strict=True):
                out.extend(_diff_values(where, a, b))
        else:
            out.append(f"{where}: {len(olds)} rows OLD, {len(news)} rows NEW")
    return out


# --------------------------------------------------------------------------------------------
# Driving it


def export_base(ref: str, into: Path) -> Path:
    """The `src/` of `ref` (a git ref, or a folder that holds the package) to import from."""
    folder = Path(ref)
    if folder.is_dir():
        found = folder if (folder / "torghut").is_dir() else folder / "src"
        if not (found / "torghut").is_dir():
            raise SystemExit(f"--base {ref}: no torghut package in that folder (nor its src/)")
        return found.resolve()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except subprocess.CalledProcessError:
        raise SystemExit(f"--base {ref}: not a git ref of {ROOT} nor a folder") from None
    archive = subprocess.run(
        ["git", "archive", "--format=tar", sha, "src"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def _check_import(src: Path) -> None:
    """The side's interpreter must import torghut from `src`, not from the venv's install."""
    proc = subprocess.run(
        [sys.executable, "-c", "import torghut; print(torghut.__file__)"],
        env=_base_env(src),
        capture_output=True,
        text=True,
        check=False,
    )
    where = Path(proc.stdout.strip()).resolve() if proc.returncode == 0 else None
    if where is None or not where.is_relative_to(src.resolve()):
        raise SystemExit(f"{src}: torghut is imported from {where or proc.stderr.strip()}")


@dataclass
class SeedOutcome:
    seed: int
    db: str
    text: str
    diffs: list[str]
    notes: list[str]
    old_seconds: float
    new_seconds: float


def _drop_columns(dump: dict[str, TableDump], table: str, columns: frozenset[str]) -> None:
    if table in dump:
        found = dump[table]
        found.columns = [c for c in found.columns if c not in columns]
        found.rows = [{c: r[c] for c in found.columns} for r in found.rows]


def run_seed(
    seed: int,
    db: str,
    llm: str,
    base: Path,
    new: Path,
    pg: Postgres | None,
    keep: Path | None,
    strict_reviews: bool = False,
) -> SeedOutcome:
    scenario = make_scenario(seed, llm)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix=f"cmp-{seed}-{db}-") as tmp:
        work = Path(keep / f"seed{seed}-{db}") if keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        # One path for both sides: the signal cursor's key holds it.
        signals = work / "signals.jsonl"
        for side, src in (("old", base), ("new", new)):
            side_dir = work / side
            side_dir.mkdir(exist_ok=True)
            if db == "sqlite":
                dsn = f"sqlite:///{side_dir / 'torghut.db'}"
                results.append(run_side(src, scenario, dsn, side_dir, signals, not strict_reviews))
                continue
            assert pg is not None
            dsn = pg.create()
            try:
                results.append(run_side(src, scenario, dsn, side_dir, signals, not strict_reviews))
            finally:
                pg.drop(dsn)
    old, new_result = results
    shadow = scenario.env.get("LLM_SHADOW_MODE") == "true"
    for result in results:
        if not strict_reviews:
            left_out = SHADOW_CONTEXT_COLUMNS if shadow else REVIEW_TIMING_COLUMNS
            _drop_columns(result.dump, "llm_decision_reviews", left_out)
    diffs, notes = compare(old, new_result)
    text = f"{scenario.describe()}; OLD left {_counts(old)}"
    return SeedOutcome(seed, db, text, diffs, notes, old.seconds, new_result.seconds)


def _counts(result: RunResult) -> str:
    """What the old code's replays left, in short: the work the seed really did."""
    summaries = [s["summary"] for s in result.summaries if s.get("summary")]
    if not summaries:
        return "no summary (the replay failed)"
    rows = {t: len(d.rows) for t, d in result.dump.items()}
    rejected = sum(sum(s["rejected"].values()) for s in summaries)
    filled = sum(
        1
        for r in result.dump.get("executions", TableDump([], [])).rows
        if r.get("status") == "filled"
    )
    text = (
        f"{rows.get('trade_decisions', 0)} decisions, {filled} filled orders, "
        f"{rejected} rejections, {sum(s['skipped_lines'] for s in summaries)} skipped lines"
    )
    if rows.get("llm_decision_reviews"):
        text += f", {rows['llm_decision_reviews']} reviews"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Replay randomized signal files with the old and the new code; exit 1 when "
        "anything the replays left differs.",
    )
    parser.add_argument("--base", required=True, help="git ref (or src folder) of the old code")
    parser.add_argument(
        "--new", default=str(ROOT / "src"), help="src folder of the new code (default: ours)"
    )
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds (default 20)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--llm",
        choices=("off", "mix", "only", "shadow", "enforcing"),
        default="mix",
        help="the review gate: never, on about one seed in four (default), on every seed "
        "(shadow or enforcing at random, or always the one named)",
    )
    parser.add_argument(
        "--strict-reviews",
        action="store_true",
        help="compare review rows whole, the parts that depend on timing too",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TORGHUT_TEST_DATABASE_URL", DEFAULT_PG),
        help="a PostgreSQL server's database to create the per-replay databases from",
    )
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once (default 1)")
    parser.add_argument("--max-diffs", type=int, default=15, help="differences shown per seed")
    parser.add_argument("--keep", metavar="DIR", help="keep every file and SQLite database here")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be at least 1")

    started = time.perf_counter()
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    pg: Postgres | None = None
    if "postgresql" in dbs:
        pg = Postgres(args.pg_url)
        reason = pg.unavailable()
        if reason:
            print(f"skipping PostgreSQL: {reason}", flush=True)
            dbs.remove("postgresql")
            pg = None
            if not dbs:
                print("nothing to compare")
                return 1
    keep = Path(args.keep).resolve() if args.keep else None
    with tempfile.TemporaryDirectory(prefix="cmp-base-") as tmp:
        base = export_base(args.base, Path(tmp))
        new = Path(args.new).resolve()
        if not (new / "torghut").is_dir():
            parser.error(f"--new {args.new}: no torghut package there")
        for src in (base, new):
            _check_import(src)
        print(f"OLD {args.base} ({base})\nNEW {new}", flush=True)
        jobs = [
            (seed, db)
            for seed in range(args.first_seed, args.first_seed + args.seeds)
            for db in dbs
        ]
        failed = 0
        totals = {db: [0.0, 0.0] for db in dbs}
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [
                pool.submit(run_seed, seed, db, args.llm, base, new, pg, keep, args.strict_reviews)
                for seed, db in jobs
            ]
            for future, (seed, db) in zip(futures, jobs, strict=True):
                try:
                    outcome = future.result()
                except Exception as exc:  # one broken run is reported, the others still run
                    error = f"error: {type(exc).__name__}: {exc}"
                    outcome = SeedOutcome(seed, db, "the run itself failed", [error], [], 0, 0)
                totals[outcome.db][0] += outcome.old_seconds
                totals[outcome.db][1] += outcome.new_seconds
                verdict = "DIFFERENT" if outcome.diffs else "identical"
                print(
                    f"seed {outcome.seed:3d} {outcome.db:10s} {verdict}  "
                    f"(old {outcome.old_seconds:5.1f} s, new {outcome.new_seconds:5.1f} s; "
                    f"{outcome.text})",
                    flush=True,
                )
                for note in outcome.notes:
                    print(f"    note: {note}", flush=True)
                if outcome.diffs:
                    failed += 1
                    print(f"    differences: {sections(outcome.diffs)}", flush=True)
                    for line in outcome.diffs[: args.max_diffs]:
                        print(f"    {line}", flush=True)
                    if len(outcome.diffs) > args.max_diffs:
                        print(f"    ... {len(outcome.diffs) - args.max_diffs} more", flush=True)
    for db, (old_s, new_s) in totals.items():
        ratio = old_s / new_s if new_s else float("nan")
        print(
            f"{db}: the replays took {old_s:.1f} s OLD, {new_s:.1f} s NEW "
            f"(OLD / NEW {ratio:.2f}; one process per replay, start-up included)"
        )
    elapsed = time.perf_counter() - started
    if failed:
        print(f"DIFFERENT: {failed} of {len(jobs)} runs differ ({elapsed:.0f} s)")
        return 1
    print(f"identical: {len(jobs)} runs ({args.seeds} seeds x {', '.join(dbs)}; {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
