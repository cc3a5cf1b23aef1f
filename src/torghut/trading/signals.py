"""Signal sources: a JSON Lines file for replay, and ClickHouse for production.

Both keep their position as a cursor `(event_ts, symbol, seq)` in the `signal_cursors` table,
so a restart neither skips nor repeats a signal. `fetch(limit)` returns the next signals
strictly after the committed cursor and does not move it; `commit(signals)` moves it to the
last of them (never backwards). A malformed line or row is skipped, counted in `.skipped` and
logged; it never stops the source.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import operator
import re
import sqlite3
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from torghut.db.engine import Database
from torghut.db.tables import SignalCursor
from torghut.domain import Signal, as_utc
from torghut.errors import InputError, TorghutError, redact
from torghut.limits import INT_MAX, check_identifier, check_json_value, check_price

log = logging.getLogger(__name__)

CursorKey = tuple[datetime, str, int]

# Individual warnings for the first bad lines of a file; a summary covers the rest.
_WARN_LIMIT = 20
_SOURCE_KEY_MAX = 256  # signal_cursors.source


class SignalSourceError(TorghutError):
    """A signal source could not be read this time (unreachable, timeout, server error); the
    loop logs it and tries again next cycle, and never quarantines signals for it."""

    transient = True


def signal_key(signal: Signal) -> CursorKey:
    return (signal.event_ts, signal.symbol, signal.seq)


# `signal_key` in C, for a batch's worth of signals.
_signal_key: Callable[[Signal], CursorKey] = operator.attrgetter("event_ts", "symbol", "seq")


# --- parsing -----------------------------------------------------------------------------

_REQUIRED = ("event_ts", "symbol", "timeframe")
_NUMBERS = ("macd", "macd_signal", "rsi14")
_KNOWN = frozenset({*_REQUIRED, *_NUMBERS, "price", "seq"})
_SYMBOL_MAX = 32  # Signal.symbol
_TIMEFRAME_MAX = 16  # Signal.timeframe
# A signal is a few hundred bytes; a longer line is not one, and is never held whole.
LINE_MAX_CHARS = 64 * 1024


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 datetime or epoch seconds")
    if isinstance(value, int | float):
        # Epoch seconds; values this large can only be milliseconds (year > 5138 otherwise).
        seconds = value / 1000 if abs(value) > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        return as_utc(datetime.fromisoformat(text))
    raise ValueError("expected an ISO 8601 datetime or epoch seconds")


def _parse_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _parse_price(value: Any) -> Decimal | None:
    return None if value is None else check_price(value)


def _parse_seq(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a non-negative integer")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # ClickHouse quotes 64-bit integers in JSON
    if not isinstance(value, int) or value < 0:
        raise ValueError("expected a non-negative integer")
    if value > INT_MAX:
        raise ValueError(f"at most {INT_MAX} (a 64-bit column)")
    return value


def _build_signal(fields: Mapping[str, Any], payload: dict[str, Any], where: str) -> Signal:
    try:
        return Signal.model_validate({**fields, "payload": payload})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"]) or "signal"
        raise InputError(f"{where}: field {name!r}: {first['msg']}") from None


def decode_line(line: str, where: str) -> dict[str, Any]:
    """One JSON object from one line, whatever the line holds: too long, too deep, not JSON
    or numbers past what Python will convert all raise `InputError` naming `where`."""
    if len(line) > LINE_MAX_CHARS:
        raise InputError(f"{where}: longer than {LINE_MAX_CHARS} characters")
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deep") from None
    except ValueError as exc:  # an integer past Python's digit limit
        raise InputError(f"{where}: not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object")
    return data


def parse_signal_line(line: str, lineno: int) -> Signal:
    """One JSON Lines signal (CONTRACT §3): `event_ts, symbol, timeframe` are required;
    `macd, macd_signal, rsi14, price` may be null or absent (the strategy and the risk engine
    say what that means); `seq` defaults to the line number; other keys go to `payload`.
    Raises `InputError` naming the line and the field; every line is judged alone, and
    nothing it holds can raise anything else (tests/unit/test_input_fuzz.py)."""
    where = f"line {lineno}"
    return signal_from_fields(_signal_fields(decode_line(line, where), lineno, where))


# What `_signal_fields` gives: a `Signal`'s fields, in its order.
_Number = float | None
SignalFields = tuple[
    datetime, str, str, _Number, _Number, _Number, Decimal | None, int, dict[str, Any]
]


def _signal_fields(data: dict[str, Any], lineno: int, where: str) -> SignalFields:
    """The fields of the `Signal` a decoded line makes, checked by hand and left as `Signal`'s
    own validators would leave them (the symbol stripped and upper-cased, the time in UTC).

    Every constraint `Signal` declares is checked here, so that its validation, run again,
    could only agree (tests/unit/test_signal_parse_equivalence.py compares both on random
    lines): `event_ts` a datetime in UTC (`_parse_ts`); `symbol` and `timeframe` strings of
    1 to 32 and 1 to 16 characters (`check_identifier`: not blank, at most `longest`);
    `macd`, `macd_signal`, `rsi14` finite floats or None; `price` a finite positive Decimal
    within the money band or None (`check_price`); `seq` an int in 0..INT_MAX; `payload` a
    dict with string keys (JSON's) holding only what `check_json_value` allows."""
    get = data.get
    for name in _REQUIRED:
        if get(name) is None:
            raise InputError(f"{where}: field {name!r} is required")
    name = "event_ts"
    try:
        event_ts = _parse_ts(data["event_ts"])
        name = "symbol"
        symbol = check_identifier(data["symbol"], _SYMBOL_MAX)
        name = "timeframe"
        timeframe = check_identifier(data["timeframe"], _TIMEFRAME_MAX)
        # A finite float (the usual case) is taken as it is; anything else is judged by
        # `_parse_float`, which raises the field's error.
        name = "macd"
        macd = get(name)
        if type(macd) is not float or not _isfinite(macd):
            macd = _parse_float(macd)
        name = "macd_signal"
        macd_signal = get(name)
        if type(macd_signal) is not float or not _isfinite(macd_signal):
            macd_signal = _parse_float(macd_signal)
        name = "rsi14"
        rsi14 = get(name)
        if type(rsi14) is not float or not _isfinite(rsi14):
            rsi14 = _parse_float(rsi14)
        name = "price"
        price = get(name)
        if price is not None:
            price = check_price(price)
        name = "seq"
        seq = get(name)
        seq = lineno if seq is None else _parse_seq(seq)
        if data.keys() <= _KNOWN:
            payload: dict[str, Any] = {}
        else:
            payload = {k: v for k, v in data.items() if k not in _KNOWN}
            name = "payload"
            check_json_value(payload)
    except (ValueError, OverflowError, OSError) as exc:
        raise InputError(f"{where}: field {name!r}: {exc}") from None
    return (
        event_ts,
        symbol.strip().upper(),
        timeframe,
        macd,
        macd_signal,
        rsi14,
        price,
        seq,
        payload,
    )


_isfinite = math.isfinite
_SIGNAL_FIELDS = tuple(Signal.model_fields)
_new_object = object.__new__
_set_attribute = object.__setattr__


def signal_from_fields(fields: SignalFields) -> Signal:
    """A `Signal` of fields already checked (`_signal_fields`), or read back from where such
    fields were stored, built without a second validation: pydantic's `model_validate` cost a
    third of a line's parsing and could only agree, and `model_construct` costs more still. It
    sets what `model_construct` sets: the fields, every one of them as set, no extra, no
    private state (tests/unit/test_signal_parse_equivalence.py)."""
    event_ts, symbol, timeframe, macd, macd_signal, rsi14, price, seq, payload = fields
    signal = _new_object(Signal)
    _set_attribute(
        signal,
        "__dict__",
        {
            "event_ts": event_ts,
            "symbol": symbol,
            "timeframe": timeframe,
            "macd": macd,
            "macd_signal": macd_signal,
            "rsi14": rsi14,
            "price": price,
            "seq": seq,
            "payload": payload,
        },
    )
    _set_attribute(signal, "__pydantic_fields_set__", set(_SIGNAL_FIELDS))
    _set_attribute(signal, "__pydantic_extra__", None)
    _set_attribute(signal, "__pydantic_private__", None)
    return signal


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def iso_duration_to_timeframe(value: str) -> str:
    """`PT1S` → `1Sec`, `PT1M` → `1Min`, `PT5M` → `5Min`, `PT1H` → `1Hour`, `P1D` → `1Day`.
    Mixed durations use the largest unit that divides them (`PT1H30M` → `90Min`)."""
    match = _DURATION.match(value.strip().upper())
    if not match or not any(match.groups()) or value.strip().upper().endswith("T"):
        raise InputError(f"window_size {value!r} is not an ISO 8601 duration like PT1M")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise InputError(f"window_size {value!r} is not a positive duration")
    for size, unit in ((86400, "Day"), (3600, "Hour"), (60, "Min")):
        if total % size == 0:
            return f"{total // size}{unit}"
    return f"{total}Sec"


# --- cursor ------------------------------------------------------------------------------


_CURSORS: Table = SignalCursor.__table__  # type: ignore[assignment]
_CURSOR_COLUMNS = (_CURSORS.c.event_ts, _CURSORS.c.symbol, _CURSORS.c.seq)
# Core statements on the session's connection: each cycle reads the cursor and moves it, and
# the ORM's identity map and unit of work cost several times the statement itself.
_READ_CURSOR = select(*_CURSOR_COLUMNS).where(_CURSORS.c.source == bindparam("source"))
_LOCK_CURSOR = _READ_CURSOR.with_for_update()
_INSERT_CURSOR = insert(_CURSORS)
_MOVE_CURSOR = (
    update(_CURSORS)
    .where(_CURSORS.c.source == bindparam("b_source"))
    .values(
        event_ts=bindparam("b_event_ts"),
        symbol=bindparam("b_symbol"),
        seq=bindparam("b_seq"),
    )
)


class _CursorStore:
    """One row of `signal_cursors`."""

    def __init__(self, db: Database, key: str) -> None:
        self._db = db
        self.key = key

    async def get(self) -> CursorKey | None:
        def read(session: Session) -> CursorKey | None:
            row = session.connection().execute(_READ_CURSOR, {"source": self.key}).first()
            return None if row is None else (as_utc(row[0]), row[1], row[2])

        return await self._db.run(read)

    async def advance(self, to: CursorKey) -> None:
        """Move the cursor to `to`, never backwards (a late commit of an old batch must not
        make the source repeat what came after it)."""

        def advance(session: Session) -> None:
            conn = session.connection()
            row = conn.execute(_LOCK_CURSOR, {"source": self.key}).first()
            if row is None:
                conn.execute(
                    _INSERT_CURSOR,
                    {"source": self.key, "event_ts": to[0], "symbol": to[1], "seq": to[2]},
                )
            elif (as_utc(row[0]), row[1], row[2]) < to:
                conn.execute(
                    _MOVE_CURSOR,
                    {"b_source": self.key, "b_event_ts": to[0], "b_symbol": to[1], "b_seq": to[2]},
                )

        for attempt in (1, 2):
            try:
                await self._db.run(advance)
                return
            except IntegrityError:
                if attempt == 2:  # a concurrent first insert: the retry updates that row
                    raise


def _bounded_key(key: str) -> str:
    if len(key) <= _SOURCE_KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: _SOURCE_KEY_MAX - 66]}..{digest}"


