"""The providers' house (issue 13 item 8): what both share lives in `stream.py`, each provider
imports only its own HTTP library, and every third-party package imported is declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "torghut"
LLM = SRC / "trading" / "llm"


def imported(path: Path) -> set[str]:
    """Top-level names of the modules `path` imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


HTTP_LIBRARIES = {"httpx", "httpx2", "httpcore", "httpcore2", "h11", "openai", "aiohttp"}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [("jangar.py", {"httpx"}), ("openai.py", {"openai", "httpx2"}), ("stream.py", set())],
)
def test_each_provider_imports_only_its_own_library(module: str, allowed: set[str]) -> None:
    names = imported(LLM / module)
    assert top(names) & HTTP_LIBRARIES == allowed
    # No provider borrows from the other: shared code is in stream.py.
    assert not {n for n in names if n.startswith("torghut.trading.llm.")} & {
        "torghut.trading.llm.jangar",
        "torghut.trading.llm.openai",
    }


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    names = {re.split(r"[\[=<>!~ ;]", r, maxsplit=1)[0] for r in requirements}
    return {n.lower().replace("_", "-") for n in names}


def test_every_third_party_import_is_declared() -> None:
    distributions = packages_distributions()
    declared = _declared()
    missing: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for name in top(imported(path)):
            if name in sys.stdlib_module_names or name in ("torghut", "__future__"):
                continue
            owners = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
            if not owners & declared:
                missing[name] = str(path.relative_to(ROOT))
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"
