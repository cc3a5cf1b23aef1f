"""The durable floor: the rows torghut writes for a file, written with the bare driver.

How the floor knows what to write: `Census` listens to every statement torghut's engines send
while torghut replays the file (an untimed run), and keeps each committed transaction's
INSERTs and UPDATEs with their values as Python objects (before SQLAlchemy's bind processing).
`plan` turns those into the floor's transactions:

- one transaction per commit point of a batch, in torghut's order: the batch's decisions, their
  pending orders, the simulated broker's orders (cash, positions, orders), the executions with
  the decisions' final status, the rejections, the broker's price marks, the price references,
  the cursor. When torghut splits one commit point into several transactions (its decisions
  run in rounds of 256, each round with its own group commits), the floor commits it once;
- in each, one statement per table and kind of write: a row written twice in one commit point
  (the account's lock then its cash, a position inserted then updated by the next round) is
  written once, with its last values. Nothing is read: the floor knows what torghut found.

Then `write_sqlite` / `write_postgres` replay the plan on a fresh database migrated with
torghut's own migrations (`torghut.db.engine.upgrade`, so every index and foreign key is paid
for): `executemany` on both drivers, which psycopg 3 sends in pipeline mode (one round trip
for a statement's rows). One `INSERT ... SELECT FROM unnest(...)` / `UPDATE ... FROM unnest(...)`
per statement was measured too, and was 1.5 to 2x slower on this server for these rows. The
values are converted in the timed region, with the least a writer must do (JSON text, SQLite's
datetime text, floats for SQLite's numerics, UUID hex), and each writer first reads the file
and `json.loads` each line, as any writer must read its input.

Durability is torghut's: SQLite in WAL mode with synchronous=NORMAL, as torghut's connections
set it (a commit survives a process crash; the last commits may be lost on power loss);
PostgreSQL with the server's settings (`synchronous_commit`, `fsync`: printed by the bench), on
which every commit waits for its WAL flush by default.

`row_counts` counts the rows of every table of torghut's schema, so that the bench can check
that the floor's database holds as many as torghut's; `contents` reads them all, so that it can
check that the floor wrote, row for row, the values of the replay it was derived from.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, event
from sqlalchemy.engine import Engine

from torghut.db.tables import Base

# --------------------------------------------------------------------------------------------
# What torghut writes


@dataclass
class Op:
    """One write: an INSERT of `rows`, or an UPDATE of `columns` by `key` (each row holds its
    key and those columns). Values are Python objects, as torghut handed them to SQLAlchemy."""

    table: str
    kind: str  # "insert" or "update"
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    key: str | None = None


@dataclass
class Census:
    """Every transaction torghut commits while it is installed, with the statements counted.
    Transactions run on several threads on PostgreSQL: each connection's statements are kept
    apart until that connection commits (or dropped when it rolls back)."""

    transactions: list[list[Op]] = field(default_factory=list)
    commits: int = 0
    write_transactions: int = 0
    reads: int = 0
    writes: int = 0  # write statements (an executemany counts once)
    rows: dict[str, int] = field(default_factory=dict)  # rows written, per table
    _open: dict[int, list[Op]] = field(default_factory=dict)
    _seen: dict[int, Any] = field(default_factory=dict)  # each connection's last context
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def installed(self) -> Iterator[Census]:
        hooks: list[tuple[str, Callable[..., None]]] = [
            ("after_cursor_execute", self._after_execute),
            ("commit", self._commit),
            ("rollback", self._rollback),
        ]
        for name, fn in hooks:
            event.listen(Engine, name, fn)
        try:
            yield self
        finally:
            for name, fn in hooks:
                event.remove(Engine, name, fn)

    def _after_execute(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        verb = statement.lstrip()[:6].upper()
        with self._lock:
            if verb == "SELECT":
                self.reads += 1
                return
            if verb not in ("INSERT", "UPDATE", "DELETE"):
                return
            # An INSERT of many rows may reach the driver in several statements (SQLAlchemy's
            # "insertmanyvalues"): its rows are those of the one execution context.
            # (The context itself is kept, not its id: a freed one's id can come back.)
            if self._seen.get(id(conn)) is context:
                return
            self._seen[id(conn)] = context
            self.writes += 1
            op = _parse(statement, context, getattr(cursor, "rowcount", -1))
            if op is not None:
                self._open.setdefault(id(conn), []).append(op)
                self.rows[op.table] = self.rows.get(op.table, 0) + len(op.rows)

    def _commit(self, conn: Any) -> None:
        with self._lock:
            self.commits += 1
            self._seen.pop(id(conn), None)
            ops = self._open.pop(id(conn), None)
            if ops:
                self.write_transactions += 1
                self.transactions.append(ops)

    def _rollback(self, conn: Any) -> None:
        with self._lock:
            self._seen.pop(id(conn), None)
            self._open.pop(id(conn), None)


# A bind: `?` (sqlite3) or `%(name)s` (psycopg), which SQLAlchemy may follow with a cast.
_BIND = r"(?:\?|%\((\w+)\)s)"
_SET_PAIR = re.compile(r"(\w+)=" + _BIND)
_UPDATE = re.compile(r"UPDATE (\w+) SET (.*?) WHERE (.*)$", re.S)
_BY_KEY = re.compile(r"\s*(?:\w+\.)?(\w+) = " + _BIND + r"(?:::[\w ]+)?\s*$", re.S)
_INSERT = re.compile(r"INSERT INTO (\w+) \(([^)]*)\) VALUES", re.S)


def _parse(statement: str, context: Any, rowcount: int) -> Op | None:
    """The write `statement` made, with its rows' values; None for an UPDATE that matched
    nothing. Raises on a statement the floor cannot mirror, so a new kind of write in torghut
    fails the bench rather than leave the floor short of it."""
    bound = context.execution_options.get("bound_rows")  # torghut.db.engine.executemany
    if bound is not None:
        positiontup, params = list(bound[0]), [dict(row) for row in bound[1]]
    else:
        positiontup, params = None, list(context.compiled_parameters)
    insert = _INSERT.match(statement)
    if insert is not None:
        columns = tuple(c.strip().strip('"') for c in insert.group(2).split(","))
        missing = [c for c in columns if c not in params[0]]
        if missing:
            raise RuntimeError(f"floor: cannot map columns {missing} of {statement[:120]!r}")
        return Op(insert.group(1), "insert", columns, [{c: p[c] for c in columns} for p in params])
    if rowcount == 0:
        return None  # matched nothing: wrote nothing (an UPDATE or DELETE)
    update = _UPDATE.match(statement)
    where = None if update is None else _BY_KEY.match(update.group(3))
    if update is None or where is None:
        raise RuntimeError(f"floor: cannot mirror {statement[:160]!r} ({rowcount} rows)")
    pairs = [(m.group(1), m.group(2)) for m in _SET_PAIR.finditer(update.group(2))]
    key, key_name = where.group(1), where.group(2)
    if key_name is None:  # positional (SQLite): the binds' names in the statement's order
        order = positiontup if positiontup is not None else list(context.compiled.positiontup)
        names = order[: len(pairs)]
        key_name = order[len(pairs)]
    else:
        names = [name for _, name in pairs]
    columns = tuple(column for column, _ in pairs)
    rows = [
        {key: p[key_name], **{c: p[n] for c, n in zip(columns, names, strict=True)}} for p in params
    ]
    return Op(update.group(1), "update", columns, rows, key)


# --------------------------------------------------------------------------------------------
# The floor's transactions

_BOOK = frozenset({"sim_accounts", "sim_positions", "sim_orders"})


def _tag(op: Op) -> tuple[str, str]:
    if op.table == "trade_decisions":
        if op.kind == "insert":
            return (op.table, "insert")
        return (op.table, "status" if "status" in op.columns else "pending")
    if op.kind == "insert" and op.table in ("strategies", "sim_accounts"):
        return (op.table, "insert")  # created once, before the first batch
    return (op.table, "write")


def _commit_point(ops: list[Op]) -> frozenset[tuple[str, str]]:
    """Which commit point of a batch a transaction is, from what it writes."""
    tags = {_tag(op) for op in ops}
    tables = {op.table for op in ops}
    if tables & _BOOK and ("sim_accounts", "insert") not in tags:
        book = ("broker", "orders" if "sim_orders" in tables else "marks")
        tags = {t for t in tags if t[0] not in _BOOK} | {book}
    return frozenset(tags)


def plan(transactions: list[list[Op]]) -> list[list[Op]]:
    """The floor's transactions (see the module docstring)."""
    out: list[list[Op]] = []
    points: dict[frozenset[tuple[str, str]], list[Op]] = {}
    for ops in transactions:
        points.setdefault(_commit_point(ops), []).extend(ops)
        if any(op.table == "signal_cursors" for op in ops):  # the batch is done
            out.extend(points.values())
            points = {}
    out.extend(points.values())
    return [_fewest(ops) for ops in out]