# --- replay ------------------------------------------------------------------------------


class ReplaySignalSource:
    """Signals from a JSON Lines file, in `(event_ts, symbol, seq)` order.

    The file's order does not matter, and it may be far larger than memory: it is read once,
    line by line in a worker thread, into a private on-disk SQLite index keyed by
    `(event_ts, symbol, seq)`; each fetch reads the next batch from that index. Peak memory is
    one batch plus SQLite's page cache, whatever the file's length (bench/bench_replay_memory.py).
    SQLite does the external sort for us: a hand-written merge sort of spilled runs is what it
    would replace. The index lives in a temporary file SQLite deletes when it is closed.

    Every line is judged alone (`parse_signal_line`): a bad one is skipped, counted in
    `.skipped` with its line number in `.skipped_lines` (the first few), and never stops the
    source. Two lines with the same `(event_ts, symbol, seq)` would make the cursor ambiguous:
    the later one is skipped as a duplicate."""

    def __init__(
        self,
        path: Path,
        db: Database,
        *,
        source_key: str | None = None,
    ) -> None:
        self.path = path.expanduser().absolute()
        self._cursor = _CursorStore(db, _bounded_key(source_key or f"replay:{self.path}"))
        self._index: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self.skipped = 0
        self.skipped_lines: list[tuple[int, str]] = []  # (line number, why), the first few
        self.total = 0

    @property
    def source_key(self) -> str:
        return self._cursor.key

    def check(self) -> None:
        """Fail now, with `InputError`, when the file cannot be read (start-up checks)."""
        try:
            with self.path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read signal file: {exc.strerror}") from None

    async def load(self) -> int:
        """Index the file (on first use); returns how many valid signals it holds."""
        async with self._lock:
            if self._index is None:
                self._index = await asyncio.to_thread(self._build_index)
            return self.total

    def _lines(self) -> Iterator[tuple[int, bytes | None]]:
        """(line number, raw bytes) for each line; None for a line longer than a signal can be,
        which is read past in bounded pieces instead of being held whole."""
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read signal file: {exc.strerror}") from None
        limit = LINE_MAX_CHARS * 4 + 1  # UTF-8 takes at most 4 bytes a character
        with handle:
            try:
                lineno = 0
                while raw := handle.readline(limit):
                    lineno += 1
                    if len(raw) == limit and not raw.endswith(b"\n"):
                        while (rest := handle.readline(limit)) and not rest.endswith(b"\n"):
                            pass
                        yield lineno, None
                        continue
                    yield lineno, raw
            except OSError as exc:
                raise InputError(f"{self.path}: cannot read signal file: {exc.strerror}") from None

    def _skip(self, lineno: int, reason: str) -> None:
        self.skipped += 1
        if self.skipped <= _WARN_LIMIT:
            self.skipped_lines.append((lineno, reason))
            log.warning("%s: skipped line %d: %s", self.path, lineno, reason)

    def _build_index(self) -> sqlite3.Connection:
        # "" is a private temporary database on disk, deleted by SQLite when it is closed
        # (also when the process dies: the file is unlinked while open).
        index = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        try:
            index.execute(f"PRAGMA cache_size=-{_INDEX_CACHE_KIB}")
            # A signal's fields as columns, read back without a second validation.
            index.execute(
                "CREATE TABLE signals (ts INTEGER NOT NULL, symbol TEXT NOT NULL,"
                " seq INTEGER NOT NULL, line INTEGER NOT NULL, timeframe TEXT NOT NULL,"
                " macd REAL, macd_signal REAL, rsi14 REAL, price TEXT, payload TEXT,"
                " PRIMARY KEY (ts, symbol, seq)) WITHOUT ROWID"
            )
            self.skipped, self.skipped_lines, self.total = 0, [], 0
            index.execute("BEGIN")
            # Rows go in by chunks, one statement each; the bad lines of a chunk are reported
            # when it is written, so that every skip is reported in line order.
            rows: list[_IndexRow] = []
            bad: list[tuple[int, str]] = []
            for lineno, raw in self._lines():
                if raw is None:
                    bad.append((lineno, f"longer than {LINE_MAX_CHARS} characters"))
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad.append((lineno, "not UTF-8"))
                    continue
                if not text.strip():
                    continue  # blank lines are layout, not bad signals
                where = f"line {lineno}"
                try:
                    fields = _signal_fields(decode_line(text, where), lineno, where)
                except InputError as exc:
                    bad.append((lineno, str(exc).removeprefix(f"{where}: ")))
                    continue
                rows.append(_index_row(fields, lineno))
                if len(rows) >= _INDEX_CHUNK:
                    self._write_chunk(index, rows, bad)
                    rows, bad = [], []
            self._write_chunk(index, rows, bad)
            index.execute("COMMIT")
        except sqlite3.Error as exc:
            index.close()
            # The temporary folder is full or unwritable: nothing wrong with the signals.
            raise SignalSourceError(f"{self.path}: cannot index the signal file: {exc}") from None
        except BaseException:
            index.close()
            raise
        if self.skipped > _WARN_LIMIT:
            log.warning("%s: %d bad lines skipped in all", self.path, self.skipped)
        return index

    def _write_chunk(
        self, index: sqlite3.Connection, rows: list[_IndexRow], bad: list[tuple[int, str]]
    ) -> None:
        """Insert `rows` and report `bad` (both in line order), as if line by line: a row
        whose key an earlier one holds is skipped as a duplicate. Duplicates are rare: the
        chunk goes in as one `executemany`, and only when it inserted fewer rows than it had
        is it undone and written again row by row, to name them."""
        index.execute("SAVEPOINT chunk")
        if not rows or index.executemany(_INSERT, rows).rowcount == len(rows):
            index.execute("RELEASE chunk")
            self.total += len(rows)
            for lineno, reason in bad:
                self._skip(lineno, reason)
            return
        index.execute("ROLLBACK TO chunk")
        index.execute("RELEASE chunk")
        pending = iter(bad)
        skip = next(pending, None)
        for row in rows:
            while skip is not None and skip[0] < row[3]:
                self._skip(*skip)
                skip = next(pending, None)
            if index.execute(_INSERT, row).rowcount:
                self.total += 1
            else:
                key = (_EPOCH + timedelta(microseconds=row[0]), row[1], row[2])
                self._skip(row[3], f"duplicate (event_ts, symbol, seq) {key}")
        while skip is not None:
            self._skip(*skip)
            skip = next(pending, None)

    async def _after(self, cursor: CursorKey | None, limit: int) -> list[Signal]:
        index = self._index
        assert index is not None

        def read() -> list[Signal]:
            if cursor is None:
                rows = index.execute(
                    f"SELECT {_COLUMNS} FROM signals ORDER BY ts, symbol, seq LIMIT ?", (limit,)
                )
            else:
                rows = index.execute(
                    f"SELECT {_COLUMNS} FROM signals WHERE (ts, symbol, seq) > (?, ?, ?)"
                    " ORDER BY ts, symbol, seq LIMIT ?",
                    (_ts_key(cursor[0]), cursor[1], cursor[2], limit),
                )
            return _rows_signals(rows)

        async with self._lock:  # one thread at a time on the index's connection
            return await asyncio.to_thread(read)

    async def fetch(self, limit: int) -> list[Signal]:
        await self.load()
        if limit <= 0:
            return []
        # Read every time, not cached: after a change of leader, or a commit whose answer was
        # lost, only the database knows where this source stands.
        return await self._after(await self._cursor.get(), limit)

    async def commit(self, signals: Sequence[Signal]) -> None:
        if signals:
            await self._cursor.advance(max(map(_signal_key, signals)))

    async def remaining(self) -> int:
        """Signals after the committed cursor (replay uses it to know when it is done)."""
        await self.load()
        cursor = await self._cursor.get()
        index = self._index
        assert index is not None

        def count() -> int:
            if cursor is None:
                return self.total
            row = index.execute(
                "SELECT count(*) FROM signals WHERE (ts, symbol, seq) > (?, ?, ?)",
                (_ts_key(cursor[0]), cursor[1], cursor[2]),
            ).fetchone()
            return int(row[0])

        async with self._lock:
            return await asyncio.to_thread(count)

    async def aclose(self) -> None:
        async with self._lock:
            index, self._index = self._index, None
        if index is not None:
            index.close()


