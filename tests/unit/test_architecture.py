"""The doors between rooms (README, Architecture): the pure core does no I/O and names no
adapter; orchestration reaches providers only through the port. Checked on the import
statements, so a new import in the wrong direction fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "torghut"

PURE_CORE = [
    "errors.py",
    "limits.py",
    "domain.py",
    "ports.py",
    "trading/strategy.py",
    "trading/risk.py",
    "trading/ledger.py",
    "trading/orders.py",
    "trading/session.py",
    "trading/judge.py",
    "trading/gate.py",
    "trading/llm/sse.py",
    "trading/llm/schema.py",
    "trading/llm/answer.py",
    "trading/llm/prompts.py",
    "trading/llm/policy.py",
    "trading/llm/circuit.py",
    "trading/llm/anonymize.py",
    "evaluation/evaluate.py",
    "evaluation/render.py",
    "evaluation/prices.py",
    "trading/results.py",
]
ORCHESTRATION = [
    "trading/llm/review_engine.py",
    "trading/pipeline.py",
    "trading/scheduler.py",
    "trading/reconcile.py",
    "trading/group_commit.py",
    "trading/audit_rows.py",
]
ADAPTER_FILES = [
    "trading/llm/jangar.py",
    "trading/llm/openai.py",
    "trading/llm/client.py",
    "trading/llm/retry.py",
    "db/engine.py",
    "db/tables.py",
    "db/repo.py",
    "trading/signals.py",
    "trading/catalog.py",
    "trading/brokers.py",
    "trading/alpaca.py",
    "metrics.py",
]
# The README's departures, each named: the scheduler holds the leader lock's SQL itself, and
# reconciliation reads and writes executions through the tables directly. Anything else an
# orchestration module imports from outside the core is a new arrow, and fails here.
ORCHESTRATION_EXCEPTIONS: dict[str, tuple[str, ...]] = {
    "trading/scheduler.py": ("sqlalchemy",),
    "trading/reconcile.py": ("sqlalchemy", "torghut.db.engine", "torghut.db.tables"),
}
# Metrics is a sink every ring above the core may write to.
SHARED = ("torghut.metrics",)
IO_LIBRARIES = (
    "asyncio",
    "httpx",
    "sqlalchemy",
    "fastapi",
    "starlette",
    "uvicorn",
    "openai",
    "alpaca",
    "psycopg",
    "aiosqlite",
    "socket",
    "os",
    "subprocess",
)
ADAPTERS = (
    "torghut.db",
    "torghut.config",
    "torghut.metrics",
    "torghut.bootstrap",
    "torghut.cli",
    "torghut.main",
    "torghut.trading.llm.jangar",
    "torghut.trading.llm.openai",
    "torghut.trading.llm.client",
    "torghut.trading.brokers",
    "torghut.trading.alpaca",
    "torghut.trading.signals",
)


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
            # `from torghut.trading import brokers` imports the module `torghut.trading.brokers`.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
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


def _module(path: str) -> str:
    return "torghut." + path.removesuffix(".py").replace("/", ".")


@pytest.mark.parametrize("module", PURE_CORE)
def test_the_core_imports_only_the_core(module: str) -> None:
    core = (*(_module(m) for m in PURE_CORE), "torghut.trading.risk")
    names = {
        n
        for n in runtime_imports(PACKAGE / module)
        if n.startswith("torghut.") and n not in ("torghut.trading", "torghut.trading.llm")
    }
    assert sorted(n for n in names if not _hits({n}, core)) == []


@pytest.mark.parametrize("module", ORCHESTRATION)
def test_orchestration_reaches_adapters_only_through_ports(module: str) -> None:
    """The pipeline writes through the AuditStore port, sends through the Broker port, reads
    through the SignalSource port: an adapter import (db, brokers, signals, a provider, the
    config) fails here."""
    allowed = ORCHESTRATION_EXCEPTIONS.get(module, ())
    names = {n for n in runtime_imports(PACKAGE / module) if not _hits({n}, allowed)}
    assert _hits(names, tuple(a for a in ADAPTERS if a not in SHARED)) == []
    assert _hits(names, IO_LIBRARIES[1:]) == []  # asyncio is its trade; sockets are not


@pytest.mark.parametrize("module", ADAPTER_FILES)
def test_adapters_never_import_orchestration(module: str) -> None:
    names = runtime_imports(PACKAGE / module)
    assert _hits(names, tuple(_module(m) for m in ORCHESTRATION)) == []


def test_the_orchestration_check_catches_a_new_adapter_import(tmp_path: Path) -> None:
    """The check is not vacuous: the pipeline with one more import of the database fails."""
    source = (PACKAGE / "trading/pipeline.py").read_text()
    broken = tmp_path / "pipeline.py"
    broken.write_text("from torghut.db import repo\n" + source)
    names = runtime_imports(broken)
    assert _hits(names, tuple(a for a in ADAPTERS if a not in SHARED)) == [
        "torghut.db",
        "torghut.db.repo",
    ]


def test_nothing_imports_the_entry_points() -> None:
    entry = ("torghut.cli", "torghut.main", "torghut.bootstrap")
    allowed = {"cli.py", "main.py", "bootstrap.py", "replay.py", "demo.py", "dryrun.py"}
    for path in PACKAGE.rglob("*.py"):
        if path.name in allowed:
            continue
        assert _hits(runtime_imports(path), entry) == [], path