def _primary_key(table: str) -> str:
    [column] = Base.metadata.tables[table].primary_key.columns
    return column.name


def _fewest(ops: list[Op]) -> list[Op]:
    """The same rows in the fewest statements: each row once, with its last values; one
    INSERT per table, one UPDATE per table and set of columns."""
    inserts: dict[str, dict[Any, dict[str, Any]]] = {}
    updates: dict[str, dict[Any, dict[str, Any]]] = {}
    keys: dict[str, str] = {}
    order: list[tuple[str, str]] = []
    for op in ops:
        if (op.table, op.kind) not in order:
            order.append((op.table, op.kind))
        if op.kind == "insert":
            pk = _primary_key(op.table)
            target = inserts.setdefault(op.table, {})
            for row in op.rows:
                target[row[pk]] = dict(row)
            continue
        assert op.key is not None
        keys[op.table] = op.key
        inserted = inserts.get(op.table, {})
        changed = updates.setdefault(op.table, {})
        for row in op.rows:
            k = row[op.key]
            if k in inserted:
                inserted[k].update(row)
            elif k in changed:
                changed[k].update(row)
            else:
                changed[k] = dict(row)
    out: list[Op] = []
    for table, kind in order:
        if kind == "insert":
            rows = list(inserts[table].values())
            out.append(Op(table, "insert", tuple(rows[0]), rows))
            continue
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in updates[table].values():
            columns = tuple(c for c in row if c != keys[table])
            by_columns.setdefault(columns, []).append(row)
        for columns, rows in by_columns.items():
            if rows:
                out.append(Op(table, "update", columns, rows, keys[table]))
    return [op for op in out if op.rows]


