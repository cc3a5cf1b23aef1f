"""`torghut.report` against real audit rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from tests.conftest import Database
from torghut.db.tables import LLMDecisionReview, Strategy, TradeDecisionRow
from torghut.domain import FailMode, Verdict
from torghut.errors import InputError
from torghut.report import (
    Criteria,
    Report,
    build_report,
    evaluate,
    nearest_rank,
    parse_since,
    render_html,
    render_json,
    render_table,
)
from torghut.report.render import Label, histogram_chart, timeline_chart
from torghut.trading.gate import would_change_order

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SINCE = T0 - timedelta(hours=1)
UNTIL = T0 + timedelta(days=1)


@dataclass
class Row:
    """One review to insert; the decision behind it is made up from `qty` and `price`."""

    verdict: str = "approve"
    llm_verdict: str | None = None
    error_code: str | None = None
    latency_ms: int | None = 1000
    ttft_ms: int | None = 300
    shadow: bool = True
    fail_mode: str = "pass_through"
    effective_action: str = "submitted_original"
    tokens: tuple[int | None, int | None] = (100, 20)
    notional: Decimal | None = None
    qty: Decimal = Decimal(10)
    price: Any = "100"
    model: str = "gpt-5.3-codex"
    rationale: str | None = "fine"
    at: datetime = T0


async def insert(database: Database, rows: list[Row]) -> None:
    async with database.sessions() as session, session.begin():
        session.add(Strategy(id="s"))
        await session.flush()
        for i, row in enumerate(rows):
            decision_id = uuid.uuid4()
            params = {} if row.price is None else {"price": row.price}
            session.add(
                TradeDecisionRow(
                    id=decision_id,
                    strategy_id="s",
                    symbol="AAPL",
                    timeframe="1Min",
                    action="buy",
                    qty=row.qty,
                    decision_json={"symbol": "AAPL", "qty": str(row.qty), "params": params},
                    decision_hash=f"h-{uuid.uuid4().hex}",
                    status="submitted",
                    event_ts=row.at,
                    created_at=row.at,
                )
            )
            await session.flush()
            llm_verdict = row.llm_verdict
            if llm_verdict is None and row.verdict != "error":
                llm_verdict = row.verdict
            session.add(
                LLMDecisionReview(
                    trade_decision_id=decision_id,
                    provider="jangar",
                    model=row.model,
                    prompt_version="v1",
                    input_json={"messages": []},
                    response_json=None,
                    llm_verdict=llm_verdict,
                    verdict=row.verdict,
                    reason=None if row.verdict == "approve" else f"llm_{row.verdict}",
                    rationale=row.rationale,
                    tokens_prompt=row.tokens[0],
                    tokens_completion=row.tokens[1],
                    latency_ms=row.latency_ms,
                    ttft_ms=row.ttft_ms,
                    shadow=row.shadow,
                    fail_mode=row.fail_mode,
                    trading_mode="paper",
                    effective_action=row.effective_action,
                    error_code=row.error_code,
                    error_message=f"{row.error_code} happened" if row.error_code else None,
                    notional=row.notional,
                    # Distinct timestamps keep the time order (and so breaker runs) exact.
                    created_at=row.at + timedelta(milliseconds=i),
                )
            )


async def report_of(database: Database, rows: list[Row]) -> Report:
    await insert(database, rows)
    return await build_report(database.sessions, since=SINCE, until=UNTIL)


def error(code: str = "timeout", **kw: Any) -> Row:
    return Row(verdict="error", error_code=code, **kw)


async def test_two_errors_in_a_hundred_fail_max_error_rate(database: Database) -> None:
    report = await report_of(database, [Row()] * 98 + [error(), error("http_error")])
    assert report.reviews == 100
    assert report.verdicts == {"approve": 98, "veto": 0, "adjust": 0, "error": 2}
    assert report.errors_by_code == {"http_error": 1, "timeout": 1}
    assert report.error_rate == pytest.approx(0.02)
    failed = evaluate(report, Criteria(max_error_rate=0.01)).failures
    assert len(failed) == 1
    assert failed[0].startswith("error_rate 0.020 > max 0.010")
    assert evaluate(report, Criteria(max_error_rate=0.05, min_reviews=100)).ready


async def test_no_errors_pass_and_each_criterion_names_itself(database: Database) -> None:
    report = await report_of(database, [Row(latency_ms=9000)] * 100)
    assert evaluate(report, Criteria(max_error_rate=0.01)).ready
    failed = evaluate(report, Criteria(max_error_rate=0.01, max_p95_ms=8000, min_reviews=200))
    assert failed.failures == ["reviews 100 < min 200", "latency_p95_ms 9000 > max 8000"]


async def test_an_empty_window_is_not_ready(database: Database) -> None:
    report = await report_of(database, [])
    assert report.reviews == 0
    assert report.error_rate is None
    failed = evaluate(report, Criteria(max_error_rate=0.01, max_p95_ms=8000, min_reviews=1))
    assert [f.split()[0] for f in failed] == ["reviews", "error_rate", "latency_p95_ms"]
    assert json.loads(render_json(report, failed))["ready"] is False
    assert "<svg" in render_html(report, failed)


async def test_rows_outside_the_window_are_left_out(database: Database) -> None:
    rows = [Row(), Row(at=SINCE - timedelta(seconds=1)), Row(at=UNTIL)]
    report = await report_of(database, rows)
    assert report.reviews == 1


async def test_percentiles_are_nearest_rank(database: Database) -> None:
    # Latencies 10, 20, ..., 1000 ms; TTFT 1..100 ms; a circuit_open row at 0 ms is left out.
    rows = [Row(latency_ms=10 * i, ttft_ms=i) for i in range(100, 0, -1)]
    rows.append(error("circuit_open", latency_ms=0, ttft_ms=None))
    report = await report_of(database, rows)
    assert report.latency_ms.count == 100
    assert (report.latency_ms.p50, report.latency_ms.p95, report.latency_ms.p99) == (
        500,
        950,
        990,
    )
    assert report.latency_ms.max == 1000
    assert (report.ttft_ms.p50, report.ttft_ms.p95, report.ttft_ms.p99) == (50, 95, 99)
    assert sum(b.count for b in report.latency_histogram) == 100


def test_nearest_rank_small_samples() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([7], 99) == 7
    assert nearest_rank([1, 2, 3, 4], 50) == 2
    assert nearest_rank([1, 2, 3, 4], 95) == 4
    assert nearest_rank(list(range(1, 21)), 95) == 19


async def test_tokens_count_null_usage_separately(database: Database) -> None:
    rows = [Row(tokens=(100, 20)), Row(tokens=(300, 40)), Row(tokens=(None, None))]
    report = await report_of(database, rows)
    t = report.tokens
    assert (t.with_usage, t.without_usage) == (2, 1)
    assert (t.prompt_total, t.completion_total) == (400, 60)
    assert (t.prompt_mean, t.completion_mean) == (200.0, 30.0)


async def test_shadow_disagreements_with_notional(database: Database) -> None:
    rows = [
        Row(verdict="approve"),
        # Stored notional wins over qty x price.
        Row(verdict="veto", notional=Decimal("1234.50")),
        # No stored notional: 10 x 100.25.
        Row(verdict="adjust", price="100.25"),
        # An error only disagrees when the row's fail mode would have rejected it.
        error(fail_mode="veto", qty=Decimal(2), price=50),
        error(fail_mode="pass_through"),
        # Enforced rows are not shadow disagreements.
        Row(verdict="veto", shadow=False, effective_action="rejected"),
        # A disagreement whose price is unknown.
        Row(verdict="veto", price=None),
    ]
    report = await report_of(database, rows)
    s = report.shadow
    assert s.reviews == 6
    assert s.disagreements == 4
    assert s.by_verdict == {"veto": 2, "adjust": 1, "error": 1}
    assert s.notional == Decimal("1234.50") + Decimal("1002.50") + Decimal("100")
    assert s.unknown_notional == 1
    assert report.effective_actions == {
        "submitted_original": 6,
        "submitted_adjusted": 0,
        "rejected": 1,
    }
    assert report.llm_verdicts == {"approve": 1, "veto": 3, "adjust": 1, "none": 2}


async def test_breaker_openings_are_runs_of_circuit_open(database: Database) -> None:
    co = "circuit_open"
    pattern = [
        Row(),
        error(),
        error(),
        error(),
        error(co),
        error(co),
        error(co),  # opening 1
        Row(),
        error(co),  # opening 2
        Row(),
        Row(),
        error(co),
        error(co),  # opening 3
    ]
    report = await report_of(database, pattern)
    assert report.breaker_openings == 3
    assert report.errors_by_code == {"circuit_open": 6, "timeout": 3}


async def test_timeline_buckets_fit_the_datas_own_span(database: Database) -> None:
    rows = [Row(at=T0), Row(at=T0 + timedelta(minutes=59)), error(at=T0 + timedelta(hours=2))]
    await insert(database, rows)
    # Two hours of data in a window of a day: 5-minute buckets (1 min would need 121), on
    # whole 5 minutes whatever the window's start.
    report = await build_report(database.sessions, since=SINCE + timedelta(minutes=17), until=UNTIL)
    assert report.timeline_bucket_seconds == 300
    assert (report.timeline_start, report.timeline_end) == (T0, T0 + timedelta(hours=2))
    assert [(b.start, b.counts) for b in report.timeline] == [
        (T0, {"approve": 1}),
        (T0 + timedelta(minutes=55), {"approve": 1}),
        (T0 + timedelta(hours=2), {"error": 1}),
    ]


async def test_a_replay_is_drawn_over_its_signal_time(database: Database) -> None:
    # A replay writes a month of signals' reviews within seconds: the timeline must follow
    # the decisions' signal time, not the rows' creation time.
    await insert(database, [Row(at=T0 + timedelta(days=d)) for d in range(30)])
    async with database.sessions() as session, session.begin():
        for review in (await session.execute(select(LLMDecisionReview))).scalars():
            review.created_at = T0 + timedelta(days=40, seconds=1)
    report = await build_report(database.sessions, since=T0, until=T0 + timedelta(days=41))
    assert report.timeline_bucket_seconds == 86400
    assert len(report.timeline) == 30
    assert report.timeline_start == T0 and report.timeline_end == T0 + timedelta(days=29)
    chart = timeline_chart(report)
    assert len(chart.bars) == 30


async def test_html_is_self_contained_and_escapes_everything(database: Database) -> None:
    evil = '<script>alert("x")</script>'
    rows = [
        Row(),
        Row(verdict="veto", rationale=evil, model='m"><img src=x onerror=alert(1)>'),
        error("timeout", latency_ms=20000),
    ]
    report = await report_of(database, rows)
    failed = evaluate(report, Criteria(max_error_rate=0.01))
    page = render_html(report, failed)
    assert page.count("<svg") == 2
    # Each chart is well-formed XML on its own (an unescaped string would break it).
    for chunk in page.split("<svg")[1:]:
        ElementTree.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "NOT READY" in page and "error_rate" in page
    # No external assets: nothing is fetched by the page.
    assert "src=" not in page.replace("src=x", "") and "href=" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")


async def test_json_and_table(database: Database) -> None:
    report = await report_of(database, [Row()] * 3 + [error("invalid_json")])
    failed = evaluate(report, Criteria(max_error_rate=0.01))
    doc = json.loads(render_json(report, failed))
    assert doc["status"].startswith("NOT READY")
    assert doc["checked"] == [
        {
            "criterion": "max_error_rate",
            "passed": False,
            "detail": "error_rate 0.250 > max 0.010 (1/4 errors)",
        }
    ]
    assert doc["window"] == {"since": "2026-03-02T08:00:00Z", "until": "2026-03-03T09:00:00Z"}
    assert doc["reviews"] == 4
    assert doc["ready"] is False
    assert doc["failed"] == failed.failures
    assert doc["verdicts"]["error"] == {"count": 1, "share": 0.25}
    assert doc["errors"]["by_code"]["invalid_json"]["count"] == 1
    assert doc["latency_ms"]["p95"] == 1000
    assert "\n" not in render_json(report, failed)

    table = render_table(report, failed)
    assert "NOT READY: error_rate 0.250 > max 0.010" in table
    ready = evaluate(report, Criteria(max_error_rate=0.5, min_reviews=4))
    assert (
        render_table(report, ready)
        .rstrip()
        .endswith("READY (checked: reviews 4 >= min 4; error_rate 0.250 <= max 0.500 (1/4 errors))")
    )
    nothing = evaluate(report, Criteria())
    assert not nothing.ready and nothing.failures == ["NO CRITERIA"]
    assert "NO CRITERIA" in render_table(report, nothing)
    assert json.loads(render_json(report, nothing))["ready"] is False
    assert "NO CRITERIA" in render_html(report, nothing)


def test_fewer_reviews_than_min_reviews_is_never_ready() -> None:
    empty = _empty_report()
    assert not evaluate(empty, Criteria(min_reviews=1)).ready
    assert evaluate(empty, Criteria(min_reviews=0)).ready


@pytest.mark.parametrize(
    ("criteria", "flag"),
    [
        ({"max_error_rate": 5.0}, "--max-error-rate"),
        ({"max_error_rate": -0.1}, "--max-error-rate"),
        ({"max_error_rate": float("nan")}, "--max-error-rate"),
        ({"max_p95_ms": -1.0}, "--max-p95-ms"),
        ({"min_reviews": -1}, "--min-reviews"),
    ],
)
def test_out_of_range_criteria_name_their_flag(criteria: dict[str, Any], flag: str) -> None:
    with pytest.raises(InputError, match=f"^{flag}: "):
        Criteria(**criteria)


def _empty_report() -> Report:
    from torghut.report.query import Percentiles, ShadowSummary, TokenSummary

    none = Percentiles(0, None, None, None, None)
    return Report(
        since=T0,
        until=UNTIL,
        reviews=0,
        verdicts={},
        llm_verdicts={},
        errors_by_code={},
        effective_actions={},
        latency_ms=none,
        ttft_ms=none,
        tokens=TokenSummary(0, 0, 0, 0),
        breaker_openings=0,
        shadow=ShadowSummary(0, 0, {}, Decimal(0), 0),
        models=[],
        latency_histogram=[],
        timeline_bucket_seconds=60,
        timeline=[],
        samples=[],
    )


def _overlaps(labels: list[Label]) -> list[tuple[str, str]]:
    spans = sorted((*label.extent(), label.text) for label in labels)
    return [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]


async def test_chart_labels_never_collide(database: Database) -> None:
    rows = [Row(latency_ms=ms) for ms in (100, 300, 700, 1500, 3000, 6000, 9000, 17000, 25000)]
    rows += [Row(at=T0 + timedelta(minutes=m)) for m in range(0, 600, 7)]
    report = await report_of(database, rows)
    histogram = histogram_chart(report.latency_histogram)
    assert [label.text for label in histogram.labels] == [
        "0",
        "250",
        "500",
        "1s",
        "2s",
        "4s",
        "8s",
        "15s",
        "20s",
        "+",
    ]
    assert _overlaps(histogram.labels) == []
    timeline = timeline_chart(report)
    assert len(timeline.labels) > 2
    assert _overlaps(timeline.labels) == []
    # And in the page: every axis label its own <text> element.
    page = render_html(report, evaluate(report, Criteria()))
    assert "4000-80008000-15000" not in page
    assert ">8s</text>" in page and ">15s</text>" in page


async def test_the_disagreement_rule_is_the_gates(database: Database) -> None:
    # Every (verdict, fail mode) cell: counted as a disagreement exactly when gate.py says
    # enforcing would have changed the order.
    cells = [(v, f) for v in Verdict for f in FailMode]
    rows = [
        Row(
            verdict=v.value, fail_mode=f.value, error_code="timeout" if v is Verdict.ERROR else None
        )
        for v, f in cells
    ]
    report = await report_of(database, rows)
    expected = sum(1 for v, f in cells if would_change_order(v, f))
    assert report.shadow.disagreements == expected == 5  # veto x2, adjust x2, error/veto


# --- parse_since -------------------------------------------------------------------------

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("90m", NOW - timedelta(minutes=90)),
        ("7d", NOW - timedelta(days=7)),
        ("30s", NOW - timedelta(seconds=30)),
        (" 2W ", NOW - timedelta(weeks=2)),
        ("2026-03-01T00:00:00Z", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T02:00:00+02:00", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T00:00:00", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "24",
        "h",
        "-1h",
        "0h",
        "1y",
        "yesterday",
        "2026-13-01",
        "2027-01-01T00:00Z",
        "99999999999999d",
    ],
)
def test_parse_since_rejects_bad_input(text: str) -> None:
    with pytest.raises(InputError, match=r"^--since: "):
        parse_since(text, NOW)
