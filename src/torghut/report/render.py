"""The report for people and scripts: a terminal table, one line of JSON, and an HTML page
rendered from Jinja templates (autoescaping on) with SVG charts laid out here."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jinja2

from torghut.domain import as_utc
from torghut.report.query import (
    VERDICTS,
    HistogramBin,
    Percentiles,
    Report,
    bucket_start,
)
from torghut.report.readiness import Readiness


def _iso(ts: datetime) -> str:
    return as_utc(ts).isoformat().replace("+00:00", "Z")


def _num(value: float | int | None, places: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{places}f}"


def as_dict(report: Report, readiness: Readiness) -> dict[str, Any]:
    """The report as plain JSON values (what `render_json` prints)."""

    def pct(p: Percentiles) -> dict[str, Any]:
        return {"count": p.count, "p50": p.p50, "p95": p.p95, "p99": p.p99, "max": p.max}

    def mix(counts: Mapping[str, int]) -> dict[str, Any]:
        return {k: {"count": v, "share": round(report.share(v), 6)} for k, v in counts.items()}

    tokens = report.tokens
    return {
        "window": {"since": _iso(report.since), "until": _iso(report.until)},
        "reviews": report.reviews,
        "verdicts": mix(report.verdicts),
        "llm_verdicts": mix(report.llm_verdicts),
        "effective_actions": mix(report.effective_actions),
        "errors": {
            "count": report.errors,
            "rate": report.error_rate,
            "by_code": {
                code: {"count": n, "rate": round(report.share(n), 6)}
                for code, n in report.errors_by_code.items()
            },
        },
        "latency_ms": pct(report.latency_ms),
        "ttft_ms": pct(report.ttft_ms),
        "tokens": {
            "with_usage": tokens.with_usage,
            "without_usage": tokens.without_usage,
            "prompt_total": tokens.prompt_total,
            "completion_total": tokens.completion_total,
            "prompt_mean": tokens.prompt_mean,
            "completion_mean": tokens.completion_mean,
        },
        "breaker_openings": report.breaker_openings,
        "shadow": {
            "reviews": report.shadow.reviews,
            "disagreements": report.shadow.disagreements,
            "by_verdict": report.shadow.by_verdict,
            "notional": float(report.shadow.notional),
            "unknown_notional": report.shadow.unknown_notional,
        },
        "models": [
            {
                "provider": m.provider,
                "model": m.model,
                "prompt_version": m.prompt_version,
                "reviews": m.reviews,
            }
            for m in report.models
        ],
        "latency_histogram": [
            {"low_ms": b.low_ms, "high_ms": b.high_ms, "count": b.count}
            for b in report.latency_histogram
        ],
        "timeline": {
            "axis": "signal time",
            "start": _iso(report.timeline_start) if report.timeline_start else None,
            "end": _iso(report.timeline_end) if report.timeline_end else None,
            "bucket_seconds": report.timeline_bucket_seconds,
            "buckets": [{"start": _iso(b.start), **b.counts} for b in report.timeline],
        },
        "ready": readiness.ready,
        "status": readiness.status,
        "no_criteria": readiness.no_criteria,
        "checked": [
            {"criterion": c.name, "passed": c.passed, "detail": c.text} for c in readiness.checks
        ],
        "failed": readiness.failures,
    }


def render_json(report: Report, readiness: Readiness) -> str:
    """One line of JSON; non-ASCII escaped so that nothing can split it."""
    return json.dumps(as_dict(report, readiness), ensure_ascii=True, separators=(",", ":"))


def _status_line(failures: Sequence[str]) -> str:
    return "READY" if not failures else "NOT READY: " + "; ".join(failures)


def render_table(report: Report, readiness: Readiness) -> str:
    """Fixed-width text for a terminal."""
    lines: list[str] = [
        f"LLM review report  {_iso(report.since)} .. {_iso(report.until)}",
        f"reviews             {report.reviews:>8}   shadow {report.shadow.reviews}",
        "",
        f"{'verdict':<20}{'count':>8}{'share':>9}",
    ]

    def rows(counts: Mapping[str, int]) -> None:
        for key, n in counts.items():
            lines.append(f"  {key:<18}{n:>8}{report.share(n):>9.1%}")

    rows(report.verdicts)
    lines += ["", f"{'model verdict':<20}{'count':>8}{'share':>9}"]
    rows(report.llm_verdicts)
    lines += ["", f"{'effective action':<20}{'count':>8}{'share':>9}"]
    rows(report.effective_actions)
    rate = report.error_rate
    lines += ["", f"{'errors':<20}{report.errors:>8}{(rate or 0.0):>9.2%}"]
    for code, n in report.errors_by_code.items():
        lines.append(f"  {code:<18}{n:>8}{report.share(n):>9.2%}")
    lines += [
        "",
        f"{'timing (ms)':<20}{'n':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}",
    ]
    for label, p in (("latency", report.latency_ms), ("ttft", report.ttft_ms)):
        lines.append(
            f"  {label:<18}{p.count:>8}{_num(p.p50):>8}{_num(p.p95):>8}"
            f"{_num(p.p99):>8}{_num(p.max):>8}"
        )
    tokens = report.tokens
    lines += [
        "",
        f"{'tokens':<20}{'total':>10}{'mean':>10}",
        f"  {'prompt':<18}{tokens.prompt_total:>10}{_num(tokens.prompt_mean):>10}",
        f"  {'completion':<18}{tokens.completion_total:>10}{_num(tokens.completion_mean):>10}",
        f"  rows with usage {tokens.with_usage}, without usage {tokens.without_usage}",
        "",
        f"breaker openings    {report.breaker_openings:>8}   (inferred from circuit_open runs)",
        f"shadow disagreements{report.shadow.disagreements:>8}   "
        f"notional {report.shadow.notional:,.2f}"
        + (
            f" (+{report.shadow.unknown_notional} of unknown notional)"
            if report.shadow.unknown_notional
            else ""
        ),
    ]
    by = report.shadow.by_verdict
    lines.append(
        f"  veto {by.get('veto', 0)}, adjust {by.get('adjust', 0)}, "
        f"error under veto {by.get('error', 0)}"
    )
    if report.models:
        lines += ["", f"{'provider/model (prompt)':<50}{'reviews':>8}"]
        for m in report.models:
            name = f"{m.provider}/{m.model} ({m.prompt_version})"
            lines.append(f"  {name:<48}{m.reviews:>8}")
    lines += ["", readiness.status]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML


@functools.cache
def templates() -> jinja2.Environment:
    """The report's templates ship in the package; autoescaping is on for every value."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("torghut.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# Colours per verdict, shared by the legend, the bars and the tables.