def statements(floor_plan: list[list[Op]]) -> int:
    return sum(len(ops) for ops in floor_plan)


# --------------------------------------------------------------------------------------------
# Writers

Convert = Callable[[Any], Any]


def _json(value: Any) -> Any:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_not_null(value: Any) -> Any:
    # torghut's JSON columns that are not `none_as_null` store Python's None as JSON null.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sqlite_datetime(value: Any) -> Any:
    # SQLAlchemy's SQLite text for a datetime (UTC, no offset).
    return None if value is None else value.isoformat(" ", "microseconds")[:26]


def _sqlite_number(value: Any) -> Any:
    return None if value is None else float(value)


def _sqlite_uuid(value: Any) -> Any:
    return None if value is None else value.hex


def _converters(table: str, columns: tuple[str, ...], sqlite: bool) -> list[Convert | None]:
    """Per column, what turns torghut's Python value into what the driver is handed."""
    out: list[Convert | None] = []
    for name in columns:
        column = Base.metadata.tables[table].c[name]
        if isinstance(column.type, JSON) or isinstance(getattr(column.type, "impl", None), JSON):
            nullable = bool(getattr(column.type, "none_as_null", False))
            out.append(_json if nullable else _json_not_null)
            continue
        python = _python_type(column)
        if not sqlite:
            out.append(None)
        elif python is dt.datetime:
            out.append(_sqlite_datetime)
        elif python is Decimal:
            out.append(_sqlite_number)
        elif python is uuid.UUID:
            out.append(_sqlite_uuid)
        else:
            out.append(None)
    return out


def _python_type(column: Any) -> Any:
    # A TypeDecorator (torghut's UTCDateTime, SafeString...) says `object`: ask what it wraps.
    try:
        return getattr(column.type, "impl_instance", column.type).python_type
    except NotImplementedError:
        return None


@dataclass
class _Prepared:
    sql: str
    converters: list[tuple[int, Convert]]
    rows: list[list[Any]]  # in the statement's column order


def _prepare(floor_plan: list[list[Op]], sqlite: bool) -> list[list[_Prepared]]:
    prepared: list[list[_Prepared]] = []
    for ops in floor_plan:
        txn: list[_Prepared] = []
        for op in ops:
            columns = op.columns if op.kind == "insert" else (*op.columns, op.key or "")
            convert = _converters(op.table, columns, sqlite)
            sql = _sql(op, "?" if sqlite else "%s")
            txn.append(
                _Prepared(
                    sql,
                    [(i, f) for i, f in enumerate(convert) if f is not None],
                    [[row[c] for c in columns] for row in op.rows],
                )
            )
        prepared.append(txn)
    return prepared


