"""The review gate's parts, wired from the settings: the service's trading loop
(`bootstrap.build_container`) and `torghut llm review` (`dryrun`) build them here. Apart from
`bootstrap` so that a review does not import the service (the database, Alembic, the metrics,
the scheduler): `llm review` without a database file needs none of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from torghut.trading.llm.circuit import CircuitBreaker
from torghut.trading.llm.client import build_provider
from torghut.trading.llm.context import PointInTimeContext, RecentDecisionsReader
from torghut.trading.llm.model_check import ModelCheck
from torghut.trading.llm.policy import bounds_from_settings
from torghut.trading.llm.prompts import PromptTemplate, load_prompt
from torghut.trading.llm.review_engine import ReviewEngine
from torghut.trading.risk import RiskLimits
from torghut.trading.session import SessionCalendar

if TYPE_CHECKING:
    import httpx

    from torghut.config import Settings
    from torghut.db.engine import Database
    from torghut.metrics import Metrics
    from torghut.ports import ReviewProvider
    from torghut.trading.llm.schema import PolicyBounds


def recent_decisions_reader(db: Database) -> RecentDecisionsReader:
    """The review context's view of earlier decisions: the service's database."""

    async def read(symbol: str, before: datetime, limit: int) -> list[dict[str, Any]]:
        from torghut.db import repo  # the database modules: only a review with a database

        return await repo.recent_decisions(db, symbol, before=before, limit=limit)

    return read


@dataclass
class Reviewer:
    """The review gate's parts, also used alone by `torghut llm review`."""

    provider: ReviewProvider
    breaker: CircuitBreaker
    prompt: PromptTemplate
    bounds: PolicyBounds
    engine: ReviewEngine
    model_check: ModelCheck
    context: PointInTimeContext


def build_reviewer(
    settings: Settings,
    metrics: Metrics | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    provider: ReviewProvider | None = None,
    db: Database | None = None,
    limits: RiskLimits | None = None,
) -> Reviewer:
    prompt = load_prompt(settings.llm_prompt_version)  # unknown version: ConfigError now
    bounds = bounds_from_settings(settings)
    breaker = CircuitBreaker(
        settings.llm_circuit_max_errors,
        settings.llm_circuit_window_seconds,
        settings.llm_circuit_cooldown_seconds,
        on_transition=metrics.on_circuit_transition if metrics else None,
    )
    if metrics is not None:
        metrics.watch_circuit(breaker.snapshot)
    provider = provider or build_provider(settings, http_client=http_client)
    context = PointInTimeContext(
        bounds=bounds,
        trading_mode=settings.trading_mode,
        prompt_version=prompt.version,
        context_bars=settings.llm_context_bars,
        recent_decisions=recent_decisions_reader(db) if db is not None else None,
        risk_limits=limits,
        calendar=SessionCalendar(settings.trading_calendar, settings.trading_extended_hours),
    )
    engine = ReviewEngine(
        provider,
        breaker,
        prompt,
        bounds,
        secrets=settings.secrets(),
        context=context,
        anonymize=settings.llm_anonymize,
    )
    return Reviewer(provider, breaker, prompt, bounds, engine, ModelCheck(provider), context)


def risk_limits(settings: Settings, *, trading_enabled: bool) -> RiskLimits:
    return RiskLimits(
        trading_enabled=trading_enabled,
        trading_mode=settings.trading_mode,
        live_enabled=settings.trading_live_enabled,
        kill_switch=settings.trading_kill_switch,
        allow_shorts=settings.trading_allow_shorts,
        max_notional_per_trade=Decimal(str(settings.trading_max_notional_per_trade)),
        max_position_pct_equity=Decimal(str(settings.trading_max_position_pct_equity)),
        cooldown_seconds=settings.trading_cooldown_seconds,
        max_shares_per_order=Decimal(settings.trading_max_shares_per_order),
        universe=settings.universe,
    )
