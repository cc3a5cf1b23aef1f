"""`run_replay` brings the schema to head, without running Alembic when it is there already
(issue 16: its no-op run cost more than replaying a small file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from torghut import replay
from torghut.db.engine import alembic_config, sync_engine
from torghut.replay import SCHEMA_HEAD, _schema_at_head, ensure_schema


def _revision(dsn: str) -> str | None:
    engine = sync_engine(dsn)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    finally:
        engine.dispose()


def test_the_schema_head_is_the_newest_migration() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [SCHEMA_HEAD]


def test_a_database_at_head_is_not_upgraded_again(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _schema_at_head(db_dsn)

    def refuse(dsn: str, revision: str = "head") -> None:
        raise AssertionError("Alembic ran on a database at head")

    monkeypatch.setattr(replay, "upgrade", refuse)
    ensure_schema(db_dsn)


def test_an_older_or_empty_database_is_upgraded(db_dsn: str) -> None:
    command.downgrade(alembic_config(db_dsn), "-1")
    assert not _schema_at_head(db_dsn)
    ensure_schema(db_dsn)
    assert _revision(db_dsn) == SCHEMA_HEAD
    command.downgrade(alembic_config(db_dsn), "base")
    assert not _schema_at_head(db_dsn)
    ensure_schema(db_dsn)
    assert _revision(db_dsn) == SCHEMA_HEAD


def test_a_new_file_or_a_bad_dsn_goes_to_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert not _schema_at_head(fresh)
    ensure_schema(fresh)
    assert _revision(fresh) == SCHEMA_HEAD
    assert not _schema_at_head("mysql://nowhere/db")
    with pytest.raises(ValueError, match="unsupported database URL scheme"):
        ensure_schema("mysql://nowhere/db")
