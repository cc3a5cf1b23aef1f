"""CONTRACT §1, every cell: review outcome x shadow x fail mode, in paper and live, through the
whole pipeline (replay source, risk, review engine, gate, audit, simulated broker), on SQLite
and PostgreSQL. Each cell checks the order sent (or not), the decision's status and reason, and
the audit row."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import Database
from torghut.config import load_settings
from torghut.db.tables import ExecutionRow, LLMDecisionReview, TradeDecisionRow
from torghut.devgateway import DevGateway, DevGatewayConfig
from torghut.domain import Usage
from torghut.errors import ReviewError, ReviewErrorCode
from torghut.ports import ChatMessage, Completion
from torghut.replay import run_replay

ANSWERS = {
    "approve": {"verdict": "approve", "confidence": 0.9, "rationale": "fine"},
    "adjust": {
        "verdict": "adjust",
        "confidence": 0.9,
        "adjusted_qty": 6,
        "rationale": "smaller",
        "risk_flags": ["exposure"],
    },
    "veto": {"verdict": "veto", "confidence": 0.9, "rationale": "no", "risk_flags": ["x"]},
}


class FakeProvider:
    """Answers every review the same way: a canned review, or a gateway failure."""

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        self.calls = 0

    @property
    def name(self) -> str:
        return "jangar"

    @property
    def model(self) -> str:
        return "fake-model"

    def request_body(self, messages: Sequence[ChatMessage]) -> dict[str, object]:
        return {"model": self.model, "messages": list(messages), "stream": True}

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        self.calls += 1
        if self.outcome == "error":
            raise ReviewError(ReviewErrorCode.HTTP_ERROR, "status 503 from gateway")
        text = "\nnoise before " + json.dumps(ANSWERS[self.outcome])
        return Completion(text, "", Usage(10, 5, 15), latency_ms=12, ttft_ms=3)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Cell:
    outcome: str  # approve | adjust | veto | error
    shadow: bool
    fail_mode: str
    mode: str  # paper | live
    submitted_qty: int | None  # None: no order
    status: str
    reason: str | None
    effective_action: str

    @property
    def id(self) -> str:
        s = "shadow" if self.shadow else "enforce"
        return f"{self.mode}-{s}-{self.fail_mode}-{self.outcome}"


def _cells() -> list[Cell]:
    cells = []
    for mode in ("paper", "live"):
        columns = [(True, "pass_through"), (True, "veto"), (False, "pass_through"), (False, "veto")]
        if mode == "live":  # an explicit pass_through in live is a start-up error
            columns = [(True, "veto"), (False, "veto")]
        for shadow, fail in columns:
            for outcome in ("approve", "adjust", "veto", "error"):
                if shadow or outcome == "approve":
                    cell = (10, "filled", None, "submitted_original")
                elif outcome == "adjust":
                    cell = (6, "filled", None, "submitted_adjusted")
                elif outcome == "veto":
                    cell = (None, "rejected", "llm_veto", "rejected")
                elif fail == "pass_through":
                    cell = (10, "filled", None, "submitted_original")
                else:
                    cell = (None, "rejected", "llm_error:http_error", "rejected")
                cells.append(Cell(outcome, shadow, fail, mode, *cell))
    return cells


CELLS = _cells()


def _signal_file(tmp_path: Path) -> Path:
    path = tmp_path / "one-buy.jsonl"
    line = {
        "event_ts": "2026-03-02T15:00:00Z",
        "symbol": "AAPL",
        "timeframe": "1Min",
        "macd": 0.4,
        "macd_signal": 0.1,
        "rsi14": 28.0,
        "price": 100.0,
    }
    path.write_text(json.dumps(line) + "\n")
    return path


def _settings(dsn: str, cell: Cell) -> dict[str, str]:
    env = {
        "DB_DSN": dsn,
        "JANGAR_BASE_URL": "http://127.0.0.1:9",
        "LLM_ENABLED": "true",
        "LLM_SHADOW_MODE": str(cell.shadow).lower(),
        "LLM_FAIL_MODE": cell.fail_mode,
        "LLM_ADJUSTMENT_ALLOWED": "true",
        "TRADING_MODE": cell.mode,
    }
    if cell.mode == "live":
        env["TRADING_LIVE_ENABLED"] = "true"
    return env


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
async def test_truth_table_cell(cell: Cell, database: Database, tmp_path: Path) -> None:
    settings = load_settings(_settings(database.dsn, cell), env_file=None)
    provider = FakeProvider(cell.outcome)
    summary = await run_replay(settings, _signal_file(tmp_path), provider=provider)
    assert provider.calls == 1
    assert summary["decisions"] == 1

    async with database.sessions() as session:
        decision = (await session.execute(select(TradeDecisionRow))).scalar_one()
        executions = (await session.execute(select(ExecutionRow))).scalars().all()
        reviews = (await session.execute(select(LLMDecisionReview))).scalars().all()

    if cell.submitted_qty is None:
        assert executions == []
    else:
        assert [e.submitted_qty for e in executions] == [Decimal(cell.submitted_qty)]
    assert decision.status == cell.status
    assert decision.reason == cell.reason

    assert len(reviews) == 1, "exactly one audit row per review"
    row = reviews[0]
    assert row.trade_decision_id == decision.id
    assert row.verdict == cell.outcome
    assert row.shadow is cell.shadow
    assert row.fail_mode == cell.fail_mode
    assert row.trading_mode == cell.mode
    assert row.effective_action == cell.effective_action
    assert row.provider == "jangar" and row.model == "fake-model"
    assert row.prompt_version == "v1" and row.prompt_hash
    assert row.input_json["messages"][0]["role"] == "system"
    if cell.outcome == "error":
        assert row.error_code == "http_error"
        assert "503" in (row.error_message or "")
        assert row.llm_verdict is None and row.tokens_prompt is None
    else:
        assert row.error_code is None and row.error_message is None
        assert row.llm_verdict == cell.outcome
        assert (row.tokens_prompt, row.tokens_completion) == (10, 5)
        assert row.latency_ms is not None and row.ttft_ms == 3
        assert row.confidence == 0.9
        assert row.response_json is not None and "noise before" in row.response_json["text"]
    if cell.outcome == "adjust":
        assert row.adjusted_qty == Decimal(6)


async def test_non_2xx_from_a_real_gateway_is_an_error_row(
    database: Database, tmp_path: Path
) -> None:
    """The seed's third test: a 500 from the gateway ends as an `error` audit row with the
    status in `error_message`, and the decision follows the fail mode (veto: rejected)."""
    async with DevGateway(DevGatewayConfig(fault="http-500")) as gateway:
        env = {
            "DB_DSN": database.dsn,
            "JANGAR_BASE_URL": gateway.base_url,
            "LLM_ENABLED": "true",
            "LLM_SHADOW_MODE": "false",
            "LLM_FAIL_MODE": "veto",
            "LLM_MAX_RETRIES": "1",
        }
        summary = await run_replay(load_settings(env, None), _signal_file(tmp_path))
        assert gateway.request_count == 2, "one retry for a 5xx before any event"
    assert summary["submitted"] == 0
    async with database.sessions() as session:
        row = (await session.execute(select(LLMDecisionReview))).scalar_one()
        decision = (await session.execute(select(TradeDecisionRow))).scalar_one()
    assert (row.verdict, row.error_code) == ("error", "http_error")
    assert "500" in (row.error_message or "")
    assert row.effective_action == "rejected"
    assert (decision.status, decision.reason) == ("rejected", "llm_error:http_error")
