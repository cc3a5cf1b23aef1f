"""The operator's page at `/`: what it shows, gathered from the running service, and the
Jinja environment (autoescaping on) that renders it and the report."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import jinja2

from torghut.config import Settings
from torghut.domain import TradingMode, utcnow

REFRESH_SECONDS = 15


@functools.cache
def templates() -> jinja2.Environment:
    """Templates ship in the package; every `{{ }}` is HTML-escaped unless marked safe."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("torghut.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["ago"] = _ago
    env.filters["iso"] = _iso
    env.filters["qty"] = _qty
    return env


@dataclass(frozen=True, slots=True)
class GateStage:
    number: int  # 0: the review is off; the stages of docs/rollout.md otherwise
    label: str


def gate_stage(settings: Settings) -> GateStage:
    """The rollout stage (docs/rollout.md) the settings put the review gate in."""
    if not settings.llm_enabled:
        return GateStage(0, "review off")
    if settings.llm_shadow_mode:
        return GateStage(1, "stage 1-2: shadow (recorded, never acts)")
    if settings.trading_mode is TradingMode.LIVE:
        return GateStage(4, f"stage 4: live, enforcing, fail mode {settings.fail_mode.value}")
    return GateStage(3, f"stage 3: enforcing in paper, fail mode {settings.fail_mode.value}")


def _money(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):,.2f}"


def _qty(value: Decimal | None) -> str:
    """A quantity as typed: 10, 2.5; never 1E+1."""
    return "-" if value is None else format(value.normalize(), "f")


def _iso(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def lag_seconds(last_signal_at: datetime | None, now: datetime | None = None) -> float | None:
    if last_signal_at is None:
        return None
    return ((now or utcnow()) - last_signal_at).total_seconds()
