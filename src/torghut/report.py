"""`torghut llm report`: rollout readiness from the `llm_decision_reviews` audit rows.

The CLI parses `--since` with `parse_since`, calls `build_report`, checks it with `evaluate`
against the operator's `Criteria`, prints one of `render_table` / `render_json` /
`render_html`, and exits 0 when `evaluate` found nothing (ready) or 1 when it did.

Window: rows with `since <= created_at < until` (`until` defaults to now).

Methods, so that the numbers can be checked by hand:

- Counts (verdict, model verdict, error code, effective action, tokens) are aggregated in SQL.
- Percentiles use the nearest-rank method: for `n` sorted values the p-th percentile is the
  value of rank `ceil(p * n / 100)` (1-based). It always returns an observed value, never an
  interpolation, so "p95 = 8000 ms" means some review really took 8000 ms.
- Latency and TTFT leave out `circuit_open` rows: no request was sent, and their near-zero
  timings would flatter the gateway exactly when it is failing.
- Breaker openings are not stored as events; they are inferred: an opening is a
  `circuit_open` row whose predecessor (by `created_at`, in the window) is not `circuit_open`.
  A run of refusals is one opening. Approximate both ways: an opening during which no review
  was attempted leaves no row (undercount), and a review sent before the breaker opened that
  fails while it is open can split a run (overcount). A window that starts inside an open
  period counts it as one opening.
- A shadow disagreement is a shadow row whose outcome would have changed the order had the
  gate enforced: verdict `veto` or `adjust`, or `error` with the row's `fail_mode` = `veto`.
  Its notional is the row's `notional` column when set, else the decision's
  `qty x decision_json.params.price`; rows with neither are counted as of unknown notional.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from torghut.db.tables import LLMDecisionReview, TradeDecisionRow
from torghut.domain import as_utc, utcnow
from torghut.errors import InputError, ReviewErrorCode

VERDICTS: tuple[str, ...] = ("approve", "veto", "adjust", "error")
LLM_VERDICTS: tuple[str, ...] = ("approve", "veto", "adjust")
EFFECTIVE_ACTIONS: tuple[str, ...] = ("submitted_original", "submitted_adjusted", "rejected")
ERROR_CODES: tuple[str, ...] = tuple(code.value for code in ReviewErrorCode)
CIRCUIT_OPEN = ReviewErrorCode.CIRCUIT_OPEN.value
# Key of rows without a model verdict (errors) in `Report.llm_verdicts`.
NO_LLM_VERDICT = "none"

# Latency histogram edges in ms; 8000 is an edge because it is the usual p95 target.
HISTOGRAM_EDGES_MS: tuple[int, ...] = (0, 250, 500, 1000, 2000, 4000, 8000, 15000, 20000)
# More buckets than this in the timeline and they widen (hour -> day -> 24 days).
_MAX_TIMELINE_BUCKETS = 1000
_SAMPLE_LIMIT = 10
_SAMPLE_TEXT_LIMIT = 300
_STREAM_BATCH = 1000

_R = LLMDecisionReview
_D = TradeDecisionRow


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of `count` values, in ms; all None when there were none."""

    count: int
    p50: int | None
    p95: int | None
    p99: int | None
    max: int | None


@dataclass(frozen=True)
class TokenSummary:
    with_usage: int  # rows with at least one token count
    without_usage: int  # rows where the gateway sent no usage
    prompt_total: int
    completion_total: int

    @property
    def prompt_mean(self) -> float | None:
        return self.prompt_total / self.with_usage if self.with_usage else None

    @property
    def completion_mean(self) -> float | None:
        return self.completion_total / self.with_usage if self.with_usage else None


@dataclass(frozen=True)
class ShadowSummary:
    reviews: int  # shadow rows in the window
    disagreements: int
    by_verdict: dict[str, int]  # veto / adjust / error
    notional: Decimal  # sum over disagreements whose notional is known
    unknown_notional: int  # disagreements with neither `notional` nor qty x price