def _sql(op: Op, mark: str) -> str:
    """The statement of `op` with the driver's placeholder (`?` sqlite3, `%s` psycopg)."""
    if op.kind == "insert":
        marks = ", ".join(mark for _ in op.columns)
        return f"INSERT INTO {op.table} ({', '.join(op.columns)}) VALUES ({marks})"
    sets = ", ".join(f"{c} = {mark}" for c in op.columns)
    return f"UPDATE {op.table} SET {sets} WHERE {op.key} = {mark}"


def _converted(p: _Prepared) -> list[Any]:
    rows = p.rows
    if p.converters:
        rows = [list(row) for row in rows]
        for row in rows:
            for i, convert in p.converters:
                row[i] = convert(row[i])
    return rows


def read_input(path: Path) -> int:
    """What any writer must do first: read the file, `json.loads` each line."""
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                json.loads(line)
                count += 1
    return count


class FloorError(AssertionError):
    pass


def write_sqlite(
    path: Path,
    database: Path,
    floor_plan: list[list[Op]],
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds to read `path` and write the plan to `database` (migrated, empty), on `clock`
    (wall time; bench_pipeline's (g) passes the process's CPU time)."""
    prepared = _prepare(floor_plan, True)
    started = clock()
    read_input(path)
    db = sqlite3.connect(database, isolation_level=None)
    try:
        # As torghut's own connections (torghut.db.engine._sqlite_pragmas).
        for pragma in (
            "foreign_keys=ON",
            "busy_timeout=10000",
            "journal_mode=WAL",
            "synchronous=NORMAL",
        ):
            db.execute(f"PRAGMA {pragma}")
        for txn in prepared:
            db.execute("BEGIN")
            for p in txn:
                rows = _converted(p)
                cursor = db.executemany(p.sql, rows)
                if cursor.rowcount != len(rows):
                    raise FloorError(f"floor: {p.sql[:60]} wrote {cursor.rowcount}/{len(rows)}")
            db.execute("COMMIT")
    finally:
        db.close()
    return clock() - started


def write_postgres(path: Path, dsn: str, floor_plan: list[list[Op]]) -> float:
    """Seconds to read `path` and write the plan through `dsn` (a migrated, empty schema)."""
    import psycopg

    prepared = _prepare(floor_plan, False)
    started = time.perf_counter()
    read_input(path)
    with psycopg.connect(dsn) as conn:
        for txn in prepared:
            with conn.cursor() as cursor:
                for p in txn:
                    rows = _converted(p)
                    cursor.executemany(p.sql, rows)
                    if cursor.rowcount != len(rows):
                        raise FloorError(f"floor: {p.sql[:60]} wrote {cursor.rowcount}/{len(rows)}")
            conn.commit()
    return time.perf_counter() - started


def write_library(
    path: Path, dsn: str, floor_plan: list[list[Op]], compiled_cache: dict[Any, Any]
) -> float:
    """Seconds to read `path` and write the plan through SQLAlchemy Core as the library is
    meant to be used: one `engine.begin()` per transaction, one `execute(statement, rows)`
    per statement, torghut's own column types binding the values (JSON, datetimes, numerics,
    UUIDs), on an engine made as torghut makes its own (`torghut.db.engine.Database`: its
    pragmas, JSON serializer, pool). The statements and their rows are built before the clock
    starts, as the bare floor's are; `compiled_cache` is shared by the runs, so that what is
    timed is the library's execution, not its first compilations. What it costs over the bare
    floor is the library's price for the same rows, which no user of it avoids without
    bypassing it."""
    from sqlalchemy import bindparam

    from torghut.db.engine import Database

    prepared: list[list[tuple[Any, list[dict[str, Any]]]]] = []
    for ops in floor_plan:
        txn: list[tuple[Any, list[dict[str, Any]]]] = []
        for op in ops:
            table = Base.metadata.tables[op.table]
            if op.kind == "insert":
                txn.append((table.insert(), [{c: row[c] for c in op.columns} for row in op.rows]))
                continue
            key = op.key or ""
            statement = (
                table.update()
                .where(table.c[key] == bindparam("k_" + key))
                .values({c: bindparam("v_" + c) for c in op.columns})
            )
            rows = [
                {"k_" + key: row[key], **{"v_" + c: row[c] for c in op.columns}} for row in op.rows
            ]
            txn.append((statement, rows))
        prepared.append(txn)
    db = Database(dsn)
    try:
        started = time.perf_counter()
        read_input(path)
        for txn in prepared:
            with db.engine.begin() as conn:
                conn = conn.execution_options(compiled_cache=compiled_cache)
                for statement, rows in txn:
                    written = conn.execute(statement, rows).rowcount
                    # -1: an INSERT sent as several statements ("insertmanyvalues", psycopg)
                    # has no single count; the bench counts the rows of every table after.
                    if written not in (len(rows), -1):
                        raise FloorError(f"library floor: {statement} wrote {written}/{len(rows)}")
        return time.perf_counter() - started
    finally:
        db.engine.dispose()


# --------------------------------------------------------------------------------------------
# Databases and their rows


def _tables() -> list[str]:
    return sorted(Base.metadata.tables)


def row_counts(dsn: str) -> dict[str, int]:
    """Rows of every table of torghut's schema."""
    if dsn.startswith("sqlite"):
        db = sqlite3.connect(dsn.removeprefix("sqlite:///"))
        try:
            return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _tables()}
        finally:
            db.close()
    import psycopg

    with psycopg.connect(dsn) as conn:
        counts: dict[str, int] = {}
        for t in _tables():
            row = conn.execute(f"SELECT count(*) FROM {t}").fetchone()
            counts[t] = 0 if row is None else int(row[0])
        return counts


