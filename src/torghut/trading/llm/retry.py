"""Retry policy shared by the LLM providers (CONTRACT §2 `LLM_MAX_RETRIES`).

A request is retried only when nothing of the answer has arrived yet: a connection error, or a
408, 429 or 5xx status. Backoff is exponential with full jitter, `Retry-After` is honoured, and
no wait ever runs past the review's total deadline: when the next attempt could not start in
time, the last error is raised at once instead of sleeping into a timeout.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from torghut.errors import ReviewError

T = TypeVar("T")

BASE_DELAY_SECONDS = 0.25
MAX_DELAY_SECONDS = 8.0


class RetryableFailure(Exception):
    """Raised by one attempt that failed before any event arrived and may be tried again.

    `error` is what the caller sees when no retry is left; `retry_after` is the gateway's own
    hint in seconds (from `Retry-After`), if it sent one."""

    def __init__(self, error: ReviewError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    base_delay: float = BASE_DELAY_SECONDS
    max_delay: float = MAX_DELAY_SECONDS

    def backoff(self, retry_index: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max_delay, base x 2^n)], so that clients failing
        together do not come back together."""
        ceiling: float = min(self.max_delay, self.base_delay * (2.0**retry_index))
        return rng() * ceiling


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


async def with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run `attempt(n)` until it returns, raises anything but `RetryableFailure`, or the policy
    says stop. `deadline` is on `clock`'s scale (the review's total deadline)."""
    retry_index = 0
    while True:
        try:
            return await attempt(retry_index)
        except RetryableFailure as failure:
            if retry_index >= policy.max_retries:
                raise failure.error from None
            delay = policy.backoff(retry_index, rng)
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            # Waiting into the deadline would only turn a clear error into a vague timeout.
            if clock() + delay >= deadline:
                raise failure.error from None
            await sleep(delay)
            retry_index += 1
