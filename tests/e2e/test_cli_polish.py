"""The command line as a new user meets it: every command and flag explained, `--version`, no
traceback when the reader goes away, a replay that says where it is, errors that name the
variable really missing, read-only commands that create nothing, and a start-up that imports
only what the configuration needs."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.e2e.cli import clean_env, torghut
from torghut import devgateway
from torghut.bootstrap import bundled_signals
from torghut.cli import ReplayProgress, build_parser


def parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """The parser and every sub-command's parser, depth first."""
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += parsers(child)
    return found


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for prog, p in parsers(parser):
        if not p.description:
            missing.append(f"{prog}: no description")
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{prog} {choice.dest}: no help")
            elif not action.help:
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}: no help")
    return missing


def test_every_command_and_flag_is_described() -> None:
    assert undocumented(build_parser()) == []
    assert undocumented(devgateway.build_parser()) == []
    # The check bites: a flag without help is reported.
    parser = build_parser()
    parser.add_argument("--undocumented")
    assert undocumented(parser) == ["torghut --undocumented: no help"]


def test_version(tmp_path: Path) -> None:
    result = torghut("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("torghut 0.1.0 (commit ")
    assert list(tmp_path.iterdir()) == []


def test_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    """`torghut llm report --json | head -c 10`, with the reader gone before the first byte."""
    db = tmp_path / "t.db"
    env = {"DB_DSN": f"sqlite:///{db}"}
    assert torghut("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "torghut.cli", "llm", "report", "--json"],
        env=clean_env(env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert stderr == ""


def test_a_read_only_command_creates_no_database(tmp_path: Path) -> None:
    result = torghut("llm", "report", env={"DB_DSN": "sqlite:///torghut.db"}, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "torghut: database error: no database at torghut.db (DB_DSN; `torghut db upgrade` "
        "creates one)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_llm_enabled_without_a_gateway_names_jangar_base_url(tmp_path: Path) -> None:
    result = torghut("serve", env={"LLM_ENABLED": "true"}, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("torghut: JANGAR_BASE_URL: is required with LLM_ENABLED=true")
    # With the OpenAI provider chosen, the key is what is missing.
    result = torghut("serve", env={"LLM_ENABLED": "true", "LLM_PROVIDER": "openai"}, cwd=tmp_path)
    assert result.returncode == 2 and "OPENAI_API_KEY" in result.stderr


def test_a_review_without_a_gateway_names_jangar_base_url(tmp_path: Path) -> None:
    result = torghut("llm", "review", "--decision", "-", stdin="{}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "torghut: JANGAR_BASE_URL: is required for a review (or set LLM_PROVIDER=openai and "
        "OPENAI_API_KEY)"
    ]
    chosen = torghut(
        "llm", "review", "--decision", "-", stdin="{}", cwd=tmp_path, env={"LLM_PROVIDER": "openai"}
    )
    assert chosen.returncode == 2 and "JANGAR_BASE_URL" not in chosen.stderr


def test_a_replay_ends_with_one_line_on_stderr(tmp_path: Path) -> None:
    env = {"DB_DSN": f"sqlite:///{tmp_path / 't.db'}"}
    result = torghut("replay", "--signals", str(bundled_signals()), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    (line,) = result.stderr.strip().splitlines()  # not a terminal: no progress, the last line
    assert line.endswith(
        f"replay complete: {summary['signals']} signals, {summary['decisions']} decisions, "
        f"{summary['submitted']} submitted, {sum(summary['rejected'].values())} rejected in "
        f"{summary['duration_ms'] / 1000:.1f} s"
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def cycle(signals: int, submitted: int, rejected: int) -> SimpleNamespace:
    return SimpleNamespace(
        signals=signals,
        decisions=submitted + rejected,
        submitted=submitted,
        rejected={"risk": rejected},
    )


def test_progress_is_shown_on_a_terminal_only() -> None:
    tty = Terminal()
    progress = ReplayProgress(tty)
    progress.update(cycle(500, 3, 1))
    assert tty.getvalue().startswith("\rreplay: 500 signals (")
    assert tty.getvalue().endswith("4 decisions, 3 submitted, 1 rejected")
    pipe = io.StringIO()
    progress = ReplayProgress(pipe)
    progress.update(cycle(500, 3, 1))
    assert pipe.getvalue() == ""
    # JSON logs: nothing but JSON lines on stderr, so no progress either.
    assert not ReplayProgress(Terminal(), enabled=False).live


HEAVY = ("sqlalchemy", "pydantic", "openai", "alpaca", "pandas", "numpy", "fastapi", "uvicorn")


def modules_after(code: str, tmp_path: Path) -> list[str]:
    script = "import sys\n" + code + f"\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))
    return loaded


def test_help_imports_no_heavy_library(tmp_path: Path) -> None:
    code = (
        "from torghut.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])"
    )
    assert modules_after(code, tmp_path) == []


def test_the_service_imports_no_provider_or_broker_library_it_does_not_use(
    tmp_path: Path,
) -> None:
    """Jangar and the simulated broker: neither the openai SDK nor alpaca-py (with pandas and
    numpy) is imported; they load when LLM_PROVIDER=openai / TRADING_BROKER=alpaca."""
    code = (
        "import asyncio\n"
        "from torghut.bootstrap import build_container\n"
        "from torghut.config import load_settings\n"
        "import torghut.main, torghut.replay\n"
        "s = load_settings({'DB_DSN': 'sqlite:///t.db', 'LLM_ENABLED': 'true',\n"
        "                   'JANGAR_BASE_URL': 'http://127.0.0.1:9'}, None)\n"
        "async def go():\n"
        "    c = await build_container(s)\n"
        "    await c.aclose()\n"
        "asyncio.run(go())"
    )
    loaded = modules_after(code, tmp_path)
    assert not {"openai", "alpaca", "pandas", "numpy"} & set(loaded), loaded


@pytest.mark.parametrize(
    ("env", "library"),
    [
        ({"LLM_ENABLED": "true", "LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-x"}, "openai"),
        (
            {"TRADING_BROKER": "alpaca", "APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"},
            "alpaca",
        ),
    ],
)
def test_a_configured_library_is_imported(
    tmp_path: Path, env: dict[str, str], library: str
) -> None:
    settings = {"DB_DSN": "sqlite:///t.db", **env}
    code = (
        "import asyncio\n"
        "from torghut.bootstrap import build_container\n"
        "from torghut.config import load_settings\n"
        f"s = load_settings({settings!r}, None)\n"
        "async def go():\n"
        "    c = await build_container(s)\n"
        "    await c.aclose()\n"
        "asyncio.run(go())"
    )
    assert library in modules_after(code, tmp_path)
