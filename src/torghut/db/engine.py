"""Engines and sessions from a DSN, the `Database` every transaction of the service runs on,
JSON that never crashes on UUIDs or decimals, and the Alembic upgrade that `db upgrade`,
`serve`, `replay` and `demo` run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import enum
import functools
import json
import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import filelock
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Table, Update, bindparam, create_engine, event, make_url, update
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import NullPool

from torghut.db.binding import ColumnProcess, column_form
from torghut.db.jsontext import JSONText, passes_json_text

T = TypeVar("T")

# A statement that runs this long is cancelled by PostgreSQL: a worker thread cannot be
# cancelled from the event loop, so the server has to bound it.
STATEMENT_TIMEOUT_MS = 30_000


def jsonable(value: Any) -> Any:
    """A deep copy of `value` that `json.dumps` accepts: UUIDs, decimals, datetimes, enums,
    dataclasses and pydantic models become strings, numbers or dicts. Non-finite decimals and
    floats become strings, since JSON (and PostgreSQL's jsonb) has no NaN."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        finite = value == value and value not in (float("inf"), float("-inf"))
        return value if finite else str(value)
    if isinstance(value, Decimal):
        # Plain notation without trailing zeros: "10", not "10.00000000" or "1E+1".
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, (uuid.UUID, Path)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return str(value)


@passes_json_text
def json_dumps(value: Any) -> str:
    if type(value) is JSONText:
        return str(value)  # serialized (and made storable) by the column's bind step
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))


def normalize_dsn(dsn: str, *, asynchronous: bool) -> URL:
    """`postgres://`, `postgresql://` and `sqlite://` URLs, as operators write them, to the
    driver URLs SQLAlchemy needs (psycopg 3 for PostgreSQL; aiosqlite or sqlite3 for SQLite)."""
    url = make_url(dsn)
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
    raise ValueError(f"unsupported database URL scheme {url.drivername!r}")


def is_sqlite(dsn: str) -> bool:
    return make_url(dsn).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Foreign keys are off by default in SQLite. WAL lets readers (the API, `llm report`) work
    # while the loop writes; with WAL, synchronous=NORMAL still never corrupts the database and
    # loses at most the last commits on power loss, not on a process crash.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine_from_dsn(dsn: str) -> AsyncEngine:
    url = normalize_dsn(dsn, asynchronous=True)
    kwargs: dict[str, Any] = {"json_serializer": json_dumps}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            kwargs["poolclass"] = NullPool
        else:
            # SQLite has one writer. Concurrent writers would spin in its busy handler (sleeps
            # of up to 100 ms each); one pooled connection makes them queue in-process instead.
            kwargs.update(pool_size=1, max_overflow=0, pool_timeout=60)
    else:
        kwargs.update(
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=10,
            connect_args=postgres_connect_args(url),
        )
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(dsn: str) -> AlembicConfig:
    cfg = AlembicConfig()
    location = resources.files("torghut.db") / "migrations"
    cfg.set_main_option("script_location", str(location))
    # `%` would be read as interpolation by configparser.
    url = normalize_dsn(dsn, asynchronous=False).render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(dsn: str, revision: str = "head") -> None:
    """Bring the schema to `revision`. Synchronous: call it from a thread inside the loop."""
    command.upgrade(alembic_config(dsn), revision)


def sync_engine(dsn: str) -> Engine:
    engine = create_engine(normalize_dsn(dsn, asynchronous=False), json_serializer=json_dumps)
    if is_sqlite(dsn):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# Deadlines for a PostgreSQL server that stops answering: the connect (s), unacknowledged
