"""The log: a start-up banner, one line per order, veto, halt and breaker transition, text or
JSON lines, and never a secret (the canary tests of the audit rows and CLI errors, extended to
every log line)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.integration.test_gate_table import FakeProvider
from torghut import logs
from torghut.config import Settings, load_settings
from torghut.domain import Action, BrokerOrder, OrderRequest, OrderType, TimeInForce
from torghut.ports import ChatMessage, Completion
from torghut.replay import run_replay
from torghut.trading.llm.circuit import CircuitBreaker

CANARIES = {
    "JANGAR_API_KEY": "sk-canary-jangar-1111",
    "OPENAI_API_KEY": "sk-canary-openai-2222",
    "APCA_API_KEY_ID": "canary-alpaca-id-3333",
    "APCA_API_SECRET_KEY": "canary-alpaca-secret-4444",
    "CLICKHOUSE_PASSWORD": "canary-clickhouse-5555",
}
DB_PASSWORD = "canary-dbpass-6666"
SECRETS = [*CANARIES.values(), DB_PASSWORD]


def canary_settings(log_format: str, **extra: str) -> Settings:
    env = {
        **CANARIES,
        "DB_DSN": f"postgresql://torghut:{DB_PASSWORD}@db.example:5432/torghut",
        "JANGAR_BASE_URL": "http://127.0.0.1:9",
        "LLM_ENABLED": "true",
        "LOG_FORMAT": log_format,
        **extra,
    }
    return load_settings(env, None)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def order() -> OrderRequest:
    return OrderRequest(
        client_order_id="abc123",
        symbol="AAPL",
        side=Action.BUY,
        qty=Decimal(10),
        order_type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
    )


def emit_every_event(settings: Settings) -> None:
    """Every kind of line, each carrying a secret where a careless caller would put one."""
    key = CANARIES["JANGAR_API_KEY"]
    logs.startup_banner(settings, "serve")
    logs.order_submitted(order(), BrokerOrder("b-1", "abc123", "AAPL", "accepted"), broker="sim")
    logs.order_rejected_by_broker(order(), f"insufficient funds (key {key})", broker="alpaca")
    from torghut.domain import TradeDecision

    decision = TradeDecision.model_validate(
        {
            "strategy_id": "s",
            "symbol": "AAPL",
            "action": "buy",
            "qty": 10,
            "event_ts": "2026-03-02T15:00:00Z",
            "timeframe": "1Min",
        }
    )
    logs.review_vetoed(decision, "hash1", "llm_veto", "veto", f"Bearer {key} looks risky")
    logs.halt_changed(True, f"incident, token {CANARIES['APCA_API_SECRET_KEY']}", by="ops")
    logs.halt_changed(False, None)
    # The breaker words its own transitions.
    breaker = CircuitBreaker(1, 60, 600)
    permit = breaker.acquire()
    assert permit is not None
    with permit:
        permit.failure()
    try:
        raise RuntimeError(f"connect to {settings.db_dsn} failed")
    except RuntimeError:
        logging.getLogger("torghut.api").exception("with %s", CANARIES["OPENAI_API_KEY"])
    logging.getLogger("torghut").info(
        "extra fields", extra={"event": "x", "detail": {"k": [CANARIES["CLICKHOUSE_PASSWORD"]]}}
    )


def test_text_lines_carry_every_event_and_no_secret(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    settings = canary_settings("text")
    logs.setup_logging(settings)
    emit_every_event(settings)
    err = capsys.readouterr().err
    assert not [s for s in SECRETS if s in err]
    lines = [line for line in err.splitlines() if " torghut" in line]
    banner = next(line for line in lines if "torghut serve" in line)
    for part in (
        "mode paper",
        "broker sim",
        "signals replay",
        "llm jangar/gpt-5.3-codex",
        "gate stage 1-2 shadow",
        "max_notional_per_trade=1000",
        "database postgresql",
    ):
        assert part in banner, part
    assert any("order abc123 buy 10 AAPL market: accepted at sim as b-1" in x for x in lines)
    assert any("rejected by alpaca: insufficient funds (key ***)" in x for x in lines)
    assert any(
        "rejected by the review gate: llm_veto (verdict veto): Bearer ***" in x for x in lines
    )
    assert any("trading HALTED by ops: incident, token ***" in x for x in lines)
    assert any("trading resumed" in x for x in lines)
    assert any("WARNING torghut.circuit: LLM circuit closed -> open for 600s" in x for x in lines)
    assert "Traceback" in err and "RuntimeError" in err


def test_json_lines_are_one_object_each_and_carry_no_secret(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    settings = canary_settings("json")
    logs.setup_logging(settings)
    emit_every_event(settings)
    err = capsys.readouterr().err
    assert not [s for s in SECRETS if s in err]
    records = [json.loads(line) for line in err.splitlines()]  # every line parses
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    by_event = {r.get("event"): r for r in records}
    assert {"startup", "order", "order_rejected", "veto", "halt", "resume", "breaker"} <= set(
        by_event
    )
    startup = by_event["startup"]
    assert (startup["mode"], startup["broker"], startup["provider"], startup["gate_stage"]) == (
        "paper",
        "sim",
        "jangar",
        "1-2 shadow",
    )
    assert startup["limits"]["max_notional_per_trade"] == 1000
    assert startup["database"] == "postgresql://torghut:***@db.example:5432/torghut"
    assert by_event["order"]["client_order_id"] == "abc123"
    assert by_event["breaker"]["to_state"] == "open" and by_event["breaker"]["level"] == "warning"
    assert by_event["x"]["detail"] == {"k": ["***"]}
    failure = next(r for r in records if r["logger"] == "torghut.api")
    assert "RuntimeError" in failure["exc"] and "\n" not in json.dumps(failure)


def test_without_the_filter_the_canaries_would_show(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """The canary test can fail: the same events with redaction switched off leak."""
    settings = canary_settings("json")
    logs.setup_logging(settings)
    for handler in logging.getLogger().handlers:
        handler.filters.clear()
    emit_every_event(settings)
    err = capsys.readouterr().err
    assert {s for s in SECRETS if s in err} == {
        CANARIES["JANGAR_API_KEY"],
        CANARIES["APCA_API_SECRET_KEY"],
        CANARIES["OPENAI_API_KEY"],
        CANARIES["CLICKHOUSE_PASSWORD"],
        DB_PASSWORD,
    }


@pytest.mark.parametrize(
    ("extra", "stage"),
    [
        ({"LLM_ENABLED": "false"}, "off"),
        ({}, "1-2 shadow"),
        ({"LLM_SHADOW_MODE": "false"}, "3 enforce in paper"),
        ({"LLM_SHADOW_MODE": "false", "TRADING_MODE": "live"}, "4 live"),
    ],
)
def test_the_banner_names_the_rollout_stage(extra: dict[str, str], stage: str) -> None:
    assert logs.gate_stage(canary_settings("text", **extra)) == stage


class VetoWithSecret(FakeProvider):
    """Vetoes every order, quoting the gateway key back in its rationale."""

    def __init__(self, key: str) -> None:
        super().__init__("veto")
        self.key = key

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        body = {
            "verdict": "veto",
            "confidence": 0.9,
            "rationale": f"Bearer {self.key} says no",
            "risk_flags": [],
        }
        return Completion(json.dumps(body), "", None, 5, 1)


def _signals(tmp_path: Path, n: int, prefix: str) -> Path:
    path = tmp_path / f"{prefix}.jsonl"
    rows = [
        {
            "event_ts": "2026-03-02T15:00:00Z",
            "symbol": f"{prefix}{i:03d}",
            "timeframe": "1Min",
            "macd": 0.4,
            "macd_signal": 0.1,
            "rsi14": 28.0,
            "price": 100.0,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def test_a_replay_logs_each_order_and_veto_without_the_key(
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    key = CANARIES["JANGAR_API_KEY"]
    base = {
        "DB_DSN": database.dsn,
        "JANGAR_BASE_URL": "http://127.0.0.1:9",
        "JANGAR_API_KEY": key,
        "LOG_FORMAT": "json",
        "LLM_ENABLED": "true",
    }
    # Enforcing: every order vetoed, one veto line each.
    enforcing = load_settings({**base, "LLM_SHADOW_MODE": "false"}, None)
    logs.setup_logging(enforcing)
    summary = await run_replay(enforcing, _signals(tmp_path, 3, "V"), provider=VetoWithSecret(key))
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    vetoes = [r for r in records if r.get("event") == "veto"]
    assert summary["submitted"] == 0 and len(vetoes) == 3
    assert all("Bearer ***" in r["message"] and r["reason"] == "llm_veto" for r in vetoes)
    # Without the gate the orders go out, one order line each.
    ungated = load_settings({**base, "LLM_ENABLED": "false"}, None)
    logs.setup_logging(ungated)
    summary = await run_replay(ungated, _signals(tmp_path, 2, "S"))
    err = capsys.readouterr().err
    orders = [r for r in map(json.loads, err.splitlines()) if r.get("event") == "order"]
    assert summary["submitted"] == len(orders) == 2
    assert {o["symbol"] for o in orders} == {"S000", "S001"}
    assert key not in err
