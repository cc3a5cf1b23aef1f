"""The collectors a fresh process exports before anything happened: every labelled series at
zero, process and platform metrics, the build."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from torghut.config import BrokerKind
from torghut.errors import ReviewErrorCode
from torghut.metrics import BROKERS, REJECTION_REASONS, Metrics
from torghut.trading.llm import policy
from torghut.trading.risk import REASONS


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labelled(metrics: Metrics, name: str, label: str) -> dict[str, float]:
    return {
        dict(labels)[label]: value
        for (sample, labels), value in samples(metrics).items()
        if sample == name
    }


def test_every_review_error_code_is_exported_at_zero_before_the_first_error() -> None:
    errors = labelled(Metrics(), "torghut_llm_review_errors_total", "code")
    assert errors == {code.value: 0.0 for code in ReviewErrorCode}


def test_every_labelled_counter_starts_with_every_known_label() -> None:
    m = Metrics()
    assert set(labelled(m, "torghut_llm_reviews_total", "verdict")) == {
        "approve",
        "veto",
        "adjust",
        "error",
    }
    assert set(labelled(m, "torghut_llm_tokens_total", "kind")) == {"prompt", "completion"}
    assert set(labelled(m, "torghut_llm_circuit_transitions_total", "to_state")) == {
        "closed",
        "open",
        "half_open",
    }
    assert set(labelled(m, "torghut_decisions_total", "status")) == {"submitted", "rejected"}
    assert set(labelled(m, "torghut_orders_submitted_total", "broker")) == {"sim", "alpaca"}
    assert set(BROKERS) == {kind.value for kind in BrokerKind}
    reasons = labelled(m, "torghut_decision_rejections_total", "reason")
    assert set(REASONS) <= set(reasons)
    assert policy.REASON_VETO in reasons and "broker_rejected" in reasons
    assert set(reasons) == set(REJECTION_REASONS)
    assert all(v == 0 for v in reasons.values())


def test_process_platform_and_build_info_are_exported() -> None:
    exported = samples(Metrics())
    names = {name for name, _ in exported}
    assert {"process_start_time_seconds", "python_info", "python_gc_objects_collected_total"} <= (
        names
    )
    (labels,) = [dict(lbl) for name, lbl in exported if name == "torghut_build_info"]
    assert labels["version"] and labels["git_commit"]


def test_an_increment_after_priming_counts_once() -> None:
    m = Metrics()
    m.review_errors.labels(code="timeout").inc()
    assert labelled(m, "torghut_llm_review_errors_total", "code")["timeout"] == 1.0


def test_the_signal_time_gauge_only_moves_forward() -> None:
    m = Metrics()
    late = datetime(2026, 3, 2, 14, 31, tzinfo=UTC)
    early = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    m.signals_read([early, late])
    m.signals_read([early])
    m.signals_read([])
    value = samples(m)[("torghut_trading_last_signal_timestamp_seconds", frozenset())]
    assert value == late.timestamp()
