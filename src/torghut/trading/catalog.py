"""The strategy catalog: a YAML file (optional) synced to the `strategies` table.

- No file configured: the catalog is `macd-rsi-default` (plus, in `merge` mode, strategies an
  operator enabled in the table by other means).
- `merge`: the file's strategies are upserted; other rows are kept as they are, and the enabled
  ones keep trading.
- `sync`: the file's strategies are upserted; every other row is disabled (never deleted:
  decisions reference them by foreign key).

`load()` is cheap to call every cycle: the file is re-read only when its mtime or size changed.
A bad file at the first load raises `InputError`; a bad file later is logged once and the last
good catalog keeps trading, since a typo mid-run must not stop the service.
Edits made directly in the table are picked up at the next file change or restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from torghut.db.engine import Database
from torghut.db.tables import Strategy
from torghut.errors import InputError
from torghut.trading.strategy import (
    DEFAULT_STRATEGY,
    StrategySpec,
    parse_catalog,
    spec_from_mapping,
)

log = logging.getLogger(__name__)

CatalogMode = Literal["merge", "sync"]
_Stamp = tuple[int, int]  # (mtime_ns, size)


_STRATEGIES: Table = Strategy.__table__  # type: ignore[assignment]
# Core statements on the session's connection: the sync runs at every start (and every
# change of the file), and the ORM's first use of a mapper in a fresh engine cost several
# times the statements.
_READ_ONE = select(_STRATEGIES).where(_STRATEGIES.c.id == bindparam("b_id"))
_INSERT = insert(_STRATEGIES)
_UPDATE = update(_STRATEGIES).where(_STRATEGIES.c.id == bindparam("b_id"))


def _values(spec: StrategySpec, source: str) -> dict[str, Any]:
    """The columns a spec sets (`updated_at` and, for a new row, `created_at` are the
    columns' own defaults)."""
    return {
        "description": spec.description,
        "enabled": spec.enabled,
        "base_timeframe": spec.base_timeframe,
        "universe_symbols": list(spec.universe_symbols) if spec.universe_symbols else None,
        "max_notional_per_trade": spec.max_notional_per_trade,
        "max_position_pct_equity": spec.max_position_pct_equity,
        "params": spec.rule_params(),
        "source": source,
    }


def _changed(row: Any, spec: StrategySpec, source: str) -> bool:
    universe = list(spec.universe_symbols) if spec.universe_symbols else None
    return (
        row.description != spec.description
        or row.enabled != spec.enabled
        or row.base_timeframe != spec.base_timeframe
        or (row.universe_symbols or None) != universe
        or row.max_notional_per_trade != spec.max_notional_per_trade
        or row.max_position_pct_equity != spec.max_position_pct_equity
        or row.params != spec.rule_params()
        or row.source != source
    )


def _upsert(session: Session, spec: StrategySpec, source: str) -> None:
    conn = session.connection()
    row = conn.execute(_READ_ONE, {"b_id": spec.name}).first()
    if row is None:
        conn.execute(_INSERT, {"id": spec.name, **_values(spec, source)})
    elif _changed(row, spec, source):  # untouched rows keep their updated_at
        conn.execute(_UPDATE, {"b_id": spec.name, **_values(spec, source)})


def _stat(path: Path) -> _Stamp:
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError(f"{path}: cannot read strategy catalog: {exc.strerror}") from None
    return (st.st_mtime_ns, st.st_size)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read strategy catalog: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: cannot read strategy catalog: not UTF-8") from None


def spec_from_row(row: Any) -> StrategySpec:
    """A `strategies` row (a `Strategy` or a row of its table) back to a spec; `InputError`
    when the row holds what no file could."""
    entry: dict[str, Any] = {
        "name": row.id,
        "description": row.description,
        "enabled": row.enabled,
        "base_timeframe": row.base_timeframe,
        "universe_symbols": row.universe_symbols,
        "max_notional_per_trade": row.max_notional_per_trade,
        "max_position_pct_equity": row.max_position_pct_equity,
        "params": {k: v for k, v in (row.params or {}).items() if v is not None},
    }
    return spec_from_mapping(entry, f"strategies row {row.id!r}")


class StrategyCatalog:
    def __init__(
        self,
        path: Path | None,
        mode: CatalogMode,
        db: Database,
    ) -> None:
        if mode not in ("merge", "sync"):
            raise ValueError(f"mode must be 'merge' or 'sync', got {mode!r}")
        self._path = path
        self._mode: CatalogMode = mode
        self._db = db
        self._stamp: _Stamp | None = None
        self._failed_stamp: _Stamp | None = None
        self._active: list[StrategySpec] | None = None
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def mode(self) -> CatalogMode:
        return self._mode

    async def ensure_strategy_row(self, spec: StrategySpec, *, source: str = "file") -> None:
        """Insert or update the row of `spec` (decisions need it: foreign key)."""
        for attempt in (1, 2):
            try:
                await self._db.run(lambda session: _upsert(session, spec, source))
                return
            except IntegrityError:
                # Another process inserted the same id between our read and our insert:
                # the second attempt finds the row and updates it.
                if attempt == 2:
                    raise

    async def load(self) -> list[StrategySpec]:
        """The enabled strategies to evaluate, reloading and syncing when the file changed."""
        return [spec for spec in await self.load_all() if spec.enabled]

    async def load_all(self) -> list[StrategySpec]:
        """`load`, with the file's disabled strategies too: the pipeline records their
        decisions as `strategy_disabled`, so the audit trail shows what they would have
        done."""
        async with self._lock:
            if self._path is None:
                if self._active is None:
                    self._active = await self._sync([DEFAULT_STRATEGY], source="builtin")
                return list(self._active)
            return list(await self._reload(self._path))

    async def _reload(self, path: Path) -> list[StrategySpec]:
        last_good = self._active
        try:
            stamp = await asyncio.to_thread(_stat, path)
        except InputError as exc:
            if last_good is None:
                raise
            self._bad_file((-1, -1), exc)
            return last_good
        if last_good is not None and stamp in (self._stamp, self._failed_stamp):
            return last_good  # unchanged, or a bad version already reported
        try:
            text = await asyncio.to_thread(_read, path)
            specs = parse_catalog(text, str(path))
        except InputError as exc:
            if last_good is None:
                raise
            self._bad_file(stamp, exc)
            return last_good
        try:
            active = await self._sync(specs, source="file")
        except Exception:
            if last_good is None:
                raise
            # The database, not the file, failed: try again next time.
            log.exception("strategy catalog sync failed, keeping the last good catalog")
            return last_good
        self._active, self._stamp, self._failed_stamp = active, stamp, None
        return active

    def _bad_file(self, stamp: _Stamp, exc: InputError) -> None:
        # Logged once per version of the file, not once per cycle.
        if stamp != self._failed_stamp:
            log.error("strategy catalog reload failed, keeping the last good catalog: %s", exc)
        self._failed_stamp = stamp

    async def _sync(self, specs: Sequence[StrategySpec], *, source: str) -> list[StrategySpec]:
        names = {spec.name for spec in specs}

        def sync(session: Session) -> list[StrategySpec]:
            for spec in specs:
                _upsert(session, spec, source)
            query = select(_STRATEGIES)
            if names:
                query = query.where(_STRATEGIES.c.id.not_in(names))
            conn = session.connection()
            kept: list[StrategySpec] = []
            for row in conn.execute(query).all():
                if self._mode == "sync":
                    if row.enabled:
                        conn.execute(
                            update(_STRATEGIES)
                            .where(_STRATEGIES.c.id == row.id)
                            .values(enabled=False)
                        )
                        log.info("strategy %s is not in the catalog file: disabled", row.id)
                elif row.enabled:
                    kept.extend(self._row_spec(row))
            return kept

        for attempt in (1, 2):
            try:
                kept = await self._db.run(sync)
                break
            except IntegrityError:
                # Two processes starting on a fresh database both inserted a strategy row:
                # the loser's second pass finds it and updates it (as ensure_strategy_row).
                if attempt == 2:
                    raise
        active = list(specs) + kept
        log.info(
            "strategy catalog loaded (%s): %s",
            self._mode,
            ", ".join(spec.name for spec in active if spec.enabled) or "no enabled strategy",
        )
        return active

    @staticmethod
    def _row_spec(row: Any) -> Iterable[StrategySpec]:
        try:
            return [spec_from_row(row)]
        except InputError as exc:
            log.error("strategy row skipped: %s", exc)
            return []
