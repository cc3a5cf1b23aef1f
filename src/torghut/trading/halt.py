"""The operator's runtime halt: a stop of new trading that needs no deploy.

`POST /trading/halt` stores the halt in the database (so a restart or a new leader keeps it);
the pipeline reads it before each cycle and, while halted, reads no signal; a decision already
being processed when the halt lands is rejected with reason `halted` before it reaches the
broker. The `TRADING_KILL_SWITCH` setting stays a separate, deploy-time stop.

`TradingHalt` keeps the last state it read or wrote in memory, so that a check on the hot path
costs no I/O; `refresh` reads the store again (once per cycle, and for every status read)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from torghut.domain import utcnow

log = logging.getLogger("torghut.halt")

HALTED_REASON = "halted"  # the decision's reject reason while halted
MAX_REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class HaltState:
    halted: bool
    reason: str | None = None
    since: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        """The `/trading/status` shape (CONTRACT §8)."""
        return {
            "halted": self.halted,
            "reason": self.reason,
            "since": self.since.isoformat() if self.since else None,
        }


RUNNING = HaltState(halted=False)


class HaltStore(Protocol):
    """Where the halt lives between processes (the database in the service)."""

    async def load(self) -> HaltState: ...

    async def save(self, state: HaltState, *, action: str, reason: str) -> HaltState:
        """Store `state`, record the operator's `action` (`halt` or `resume`) and its reason
        in the history, and return what is stored now."""
        ...


class TradingHalt:
    def __init__(
        self, store: HaltStore, on_change: Callable[[HaltState], None] | None = None
    ) -> None:
        self._store = store
        self._state = RUNNING
        self._on_change = on_change

    @property
    def state(self) -> HaltState:
        return self._state

    @property
    def halted(self) -> bool:
        """The last state seen, without I/O: for checks on the decision path."""
        return self._state.halted

    async def refresh(self) -> HaltState:
        """Read the stored state (another process may have changed it)."""
        self._set(await self._store.load())
        return self._state

    async def halt(self, reason: str) -> HaltState:
        current = await self._store.load()
        # Halting again keeps when it began; the newest reason is what the operator reads.
        since = current.since if current.halted and current.since else utcnow()
        stored = await self._store.save(
            HaltState(True, reason, since), action="halt", reason=reason
        )
        self._set(stored)
        log.warning("trading halted: %s", reason)
        return stored

    async def resume(self, reason: str) -> HaltState:
        stored = await self._store.save(RUNNING, action="resume", reason=reason)
        self._set(stored)
        log.warning("trading resumed: %s", reason)
        return stored

    def _set(self, state: HaltState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)


class MemoryHaltStore:
    """A `HaltStore` in memory: for tests and for anything without a database."""

    def __init__(self, state: HaltState = RUNNING) -> None:
        self.state = state
        self.history: list[tuple[str, str]] = []

    async def load(self) -> HaltState:
        return self.state

    async def save(self, state: HaltState, *, action: str, reason: str) -> HaltState:
        self.state = state
        self.history.append((action, reason))
        return state
