"""`torghut llm review`: one decision reviewed with the same context as production.

The bar history comes from `--signals FILE` (only bars at or before the decision's time are
shown, as in production); the account, positions, open orders and earlier decisions from the
database of `DB_DSN` when it holds the simulated broker's account. The database is only read:
a dry run writes nothing. The account is used only when the database holds no decision dated
after the one under review (otherwise its book is from after that time: not point in time).
Whatever could not be supplied is listed in the output's `missing`.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torghut.errors import ConfigError, ReviewError
from torghut.evaluation.signal_file import read_signal_file, sqlite_path
from torghut.trading.llm.context import ReviewFacts
from torghut.trading.llm.model_check import ModelMissing, check_model
from torghut.trading.llm.reviewer import build_reviewer, risk_limits

if TYPE_CHECKING:
    from torghut.config import Settings
    from torghut.db.engine import Database
    from torghut.domain import TradeDecision

log = logging.getLogger("torghut.dryrun")


async def _database_facts(
    settings: Settings, decision: TradeDecision
) -> tuple[ReviewFacts, Database | None]:
    """The book from the database when it has the account and nothing after the decision."""
    path = sqlite_path(settings.db_dsn)
    if path is not None and not path.exists():  # a dry run creates no database
        return ReviewFacts(), None
    # Imported only now: SQLAlchemy and the database modules cost a review without a
    # database file (the operator's usual dry run) about 0.4 s of start-up.
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from torghut.db.engine import Database
    from torghut.db.tables import SimAccount, TradeDecisionRow

    db = Database(settings.db_dsn)

    def probe(session: Session) -> tuple[bool, Any]:
        account = session.get(SimAccount, "default") is not None
        latest = session.execute(
            select(func.max(TradeDecisionRow.event_ts)).where(
                TradeDecisionRow.event_ts > decision.event_ts
            )
        ).scalar()
        return account, latest

    try:
        has_account, later = await db.run(probe)
    except SQLAlchemyError as exc:
        log.warning("database unavailable for the dry run: %s", type(exc).__name__)
        await db.aclose()
        return ReviewFacts(), None
    if not has_account or later is not None:
        return ReviewFacts(), db  # the context lists the portfolio as missing
    from torghut.trading.brokers import SimBroker

    cash = Decimal(str(settings.trading_sim_cash))
    book = await SimBroker(db, starting_cash=cash).get_book()
    return ReviewFacts(
        account=book.account, positions=book.positions, open_orders=book.open_orders
    ), db


async def review_with_context(
    settings: Settings, decision: TradeDecision, signals_path: Path | None
) -> dict[str, Any]:
    signals = await asyncio.to_thread(read_signal_file, signals_path) if signals_path else []
    facts, db = await _database_facts(settings, decision)
    try:
        reviewer = build_reviewer(
            settings, db=db, limits=risk_limits(settings, trading_enabled=settings.trading_enabled)
        )
    except BaseException:
        if db is not None:
            await db.aclose()
        raise
    try:
        try:
            await check_model(reviewer.provider)
        except ModelMissing as exc:
            raise ConfigError("LLM_MODEL", str(exc).removeprefix("LLM_MODEL ")) from None
        except ReviewError:
            pass  # the list could not be had: the review itself will say why
        context = reviewer.context
        context.observe(signals)
        signal = next(
            (
                s
                for s in reversed(signals)
                if s.symbol == decision.symbol
                and s.timeframe == decision.timeframe
                and s.event_ts == decision.event_ts
            ),
            None,
        )
        facts = ReviewFacts(
            signal=signal,
            account=facts.account,
            positions=facts.positions,
            open_orders=facts.open_orders,
        )
        request = await context.build(decision, facts)
        outcome = await reviewer.engine.review(decision, request)
    finally:
        await reviewer.engine.aclose()
        await reviewer.provider.aclose()
        if db is not None:
            await db.aclose()
    response = (outcome.response_json or {}).get("review")
    return {
        "provider": outcome.provider,
        "model": outcome.model,
        "llm_verdict": outcome.llm_verdict.value if outcome.llm_verdict else None,
        "verdict": outcome.verdict.value,
        "reason": outcome.reason,
        "response": response,
        "error": (
            {"code": outcome.error_code, "message": outcome.error_message}
            if outcome.error_code
            else None
        ),
        "usage": outcome.usage.as_dict() if outcome.usage else None,
        "latency_ms": outcome.latency_ms,
        "ttft_ms": outcome.ttft_ms,
        # The parts of the production context this dry run could not supply.
        "missing": request.missing,
    }
