"""--anonymize (issue 14 item 5): the reviewer is sent tokens for symbols and dates shifted by
whole weeks; the audit row keeps the real request apart from the sent one; on SQLite and
PostgreSQL, through a whole replay of the bundled sample."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from tests.conftest import Database
from tests.integration.test_review_context import RecordingProvider
from torghut.bootstrap import bundled_signals
from torghut.config import load_settings
from torghut.db.tables import LLMDecisionReview, TradeDecisionRow
from torghut.replay import run_replay
from torghut.trading.llm.anonymize import DATE_SHIFT, anonymize, symbol_token

SAMPLE_SYMBOLS = sorted(
    {json.loads(line)["symbol"] for line in bundled_signals().read_text().splitlines() if line}
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def test_symbols_become_stable_tokens_and_dates_move_by_whole_weeks() -> None:
    request = {
        "decision": {
            "symbol": "BRK.B",
            "event_ts": "2025-03-03T16:20:00Z",
            "rationale": "BRK.B macd crossed; BRK unrelated",
            "qty": "5",
        },
        "portfolio": {"positions": [{"symbol": "AAPL", "qty": "2"}]},
        "recent_decisions": [{"event_ts": "2025-03-03T16:03:00+00:00", "status": "filled"}],
        "history": {"bars": [{"ts": "2025-03-03T16:19:00Z", "price": "201.5"}]},
        "note": "AAPLX is not AAPL's ticker; day 2025-03-03",
    }
    sent = anonymize(request)
    text = json.dumps(sent)
    assert "BRK.B" not in text and "2025" not in text
    assert "AAPLX" in text  # a longer word is not a symbol
    assert (
        sent["decision"]["symbol"]
        == symbol_token("BRK.B")
        == anonymize(request)["decision"]["symbol"]
    )
    assert sent["decision"]["rationale"] == f"{symbol_token('BRK.B')} macd crossed; BRK unrelated"
    assert sent["portfolio"]["positions"][0]["symbol"] == symbol_token("AAPL")
    moved = datetime.fromisoformat(sent["decision"]["event_ts"].replace("Z", "+00:00"))
    assert moved - datetime.fromisoformat("2025-03-03T16:20:00+00:00") == DATE_SHIFT
    assert moved.weekday() == 0 and sent["decision"]["event_ts"].endswith("Z")
    assert sent["recent_decisions"][0]["event_ts"].endswith("+00:00")
    assert sent["note"].endswith(f"day {(datetime(2025, 3, 3) + DATE_SHIFT).date()}")
    assert sent["history"]["bars"][0]["price"] == "201.5" and sent["decision"]["qty"] == "5"
    assert request["decision"]["symbol"] == "BRK.B"  # the real request is left alone


async def test_an_anonymized_replay_sends_no_symbol_or_date_and_audits_both(
    database: Database,
) -> None:
    env = {
        "DB_DSN": database.dsn,
        "LLM_PROVIDER": "openai",
        "LLM_ENABLED": "true",
        "LLM_SHADOW_MODE": "true",
        "LLM_PROMPT_VERSION": "v2",
        "TRADING_BATCH_SIZE": "400",
        "LLM_ANONYMIZE": "true",
    }
    provider = RecordingProvider()
    summary = await run_replay(
        load_settings(env, env_file=None), bundled_signals(), provider=provider
    )
    assert summary["complete"] and len(provider.requests) > 50
    for request in provider.requests:
        text = json.dumps(request)
        for symbol in SAMPLE_SYMBOLS:
            assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(symbol)}(?![A-Za-z0-9])", text)
        assert all(not d.startswith("2025") for d in _DATE.findall(text)), text[:300]
        assert request["history"]["bars"]  # the context is all there, only disguised
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(LLMDecisionReview, TradeDecisionRow).join(
                    TradeDecisionRow, LLMDecisionReview.trade_decision_id == TradeDecisionRow.id
                )
            )
        ).all()
    assert len(rows) == len(provider.requests)
    for review, decision in rows:
        sent = review.input_json["messages"][-1]["content"]
        assert decision.symbol not in sent and symbol_token(decision.symbol) in sent
        real = review.real_request_json
        assert real is not None and real["decision"]["symbol"] == decision.symbol
        assert real["as_of"].startswith(decision.event_ts.date().isoformat())


async def test_without_anonymize_the_real_request_column_stays_empty(
    database: Database, tmp_path: Path
) -> None:
    signals = tmp_path / "head.jsonl"
    signals.write_text("\n".join(bundled_signals().read_text().splitlines()[:900]) + "\n")
    env = {"DB_DSN": database.dsn, "LLM_PROVIDER": "openai", "LLM_ENABLED": "true"}
    await run_replay(load_settings(env, env_file=None), signals, provider=RecordingProvider())
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(
                    LLMDecisionReview.real_request_json,
                    LLMDecisionReview.input_json,
                    TradeDecisionRow.symbol,
                ).join(TradeDecisionRow, LLMDecisionReview.trade_decision_id == TradeDecisionRow.id)
            )
        ).all()
        nulls = (
            await session.execute(
                select(LLMDecisionReview.id).where(LLMDecisionReview.real_request_json.is_(None))
            )
        ).all()
    assert rows and len(nulls) == len(rows)
    for _real, sent, symbol in rows:
        assert f'"symbol":"{symbol}"' in sent["messages"][-1]["content"]