@dataclass(frozen=True)
class HistogramBin:
    low_ms: int
    high_ms: int | None  # None: open-ended last bin
    count: int


@dataclass(frozen=True)
class TimeBucket:
    start: datetime
    counts: dict[str, int]  # by verdict


@dataclass(frozen=True)
class ModelCount:
    provider: str
    model: str
    prompt_version: str
    reviews: int


@dataclass(frozen=True)
class Sample:
    """A recent non-approve review, for the operator to read."""

    created_at: datetime
    symbol: str | None
    model: str
    verdict: str
    llm_verdict: str | None
    error_code: str | None
    reason: str | None
    text: str | None  # rationale, or the (already redacted) error message


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    reviews: int
    verdicts: dict[str, int]
    llm_verdicts: dict[str, int]
    errors_by_code: dict[str, int]
    effective_actions: dict[str, int]
    latency_ms: Percentiles
    ttft_ms: Percentiles
    tokens: TokenSummary
    breaker_openings: int
    shadow: ShadowSummary
    models: list[ModelCount]
    latency_histogram: list[HistogramBin]
    timeline_bucket_seconds: int
    timeline: list[TimeBucket]
    samples: list[Sample]

    @property
    def errors(self) -> int:
        return self.verdicts.get("error", 0)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.reviews if self.reviews else None

    def share(self, count: int) -> float:
        return count / self.reviews if self.reviews else 0.0


# --------------------------------------------------------------------------- building it


