"""Start-up (issue 16): `torghut --help` and `torghut llm review` each start in under 0.3 s
(bench/bench_cli.py measures it). What makes it so is what they do not import; these tests
assert that, never a time. Each runs in a fresh interpreter, whose `sys.modules` it reads."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

from tests.e2e.cli import clean_env
from torghut.cli import REVIEW_COMMAND, UsageError, build_parser
from torghut.devgateway import DevGateway, DevGatewayConfig

# Never needed by `llm review` with Jangar and no database: the OpenAI SDK, alpaca-py with
# pandas and numpy, the trading calendar, the web stack, the HTML templates.
NOT_FOR_A_REVIEW = (
    "openai",
    "httpx2",
    "alpaca",
    "pandas",
    "numpy",
    "exchange_calendars",
    "fastapi",
    "uvicorn",
    "starlette",
    "jinja2",
)
# The database and the service's wiring: a review reads a database only when its file exists.
DATABASE = ("sqlalchemy", "alembic", "aiosqlite", "psycopg", "prometheus_client", "yaml")
WATCHED = (*NOT_FOR_A_REVIEW, *DATABASE, "pydantic", "pydantic_settings", "httpx", "asyncio")

DECISION = {
    "strategy_id": "manual",
    "symbol": "AAPL",
    "action": "buy",
    "qty": 5,
    "order_type": "market",
    "time_in_force": "day",
    "event_ts": "2026-11-25T15:30:00Z",
    "timeframe": "1Min",
    "params": {"price": 231.5},
}


def _script(code: str) -> str:
    """`code`, then one last stdout line: the watched top-level packages it imported."""
    report = f"print(json.dumps(sorted(m for m in {WATCHED!r} if m in sys.modules)))"
    return f"import json, sys\n{code}\n{report}\n"


async def _run(code: str, cwd: Path, env: dict[str, str]) -> tuple[int, list[str], list[str]]:
    """(exit code, stdout lines before the report, the watched packages imported)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _script(code),
        env=clean_env(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    *lines, report = out.decode().splitlines()
    return proc.returncode, lines, json.loads(report)


def _cli(*args: str) -> str:
    """Runs `torghut ARGS` in-process, keeping its exit code for the report line."""
    return (
        "import contextlib, io\n"
        "from torghut.cli import main\n"
        "try:\n"
        f"    code = main({list(args)!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print('exit', code)"
    )


@pytest.mark.parametrize("args", [["--help"], ["llm", "review", "--help"], ["--version"]])
async def test_help_and_version_import_no_library(args: list[str], tmp_path: Path) -> None:
    """Not even asyncio: usage and help need argparse and the logging set-up only."""
    _, lines, loaded = await _run(_cli(*args), tmp_path, {})
    assert lines[-1] == "exit 0"
    assert loaded == []


async def _dry_run_review(tmp_path: Path) -> tuple[list[str], list[str], int]:
    """`llm review` as the operator's dry run (a local gateway, no database file): its output
    lines, the modules it loaded, and the review requests the gateway answered."""
    (tmp_path / "decision.json").write_text(json.dumps(DECISION))
    async with DevGateway(DevGatewayConfig()) as gateway:
        _, lines, loaded = await _run(
            _cli("llm", "review", "--decision", "decision.json"),
            tmp_path,
            {"JANGAR_BASE_URL": gateway.base_url, "DB_DSN": "sqlite:///missing.db"},
        )
        return lines, loaded, gateway.request_count


async def test_a_review_imports_only_what_it_uses(tmp_path: Path) -> None:
    """A review through a local gateway, as the operator's dry run: no provider SDK, no
    broker library, no web stack."""
    lines, loaded, requests = await _dry_run_review(tmp_path)
    assert requests == 1  # the review (the models check is not counted)
    out = json.loads(lines[0])
    assert (out["provider"], out["verdict"], lines[-1]) == ("jangar", "approve", "exit 0")
    assert not set(NOT_FOR_A_REVIEW) & set(loaded), loaded
    assert {"httpx", "pydantic_settings", "asyncio"} <= set(loaded)  # what it does use


async def test_a_review_without_a_database_imports_no_database_library(tmp_path: Path) -> None:
    lines, loaded, _ = await _dry_run_review(tmp_path)
    assert lines[-1] == "exit 0"
    assert not set(DATABASE) & set(loaded), loaded


@pytest.mark.parametrize(
    ("dsn", "sqlalchemy"),
    [
        ("sqlite:///torghut.db", False),
        ("sqlite+aiosqlite:////var/lib/torghut/t.db", False),
        ("sqlite:///:memory:", False),
        # Anything else is still checked by SQLAlchemy's own URL parser.
        ("sqlite:///t.db?timeout=5", True),
        ("postgresql+psycopg://u:p@127.0.0.1:5432/test", True),
    ],
)
async def test_settings_check_a_plain_sqlite_url_without_sqlalchemy(
    dsn: str, sqlalchemy: bool, tmp_path: Path
) -> None:
    code = "from torghut.config import load_settings\nprint(load_settings(None, None).db_dsn)"
    _, lines, loaded = await _run(code, tmp_path, {"DB_DSN": dsn})
    assert lines == [dsn]
    assert ("sqlalchemy" in loaded) is sqlalchemy


# Needed only once an answer comes in (or with --anonymize): imported, and the models built, after
# the review's request has left, so that they do not delay it.
AFTER_THE_REQUEST = (
    "torghut.trading.llm.answer",
    "torghut.trading.llm.anonymize",
    "torghut.trading.llm.sse",
)
DEFERRED_MODELS = ("torghut.domain:Signal", "torghut.trading.llm.schema:LLMReviewResponse")
# Records, as the review's request is sent, which of those were imported or built by then.
_AT_THE_REQUEST = f"""
import httpx, importlib
seen = {{}}
_send = httpx.AsyncClient.send
def _state():
    built = []
    for path in {DEFERRED_MODELS!r}:
        module, _, name = path.partition(":")
        if getattr(importlib.import_module(module), name).__pydantic_complete__:
            built.append(path)
    return {{"modules": [m for m in {AFTER_THE_REQUEST!r} if m in sys.modules], "built": built}}
async def _spy(self, request, **kwargs):
    if request.url.path.endswith("/chat/completions") and not seen:
        seen.update(_state())
    return await _send(self, request, **kwargs)
httpx.AsyncClient.send = _spy
"""


async def test_a_review_sends_its_request_before_loading_what_reads_the_answer(
    tmp_path: Path,
) -> None:
    (tmp_path / "decision.json").write_text(json.dumps(DECISION))
    code = (
        _AT_THE_REQUEST
        + _cli("llm", "review", "--decision", "decision.json")
        + "\nprint(json.dumps([seen, _state()]))"
    )
    async with DevGateway(DevGatewayConfig()) as gateway:
        _, lines, _ = await _run(
            code,
            tmp_path,
            {"JANGAR_BASE_URL": gateway.base_url, "DB_DSN": "sqlite:///missing.db"},
        )
    assert lines[-2] == "exit 0"
    at_request, after = json.loads(lines[-1])
    assert at_request == {"modules": [], "built": []}
    # The answer was read: the spy saw the request, and the answer's parts were loaded after it.
    assert after == {
        "modules": ["torghut.trading.llm.answer", "torghut.trading.llm.sse"],
        "built": ["torghut.trading.llm.schema:LLMReviewResponse"],
    }


def _parsed(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str, object]:
    """What a parser makes of `argv`: its namespace, its refusal, or its help and exit."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            return "args", vars(parser.parse_args(argv))
    except UsageError as exc:
        return "usage error", str(exc)
    except SystemExit as exc:
        return "exit", (exc.code, out.getvalue())


@pytest.mark.parametrize(
    "tail",
    [
        ["--decision", "d.json"],
        ["--decision", "-", "--signals", "s.jsonl", "--anonymize"],
        ["--dec", "d.json", "--anon"],
        [],
        ["--decision"],
        ["--decision", "d.json", "--bogus"],
        ["--decision", "d.json", "extra"],
        ["--decision", "d.json", "--version"],
        ["-h"],
        ["--decision", "d.json", "--help"],
    ],
)
def test_the_review_parser_alone_parses_as_the_full_parser(tail: list[str]) -> None:
    """`llm review` builds only its own parsers (REVIEW_COMMAND): whatever follows it is parsed,
    refused or helped exactly as by the parser of every command."""
    argv = [*REVIEW_COMMAND, *tail]
    alone = _parsed(build_parser(REVIEW_COMMAND), argv)
    assert alone == _parsed(build_parser(), argv)
    assert "serve" not in build_parser(REVIEW_COMMAND).format_help()  # only its own parsers
