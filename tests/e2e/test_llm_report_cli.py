"""`torghut llm report` as operators run it: exit 1 naming the failed criterion, 0 when ready
(issue: "exits 1 on a database with 2 % errors and 0 on one with none")."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import Database
from tests.e2e.cli import torghut
from tests.integration.test_report import Row, error, insert

RECENT = datetime.now(UTC) - timedelta(hours=1)


async def test_two_percent_errors_is_not_ready(database: Database, tmp_path: Path) -> None:
    rows = [Row(at=RECENT)] * 98 + [replace(error("timeout"), at=RECENT)] * 2
    await insert(database, rows)
    env = {"DB_DSN": database.dsn}
    result = torghut("llm", "report", "--max-error-rate", "0.01", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "NOT READY" in result.stdout and "error_rate" in result.stdout
    as_json = torghut("llm", "report", "--max-error-rate", "0.01", "--json", env=env, cwd=tmp_path)
    body = json.loads(as_json.stdout)
    assert body["ready"] is False and any("error_rate" in f for f in body["failed"])
    html = tmp_path / "r.html"
    torghut("llm", "report", "--html", str(html), env=env, cwd=tmp_path)
    assert "<svg" in html.read_text()


async def test_no_errors_is_ready(database: Database, tmp_path: Path) -> None:
    await insert(database, [Row(at=RECENT)] * 100)
    result = torghut(
        "llm",
        "report",
        "--max-error-rate",
        "0.01",
        "--since",
        "24h",
        env={"DB_DSN": database.dsn},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "READY" in result.stdout and "NOT READY" not in result.stdout


def test_bad_since_is_exit_2(tmp_path: Path) -> None:
    result = torghut(
        "llm",
        "report",
        "--since",
        "yesterday",
        env={"DB_DSN": f"sqlite:///{tmp_path}/x.db"},
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "--since" in result.stderr


def test_unmigrated_or_unreachable_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "new.db").touch()  # an empty SQLite database (a missing one is not opened)
    fresh = torghut("llm", "report", env={"DB_DSN": f"sqlite:///{tmp_path}/new.db"}, cwd=tmp_path)
    assert fresh.returncode == 1
    assert fresh.stderr.strip().splitlines() == [
        "torghut: database error: no such table: llm_decision_reviews (run `torghut db upgrade`)"
    ]
    down = torghut(
        "llm", "report", env={"DB_DSN": "postgresql://u:pw-secret-9@127.0.0.1:1/x"}, cwd=tmp_path
    )
    assert down.returncode == 1 and len(down.stderr.strip().splitlines()) == 1
    assert "pw-secret-9" not in down.stderr and "Traceback" not in down.stderr


async def test_no_criteria_is_not_a_pass(database: Database, tmp_path: Path) -> None:
    await insert(database, [Row(at=RECENT)] * 10)
    result = torghut("llm", "report", env={"DB_DSN": database.dsn}, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NO CRITERIA" in result.stdout and "\nREADY" not in result.stdout


async def test_fewer_reviews_than_min_reviews_is_never_ready(
    database: Database, tmp_path: Path
) -> None:
    await insert(database, [Row(at=RECENT)] * 10)
    env = {"DB_DSN": database.dsn}
    result = torghut(
        "llm", "report", "--min-reviews", "11", "--max-error-rate", "0.5", env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "NOT READY: reviews 10 < min 11" in result.stdout
    ready = torghut(
        "llm", "report", "--min-reviews", "10", "--max-error-rate", "0.5", env=env, cwd=tmp_path
    )
    assert ready.returncode == 0
    assert "READY (checked: reviews 10 >= min 10; error_rate" in ready.stdout


def test_a_rate_outside_0_1_or_a_negative_count_is_exit_2_naming_the_flag(
    tmp_path: Path,
) -> None:
    env = {"DB_DSN": f"sqlite:///{tmp_path}/x.db"}
    for args, flag in (
        (["--max-error-rate", "5"], "--max-error-rate"),
        (["--max-error-rate", "-0.01"], "--max-error-rate"),
        (["--min-reviews", "-3"], "--min-reviews"),
        (["--max-p95-ms", "-1"], "--max-p95-ms"),
    ):
        result = torghut("llm", "report", *args, env=env, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert flag in line and "Traceback" not in line
        assert not (tmp_path / "x.db").exists()  # refused before touching the database
