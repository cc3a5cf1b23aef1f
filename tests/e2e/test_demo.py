"""`torghut demo`, the README's first command, runs to the end and prints the report."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import torghut


def test_demo_runs_to_the_end(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = torghut("demo", "--dir", str(workdir), cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "== shadow: shadow mode, pass_through ==" in out
    assert "== enforcing: enforcing, fail mode veto ==" in out
    assert out.count("== llm report") == 2
    assert "verdict" in out and "latency" in out
    for name in ("report-shadow.html", "report-enforcing.html"):
        html = (workdir / name).read_text()
        assert "<svg" in html
    assert "Traceback" not in result.stderr
