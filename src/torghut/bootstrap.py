"""Settings in, wired components out. The only module that names concrete classes; it closes
everything it opened, in reverse order."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from torghut.config import BrokerKind, Settings, SignalSourceKind
from torghut.db.engine import (
    Database,
    FileLeaderLock,
    create_engine_from_dsn,
    sqlite_lock_path,
)
from torghut.db.halt_store import DatabaseHaltStore
from torghut.db.repo import AuditRepository
from torghut.domain import utcnow
from torghut.metrics import Metrics
from torghut.ports import AuditStore, Broker, ReviewProvider, SignalSource
from torghut.trading import quarantine
from torghut.trading.catalog import StrategyCatalog
from torghut.trading.halt import HaltState, TradingHalt
from torghut.trading.judge import JudgingSettings
from torghut.trading.llm.policy import bounds_from_settings
from torghut.trading.llm.reviewer import (  # also `llm review`'s: apart, so it needs no service
    Reviewer,
    build_reviewer,
    risk_limits,
)
from torghut.trading.pipeline import GateSettings, ReviewSetup, TradingPipeline, TradingRules
from torghut.trading.scheduler import LeaderLock, TradingLock, TradingScheduler
from torghut.trading.session import SessionCalendar
from torghut.trading.strategy import StrategyDefaults

log = logging.getLogger("torghut")


def freeze_startup_heap() -> None:
    """Take what the process has built so far (modules, classes, settings) out of the garbage
    collector's sight, once, before the long-running work. Those objects live as long as the
    process; without this every full collection walks them all again, and parsing a signal
    file allocates enough to trigger several: 65 ms of a 0.5 s replay of the bundled sample
    went to the collector (`gc.freeze`, Python docs). Not in `build_container`: tests build
    many containers in one process, and frozen garbage is never freed. No collection first:
    it costs more (60 ms) than the little import-time garbage it would spare."""
    gc.freeze()


def bundled_signals() -> Path:
    return Path(str(resources.files("torghut") / "data" / "sample_signals.jsonl"))


def trading_lock(dsn: str, engine: AsyncEngine) -> TradingLock:
    """One loop per database: a lock file beside a SQLite file, else PostgreSQL's advisory
    lock (an in-memory SQLite database has no other process to exclude)."""
    path = sqlite_lock_path(dsn)
    return FileLeaderLock(path) if path is not None else LeaderLock(engine)


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    db: Database
    metrics: Metrics
    broker: Broker
    source: SignalSource
    reviewer: Reviewer | None
    pipeline: TradingPipeline
    scheduler: TradingScheduler
    halt: TradingHalt
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()
        self._closers.clear()


def judging_settings(settings: Settings, clock: Callable[[], datetime] | None) -> JudgingSettings:
    """`clock` None: each signal is judged on its own time (replay)."""
    return JudgingSettings(
        max_signal_age_seconds=settings.trading_max_signal_age_seconds,
        calendar=SessionCalendar(settings.trading_calendar, settings.trading_extended_hours),
        max_price_move=Decimal(str(settings.trading_max_price_move_pct)),
        clock=clock,
    )


def _build_broker(settings: Settings, db: Database) -> Broker:
    if settings.trading_broker is BrokerKind.ALPACA:
        from torghut.errors import ConfigError
        from torghut.trading.alpaca import AlpacaBroker, AlpacaConfig

        if settings.apca_api_key_id is None or settings.apca_api_secret_key is None:
            raise ConfigError(
                "APCA_API_KEY_ID", "and APCA_API_SECRET_KEY are required with TRADING_BROKER=alpaca"
            )
        return AlpacaBroker(
            AlpacaConfig(
                key_id=settings.apca_api_key_id.get_secret_value(),
                secret_key=settings.apca_api_secret_key.get_secret_value(),
                paper=settings.trading_mode.value == "paper",
                base_url=settings.apca_api_base_url,
                timeout_seconds=settings.trading_broker_timeout_seconds,
                max_requests_per_minute=settings.alpaca_max_requests_per_minute,
                extended_hours=settings.trading_extended_hours,
            )
        )
    from torghut.trading.brokers import SimBroker

    return SimBroker(db, starting_cash=Decimal(str(settings.trading_sim_cash)))


def _build_source(settings: Settings, db: Database, signals_path: Path | None) -> SignalSource:
    if signals_path is None and settings.trading_signal_source is SignalSourceKind.CLICKHOUSE:
        from torghut.errors import ConfigError
        from torghut.trading.signals import ClickHouseConfig, ClickHouseSignalSource

        if not settings.clickhouse_url:
            raise ConfigError("CLICKHOUSE_URL", "is required with TRADING_SIGNAL_SOURCE=clickhouse")
        password = settings.clickhouse_password
        return ClickHouseSignalSource(
            ClickHouseConfig(
                url=settings.clickhouse_url,
                username=settings.clickhouse_username,
                password=password.get_secret_value() if password else None,
                timeout_seconds=settings.clickhouse_timeout_seconds,
                settle_seconds=settings.clickhouse_settle_seconds,
                ca_file=settings.clickhouse_ca_file,
            ),
            db,
        )
    from torghut.trading.signals import ReplaySignalSource

    path = signals_path or settings.trading_signals_path or bundled_signals()
    return ReplaySignalSource(Path(path), db)


async def build_container(
    settings: Settings,
    *,
    signals_path: Path | None = None,
    trading_enabled: bool | None = None,
    metrics: Metrics | None = None,
    provider: ReviewProvider | None = None,
    clock: Callable[[], datetime] | None = None,
    wrap_broker: Callable[[Broker], Broker] | None = None,
    wrap_store: Callable[[AuditStore], AuditStore] | None = None,
    broker: Broker | None = None,
) -> Container:
    """Wire the service. `signals_path` forces a replay source (the `replay` and `demo`
    commands), whose signals are judged on their own time (staleness, session), unless a
    `clock` is given; `serve` judges them on the wall clock (`clock` defaults to it).
    `trading_enabled` overrides `TRADING_ENABLED` for the risk check (replay trades whatever
    `TRADING_ENABLED` says: CONTRACT §3). `provider` and `broker` replace the configured ones;
    `wrap_broker` and `wrap_store` put a wrapper around the broker and the audit store (tests
    inject faults through them)."""
    if clock is None and signals_path is None:
        clock = utcnow
    metrics = metrics or Metrics()
    closers: list[Callable[[], Awaitable[None]]] = []
    # The async engine serves the leader lock's connection and /readyz; every transaction of
    # the service runs on `db`.
    engine = create_engine_from_dsn(settings.db_dsn)
    closers.append(engine.dispose)
    try:
        db = Database(settings.db_dsn)
        closers.append(db.aclose)
        enabled = settings.trading_enabled if trading_enabled is None else trading_enabled
        limits = risk_limits(settings, trading_enabled=enabled)
        reviewer = (
            build_reviewer(settings, metrics, provider=provider, db=db, limits=limits)
            if settings.llm_enabled
            else None
        )
        if reviewer is not None:
            closers.append(reviewer.provider.aclose)
            closers.append(reviewer.engine.aclose)
        broker = broker or _build_broker(settings, db)
        closers.append(broker.aclose)
        if wrap_broker is not None:
            broker = wrap_broker(broker)
        source = _build_source(settings, db, signals_path)
        closers.append(source.aclose)
        catalog = StrategyCatalog(
            settings.trading_strategy_config_path, settings.trading_strategy_config_mode, db
        )

        def show_halt(state: HaltState) -> None:
            metrics.halted.set(1 if state.halted else 0)

        halt = TradingHalt(DatabaseHaltStore(db), on_change=show_halt)
        pipeline = TradingPipeline(
            db=db,
            store=wrap_store(AuditRepository(db)) if wrap_store else AuditRepository(db),
            source=source,
            strategies=catalog,
            broker=broker,
            rules=TradingRules(
                limits=limits,
                sizing=StrategyDefaults(
                    max_notional_per_trade=Decimal(str(settings.trading_max_notional_per_trade)),
                    max_position_pct_equity=Decimal(str(settings.trading_max_position_pct_equity)),
                ),
                judging=judging_settings(settings, clock),
                resend_window_seconds=settings.trading_resend_window_seconds,
            ),
            review=ReviewSetup(
                gate=GateSettings(
                    enabled=settings.llm_enabled,
                    shadow=settings.llm_shadow_mode,
                    fail_mode=settings.fail_mode,
                    trading_mode=settings.trading_mode,
                ),
                engine=reviewer.engine if reviewer else None,
                bounds=reviewer.bounds if reviewer else bounds_from_settings(settings),
                prompt_version=settings.llm_prompt_version,
                max_concurrency=settings.llm_max_concurrency,
            ),
            metrics=metrics,
            batch_size=settings.trading_batch_size,
            halt=halt,
        )
        scheduler = TradingScheduler(
            pipeline=pipeline,
            broker=broker,
            engine=engine,
            metrics=metrics,
            enabled=settings.trading_enabled,
            poll_interval=settings.trading_poll_interval_seconds,
            reconcile_interval=settings.trading_reconcile_interval_seconds,
            work_deadline=max(
                settings.llm_timeout_seconds if settings.llm_enabled else 0.0,
                2 * settings.trading_broker_timeout_seconds,
            ),
            secrets=settings.secrets(),
            lock=trading_lock(settings.db_dsn, engine),
            quarantine=functools.partial(quarantine.record, db),
        )
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):  # we are already failing with a better error
                await close()
        raise
    return Container(
        settings,
        engine,
        db,
        metrics,
        broker,
        source,
        reviewer,
        pipeline,
        scheduler,
        halt,
        closers,
    )


async def check_startup(container: Container) -> None:
    """What `replay` refuses at once, `serve` refuses before it reports ready (issue 12): a
    signal file it cannot read, a strategy catalog that does not parse. `ConfigError` naming
    the setting; the CLI turns it into one line and exit 2."""
    from torghut.errors import ConfigError, InputError

    if not container.settings.trading_enabled:
        return  # the loop does not run: neither is read
    check = getattr(container.source, "check", None)
    if callable(check):
        try:
            check()
        except InputError as exc:
            raise ConfigError("TRADING_SIGNALS_PATH", str(exc)) from None
    try:
        await container.pipeline.strategies.load_all()
    except InputError as exc:
        raise ConfigError("TRADING_STRATEGY_CONFIG_PATH", str(exc)) from None
