"""The review circuit breaker: stop calling a failing gateway for a while.

States:
- `closed`: every caller gets a permit. `max_errors` failures within the sliding
  `window_seconds` open the breaker.
- `open`: no permit (the review is a `circuit_open` error, nothing is sent) until
  `cooldown_seconds` have passed; then the breaker is `half_open`.
- `half_open`: exactly one caller gets a permit, the probe; every other caller gets None while it
  is out. The probe's success closes the breaker (and clears the error window), its failure
  opens it again for a full cooldown. A probe released without an outcome (its task was
  cancelled, or its error does not count) lets the next caller probe.

Callers report only review failures (`ReviewError.counts_for_breaker`); what counts is the
caller's decision, not the breaker's.

Concurrency: everything here is synchronous and never awaits, so within one event loop each
call runs to completion before another task can run: no lock is needed and none is held across
the network call (a permit is just a ticket settled later). It is not meant to be shared
between threads.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any

from torghut.domain import utcnow

logger = logging.getLogger("torghut.circuit")


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Permit:
    """Leave to make one request. Settle it once: `success()`, `failure()` or `release()`
    (neither); later calls are ignored. As a context manager it releases on exit when still
    unsettled, so a cancelled caller never keeps the half-open probe forever."""

    __slots__ = ("_breaker", "_generation", "_settled", "probe")

    def __init__(self, breaker: CircuitBreaker, *, probe: bool, generation: int) -> None:
        self._breaker = breaker
        self._generation = generation
        self._settled = False
        self.probe = probe

    @property
    def settled(self) -> bool:
        return self._settled

    def success(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._record_success(self.probe, self._generation)

    def failure(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._record_failure(self.probe, self._generation)

    def release(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._record_release(self.probe, self._generation)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class CircuitBreaker:
    def __init__(
        self,
        max_errors: int,
        window_seconds: float,
        cooldown_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
        on_transition: Callable[[str, str], None] | None = None,
    ) -> None:
        if max_errors < 1:
            raise ValueError("max_errors must be at least 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be greater than 0")
        if cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must not be negative")
        self.max_errors = max_errors
        self.window_seconds = float(window_seconds)
        self.cooldown_seconds = float(cooldown_seconds)
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_transition = on_transition
        self._state = CircuitState.CLOSED
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._open_until: datetime | None = None
        self._probe_out = False
        # Bumped on every transition: a permit from an earlier state can no longer move it.
        self._generation = 0
        self.opened_count = 0

    @property
    def state(self) -> CircuitState:
        self._refresh()
        return self._state

    def acquire(self) -> Permit | None:
        """A permit, or None when the breaker refuses (open, or the half-open probe is out)."""
        self._refresh()
        if self._state is CircuitState.CLOSED:
            return Permit(self, probe=False, generation=self._generation)
        if self._state is CircuitState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return Permit(self, probe=True, generation=self._generation)
        return None

    def snapshot(self) -> dict[str, Any]:
        self._refresh()
        self._prune(self._clock())
        return {
            "state": self._state.value,
            "open_until": self._open_until.isoformat() if self._open_until else None,
            "recent_error_count": len(self._failures),
            "max_errors": self.max_errors,
            "window_seconds": self.window_seconds,
            "cooldown_seconds": self.cooldown_seconds,
            "opened_count": self.opened_count,
        }

    # --- settling permits ---------------------------------------------------------------------

    def _current(self, generation: int) -> bool:
        return generation == self._generation

    def _record_success(self, probe: bool, generation: int) -> None:
        if probe and self._current(generation) and self._state is CircuitState.HALF_OPEN:
            self._failures.clear()
            self._transition(CircuitState.CLOSED)
        # A success while closed leaves the window as it is: failures age out on their own.

    def _record_failure(self, probe: bool, generation: int) -> None:
        now = self._clock()
        if probe:
            if self._current(generation) and self._state is CircuitState.HALF_OPEN:
                self._open(now)
            return
        if self._state is not CircuitState.CLOSED:
            # Started before the breaker opened: it is open already, or a probe decides now.
            return
        self._failures.append(now)
        self._prune(now)
        if len(self._failures) >= self.max_errors:
            self._open(now)

    def _record_release(self, probe: bool, generation: int) -> None:
        if probe and self._current(generation) and self._state is CircuitState.HALF_OPEN:
            self._probe_out = False

    # --- state ------------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        while self._failures and now - self._failures[0] >= self.window_seconds:
            self._failures.popleft()

    def _refresh(self) -> None:
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.cooldown_seconds
        ):
            self._transition(CircuitState.HALF_OPEN)

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._open_until = self._wall_clock() + timedelta(seconds=self.cooldown_seconds)
        self.opened_count += 1
        self._transition(CircuitState.OPEN)

    def _transition(self, new: CircuitState) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._probe_out = False
        if new is not CircuitState.OPEN:
            self._open_until = None
        # The one log line per transition; `event` and the states for JSON logs (LOG_FORMAT).
        fields = {"event": "breaker", "from_state": old.value, "to_state": new.value}
        if new is CircuitState.OPEN:
            logger.warning(
                "LLM circuit %s -> open for %gs (%d errors within %gs)",
                old.value,
                self.cooldown_seconds,
                len(self._failures),
                self.window_seconds,
                extra=fields,
            )
        else:
            logger.info("LLM circuit %s -> %s", old.value, new.value, extra=fields)
        if self._on_transition is not None:
            try:
                self._on_transition(old.value, new.value)
            except Exception:  # a metrics hook must never break a review
                logger.exception("circuit on_transition hook failed")