_COLUMNS = "ts, symbol, seq, timeframe, macd, macd_signal, rsi14, price, payload"
_INSERT = "INSERT INTO signals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
# Rows per statement while indexing: a bounded list in memory, whatever the file's length.
_INDEX_CHUNK = 1024
# ts, symbol, seq, line, timeframe, macd, macd_signal, rsi14, price, payload
_IndexRow = tuple[
    int, str, int, int, str, float | None, float | None, float | None, str | None, str | None
]


def _index_row(fields: SignalFields, lineno: int) -> _IndexRow:
    event_ts, symbol, timeframe, macd, macd_signal, rsi14, price, seq, payload = fields
    return (
        _ts_key(event_ts),
        symbol,
        seq,
        lineno,
        timeframe,
        macd,
        macd_signal,
        rsi14,
        None if price is None else str(price),
        json.dumps(payload) if payload else None,
    )


def _row_signal(row: tuple[Any, ...]) -> Signal:
    """A row of the index back to the `Signal` it was made from, exactly (floats as doubles,
    the price as its decimal text, the payload as plain JSON); validated once already, when
    the line was indexed."""
    return _rows_signals([row])[0]


def _rows_signals(rows: Iterable[tuple[Any, ...]]) -> list[Signal]:
    """`_row_signal` of each row; rows of one instant (a minute's symbols, read in key order)
    share its datetime, which is immutable."""
    signals: list[Signal] = []
    last_ts, event_ts = None, _EPOCH
    for ts, symbol, seq, timeframe, macd, macd_signal, rsi14, price, payload in rows:
        if ts != last_ts:
            last_ts, event_ts = ts, _EPOCH + timedelta(microseconds=ts)
        signals.append(
            signal_from_fields(
                (
                    event_ts,
                    symbol,
                    timeframe,
                    macd,
                    macd_signal,
                    rsi14,
                    None if price is None else Decimal(price),
                    seq,
                    json.loads(payload) if payload else {},
                )
            )
        )
    return signals


