"""`llm eval` as a table, one JSON line, or one self-contained HTML page (inline SVG, no
script, no external resource: it opens offline and from an e-mail)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from torghut.evaluation.evaluate import VERDICTS


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its internal keys (those starting with `_`), with P&L totals."""
    out = {k: v for k, v in report.items() if k != "horizons"}
    out["horizons"] = {}
    for label, h in report["horizons"].items():
        item = {k: v for k, v in h.items() if not k.startswith("_")}
        series = h.get("_pnl_series") or {}
        item["pnl_bps"] = {
            "all": series.get("all_bps", [0.0])[-1] if series.get("all_bps") else 0.0,
            "approved": (
                series.get("approved_bps", [0.0])[-1] if series.get("approved_bps") else 0.0
            ),
        }
        out["horizons"][label] = item
    return out


def render_json(report: dict[str, Any], failures: list[str]) -> str:
    body = public(report)
    body["failures"] = failures
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"))


def fmt_bps(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def fmt_ci(ci: list[float] | None) -> str:
    return "[-]" if not ci else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


def _num(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:+.1f}{suffix}" if suffix else f"{value:.3f}"


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


def render_table(report: dict[str, Any], failures: list[str]) -> str:
    lines = [f"reviews {report['reviews']}  cost {report['cost_bps']:g} bps per trade"]
    for label, h in report["horizons"].items():
        lines.append("")
        lines.append(
            f"horizon {label}: evaluated {h['evaluated']}, past the data {h['beyond_data']}, "
            f"no price {h['no_price']}"
        )
        lines.append(f"  {'verdict':<8} {'n':>5} {'mean bps':>9} {'hit rate':>9}")
        for verdict in VERDICTS:
            row = h["by_verdict"].get(verdict)
            if row:
                lines.append(
                    f"  {verdict:<8} {row['n']:>5} {row['mean_bps']:>+9.1f} {row['hit_rate']:>9.1%}"
                )
        veto, base = h["veto_value_bps"], h["random_veto_bps"]
        lines.append(
            f"  veto value    {_num(veto['mean'], ' bps'):>12}  95% CI {_ci(veto['ci95'])}"
            f"  (n {veto['n']})"
        )
        lines.append(
            f"  random vetoes {_num(base['mean'], ' bps'):>12}  95% CI {_ci(base['ci95'])}"
        )
        adjust = h["adjust_value_bps"]
        lines.append(f"  adjust value  {_num(adjust['mean'], ' bps'):>12}  (n {adjust['n']})")
        lines.append(f"  brier         {_num(h['brier']):>12}")
    for failure in failures:
        lines.append(f"FAIL {failure}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ HTML
_W, _ROW = 560, 34


def _interval_svg(h: dict[str, Any]) -> str:
    """Veto value and the random baseline, each as its interval and mean, on one axis with 0."""
    rows = [
        ("model vetoes", h["veto_value_bps"], "#1f6feb"),
        ("random vetoes", h["random_veto_bps"], "#8b949e"),
    ]
    values = [0.0]
    for _, item, _ in rows:
        if item["ci95"]:
            values += item["ci95"]
        if item["mean"] is not None:
            values.append(item["mean"])
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    left, right = 120, _W - 20

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    height = _ROW * len(rows) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'role="img" aria-label="veto value against random vetoes">',
        f'<line x1="{x(0):.1f}" y1="5" x2="{x(0):.1f}" y2="{height - 25}" '
        f'stroke="#d0d7de" stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="{height - 10}" font-size="11" text-anchor="middle">0</text>',
    ]
    # End labels only where they do not run into the 0 label.
    if x(0) - left > 45:
        parts.append(f'<text x="{left}" y="{height - 10}" font-size="11">{lo:+.1f}</text>')
    if right - x(0) > 70:
        parts.append(
            f'<text x="{right}" y="{height - 10}" font-size="11" text-anchor="end">'
            f"{hi:+.1f} bps</text>"
        )
    for i, (name, item, colour) in enumerate(rows):
        y = 20 + i * _ROW
        parts.append(f'<text x="4" y="{y + 4}" font-size="12">{escape(name)}</text>')
        if item["ci95"]:
            a, b = item["ci95"]
            parts.append(
                f'<line x1="{x(a):.1f}" y1="{y}" x2="{x(b):.1f}" y2="{y}" '
                f'stroke="{colour}" stroke-width="6" stroke-linecap="round"/>'
            )
        if item["mean"] is not None:
            parts.append(
                f'<circle cx="{x(item["mean"]):.1f}" cy="{y}" r="5" fill="#fff" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        else:
            parts.append(f'<text x="{left}" y="{y + 4}" font-size="12">no vetoes</text>')
    parts.append("</svg>")
    return "".join(parts)


def _pnl_svg(series: dict[str, Any]) -> str:
    every, approved = series.get("all_bps") or [], series.get("approved_bps") or []
    if not every:
        return "<p>No decision with a forward return at this horizon.</p>"
    height, left, top, bottom = 220, 60, 10, 30
    values = [0.0, *every, *approved]
    lo, hi = min(values), max(values)
    if hi == lo:
        hi = lo + 1.0
    n = len(every)

    def pt(i: int, v: float) -> str:
        xx = left + (i / max(1, n - 1)) * (_W - left - 10)
        yy = top + (hi - v) / (hi - lo) * (height - top - bottom)
        return f"{xx:.1f},{yy:.1f}"

    def line(vals: list[float], colour: str) -> str:
        points = " ".join(pt(i, v) for i, v in enumerate(vals))
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'

    zero = pt(0, 0.0).split(",")[1]
    times = series.get("times") or [""]
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" role="img" '
            f'aria-label="cumulative P&amp;L">',
            f'<line x1="{left}" y1="{zero}" x2="{_W - 10}" y2="{zero}" stroke="#d0d7de"/>',
            *(  # the extremes, unless they would sit on the 0 label
                f'<text x="4" y="{y}" font-size="11">{v:+.0f}</text>'
                for y, v in ((top + 10, hi), (height - bottom, lo))
                if abs(y - float(zero)) > 14
            ),
            f'<text x="4" y="{zero}" font-size="11">0 bps</text>',
            line(every, "#8b949e"),
            line(approved, "#1f6feb"),
            f'<text x="{left}" y="{height - 8}" font-size="11">{escape(times[0][:16])}</text>',
            f'<text x="{_W - 10}" y="{height - 8}" font-size="11" text-anchor="end">'
            f"{escape(times[-1][:16])}</text>",
            "</svg>",
        ]
    )


