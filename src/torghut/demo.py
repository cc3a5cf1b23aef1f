"""`torghut demo`: the whole system on one machine, no network, no keys.

SQLite in a fresh folder, the dev gateway on a free loopback port, the bundled sample signals
through the full pipeline twice (the gate in shadow mode, then enforcing), the simulated broker,
and the `llm report` of each run. Ignores the environment on purpose: a demo must not trade
with somebody's real settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from torghut import report
from torghut.bootstrap import bundled_signals
from torghut.config import Settings, load_settings
from torghut.db.engine import create_engine_from_dsn, session_factory
from torghut.devgateway import DevGateway, DevGatewayConfig
from torghut.domain import utcnow
from torghut.replay import run_replay

# The dev gateway's reviewer thresholds for the demo: with $1000 orders on $100k of equity,
# a notional near the cap is vetoed and a second buy of a symbol is cut back, so the report
# shows every verdict; a small share of injected error frames shows the fail mode at work.
DEMO_GATEWAY = DevGatewayConfig(
    veto_notional=960.0,
    adjust_exposure_pct=0.015,
    fault="error-frame",
    fault_rate=0.02,
    seed=7,
    latency_seconds=0.05,
)
# Reviewers for the evaluation runs: one that vetoes at random, one that knows the future.
EVAL_HORIZONS = "5m,30m"
EVAL_SHOWN = "30m"


def evaluation_gateways(signals: Path) -> dict[str, DevGatewayConfig]:
    return {
        "random": DevGatewayConfig(reviewer="random", veto_rate=0.3, seed=7, latency_seconds=0.02),
        "oracle": DevGatewayConfig(
            reviewer="oracle",
            oracle_signals=str(signals),
            oracle_horizon_seconds=1800,
            latency_seconds=0.02,
        ),
    }


# The promotion check of docs/rollout.md, applied to each run.
DEMO_CRITERIA = report.Criteria(max_error_rate=0.05, max_p95_ms=8000, min_reviews=50)


def demo_settings(db_path: Path, base_url: str, *, shadow: bool) -> Settings:
    env = {
        "DB_DSN": f"sqlite:///{db_path}",
        "JANGAR_BASE_URL": base_url,
        "LLM_PROVIDER": "jangar",
        "LLM_ENABLED": "true",
        "LLM_SHADOW_MODE": "true" if shadow else "false",
        "LLM_FAIL_MODE": "pass_through" if shadow else "veto",
        "LLM_ADJUSTMENT_ALLOWED": "true",
        "LLM_CIRCUIT_MAX_ERRORS": "5",
        # Short, so that the seconds of the demo can show the breaker open, probe and close.
        "LLM_CIRCUIT_COOLDOWN_SECONDS": "0.3",
        "LLM_TIMEOUT_SECONDS": "10",
        "TRADING_MODE": "paper",
        "TRADING_BATCH_SIZE": "400",
        "TORGHUT_LOG_LEVEL": "error",
    }
    return load_settings(env, env_file=None)


class Progress:
    """One line, rewritten in place on a terminal; plain lines otherwise."""

    def __init__(self, out: TextIO, label: str) -> None:
        self.out, self.label = out, label
        self.tty = out.isatty()
        self.signals = self.decisions = self.submitted = 0
        self.rejected = 0

    def update(self, result: Any) -> None:
        self.signals += result.signals
        self.decisions += result.decisions
        self.submitted += result.submitted
        self.rejected += sum(result.rejected.values())
        line = (
            f"  [{self.label}] signals {self.signals:>5}  decisions {self.decisions:>4}  "
            f"submitted {self.submitted:>4}  rejected {self.rejected:>4}"
        )
        if self.tty:
            self.out.write("\r" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")


async def _phase(
    label: str, settings: Settings, signals: Path, out: TextIO
) -> tuple[dict[str, Any], str, Any]:
    progress = Progress(out, label)
    since = utcnow()
    summary = await run_replay(settings, signals, on_cycle=progress.update)
    progress.done()
    engine = create_engine_from_dsn(settings.db_dsn)
    try:
        rep = await report.build_report(session_factory(engine), since=since, until=utcnow())
    finally:
        await engine.dispose()
    failures = report.evaluate(rep, DEMO_CRITERIA)
    return summary, report.render_table(rep, failures), rep


async def _evaluate_runs(workdir: Path, signals: Path, out: TextIO) -> None:
    """`torghut llm eval` on every run: the veto value of each reviewer against random
    vetoes of the same number of decisions."""
    from torghut.evaluation import render
    from torghut.evaluation.command import run_eval

    out.write(f"== llm eval --signals <sample> --horizons {EVAL_HORIZONS} --cost-bps 2 ==\n")
    out.write(f"  veto value at {EVAL_SHOWN} (bps, 95% interval) against random vetoes\n")
    for label, reviewer in (
        ("shadow", "rules"),
        ("enforcing", "rules"),
        ("random", "random"),
        ("oracle", "oracle"),
    ):
        dsn = f"sqlite:///{workdir / f'{label}.db'}"
        rep = await run_eval(dsn, signals, horizons=EVAL_HORIZONS, cost_bps=2.0)
        (workdir / f"eval-{label}.html").write_text(
            render.render_html(rep, [], title=f"llm eval: {label} run ({reviewer} reviewer)"),
            encoding="utf-8",
        )
        h = rep["horizons"][EVAL_SHOWN]
        veto, base = h["veto_value_bps"], h["random_veto_bps"]
        out.write(
            f"  {label:<10} reviewer {reviewer:<7} vetoes {veto['n']:>3}  "
            f"veto value {render.fmt_bps(veto['mean'])} {render.fmt_ci(veto['ci95'])}  "
            f"random {render.fmt_bps(base['mean'])} {render.fmt_ci(base['ci95'])}\n"
        )
    out.write("\n")


async def _run(workdir: Path, out: TextIO) -> int:
    signals = bundled_signals()
    started = time.perf_counter()
    async with DevGateway(DEMO_GATEWAY) as gateway:
        out.write(f"dev gateway (Jangar contract) on {gateway.base_url}\n")
        out.write(f"signals: {signals}\n\n")
        results = {}
        for label, shadow in (("shadow", True), ("enforcing", False)):
            mode = "shadow mode, pass_through" if shadow else "enforcing, fail mode veto"
            out.write(f"== {label}: {mode} ==\n")
            settings = demo_settings(workdir / f"{label}.db", gateway.base_url, shadow=shadow)
            summary, table, rep = await _phase(label, settings, signals, out)
            results[label] = (summary, table, rep)
            out.write(f"  summary: {json.dumps(summary)}\n\n")
        for label, config in evaluation_gateways(signals).items():
            async with DevGateway(config) as reviewer_gateway:
                out.write(f"== {label} reviewer: shadow mode ==\n")
                settings = demo_settings(
                    workdir / f"{label}.db", reviewer_gateway.base_url, shadow=True
                )
                summary = await run_replay(settings, signals)
                out.write(f"  summary: {json.dumps(summary)}\n\n")
    await _evaluate_runs(workdir, signals, out)
    for label, (_summary, table, rep) in results.items():
        out.write(
            f"== llm report ({label}): --max-error-rate 0.05 --max-p95-ms 8000 "
            f"--min-reviews 50 ==\n{table}\n"
        )
        html_path = workdir / f"report-{label}.html"
        failures = report.evaluate(rep, DEMO_CRITERIA)
        html_path.write_text(report.render_html(rep, failures), encoding="utf-8")
    out.write(
        f"HTML reports: {workdir / 'report-shadow.html'} and {workdir / 'report-enforcing.html'}\n"
        f"HTML evaluations: {workdir}/eval-<run>.html\n"
        f"demo finished in {time.perf_counter() - started:.1f} s\n"
    )
    return 0


def run_demo(*, workdir: Path | None = None, keep: bool = False, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    # Warnings (a breaker opening, a skipped line) interleave with the progress view.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("  ! %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    folder = workdir or Path(tempfile.mkdtemp(prefix="torghut-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("shadow.db", "enforcing.db", "random.db", "oracle.db"):
        (folder / stale).unlink(missing_ok=True)
    stream.write(f"torghut demo: work folder {folder}\n")
    code = asyncio.run(_run(folder, stream))
    if not keep and workdir is None:
        # Keep the HTML reports; drop the databases.
        for db in folder.glob("*.db*"):
            db.unlink(missing_ok=True)
    return code