def _ts_key(ts: datetime) -> int:
    """Microseconds since the epoch: orders exactly as the datetimes do, in one integer."""
    delta = as_utc(ts) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# SQLite's page cache for the replay index; the rest of the index stays on disk.
_INDEX_CACHE_KIB = 16 * 1024


# --- ClickHouse --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClickHouseConfig:
    """Where the TA signals live. `initial_lookback` bounds how far back a source with no
    cursor yet starts: a fresh service must not trade on last month's signals."""

    url: str
    username: str = "default"
    password: str | None = field(default=None, repr=False)
    database: str = "torghut"
    timeout_seconds: float = 10.0
    source_key: str = "clickhouse:torghut.ta_signals"
    initial_lookback: timedelta = timedelta(minutes=5)
    settle_seconds: float = 2.0
    # PEM file of the CA that signed the server's certificate (a private CA); None: the
    # system's trust store.
    ca_file: Path | None = None


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A page's first look past the cursor, its narrowest, and how many times one fetch widens it
# (x4 each: the ranges looked at cover 30 years after 12 steps) before reading to the present.
_FIRST_HORIZON = timedelta(minutes=1)
_MIN_HORIZON = timedelta(seconds=1)
_WIDENINGS = 12


def clickhouse_tls(ca_file: Path | None) -> ssl.SSLContext | bool:
    """What httpx verifies the server with: the system's CAs, or only those of `ca_file` (a
    private CA). An unreadable or invalid file raises `InputError` naming it."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise InputError(f"{ca_file}: not a readable PEM CA file ({type(exc).__name__})") from None


def _format_ts(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


# The latest instant a DateTime64(6) holds: the upper bound of a page that reaches the present.
_NO_UPPER_BOUND = datetime(2299, 12, 31, tzinfo=UTC)


def build_signals_query(
    *,
    cursor: CursorKey,
    limit: int,
    database: str = "torghut",
    settle_seconds: float = 0.0,
    upper: datetime | None = None,
) -> tuple[str, dict[str, str]]:
    """The SQL of one fetch, and its ClickHouse query parameters (names without `param_`).

    Versions: both tables are ReplacingMergeTrees, which keep every version of a row until a
    merge that may never come. The `final` setting (ClickHouse 23.2+) reads every table of the
    query `FINAL`: the server picks the latest version of each key (by the table's version
    column) at read time, so an unmerged older version is never read, whatever order the parts
    come in. Unlike the `FINAL` keyword it leaves a plain MergeTree (a stop-gap table) readable
    instead of failing the query. The time filters are on sorting-key columns, so they still
    prune before the merge.

    Price: an exact LEFT JOIN on `(symbol, event_ts)` with `ta_microbars.c`, with
    `join_use_nulls` so that a missing bar is NULL (the risk engine rejects it as
    `missing_price`) rather than 0. An ASOF join would silently price a signal with an older
    bar. `LIMIT 1 BY` keeps the join one-to-one should the bar table's key hold more than
    `(symbol, event_ts)`: a bar can never duplicate a signal.

    Range: both sides read only `[cursor time, upper)`. Without an upper bound every page of a
    catch-up after an outage read the whole backlog from the cursor on (quadratic in its
    length); the source picks `upper` so that a page holds about `limit` rows
    (`ClickHouseSignalSource._page`). None: up to the present.

    Lateness: the cursor only moves forward, so a row written after the cursor passed its key
    would never be read. Rows newer than `settle_seconds` before the server's clock are left
    for a later fetch (a watermark), giving the TA writers that long to deliver every symbol
    of a moment before the cursor moves past it.

    Every value is a query parameter; only `database` is spliced, after a strict identifier
    check. Datetimes are written out in ISO form in UTC (`date_time_output_format`)."""
    if not _IDENTIFIER.match(database):
        raise ValueError(f"database must be a plain identifier, got {database!r}")
    if limit <= 0:
        raise ValueError("limit must be positive")
    ts, symbol, seq = cursor
    sql = f"""\
