"""The doors between rooms (README, Architecture): the pure core does no I/O and names no
adapter; orchestration reaches providers only through the port. Checked on the import
statements, so a new import in the wrong direction fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "torghut"

PURE_CORE = [
    "errors.py", "limits.py", "domain.py", "ports.py", "trading/strategy.py", "trading/risk.py",
    "trading/gate.py", "trading/llm/sse.py", "trading/llm/schema.py", "trading/llm/answer.py",
    "trading/llm/prompts.py", "trading/llm/policy.py", "trading/llm/circuit.py",
]
IO_LIBRARIES = ("asyncio", "httpx", "sqlalchemy", "fastapi", "starlette", "uvicorn", "openai",
                "alpaca", "psycopg", "aiosqlite", "socket", "os", "subprocess")
ADAPTERS = ("torghut.db", "torghut.config", "torghut.metrics", "torghut.bootstrap",
            "torghut.cli", "torghut.main", "torghut.trading.llm.jangar",
            "torghut.trading.llm.openai", "torghut.trading.llm.client",
            "torghut.trading.brokers", "torghut.trading.alpaca", "torghut.trading.signals")


def runtime_imports(path: Path) -> set[str]:
    """Modules imported at run time (imports under `if TYPE_CHECKING:` are left out)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _hits(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_does_no_io_and_names_no_adapter(module: str) -> None:
    names = runtime_imports(PACKAGE / module)
    assert _hits(names, IO_LIBRARIES) == []
    assert _hits(names, ADAPTERS) == []


def test_review_engine_talks_to_the_port_only() -> None:
    names = runtime_imports(PACKAGE / "trading/llm/review_engine.py")
    assert _hits(names, ("httpx", "openai", "sqlalchemy")) == []
    assert _hits(names, ADAPTERS) == []


def test_nothing_imports_the_entry_points() -> None:
    entry = ("torghut.cli", "torghut.main", "torghut.bootstrap")
    allowed = {"cli.py", "main.py", "bootstrap.py", "replay.py", "demo.py"}
    for path in PACKAGE.rglob("*.py"):
        if path.name in allowed:
            continue
        assert _hits(runtime_imports(path), entry) == [], path