COLOURS = {"approve": "#2e7d32", "veto": "#c62828", "adjust": "#f9a825", "error": "#6a1b9a"}
# Axis labels: 11 px sans-serif; a generous width per character so that a check on it holds
# in any browser's font.
FONT_PX = 11
CHAR_PX = 7.0


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"  # SVG text-anchor

    def extent(self) -> tuple[float, float]:
        """Left and right edges of the text, for the overlap check."""
        width = len(self.text) * CHAR_PX
        if self.anchor == "start":
            return self.x, self.x + width
        if self.anchor == "end":
            return self.x - width, self.x
        return self.x - width / 2, self.x + width / 2


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    baseline: float
    left: float
    right: float
    title: str
    bars: list[Bar]
    labels: list[Label]  # axis labels under the baseline
    values: list[Label]  # counts above bars
    caption: str


def _fmt_ms(ms: int) -> str:
    return f"{ms // 1000}s" if ms >= 1000 and ms % 1000 == 0 else f"{ms}"


def histogram_chart(bins: Sequence[HistogramBin]) -> Chart:
    """One bar per bin; the axis labels are the bin edges, one number at each boundary, so no
    two labels ever share a place ("4000-8000" next to "8000-15000" did)."""
    width, height, pad, bottom = 680, 220, 40, 40
    slot = (width - 2 * pad) / max(len(bins), 1)
    top = max((b.count for b in bins), default=0) or 1
    usable = height - bottom - 24
    base = float(height - bottom)
    bars, values, labels = [], [], []
    for i, b in enumerate(bins):
        h = usable * b.count / top
        x = pad + i * slot
        span = f"{b.low_ms}-{b.high_ms}" if b.high_ms is not None else f"{b.low_ms}+"
        bars.append(Bar(x + 2, base - h, slot - 4, h, "#1565c0", f"{span} ms: {b.count}"))
        values.append(Label(x + slot / 2, base - h - 4, str(b.count)))
        labels.append(Label(x, base + 14, _fmt_ms(b.low_ms)))
    if bins and bins[-1].high_ms is None:
        labels.append(Label(pad + len(bins) * slot, base + 14, "+", "start"))
    return Chart(
        width,
        height,
        base,
        pad,
        width - pad,
        "latency histogram",
        bars,
        labels,
        values,
        "latency (ms at each bin edge; 1s = 1000 ms), circuit_open rows excluded",
    )


