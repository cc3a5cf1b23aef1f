"""The report's numbers, read from the `llm_decision_reviews` audit rows (`build_report`).

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
  gate enforced with the row's `fail_mode`: `trading/gate.py` decides (`would_change_order`;
  today `veto`, `adjust`, and `error` under fail mode `veto`).
  Its notional is the row's `notional` column when set, else the decision's
  `qty x decision_json.params.price`; rows with neither are counted as of unknown notional.
- The timeline counts verdicts by the decision's signal time (`trade_decisions.event_ts`;
  `created_at` for a row without its decision), so a replay of last month is drawn over last
  month, not over the seconds it took. Its buckets fit the data's own span: the smallest of
  1 min, 5 min, 15 min, 1 h, 6 h, 1 day, 1 week that needs at most 60 of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, case, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from torghut.db.tables import LLMDecisionReview, TradeDecisionRow
from torghut.domain import FailMode, Verdict, as_utc, utcnow
from torghut.errors import InputError, ReviewErrorCode
from torghut.trading.gate import would_change_order

VERDICTS: tuple[str, ...] = ("approve", "veto", "adjust", "error")
LLM_VERDICTS: tuple[str, ...] = ("approve", "veto", "adjust")
EFFECTIVE_ACTIONS: tuple[str, ...] = ("submitted_original", "submitted_adjusted", "rejected")
ERROR_CODES: tuple[str, ...] = tuple(code.value for code in ReviewErrorCode)
CIRCUIT_OPEN = ReviewErrorCode.CIRCUIT_OPEN.value
# Key of rows without a model verdict (errors) in `Report.llm_verdicts`.
NO_LLM_VERDICT = "none"

# Latency histogram edges in ms; 8000 is an edge because it is the usual p95 target.
HISTOGRAM_EDGES_MS: tuple[int, ...] = (0, 250, 500, 1000, 2000, 4000, 8000, 15000, 20000)
# Timeline bucket sizes, in seconds, smallest first; the first that needs at most
# `MAX_TIMELINE_BUCKETS` buckets over the data's span is used.
TIMELINE_STEPS: tuple[int, ...] = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
MAX_TIMELINE_BUCKETS = 60
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
    # The signal-time span the timeline covers (None without rows).
    timeline_start: datetime | None = None
    timeline_end: datetime | None = None

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


def bucket_seconds_for(first: datetime | None, last: datetime | None) -> int:
    """The smallest step of `TIMELINE_STEPS` that covers `[first, last]` in at most
    `MAX_TIMELINE_BUCKETS` buckets (the largest step when none does)."""
    if first is None or last is None:
        return TIMELINE_STEPS[0]
    span = max((last - first).total_seconds(), 0.0)
    for step in TIMELINE_STEPS:
        if span // step + 1 <= MAX_TIMELINE_BUCKETS:
            return step
    return TIMELINE_STEPS[-1]


def bucket_start(ts: datetime, seconds: int) -> datetime:
    """Buckets are aligned on multiples of their size since the Unix epoch (whole minutes,
    hours, UTC days)."""
    epoch = int(as_utc(ts).timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=as_utc(ts).tzinfo)


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


def _changes_order(verdict: str, fail_mode: str) -> bool:
    try:
        return would_change_order(Verdict(verdict), FailMode(fail_mode))
    except ValueError:
        return False  # a value this version does not know: not counted as a disagreement


def _disagreement() -> ColumnElement[bool]:
    """Shadow rows whose outcome would have changed the order, had the gate enforced: the
    (verdict, fail mode) pairs `trading/gate.py` says change it."""
    pairs = [
        and_(_R.verdict == v.value, _R.fail_mode == f.value)
        for v in Verdict
        for f in FailMode
        if would_change_order(v, f)
    ]
    return and_(_R.shadow.is_(True), or_(*pairs) if pairs else false())


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
                if _changes_order(verdict, fail_mode):
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

        # The timeline's span, in signal time, so that its buckets fit the data.
        signal_time = func.coalesce(_D.event_ts, _R.created_at)
        first, last = (
            await session.execute(
                select(func.min(signal_time), func.max(signal_time))
                .select_from(_R)
                .outerjoin(_D, _D.id == _R.trade_decision_id)
                .where(window)
            )
        ).one()
        first = as_utc(first) if first is not None else None
        last = as_utc(last) if last is not None else None
        bucket_seconds = bucket_seconds_for(first, last)
        # Row by row, in time order, only the columns the percentiles and runs need.
        timeline: dict[datetime, Counter[str]] = {}
        latencies: list[int] = []
        ttfts: list[int] = []
        histogram = [0] * len(HISTOGRAM_EDGES_MS)
        openings = 0
        previous_open = False
        rows = await session.stream(
            select(_R.created_at, _R.verdict, _R.error_code, _R.latency_ms, _R.ttft_ms, _D.event_ts)
            .select_from(_R)
            .outerjoin(_D, _D.id == _R.trade_decision_id)
            .where(window)
            .order_by(_R.created_at, _R.id)
            .execution_options(yield_per=_STREAM_BATCH)
        )
        async for created_at, verdict, error_code, latency_ms, ttft_ms, event_ts in rows:
            is_open = error_code == CIRCUIT_OPEN
            if is_open and not previous_open:
                openings += 1
            previous_open = is_open
            start = bucket_start(as_utc(event_ts or created_at), bucket_seconds)
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
        timeline_start=first,
        timeline_end=last,
    )


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= _SAMPLE_TEXT_LIMIT:
        return text
    return text[: _SAMPLE_TEXT_LIMIT - 1] + "…"


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
