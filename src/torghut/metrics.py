"""Every Prometheus collector of Torghut, on one registry per process component set.

A registry per `Metrics` instance (not the global default) so tests and the demo can build as
many services as they like in one process without duplicate-collector errors. The process and
platform collectors the default registry would have are added to each one.

Every labelled counter is created at start for every label value the code knows (`_prime`):
a series that only appears on its first increment is invisible to `increase()` and `rate()`,
so an "any increase" alert would miss the first error after a restart. The alert rules in
argocd/applications/torghut/prometheus-rules.yaml use only names defined here (a test)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from torghut.build import build_details
from torghut.domain import Verdict
from torghut.errors import ReviewErrorCode
from torghut.trading.llm import policy
from torghut.trading.llm.circuit import CircuitState
from torghut.trading.risk import REASONS as RISK_REASONS

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)
CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

# The `reason` label of torghut_decision_rejections_total is a rejection reason up to its first
# ":" (`llm_error:timeout` counts as `llm_error`). Risk and policy reasons come from their
# modules; the rest are set by the pipeline, the reconciler and CONTRACT §8.
REJECTION_REASONS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            *RISK_REASONS,
            *sorted(
                v for k, v in vars(policy).items() if k.startswith("REASON_") and isinstance(v, str)
            ),
            "llm_error",
            "halted",
            "signal_stale",
            "market_closed",
            "price_out_of_band",
            "max_shares_exceeded",
            "audit_write_failed",
            "order_write_failed",
            "broker_rejected",
            "broker_no_answer",
            "internal_error",
        )
    )
)  # without repeats, in this order
# The `broker` label: config.BrokerKind's values (a test holds them equal; config is an entry
# point, which an adapter does not import).
BROKERS: tuple[str, ...] = ("sim", "alpaca")
DECISION_STATUSES = ("submitted", "rejected")
TOKEN_KINDS = ("prompt", "completion")
# Shadow reviews that would have changed the order: a veto or an adjustment (an error only
# when the fail mode is veto).
DISAGREEING_VERDICTS = (Verdict.VETO.value, Verdict.ADJUST.value, Verdict.ERROR.value)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, brokers: Iterable[str] = BROKERS) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # What the default registry has (CPU, memory, file descriptors, start time, GC, the
        # Python version), on this registry; a no-op where /proc is missing (macOS).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Info("torghut_build", "The running build", registry=r)
        self.build_info.info(build_details())
        self.reviews = Counter(
            "torghut_llm_reviews_total",
            "LLM reviews by outcome after policy",
            ["verdict"],
            registry=r,
        )
        self.review_errors = Counter(
            "torghut_llm_review_errors_total",
            "Failed LLM reviews by error code",
            ["code"],
            registry=r,
        )
        self.review_latency = Histogram(
            "torghut_llm_review_latency_seconds",
            "Wall time of one review",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.review_ttft = Histogram(
            "torghut_llm_ttft_seconds",
            "Request sent to first data event",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "torghut_llm_tokens_total", "Tokens reported by the gateway", ["kind"], registry=r
        )
        self.circuit_state = Gauge(
            "torghut_llm_circuit_state",
            "Breaker state: 0 closed, 1 half-open, 2 open",
            registry=r,
        )
        self.circuit_transitions = Counter(
            "torghut_llm_circuit_transitions_total",
            "Breaker transitions",
            ["to_state"],
            registry=r,
        )
        self.shadow_disagreements = Counter(
            "torghut_llm_shadow_disagreements_total",
            "Shadow reviews whose outcome would have changed the order",
            ["verdict"],
            registry=r,
        )
        self.audit_write_failures = Counter(
            "torghut_audit_write_failures_total",
            "Audit rows that could not be written (enforcing: the order was not sent)",
            registry=r,
        )
        self.reviews_in_flight = Gauge(
            "torghut_llm_reviews_in_flight", "Reviews running now", registry=r
        )
        self.decisions = Counter(
            "torghut_decisions_total",
            "Trade decisions by final pipeline status",
            ["status"],
            registry=r,
        )
        self.rejections = Counter(
            "torghut_decision_rejections_total",
            "Rejected decisions by reason",
            ["reason"],
            registry=r,
        )
        self.orders = Counter(
            "torghut_orders_submitted_total", "Orders sent to the broker", ["broker"], registry=r
        )
        self.signals = Counter("torghut_signals_total", "Signals read from the source", registry=r)
        self.cycle_seconds = Histogram(
            "torghut_trading_cycle_seconds", "Duration of one trading cycle", registry=r
        )
        self.cycle_errors = Counter(
            "torghut_trading_cycle_errors_total", "Trading cycles that raised", registry=r
        )
        self.last_cycle = Gauge(
            "torghut_trading_last_cycle_timestamp_seconds", "When the loop last ran", registry=r
        )
        self.leader = Gauge(
            "torghut_trading_leader", "1 when this process holds the trading lock", registry=r
        )
        self.last_signal = Gauge(
            "torghut_trading_last_signal_timestamp_seconds",
            "Signal time of the newest signal read (the lag is time() minus this)",
            registry=r,
        )
        self.halted = Gauge(
            "torghut_trading_halted",
            "1 while an operator's halt (POST /trading/halt) is in force, as last read",
            registry=r,
        )
        self.quarantined_batches = Counter(
            "torghut_quarantined_batches_total",
            "Signal batches skipped after failing the same way repeatedly",
            registry=r,
        )
        self._newest_signal = 0.0
        self._prime(brokers)

    def _prime(self, brokers: Iterable[str]) -> None:
        """Create every known labelled series at zero (see the module's docstring)."""
        for verdict in Verdict:
            self.reviews.labels(verdict=verdict.value)
        for code in ReviewErrorCode:
            self.review_errors.labels(code=code.value)
        for kind in TOKEN_KINDS:
            self.tokens.labels(kind=kind)
        for state in CircuitState:
            self.circuit_transitions.labels(to_state=state.value)
        for verdict_value in DISAGREEING_VERDICTS:
            self.shadow_disagreements.labels(verdict=verdict_value)
        for status in DECISION_STATUSES:
            self.decisions.labels(status=status)
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason=reason)
        for broker in brokers:
            self.orders.labels(broker=broker)

    def signals_read(self, event_times: Iterable[datetime]) -> None:
        """The newest signal time of a batch just read: the signal-lag alert's input."""
        newest = max(event_times, default=None)
        if newest is not None and newest.timestamp() > self._newest_signal:
            self._newest_signal = newest.timestamp()
            self.last_signal.set(self._newest_signal)

    def watch_circuit(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Read the breaker's state at scrape time, so the gauge can never go stale."""
        self.circuit_state.set_function(
            lambda: float(CIRCUIT_STATE_VALUES.get(str(snapshot().get("state")), 0))
        )

    def on_circuit_transition(self, _old: str, new: str) -> None:
        self.circuit_transitions.labels(to_state=new).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
