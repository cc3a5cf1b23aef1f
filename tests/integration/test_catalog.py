"""The strategy catalog on both databases: merge vs sync, reload on change, bad reloads."""

from __future__ import annotations

import logging
import os
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import Database
from torghut.db.tables import Strategy
from torghut.errors import InputError
from torghut.trading import catalog as catalog_module
from torghut.trading.catalog import StrategyCatalog
from torghut.trading.strategy import DEFAULT_STRATEGY, StrategySpec, parse_catalog

FILE = """
strategies:
  - name: alpha
    base_timeframe: 1Min
    universe_symbols: [AAPL, MSFT]
    max_notional_per_trade: 2500
    params: {buy_rsi_below: 30}
  - name: beta
    enabled: false
"""


def write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so a same-size rewrite is seen as a change even on
    filesystems with coarse timestamps."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


async def rows(database: Database) -> dict[str, Strategy]:
    async with database.sessions() as session:
        result = await session.execute(select(Strategy))
        return {row.id: row for row in result.scalars()}


async def add_legacy(database: Database) -> None:
    """A strategy an operator (or an earlier file) put in the table."""
    async with database.sessions() as session, session.begin():
        session.add(
            Strategy(
                id="legacy",
                enabled=True,
                params={"buy_rsi_below": 20, "sell_rsi_above": 80},
                max_position_pct_equity=Decimal("0.02"),
                source="file",
            )
        )


async def test_no_file_means_the_default_strategy(database: Database) -> None:
    catalog = StrategyCatalog(None, "merge", database.db)
    assert await catalog.load() == [DEFAULT_STRATEGY]
    assert await catalog.load() == [DEFAULT_STRATEGY]
    stored = (await rows(database))["macd-rsi-default"]
    assert stored.enabled and stored.source == "builtin"
    assert stored.params["buy_rsi_below"] == 35


async def test_merge_upserts_the_file_and_keeps_the_others(
    database: Database, tmp_path: Path
) -> None:
    await add_legacy(database)
    path = tmp_path / "strategies.yaml"
    write(path, FILE)
    catalog = StrategyCatalog(path, "merge", database.db)
    active = await catalog.load()
    assert [s.name for s in active] == ["alpha", "legacy"]
    legacy = active[1]
    assert (legacy.buy_rsi_below, legacy.sell_rsi_above) == (20, 80)
    assert legacy.max_position_pct_equity == Decimal("0.02")
    stored = await rows(database)
    assert set(stored) == {"alpha", "beta", "legacy"}
    assert stored["legacy"].enabled is True
    assert stored["beta"].enabled is False
    alpha = stored["alpha"]
    assert alpha.universe_symbols == ["AAPL", "MSFT"]
    assert alpha.max_notional_per_trade == Decimal(2500)
    assert alpha.base_timeframe == "1Min"
    assert alpha.params["buy_rsi_below"] == 30
    assert alpha.source == "file"


async def test_sync_disables_what_the_file_does_not_list_and_deletes_nothing(
    database: Database, tmp_path: Path
) -> None:
    await add_legacy(database)
    path = tmp_path / "strategies.yaml"
    write(path, FILE)
    catalog = StrategyCatalog(path, "sync", database.db)
    assert [s.name for s in await catalog.load()] == ["alpha"]
    stored = await rows(database)
    assert set(stored) == {"alpha", "beta", "legacy"}
    assert stored["legacy"].enabled is False

    # Listing it again brings it back.
    write(path, FILE + "  - name: legacy\n")
    assert [s.name for s in await catalog.load()] == ["alpha", "legacy"]
    assert (await rows(database))["legacy"].enabled is True