def contents(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of torghut's schema, in primary-key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    if dsn.startswith("sqlite"):
        db = sqlite3.connect(dsn.removeprefix("sqlite:///"))
        try:
            for t in _tables():
                columns = ", ".join(c.name for c in Base.metadata.tables[t].columns)
                order = ", ".join(c.name for c in Base.metadata.tables[t].primary_key.columns)
                out[t] = db.execute(f"SELECT {columns} FROM {t} ORDER BY {order}").fetchall()
        finally:
            db.close()
        return out
    import psycopg

    with psycopg.connect(dsn) as conn:
        for t in _tables():
            columns = ", ".join(c.name for c in Base.metadata.tables[t].columns)
            order = ", ".join(c.name for c in Base.metadata.tables[t].primary_key.columns)
            out[t] = conn.execute(f"SELECT {columns} FROM {t} ORDER BY {order}").fetchall()
    return out


def check_same_contents(
    torghut: dict[str, list[tuple[Any, ...]]], floor: dict[str, list[tuple[Any, ...]]], label: str
) -> None:
    """The floor writes the values torghut wrote in the replay it was derived from: the two
    databases must then be equal, row for row (an UPDATE the floor missed shows here, not in
    the row counts)."""
    for t in sorted(torghut):
        if torghut[t] != floor.get(t):
            mine, theirs = set(torghut[t]), set(floor.get(t, []))
            sample = sorted(mine - theirs, key=repr)[:1] + sorted(theirs - mine, key=repr)[:1]
            raise FloorError(f"{label}: table {t} differs from torghut's: {sample}")


def check_same_rows(torghut: dict[str, int], floor: dict[str, int], label: str) -> None:
    if torghut != floor:
        diff = {
            t: (torghut.get(t), floor.get(t))
            for t in sorted(set(torghut) | set(floor))
            if torghut.get(t) != floor.get(t)
        }
        raise FloorError(
            f"{label}: the floor's rows differ from torghut's (torghut, floor): {diff}"
        )


def postgres_answers(url: str) -> str | None:
    """None when PostgreSQL answers at `url`, else why not."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure: the PostgreSQL rows are skipped, saying why
        return f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def reachable_postgres(url: str) -> str | None:
    """`url` when PostgreSQL answers there; None (saying why, for the bench's output) when it
    does not, and its rows are skipped."""
    why = postgres_answers(url)
    if why is None:
        return url
    print(f"PostgreSQL at {url} does not answer ({why}): its rows are skipped")
    return None


def postgres_settings(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        out = {}
        for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method"):
            row = conn.execute(f"SHOW {name}").fetchone()
            out[name] = "" if row is None else str(row[0])
        return out


class PostgresSchemas:
    """Fresh schemas on the server at `url`, one per run (as the tests do), all dropped at
    the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._made: list[str] = []

    def fresh(self) -> str:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self._made.append(schema)
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}options=-csearch_path%3D{schema}"

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for schema in self._made:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self._made.clear()
