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
    # `llm eval` of every run: each reviewer's veto value beside random vetoes.
    assert "== llm eval --signals <sample> --horizons 5m,30m --cost-bps 2 ==" in out
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.startswith("  ") and "veto value" in line and "reviewer" in line
    }
    assert set(rows) == {"shadow", "enforcing", "random", "oracle"}
    oracle_low = float(rows["oracle"].split("veto value ")[1].split("[")[1].split(",")[0])
    assert oracle_low > 0
    for name in ("eval-shadow.html", "eval-oracle.html"):
        assert "<svg" in (workdir / name).read_text()