async def test_reload_only_on_change(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses: list[str] = []

    def counting(text: str, source: str) -> list[StrategySpec]:
        parses.append(source)
        return parse_catalog(text, source)

    monkeypatch.setattr(catalog_module, "parse_catalog", counting)
    path = tmp_path / "strategies.yaml"
    write(path, FILE)
    catalog = StrategyCatalog(path, "merge", database.db)
    await catalog.load()
    await catalog.load()
    await catalog.load()
    assert len(parses) == 1

    write(path, FILE.replace("buy_rsi_below: 30", "buy_rsi_below: 25"))
    active = await catalog.load()
    assert len(parses) == 2
    assert active[0].buy_rsi_below == 25
    assert (await rows(database))["alpha"].params["buy_rsi_below"] == 25


async def test_a_bad_reload_keeps_the_last_good_catalog(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "strategies.yaml"
    write(path, FILE)
    catalog = StrategyCatalog(path, "sync", database.db)
    good = await catalog.load()

    write(path, FILE.replace("base_timeframe: 1Min", "base_timeframe: [oops"))
    with caplog.at_level(logging.ERROR, logger="torghut.trading.catalog"):
        assert await catalog.load() == good
        assert await catalog.load() == good
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per bad version, not once per cycle
    assert str(path) in errors[0].getMessage()
    assert "keeping the last good catalog" in errors[0].getMessage()

    caplog.clear()
    write(path, FILE + FILE.split("strategies:\n", 1)[1])  # duplicate names
    with caplog.at_level(logging.ERROR, logger="torghut.trading.catalog"):
        assert await catalog.load() == good
    assert "duplicate strategy name 'alpha'" in caplog.text

    path.unlink()  # a missing file is a failure too, and logged once
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="torghut.trading.catalog"):
        assert await catalog.load() == good
        assert await catalog.load() == good
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    write(path, "strategies:\n  - name: gamma\n")
    assert [s.name for s in await catalog.load()] == ["gamma"]
    assert (await rows(database))["alpha"].enabled is False


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        pytest.param("strategies: [{name: a, enabled: perhaps}]\n", "field 'enabled'", id="field"),
        pytest.param("strategies:\n  - name: a\n  - name: a\n", "duplicate", id="duplicate"),
        pytest.param("strategies: [\n", "invalid YAML", id="yaml"),
    ],
)
async def test_a_bad_file_at_first_load_is_an_input_error(
    database: Database, tmp_path: Path, text: str, pattern: str
) -> None:
    path = tmp_path / "strategies.yaml"
    write(path, text)
    catalog = StrategyCatalog(path, "merge", database.db)
    with pytest.raises(InputError, match=pattern) as info:
        await catalog.load()
    assert str(path) in str(info.value)
    assert await rows(database) == {}  # nothing half-synced


async def test_a_missing_file_at_first_load_is_an_input_error(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(InputError, match=r"absent\.yaml"):
        await StrategyCatalog(path, "merge", database.db).load()


async def test_ensure_strategy_row_inserts_then_updates(database: Database) -> None:
    catalog = StrategyCatalog(None, "merge", database.db)
    spec = StrategySpec(name="manual", buy_rsi_below=25)
    await catalog.ensure_strategy_row(spec)
    await catalog.ensure_strategy_row(spec.model_copy(update={"enabled": False}))
    stored = (await rows(database))["manual"]
    assert stored.enabled is False
    assert stored.params["buy_rsi_below"] == 25


async def test_an_unreadable_row_is_skipped_not_fatal(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with database.sessions() as session, session.begin():
        session.add(Strategy(id="weird", enabled=True, params={"order_type": "stop"}))
    path = tmp_path / "strategies.yaml"
    write(path, FILE)
    with caplog.at_level(logging.ERROR, logger="torghut.trading.catalog"):
        active = await StrategyCatalog(path, "merge", database.db).load()
    assert [s.name for s in active] == ["alpha"]
    assert "weird" in caplog.text


class _LosesTheFirstInsertRace:
    """The catalog's database, where another process inserts the strategy rows first: our
    first transaction fails as a unique violation would, after theirs has committed."""

    def __init__(self, db: object, rival: StrategyCatalog) -> None:
        self._db = db
        self._rival = rival
        self.lost = 0

    async def run(self, work: object) -> object:
        if self.lost == 0:
            self.lost += 1
            await self._rival.load_all()  # the other process's sync commits first
            from sqlalchemy.exc import IntegrityError

            raise IntegrityError("INSERT INTO strategies", {}, Exception("unique violation"))
        return await self._db.run(work)  # type: ignore[attr-defined]


async def test_two_processes_syncing_a_fresh_database_both_start(database: Database) -> None:
    rival = StrategyCatalog(None, "merge", database.db)
    racing = _LosesTheFirstInsertRace(database.db, rival)
    catalog = StrategyCatalog(None, "merge", racing)  # type: ignore[arg-type]
    assert await catalog.load() == [DEFAULT_STRATEGY]
    assert racing.lost == 1
    assert (await rows(database))["macd-rsi-default"].enabled