def _step_name(seconds: int) -> str:
    for size, unit in ((7 * 86400, "week"), (86400, "day"), (3600, "h"), (60, "min")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" if n != 1 or unit in ("h", "min") else unit
    return f"{seconds} s"


def _tick_text(ts: datetime, step: int, days: bool) -> str:
    """Dates for day buckets; times, with the date when the span crosses a day."""
    ts = as_utc(ts)
    if step >= 86400:
        return ts.strftime("%m-%d")
    return ts.strftime("%m-%d %H:%M") if days else ts.strftime("%H:%M")


def timeline_chart(report: Report) -> Chart:
    """Stacked bars of verdicts per bucket of signal time over the data's own span, empty
    buckets included. Tick labels are thinned until they cannot touch."""
    step = report.timeline_bucket_seconds
    width, height, pad, bottom = 760, 240, 40, 40
    base = float(height - bottom)
    usable = height - bottom - 34
    by_start = {b.start: b.counts for b in report.timeline}
    starts: list[datetime] = []
    if report.timeline_start is not None and report.timeline_end is not None:
        cursor = bucket_start(report.timeline_start, step)
        last = bucket_start(report.timeline_end, step)
        while cursor <= last:
            starts.append(cursor)
            cursor += timedelta(seconds=step)
    slot = (width - 2 * pad) / max(len(starts), 1)
    top = max((sum(c.values()) for c in by_start.values()), default=0) or 1
    bars: list[Bar] = []
    for i, start in enumerate(starts):
        counts = by_start.get(start, {})
        y = base
        for verdict in VERDICTS:
            n = counts.get(verdict, 0)
            if not n:
                continue
            h = usable * n / top
            y -= h
            bars.append(
                Bar(
                    pad + i * slot + 0.5,
                    y,
                    max(slot - 1, 0.5),
                    h,
                    COLOURS[verdict],
                    f"{_iso(start)} {verdict}: {n}",
                )
            )
    labels: list[Label] = []
    if starts:
        days = starts[0].date() != starts[-1].date()
        widest = max(len(_tick_text(s, step, days)) for s in starts) * CHAR_PX
        every = max(1, int(-(-(widest + 6) // slot)))
        for i in range(0, len(starts), every):
            labels.append(Label(pad + i * slot, base + 14, _tick_text(starts[i], step, days)))
    values = [Label(pad - 4, base - usable + 4, str(top), "end")]
    caption = f"reviews per {_step_name(step)} of signal time (UTC), stacked by verdict"
    return Chart(
        width,
        height,
        base,
        pad,
        width - pad,
        "verdicts over signal time",
        bars,
        labels,
        values,
        caption,
    )


def render_html(report: Report, readiness: Readiness) -> str:
    """One self-contained page (inline CSS and SVG, no script, no external asset)."""

    def mix(counts: Mapping[str, int]) -> list[tuple[str, int, str]]:
        return [(k, n, f"{report.share(n):.1%}") for k, n in counts.items()]

    return (
        templates()
        .get_template("report.html")
        .render(
            report=report,
            readiness=readiness,
            since=_iso(report.since),
            until=_iso(report.until),
            timeline=timeline_chart(report),
            histogram=histogram_chart(report.latency_histogram),
            colours=COLOURS,
            verdicts=VERDICTS,
            mix=mix,
            num=_num,
            iso=_iso,
        )
    )
