"""Shared fixtures: a scrubbed environment for every test, and a migrated database on SQLite
and on PostgreSQL (`TORGHUT_TEST_DATABASE_URL`, default the local server; skipped with a
message when it cannot be reached)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from torghut.config import Settings
from torghut.db.engine import Database as TorghutDatabase
from torghut.db.engine import create_engine_from_dsn, session_factory, sync_engine, upgrade

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
_pg_reason: str | None = None
_pg_checked = False


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's environment or `.env`."""
    fields = {name.upper() for name in Settings.model_fields}
    for key in list(os.environ):
        if key.upper() in fields:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


def postgres_url() -> str:
    return os.environ.get("TORGHUT_TEST_DATABASE_URL", DEFAULT_PG)


def postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    global _pg_checked, _pg_reason
    if not _pg_checked:
        _pg_checked = True
        try:
            engine = sync_engine(postgres_url())
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            engine.dispose()
        except Exception as exc:  # any failure means: skip, and say why
            _pg_reason = (
                f"PostgreSQL not reachable at {postgres_url()} "
                f"(set TORGHUT_TEST_DATABASE_URL): {type(exc).__name__}"
            )
    return _pg_reason


def make_pg_schema_dsn() -> tuple[str, str]:
    """A DSN whose connections use a fresh schema, so tests never see each other's rows."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sync_engine(postgres_url())
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    base = postgres_url()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def drop_pg_schema(schema: str) -> None:
    engine = sync_engine(postgres_url())
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@dataclass
class Database:
    dsn: str
    kind: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]  # the tests' own reads and set-up
    db: TorghutDatabase  # what the code under test runs on


@pytest.fixture(params=["sqlite", "postgresql"])
def db_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, migrated to head."""
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path / 'torghut-test.db'}"
        upgrade(dsn)
        yield dsn
        return
    reason = postgres_unavailable()
    if reason:
        if os.environ.get("TORGHUT_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)  # CI must not go green by skipping the PostgreSQL half
        pytest.skip(reason)
    dsn, schema = make_pg_schema_dsn()
    try:
        upgrade(dsn)
        yield dsn
    finally:
        drop_pg_schema(schema)


@pytest.fixture
async def database(db_dsn: str) -> AsyncIterator[Database]:
    engine = create_engine_from_dsn(db_dsn)
    kind = "sqlite" if db_dsn.startswith("sqlite") else "postgresql"
    db = TorghutDatabase(db_dsn)
    try:
        yield Database(db_dsn, kind, engine, session_factory(engine), db)
    finally:
        await db.aclose()
        await engine.dispose()