def nearest_rank(sorted_values: Sequence[int], percent: int) -> int | None:
    """The nearest-rank `percent`-th percentile of already sorted values (None when empty).

    Integer arithmetic for the rank, so 95% of 100 values is exactly rank 95."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, -(-percent * n // 100))
    return sorted_values[rank - 1]


def percentiles(values: Iterable[int]) -> Percentiles:
    ordered = sorted(values)
    return Percentiles(
        count=len(ordered),
        p50=nearest_rank(ordered, 50),
        p95=nearest_rank(ordered, 95),
        p99=nearest_rank(ordered, 99),
        max=ordered[-1] if ordered else None,
    )


def _bucket_seconds(since: datetime, until: datetime) -> int:
    span = max((until - since).total_seconds(), 1.0)
    seconds = 3600
    while span / seconds > _MAX_TIMELINE_BUCKETS:
        seconds *= 24
    return seconds


def _bucket_origin(since: datetime, seconds: int) -> datetime:
    """Buckets start on clock hours (or UTC midnights), not at an arbitrary `since`."""
    hour = since.replace(minute=0, second=0, microsecond=0)
    return hour.replace(hour=0) if seconds >= 86400 else hour


def _bucket_start(ts: datetime, origin: datetime, seconds: int) -> datetime:
    offset = int((ts - origin).total_seconds()) // seconds
    return origin + timedelta(seconds=offset * seconds)


def _histogram_index(latency_ms: int) -> int:
    for i in range(len(HISTOGRAM_EDGES_MS) - 1, -1, -1):
        if latency_ms >= HISTOGRAM_EDGES_MS[i]:
            return i
    return 0  # negative latencies (clock trouble) land in the first bin


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _fallback_notional(qty: Any, decision_json: Any) -> Decimal | None:
    if not isinstance(decision_json, Mapping):
        return None
    params = decision_json.get("params")
    price = _decimal(params.get("price")) if isinstance(params, Mapping) else None
    quantity = _decimal(qty)
    if price is None or quantity is None:
        return None
    return abs(quantity * price)


def _disagreement() -> ColumnElement[bool]:
    """Shadow rows whose outcome would have changed the order, had the gate enforced."""
    return and_(
        _R.shadow.is_(True),
        or_(
            _R.verdict.in_(("veto", "adjust")),
            and_(_R.verdict == "error", _R.fail_mode == "veto"),
        ),
    )


async def build_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    since: datetime,
    until: datetime | None = None,
) -> Report:
    """Read the audit rows of `[since, until)` and summarise them (see the module docstring)."""
    since = as_utc(since)
    until = utcnow() if until is None else as_utc(until)
    if until < since:
        raise InputError(f"--since: {since.isoformat()} is after the end of the window")
    window = and_(_R.created_at >= since, _R.created_at < until)

    async with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            # One snapshot for every query, so that the counts and the percentiles agree.
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})

        verdicts: Counter[str] = Counter({v: 0 for v in VERDICTS})
        llm_verdicts: Counter[str] = Counter({v: 0 for v in (*LLM_VERDICTS, NO_LLM_VERDICT)})
        errors_by_code: Counter[str] = Counter()
        effective: Counter[str] = Counter({a: 0 for a in EFFECTIVE_ACTIONS})
        shadow_reviews = 0
        disagreements: Counter[str] = Counter({"veto": 0, "adjust": 0, "error": 0})
        grouped = await session.execute(
            select(
                _R.verdict,
                _R.llm_verdict,
                _R.error_code,
                _R.effective_action,
                _R.shadow,
                _R.fail_mode,
                func.count(),
            )
            .where(window)
            .group_by(
                _R.verdict,
                _R.llm_verdict,
                _R.error_code,
                _R.effective_action,
                _R.shadow,
                _R.fail_mode,
            )
        )
        for verdict, llm_verdict, error_code, action, shadow, fail_mode, count in grouped:
            verdicts[verdict] += count
            llm_verdicts[llm_verdict or NO_LLM_VERDICT] += count
            if verdict == "error":
                errors_by_code[error_code or "unknown"] += count
            effective[action] += count
            if shadow:
                shadow_reviews += count
                if verdict in ("veto", "adjust") or (verdict == "error" and fail_mode == "veto"):
                    disagreements[verdict] += count
        reviews = sum(verdicts.values())

        has_usage = or_(_R.tokens_prompt.is_not(None), _R.tokens_completion.is_not(None))
        token_row = (
            await session.execute(
                select(
                    func.coalesce(func.sum(case((has_usage, 1), else_=0)), 0),
                    func.coalesce(func.sum(_R.tokens_prompt), 0),
                    func.coalesce(func.sum(_R.tokens_completion), 0),
                ).where(window)
            )
        ).one()
        with_usage = int(token_row[0])
        tokens = TokenSummary(
            with_usage=with_usage,
            without_usage=reviews - with_usage,
            prompt_total=int(token_row[1]),
            completion_total=int(token_row[2]),
        )

        # Disagreement notional: the stored column in SQL, the qty x price fallback per row.
        known = await session.scalar(
            select(func.sum(_R.notional)).where(window, _disagreement(), _R.notional.is_not(None))
        )
        notional = _decimal(known) or Decimal(0)
        unknown_notional = 0
        fallback = await session.stream(
            select(_D.qty, _D.decision_json)
            .select_from(_R)
            .join(_D, _D.id == _R.trade_decision_id)
            .where(window, _disagreement(), _R.notional.is_(None))
            .execution_options(yield_per=_STREAM_BATCH)
        )
        async for qty, decision_json in fallback:
            value = _fallback_notional(qty, decision_json)
            if value is None:
                unknown_notional += 1
            else:
                notional += value

        # Row by row, in time order, only the columns the percentiles and runs need.
        bucket_seconds = _bucket_seconds(since, until)
        origin = _bucket_origin(since, bucket_seconds)
        timeline: dict[datetime, Counter[str]] = {}
        latencies: list[int] = []
        ttfts: list[int] = []
        histogram = [0] * len(HISTOGRAM_EDGES_MS)
        openings = 0
        previous_open = False
        rows = await session.stream(
            select(_R.created_at, _R.verdict, _R.error_code, _R.latency_ms, _R.ttft_ms)
            .where(window)
            .order_by(_R.created_at, _R.id)
            .execution_options(yield_per=_STREAM_BATCH)
        )
        async for created_at, verdict, error_code, latency_ms, ttft_ms in rows:
            is_open = error_code == CIRCUIT_OPEN
            if is_open and not previous_open:
                openings += 1
            previous_open = is_open
            start = _bucket_start(as_utc(created_at), origin, bucket_seconds)
            timeline.setdefault(start, Counter())[verdict] += 1
            if is_open:
                continue
            if latency_ms is not None:
                latencies.append(latency_ms)
                histogram[_histogram_index(latency_ms)] += 1
            if ttft_ms is not None:
                ttfts.append(ttft_ms)

        model_rows = await session.execute(
            select(_R.provider, _R.model, _R.prompt_version, func.count())
            .where(window)
            .group_by(_R.provider, _R.model, _R.prompt_version)
        )
        models = sorted(
            (ModelCount(p, m, v, int(n)) for p, m, v, n in model_rows),
            key=lambda mc: (-mc.reviews, mc.provider, mc.model, mc.prompt_version),
        )

        sample_rows = await session.execute(
            select(
                _R.created_at,
                _D.symbol,
                _R.model,
                _R.verdict,
                _R.llm_verdict,
                _R.error_code,
                _R.reason,
                _R.rationale,
                _R.error_message,
            )
            .select_from(_R)
            .outerjoin(_D, _D.id == _R.trade_decision_id)
            .where(window, _R.verdict != "approve")
            .order_by(_R.created_at.desc(), _R.id.desc())
            .limit(_SAMPLE_LIMIT)
        )
        samples = [
            Sample(
                created_at=as_utc(row[0]),
                symbol=row[1],
                model=row[2],
                verdict=row[3],
                llm_verdict=row[4],
                error_code=row[5],
                reason=row[6],
                text=_clip(row[8] if row[3] == "error" else row[7]),
            )
            for row in sample_rows
        ]

    bins = [
        HistogramBin(
            low_ms=low,
            high_ms=HISTOGRAM_EDGES_MS[i + 1] if i + 1 < len(HISTOGRAM_EDGES_MS) else None,
            count=histogram[i],
        )
        for i, low in enumerate(HISTOGRAM_EDGES_MS)
    ]
    return Report(
        since=since,
        until=until,
        reviews=reviews,
        verdicts=dict(verdicts),
        llm_verdicts=dict(llm_verdicts),
        errors_by_code=dict(sorted(errors_by_code.items(), key=lambda kv: (-kv[1], kv[0]))),
        effective_actions=dict(effective),
        latency_ms=percentiles(latencies),
        ttft_ms=percentiles(ttfts),
        tokens=tokens,
        breaker_openings=openings,
        shadow=ShadowSummary(
            reviews=shadow_reviews,
            disagreements=sum(disagreements.values()),
            by_verdict=dict(disagreements),
            notional=notional,
            unknown_notional=unknown_notional,
        ),
        models=models,
        latency_histogram=bins,
        timeline_bucket_seconds=bucket_seconds,
        timeline=[TimeBucket(start, dict(c)) for start, c in sorted(timeline.items())],
        samples=samples,
    )


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= _SAMPLE_TEXT_LIMIT:
        return text
    return text[: _SAMPLE_TEXT_LIMIT - 1] + "…"


# --------------------------------------------------------------------------- readiness


@dataclass(frozen=True)
class Criteria:
    """What "ready" means; a criterion left None is not checked."""

    max_error_rate: float | None = None
    max_p95_ms: float | None = None
    min_reviews: int | None = None


def _pair(value: float, limit: float, digits: int = 3) -> tuple[str, str]:
    """Format two numbers so that they never print equal when they are not."""
    for places in range(digits, 10):
        a, b = f"{value:.{places}f}", f"{limit:.{places}f}"
        if a != b:
            return a, b
    return f"{value!r}", f"{limit!r}"


def evaluate(report: Report, criteria: Criteria) -> list[str]:
    """The failed criteria, each naming itself and its numbers; empty means ready.

    No evidence is not a pass: an error-rate or latency criterion with nothing to measure
    fails."""
    failed: list[str] = []
    if criteria.min_reviews is not None and report.reviews < criteria.min_reviews:
        failed.append(f"reviews {report.reviews} < min {criteria.min_reviews}")
    if criteria.max_error_rate is not None:
        rate = report.error_rate
        if rate is None:
            failed.append(f"error_rate unknown (no reviews) - max {criteria.max_error_rate:.3f}")
        elif rate > criteria.max_error_rate:
            shown, limit = _pair(rate, criteria.max_error_rate)
            failed.append(
                f"error_rate {shown} > max {limit} ({report.errors}/{report.reviews} errors)"
            )
    if criteria.max_p95_ms is not None:
        p95 = report.latency_ms.p95
        if p95 is None:
            failed.append(
                f"latency_p95_ms unknown (no latency recorded) - max {criteria.max_p95_ms:g}"
            )
        elif p95 > criteria.max_p95_ms:
            failed.append(f"latency_p95_ms {p95} > max {criteria.max_p95_ms:g}")
    return failed


# --------------------------------------------------------------------------- rendering


def _iso(ts: datetime) -> str:
    return as_utc(ts).isoformat().replace("+00:00", "Z")


def _num(value: float | int | None, places: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{places}f}"


def as_dict(report: Report, failures: Sequence[str]) -> dict[str, Any]:
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
            "bucket_seconds": report.timeline_bucket_seconds,
            "buckets": [{"start": _iso(b.start), **b.counts} for b in report.timeline],
        },
        "ready": not failures,
        "failed": list(failures),
    }


def render_json(report: Report, failures: Sequence[str]) -> str:
    """One line of JSON; non-ASCII escaped so that nothing can split it."""
    return json.dumps(as_dict(report, failures), ensure_ascii=True, separators=(",", ":"))


def _status_line(failures: Sequence[str]) -> str:
    return "READY" if not failures else "NOT READY: " + "; ".join(failures)


def render_table(report: Report, failures: Sequence[str]) -> str:
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
    lines += ["", _status_line(failures)]
    return "\n".join(lines) + "\n"


# HTML: colours per verdict, shared by the legend, the bars and the tables.
_COLOURS = {"approve": "#2e7d32", "veto": "#c62828", "adjust": "#f9a825", "error": "#6a1b9a"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:70rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.ready{background:#e8f5e9;border:1px solid #2e7d32;padding:.6rem}
.notready{background:#ffebee;border:1px solid #c62828;padding:.6rem}
svg text{font-size:11px;fill:#333}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], body: Iterable[Sequence[object]], left: int = 1) -> str:
    """A table whose first `left` columns are text (left-aligned)."""
    head = "".join(
        f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>"
        for i, h in enumerate(headers)
    )
    out = [f"<table><tr>{head}</tr>"]
    for row in body:
        cells = "".join(
            f'<td class="l">{_e(c)}</td>' if i < left else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def _histogram_svg(bins: Sequence[HistogramBin]) -> str:
    width, height, pad, bottom = 640, 220, 40, 40
    bar_w = (width - 2 * pad) / max(len(bins), 1)
    top = max((b.count for b in bins), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="latency histogram">',
        f'<line x1="{pad}" y1="{height - bottom}" x2="{width - pad}" '
        f'y2="{height - bottom}" stroke="#999"/>',
    ]
    usable = height - bottom - 20
    for i, b in enumerate(bins):
        h = usable * b.count / top
        x = pad + i * bar_w
        label = f"{b.low_ms}-{b.high_ms}" if b.high_ms is not None else f"{b.low_ms}+"
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{height - bottom - h:.1f}" width="{bar_w - 4:.1f}" '
            f'height="{h:.1f}" fill="#1565c0"><title>{_e(label)} ms: {b.count}</title></rect>'
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom - h - 4:.1f}" '
            f'text-anchor="middle">{b.count}</text>'
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14}" '
            f'text-anchor="middle">{_e(label)}</text>'
        )
    parts.append(
        f'<text x="{width / 2:.0f}" y="{height - 6}" text-anchor="middle">'
        "latency (ms), circuit_open rows excluded</text></svg>"
    )
    return "".join(parts)


def _timeline_svg(report: Report) -> str:
    """Stacked bars of verdicts per bucket, gaps included, from `since` to `until`."""
    step = report.timeline_bucket_seconds
    by_start = {b.start: b.counts for b in report.timeline}
    starts: list[datetime] = []
    cursor = _bucket_origin(report.since, step)
    while cursor < report.until and len(starts) <= _MAX_TIMELINE_BUCKETS:
        starts.append(cursor)
        cursor += timedelta(seconds=step)
    width, height, pad, bottom = 760, 240, 40, 40
    bar_w = (width - 2 * pad) / max(len(starts), 1)
    top = max((sum(c.values()) for c in by_start.values()), default=0) or 1
    usable = height - bottom - 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="verdicts over time">',
        f'<line x1="{pad}" y1="{height - bottom}" x2="{width - pad}" '
        f'y2="{height - bottom}" stroke="#999"/>',
        f'<text x="{pad - 4}" y="{height - bottom - usable + 4:.0f}" '
        f'text-anchor="end">{top}</text>',
    ]
    for i, start in enumerate(starts):
        counts = by_start.get(start, {})
        x = pad + i * bar_w
        y = float(height - bottom)
        for verdict in VERDICTS:
            n = counts.get(verdict, 0)
            if not n:
                continue
            h = usable * n / top
            y -= h
            parts.append(
                f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{_COLOURS[verdict]}">'
                f"<title>{_e(_iso(start))} {_e(verdict)}: {n}</title></rect>"
            )
    if starts:
        parts.append(
            f'<text x="{pad}" y="{height - bottom + 14}">{_e(_iso(starts[0]))}</text>'
            f'<text x="{width - pad}" y="{height - bottom + 14}" text-anchor="end">'
            f"{_e(_iso(report.until))}</text>"
        )
    legend_x = pad
    for verdict in VERDICTS:
        parts.append(
            f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{_COLOURS[verdict]}"/>'
            f'<text x="{legend_x + 14}" y="15">{_e(verdict)}</text>'
        )
        legend_x += 80
    unit = "hour" if step == 3600 else f"{step // 3600} h"
    parts.append(
        f'<text x="{width / 2:.0f}" y="{height - 6}" text-anchor="middle">'
        f"reviews per {_e(unit)}, stacked by verdict</text></svg>"
    )
    return "".join(parts)


def render_html(report: Report, failures: Sequence[str]) -> str:
    """One self-contained page: inline CSS and SVG, no script, no external asset."""
    status = (
        '<p class="ready"><strong>READY</strong></p>'
        if not failures
        else '<div class="notready"><strong>NOT READY</strong><ul>'
        + "".join(f"<li>{_e(f)}</li>" for f in failures)
        + "</ul></div>"
    )

    def mix(counts: Mapping[str, int]) -> list[tuple[object, ...]]:
        return [(k, n, f"{report.share(n):.1%}") for k, n in counts.items()]

    tokens = report.tokens
    shadow = report.shadow
    sections = [
        f"<h1>LLM review report: {_e(_iso(report.since))} to {_e(_iso(report.until))}</h1>",
        status,
        _table(
            ("measure", "value"),
            [
                ("reviews", report.reviews),
                ("error rate", f"{(report.error_rate or 0.0):.2%}"),
                ("latency p95 (ms)", _num(report.latency_ms.p95)),
                ("breaker openings (inferred)", report.breaker_openings),
                ("shadow reviews", shadow.reviews),
                ("shadow disagreements", shadow.disagreements),
                ("disagreement notional", f"{shadow.notional:,.2f}"),
            ],
        ),
        "<h2>Verdicts over time</h2>",
        _timeline_svg(report),
        "<h2>Verdicts (after policy)</h2>",
        _table(("verdict", "count", "share"), mix(report.verdicts)),
        "<h2>Model verdicts</h2>",
        _table(("llm_verdict", "count", "share"), mix(report.llm_verdicts)),
        "<h2>Effective actions</h2>",
        _table(("effective_action", "count", "share"), mix(report.effective_actions)),
        "<h2>Errors by code</h2>",
        _table(("error_code", "count", "share of reviews"), mix(report.errors_by_code))
        if report.errors_by_code
        else "<p>No errors.</p>",
        "<h2>Latency</h2>",
        _histogram_svg(report.latency_histogram),
        _table(
            ("timing (ms)", "n", "p50", "p95", "p99", "max"),
            [
                (label, p.count, _num(p.p50), _num(p.p95), _num(p.p99), _num(p.max))
                for label, p in (("latency", report.latency_ms), ("ttft", report.ttft_ms))
            ],
        ),
        "<p>Nearest-rank percentiles; circuit_open rows are excluded.</p>",
        "<h2>Tokens</h2>",
        _table(
            ("tokens", "total", "mean per review with usage"),
            [
                ("prompt", tokens.prompt_total, _num(tokens.prompt_mean)),
                ("completion", tokens.completion_total, _num(tokens.completion_mean)),
            ],
        ),
        f"<p>Rows with usage: {tokens.with_usage}; without usage: {tokens.without_usage}.</p>",
        "<h2>Shadow disagreements</h2>",
        _table(
            ("would have been", "count"),
            [
                ("vetoed", shadow.by_verdict.get("veto", 0)),
                ("adjusted", shadow.by_verdict.get("adjust", 0)),
                ("rejected on error (fail_mode veto)", shadow.by_verdict.get("error", 0)),
                ("of unknown notional", shadow.unknown_notional),
            ],
        ),
        "<h2>Models</h2>",
        _table(
            ("provider", "model", "prompt_version", "reviews"),
            [(m.provider, m.model, m.prompt_version, m.reviews) for m in report.models],
            left=3,
        ),
        "<h2>Recent non-approve reviews</h2>",
        _table(
            (
                "created_at",
                "symbol",
                "model",
                "verdict",
                "llm_verdict",
                "error_code",
                "reason",
                "rationale / error",
            ),
            [
                (
                    _iso(s.created_at),
                    s.symbol or "",
                    s.model,
                    s.verdict,
                    s.llm_verdict or "",
                    s.error_code or "",
                    s.reason or "",
                    s.text or "",
                )
                for s in report.samples
            ],
            left=8,
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Torghut LLM review report</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------- --since


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_HINT = "use a duration such as 30s, 90m, 24h, 7d or an ISO 8601 datetime"


def parse_since(text: str, now: datetime) -> datetime:
    """`24h`, `90m`, `7d`, `30s` (also `2w`) before `now`, or an ISO 8601 datetime (naive means
    UTC). Anything else, a zero duration or a time after `now` is an `InputError`."""
    raw = text.strip()
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    now = as_utc(now)
    if not raw:
        raise InputError(f"--since: empty value; {_HINT}")
    match = _DURATION.fullmatch(raw)
    if match:
        amount = int(match.group(1))
        if amount == 0:
            raise InputError(f"--since: {shown!r} is an empty window; {_HINT}")
        try:
            return now - timedelta(seconds=amount * _UNITS[match.group(2).lower()])
        except OverflowError:
            raise InputError(f"--since: {shown!r} reaches before year 1") from None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"--since: cannot read {shown!r}; {_HINT}") from None
    value = as_utc(value)
    if value > now:
        raise InputError(f"--since: {shown!r} is in the future")
    return value
