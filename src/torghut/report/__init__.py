"""`torghut llm report`: rollout readiness from the `llm_decision_reviews` audit rows.

- `query`: `build_report` reads the rows of a window into a `Report` (its docstring states
  every method, so the numbers can be checked by hand); `parse_since` reads `--since`.
- `readiness`: the operator's `Criteria` against a report: `evaluate` returns the checks made
  (READY names them; no criteria is `NO CRITERIA`, never READY).
- `render`: the terminal table, one line of JSON, and the HTML page (Jinja templates in
  `templates/`, autoescaped; SVG charts whose labels cannot collide).

The CLI parses `--since`, calls `build_report`, `evaluate`, prints one rendering and exits 0
when ready, 1 when not (or with no criteria)."""

from torghut.report.query import (
    HISTOGRAM_EDGES_MS,
    VERDICTS,
    Report,
    build_report,
    nearest_rank,
    parse_since,
    percentiles,
)
from torghut.report.readiness import NO_CRITERIA, Check, Criteria, Readiness, evaluate
from torghut.report.render import as_dict, render_html, render_json, render_table

__all__ = [
    "HISTOGRAM_EDGES_MS",
    "NO_CRITERIA",
    "VERDICTS",
    "Check",
    "Criteria",
    "Readiness",
    "Report",
    "as_dict",
    "build_report",
    "evaluate",
    "nearest_rank",
    "parse_since",
    "percentiles",
    "render_html",
    "render_json",
    "render_table",
]
