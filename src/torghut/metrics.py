"""Every Prometheus collector of Torghut, on one registry per process component set.

A registry per `Metrics` instance (not the global default) so tests and the demo can build as
many services as they like in one process without duplicate-collector errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)
CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reviews = Counter(
            "torghut_llm_reviews_total", "LLM reviews by outcome after policy", ["verdict"],
            registry=r,
        )
        self.review_errors = Counter(
            "torghut_llm_review_errors_total", "Failed LLM reviews by error code", ["code"],
            registry=r,
        )
        self.review_latency = Histogram(
            "torghut_llm_review_latency_seconds", "Wall time of one review",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.review_ttft = Histogram(
            "torghut_llm_ttft_seconds", "Request sent to first data event",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.tokens = Counter(
            "torghut_llm_tokens_total", "Tokens reported by the gateway", ["kind"], registry=r
        )
        self.circuit_state = Gauge(
            "torghut_llm_circuit_state", "Breaker state: 0 closed, 1 half-open, 2 open",
            registry=r,
        )
        self.circuit_transitions = Counter(
            "torghut_llm_circuit_transitions_total", "Breaker transitions", ["to_state"],
            registry=r,
        )
        self.shadow_disagreements = Counter(
            "torghut_llm_shadow_disagreements_total",
            "Shadow reviews whose outcome would have changed the order", ["verdict"], registry=r,
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
            "torghut_decisions_total", "Trade decisions by final pipeline status", ["status"],
            registry=r,
        )
        self.rejections = Counter(
            "torghut_decision_rejections_total", "Rejected decisions by reason", ["reason"],
            registry=r,
        )
        self.orders = Counter(
            "torghut_orders_submitted_total", "Orders sent to the broker", ["broker"], registry=r
        )
        self.signals = Counter(
            "torghut_signals_total", "Signals read from the source", registry=r
        )
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
        self.halted = Gauge(
            "torghut_trading_halted",
            "1 while an operator's halt (POST /trading/halt) is in force, as last read",
            registry=r,
        )
        self.quarantined_batches = Counter(
            "torghut_quarantined_batches_total",
            "Signal batches skipped after failing the same way repeatedly", registry=r,
        )

    def watch_circuit(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Read the breaker's state at scrape time, so the gauge can never go stale."""
        self.circuit_state.set_function(
            lambda: float(CIRCUIT_STATE_VALUES.get(str(snapshot().get("state")), 0))
        )

    def on_circuit_transition(self, _old: str, new: str) -> None:
        self.circuit_transitions.labels(to_state=new).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