def render_html(report: dict[str, Any], failures: list[str], *, title: str = "llm eval") -> str:
    sections = []
    for label, h in report["horizons"].items():
        rows = "".join(
            f"<tr><td>{v}</td><td>{r['n']}</td><td>{r['mean_bps']:+.1f}</td>"
            f"<td>{r['hit_rate']:.1%}</td></tr>"
            for v in VERDICTS
            if (r := h["by_verdict"].get(v))
        )
        veto, base, adjust = h["veto_value_bps"], h["random_veto_bps"], h["adjust_value_bps"]
        bins = "".join(
            f"<tr><td>{b['lo']:.1f}-{b['hi']:.1f}</td><td>{b['n']}</td>"
            f"<td>{_num(b['mean_confidence'])}</td><td>{_num(b['right_rate'])}</td></tr>"
            for b in h["reliability"]
        )
        sections.append(f"""
<section>
<h2>Horizon {escape(label)}</h2>
<p>{h["evaluated"]} decisions evaluated; {h["beyond_data"]} left out (the horizon runs past the
data); {h["no_price"]} without a price at their time.</p>
<table><tr><th>verdict</th><th>n</th><th>mean bps</th><th>hit rate</th></tr>{rows}</table>
<h3>Veto value against random vetoes (95 % intervals)</h3>
<p>Model: {_num(veto["mean"], " bps")} {_ci(veto["ci95"])}, n {veto["n"]}.
Random: {_num(base["mean"], " bps")} {_ci(base["ci95"])}.
Adjust value: {_num(adjust["mean"], " bps")} (n {adjust["n"]}). Brier: {_num(h["brier"])}.</p>
{_interval_svg(h)}
<h3>Cumulative P&amp;L, bps of one unit per decision</h3>
<p><span class="k all">every decision</span> <span class="k appr">approved only</span></p>
{_pnl_svg(h.get("_pnl_series") or {})}
<h3>Reliability of the confidence</h3>
<table><tr><th>confidence</th><th>n</th><th>mean confidence</th><th>right rate</th></tr>
{bins}</table>
</section>""")
    failed = "".join(f"<li>{escape(f)}</li>" for f in failures)
    verdict = f'<ul class="fail">{failed}</ul>' if failures else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #1f2328; max-width: 900px; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
td, th {{ border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; }}
section {{ border-top: 1px solid #d0d7de; margin-top: 16px; }}
.fail {{ color: #cf222e; }}
.k::before {{ content: ""; display: inline-block; width: 18px; height: 3px;
  vertical-align: middle; margin: 0 4px 0 12px; }}
.all::before {{ background: #8b949e; }} .appr::before {{ background: #1f6feb; }}
</style></head><body>
<h1>{escape(title)}</h1>
<p>{report["reviews"]} reviewed decisions; returns signed by side, net of
{report["cost_bps"]:g} bps per trade. Veto value: minus the mean return of vetoed decisions
(positive: the vetoes avoided losses).</p>
{verdict}
{"".join(sections)}
</body></html>
"""