# writes (libpq's tcp_user_timeout, ms) and idle reads (TCP keepalives).
_POSTGRES_DEADLINES: dict[str, int] = {
    "connect_timeout": 10,
    "tcp_user_timeout": 60_000,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def postgres_connect_args(url: URL) -> dict[str, int]:
    """Our deadlines, except those the operator's DSN sets itself (the DSN wins)."""
    return {k: v for k, v in _POSTGRES_DEADLINES.items() if k not in url.query}


def _sets_statement_timeout(url: URL) -> bool:
    options = url.query.get("options", "")
    text = " ".join(options) if isinstance(options, tuple) else options
    return "statement_timeout" in text


def _postgres_session_settings(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    dbapi_connection.commit()  # else the pool's rollback on return would undo the SET


@functools.cache
def update_by_key(table: Table, key: str, columns: tuple[str, ...]) -> Update:
    """UPDATE `table` SET each of `columns` WHERE `key` matches, for executemany: parameters
    `b_key` and `b_<column>` (prefixed, since a bind may not share a column's name)."""
    return (
        update(table)
        .where(table.c[key] == bindparam("b_key"))
        .values({name: bindparam(f"b_{name}") for name in columns})
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _ManyPlan:
    """A statement compiled once for executemany with one set of parameter names: its SQL,
    the names in the driver's order, and each one's bind processor (None: bound as is)."""

    sql: str
    names: tuple[str, ...]
    # Each processed column's place and its processor's whole-column form.
    processors: tuple[tuple[int, ColumnProcess], ...]
    positional: bool
    getter: Callable[[Mapping[str, Any]], tuple[Any, ...]]  # a row's values, in `names` order


_MANY_PLANS: dict[tuple[Any, ...], _ManyPlan | None] = {}
_MANY_PLANS_KEPT = 256


def _many_plan(statement: Any, dialect: Any, keys: tuple[str, ...]) -> _ManyPlan | None:
    """The plan, or None when the statement needs more than the rows' values bound as they
    are (defaults computed per row, literal or expanding parameters, RETURNING, renamed
    binds, insertmanyvalues): those go through `Connection.execute`."""
    compiled: Any = statement.compile(
        dialect=dialect, column_keys=sorted(keys), for_executemany=True
    )
    if (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.escaped_bind_names
        or compiled.schema_translate_map
        or compiled.effective_returning
        or compiled._insertmanyvalues
    ):
        return None
    names = (
        tuple(compiled.positiontup) if compiled.positional else tuple(compiled.bind_names.values())
    )
    if not set(names) <= set(keys):
        return None  # a bind with a value of its own (a literal): SQLAlchemy binds it
    processors = compiled._bind_processors
    if any(not callable(processors[n]) for n in names if n in processors):
        return None  # tuple types
    return _ManyPlan(
        sql=compiled.string,
        names=names,
        processors=tuple(
            (i, column_form(processors[n])) for i, n in enumerate(names) if n in processors
        ),
        positional=bool(compiled.positional),
        getter=_values_of(names),
    )


def _values_of(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:  # itemgetter of one name gives the value, not a 1-tuple
        (name,) = names
        return lambda row: (row[name],)
    return operator.itemgetter(*names)


def executemany(conn: Connection, statement: Any, rows: Sequence[Mapping[str, Any]]) -> int:
    """`conn.execute(statement, rows).rowcount`, for the statements the pipeline runs on
    every batch (`statement` a module constant: plans are kept by statement). Compiled once
    per set of names, the rows bound in one pass through the columns' own bind processors
    (the NUL guard included), without SQLAlchemy's per-row parameter dictionaries. A
    statement this cannot bind exactly as SQLAlchemy would, or rows whose names differ, go
    through `conn.execute`."""
    if len(rows) < 2:
        return conn.execute(statement, list(rows)).rowcount
    keys = tuple(rows[0])
    plan_key = (statement, conn.dialect, keys)
    try:
        plan = _MANY_PLANS[plan_key]
    except KeyError:
        if len(_MANY_PLANS) >= _MANY_PLANS_KEPT:  # statements are meant to be constants
            _MANY_PLANS.clear()
        plan = _MANY_PLANS[plan_key] = _many_plan(statement, conn.dialect, keys)
    width = len(keys)
    if plan is None or any(len(row) != width for row in rows):
        return conn.execute(statement, list(rows)).rowcount
    names, processors = plan.names, plan.processors
    params: list[Any]
    try:
        # Column by column: each column goes through its processor's whole-column form (a
        # C-level `map` of it, or one check of the whole column: `binding`), and the rows are
        # taken apart and put back together by `itemgetter` and `zip` (a Python loop per value
        # cost more than the processors themselves).
        values = list(map(plan.getter, rows))
        if processors:
            columns: list[Any] = list(zip(*values, strict=True))
            for at, process in processors:
                columns[at] = process(columns[at])
            values = list(zip(*columns, strict=True))
        params = values if plan.positional else [dict(zip(names, v, strict=True)) for v in values]
    except Exception:
        # Not the same names in every row, or a value its column refuses: SQLAlchemy says
        # which, in its own words.
        return conn.execute(statement, list(rows)).rowcount
    # The rows as given ride along, for observers of the statement (bench/floor_db.py's
    # census reads a compiled statement's parameters; this one has none).
    options = {"bound_rows": (plan.names, rows)}
    return conn.exec_driver_sql(plan.sql, params, execution_options=options).rowcount


def expect_all_matched(matched: int, expected: int, table: str, conn: Connection) -> None:
    """An UPDATE by key that matched fewer rows than it had keys wrote nothing for the rest:
    raise, so that its transaction rolls back, rather than report a write that did not happen
    (a pending order recorded on no decision, say)."""
    if conn.dialect.supports_sane_multi_rowcount and matched != expected:
        raise StaleDataError(
            f"UPDATE of {table} matched {matched} of {expected} rows: some no longer exist"
        )


class Database:
    """Where the service's SQL runs. `run(work)` runs `work(session)`, a plain synchronous
    function on a SQLAlchemy ORM session, as one transaction on the database's own worker
    threads: committed when `work` returns, rolled back when it raises.

    Why not the asyncio drivers: with them every statement is a round trip through the event
    loop (aiosqlite hands each one to its thread and back; the async ORM adds a greenlet switch
    per statement), about half a millisecond each, and a trading cycle runs tens of them. Here
    a whole transaction costs one hand-off. SQLite gets one worker, and so one connection: its
    single writer queues in-process instead of spinning in SQLite's busy handler.

    A cancelled `run` whose transaction has started cannot be called back: it finishes (or
    fails) in its thread. `settle` waits for such transactions; callers that must know treat
    a cancelled write as possibly done (see the pipeline's write-ahead orders)."""

    def __init__(self, dsn: str) -> None:
        url = normalize_dsn(dsn, asynchronous=False)
        kwargs: dict[str, Any] = {"json_serializer": json_dumps}
        self.is_sqlite = url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            workers = 1
            if url.database not in (None, "", ":memory:"):
                kwargs.update(pool_size=1, max_overflow=0, pool_timeout=60)
        else:
            workers = 20
            kwargs.update(
                pool_pre_ping=True,
                pool_size=10,
                max_overflow=10,
                connect_args=postgres_connect_args(url),
            )
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif not _sets_statement_timeout(url):
            # A statement_timeout in the DSN's options is the operator's, and wins.
            event.listen(self.engine, "connect", _postgres_session_settings)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="torghut-db"
        )
        self._running: set[concurrent.futures.Future[Any]] = set()
        self._closed = False

    async def run(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in one transaction, off the event loop."""
        if self._closed:
            raise RuntimeError("the database is closed: no new transaction can start")
        future = self._executor.submit(self._transaction, work)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return await asyncio.wrap_future(future)

    def _transaction(self, work: Callable[[Session], T]) -> T:
        with self._sessions() as session, session.begin():
            return work(session)

    @property
    def running(self) -> int:
        """Transactions started or queued and not finished (cancelled callers included)."""
        return len(self._running)

    async def settle(self, grace_seconds: float) -> int:
        """Wait, at most `grace_seconds`, for transactions whose callers were cancelled;
        returns how many are still running."""
        pending = [asyncio.wrap_future(f) for f in list(self._running) if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(grace_seconds, 0))
        return sum(1 for f in list(self._running) if not f.done())

    async def aclose(self) -> None:
        """Refuse new transactions, finish those already handed over (each bounded by the
        database's own deadlines; dropping them would fail callers that were never
        cancelled), close the connections."""
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self.engine.dispose()


def sqlite_lock_path(dsn: str) -> Path | None:
    """The lock file beside a SQLite database file (`torghut.db` -> `torghut.db.lock`); None
    for PostgreSQL and for in-memory SQLite, which no other process can open."""
    url = make_url(dsn)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if database in (None, "", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database).expanduser().absolute()
    return path.with_name(path.name + ".lock")


class FileLeaderLock:
    """One trading loop per SQLite file: an exclusive lock on a file beside the database,
    held for as long as this process leads (the counterpart of PostgreSQL's advisory lock).

    `filelock` takes an `flock` on an open descriptor, so the kernel drops it when the process
    dies, kill -9 included: a standby never waits on a lock left behind. Acquiring never
    blocks (timeout 0), so it may run on the event loop. Each instance has its own descriptor,
    so two schedulers in one process exclude each other too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = filelock.FileLock(str(path), thread_local=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    async def try_acquire(self) -> bool:
        if self._lock.is_locked:
            return True
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        return True

    async def still_held(self) -> bool:
        return self._lock.is_locked

    async def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)