SELECT
    s.event_ts AS event_ts,
    s.seq AS seq,
    s.symbol AS symbol,
    s.window_size AS window_size,
    s.macd AS macd,
    s.macd_signal AS macd_signal,
    s.rsi14 AS rsi14,
    b.c AS price
FROM {database}.ta_signals AS s
LEFT JOIN
(
    SELECT symbol, event_ts, c
    FROM {database}.ta_microbars
    WHERE event_ts >= {{cursor_ts:DateTime64(6, 'UTC')}}
      AND event_ts < {{upper_ts:DateTime64(6, 'UTC')}}
    LIMIT 1 BY symbol, event_ts
) AS b ON b.symbol = s.symbol AND b.event_ts = s.event_ts
WHERE s.event_ts >= {{cursor_ts:DateTime64(6, 'UTC')}}
  AND s.event_ts < {{upper_ts:DateTime64(6, 'UTC')}}
  AND (s.event_ts, s.symbol, s.seq)
      > ({{cursor_ts:DateTime64(6, 'UTC')}}, {{cursor_symbol:String}}, {{cursor_seq:UInt64}})
  AND s.event_ts <= now64(6) - toIntervalMillisecond({{settle_ms:UInt32}})
ORDER BY s.event_ts, s.symbol, s.seq
LIMIT {{limit:UInt32}}
SETTINGS final = 1, join_use_nulls = 1, date_time_output_format = 'iso'
FORMAT JSONEachRow
"""
    params = {
        "cursor_ts": _format_ts(ts),
        "cursor_symbol": symbol,
        "cursor_seq": str(seq),
        "limit": str(limit),
        "settle_ms": str(max(0, round(settle_seconds * 1000))),
        "upper_ts": _format_ts(_NO_UPPER_BOUND if upper is None else upper),
    }
    return sql, params


def parse_clickhouse_row(line: str) -> tuple[CursorKey | None, Signal | None, str | None]:
    """One JSONEachRow line: (its cursor key when readable, the signal or None, why not)."""
    try:
        row = decode_line(line, "row")
    except InputError as exc:
        return None, None, str(exc).removeprefix("row: ")
    key: CursorKey | None = None
    name = "event_ts"
    try:
        ts = _parse_ts(row.get("event_ts"))
        name = "symbol"
        symbol = check_identifier(row.get("symbol"), _SYMBOL_MAX)
        name = "seq"
        seq = _parse_seq(row.get("seq"))
        key = (ts, symbol, seq)
        name = "window_size"
        window = row.get("window_size")
        if not isinstance(window, str):
            raise ValueError("expected an ISO 8601 duration")
        timeframe = iso_duration_to_timeframe(window)
        fields: dict[str, Any] = {
            "event_ts": ts,
            "symbol": symbol,
            "seq": seq,
            "timeframe": timeframe,
        }
        for name in _NUMBERS:
            fields[name] = _parse_float(row.get(name))
        name = "price"
        fields["price"] = _parse_price(row.get("price"))
        payload: dict[str, Any] = {"window_size": window}
        if symbol != symbol.strip().upper():
            payload["source_symbol"] = symbol  # the cursor needs the stored spelling
        signal = _build_signal(fields, payload, "row")
    except (ValueError, OverflowError, OSError, InputError) as exc:
        return key, None, f"field {name!r}: {exc}"
    # The cursor compares what ClickHouse compared: the raw symbol, not the upper-cased one.
    return (ts, symbol, seq), signal, None


class ClickHouseSignalSource:
    """TA signals from ClickHouse's HTTP interface.

    Rows that cannot be read are skipped and counted. A run of bad rows at the end of a page is
    remembered, so the next fetch after a commit starts past it instead of stalling on it."""

    def __init__(
        self,
        config: ClickHouseConfig,
        db: Database,
        *,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = config
        self._cursor = _CursorStore(db, _bounded_key(config.source_key))
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(verify=clickhouse_tls(config.ca_file))
        self._bad_tail: tuple[CursorKey, CursorKey] | None = None
        # How far past the cursor a page looks (see `_page`); learned as pages come back.
        self._horizon = _FIRST_HORIZON
        self._warned = 0
        self.skipped = 0

    async def _start(self) -> CursorKey:
        cursor = await self._cursor.get()
        if cursor is None:
            since = datetime.now(UTC) - self._config.initial_lookback
            cursor = (since, "", 0)
        if self._bad_tail is not None and self._bad_tail[0] <= cursor < self._bad_tail[1]:
            cursor = self._bad_tail[1]
        return cursor

    async def fetch(self, limit: int) -> list[Signal]:
        if limit <= 0:
            return []
        start = await self._start()
        bad_from: CursorKey | None = None
        # An all-bad page is followed by the next one, a bounded number of times per fetch.
        for _ in range(10):
            lines = await self._page(start, limit)
            if not lines:
                return []
            good: list[Signal] = []
            last_good, last_key = start, start
            for line in lines:
                key, signal, reason = parse_clickhouse_row(line)
                if key is not None:
                    last_key = max(last_key, key)
                if signal is None:
                    self._skip(reason or "unreadable row", line)
                    continue
                good.append(signal)
                assert key is not None
                last_good = max(last_good, key)
            if last_key > last_good:
                self._bad_tail = (bad_from if bad_from and not good else last_good, last_key)
            if good:
                return good
            if last_key == start:  # bad rows without a readable key: cannot move past them
                log.error("clickhouse: a page of unreadable rows after %s; retrying", start)
                return []
            bad_from = bad_from or start
            start = last_key
        return []

    def _skip(self, reason: str, line: str) -> None:
        self.skipped += 1
        self._warned += 1
        if self._warned <= _WARN_LIMIT:
            log.warning("clickhouse: skipped a signal row: %s: %.200s", reason, line)
        elif self._warned % 1000 == 0:
            log.warning("clickhouse: %d signal rows skipped so far", self.skipped)

    async def _page(self, start: CursorKey, limit: int) -> list[str]:
        """The next rows after `start`, at most `limit`, read from a bounded time range.

        A page looks `_horizon` past the cursor, not to the present: catching up on a backlog
        then costs about one page of rows per page, not the whole rest of the backlog each
        time. A full page that ended well inside its range narrows the horizon; a short page
        that did not reach the present widens it. An empty range is stepped over, the next one
        four times as wide (a gap in the data is crossed in a few steps; after twelve, the
        rest is read up to the present)."""
        for _ in range(_WIDENINGS):
            upper = start[0] + self._horizon
            if upper >= datetime.now(UTC):
                # Caught up: read to the present, and look near again after the next outage.
                self._horizon = min(self._horizon, _FIRST_HORIZON)
                return await self._query(start, limit, None)
            lines = await self._query(start, limit, upper)
            if len(lines) >= limit:
                last, _signal, _reason = parse_clickhouse_row(lines[-1])
                if last is not None and last[0] - start[0] < self._horizon / 2:
                    self._horizon = max(_MIN_HORIZON, 2 * (last[0] - start[0]))
                return lines
            self._horizon *= 4
            if lines:
                return lines
            start = (upper, "", 0)  # nothing before `upper`: look on from there
        return await self._query(start, limit, None)

    async def _query(self, cursor: CursorKey, limit: int, upper: datetime | None) -> list[str]:
        sql, params = build_signals_query(
            cursor=cursor,
            limit=limit,
            database=self._config.database,
            settle_seconds=self._config.settle_seconds,
            upper=upper,
        )
        timeout = self._config.timeout_seconds
        url_params = {f"param_{name}": value for name, value in params.items()}
        # The server stops the query too, so an abandoned one does not keep running.
        url_params["max_execution_time"] = str(max(1, math.ceil(timeout)))
        headers = {"X-ClickHouse-User": self._config.username}
        if self._config.password:
            headers["X-ClickHouse-Key"] = self._config.password
        try:
            # httpx's timeouts are per operation; the outer one bounds the whole exchange.
            async with asyncio.timeout(timeout):
                response = await self._client.post(
                    f"{self._config.url.rstrip('/')}/",
                    params=url_params,
                    content=sql.encode(),
                    headers=headers,
                    timeout=httpx.Timeout(timeout),
                )
        except (TimeoutError, httpx.TimeoutException):
            raise SignalSourceError(f"clickhouse query timed out after {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise SignalSourceError(
                f"clickhouse unreachable: {type(exc).__name__}: {self._safe(str(exc))}"
            ) from None
        if response.status_code != 200:
            code = response.headers.get("X-ClickHouse-Exception-Code")
            detail = self._safe(response.text.strip())
            raise SignalSourceError(
                f"clickhouse answered {response.status_code}"
                + (f" (code {code})" if code else "")
                + (f": {detail}" if detail else "")
            )
        return [line for line in response.text.splitlines() if line.strip()]

    def _safe(self, text: str) -> str:
        return redact(text, [self._config.password or ""])

    async def commit(self, signals: Sequence[Signal]) -> None:
        if signals:
            await self._cursor.advance(max(self._raw_key(s) for s in signals))

    @staticmethod
    def _raw_key(signal: Signal) -> CursorKey:
        # Signal upper-cases symbols, but ClickHouse compares the stored spelling: a cursor
        # on "AAPL" would sort before a stored "aapl" and repeat it forever.
        stored = signal.payload.get("source_symbol")
        symbol = stored if isinstance(stored, str) else signal.symbol
        return (signal.event_ts, symbol, signal.seq)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
