"""Is the configured model served? (issue 13: a Jangar that does not serve `LLM_MODEL` answers
`model_not_found` to every review while readiness stays green.)

The provider's model list (`GET {base}/models`, Jangar's and OpenAI's surface alike) must hold
`LLM_MODEL`. `serve` asks at start-up and `/readyz` on each probe (the answer is kept for
`CACHE_SECONDS`, and a probe never waits more than `TIMEOUT_SECONDS`); `llm review` asks
before it sends anything and stops with one line when the model is missing.

Readiness fails only on a definite answer (a list without the model). When the list cannot be
had (the gateway is down, or lists nothing readable) the check says `unknown` and readiness
stands: a gateway outage is the review clocks' and the breaker's business, and taking the
service out of rotation for it would stop the loop's API with no gain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from torghut.errors import ReviewError, ReviewErrorCode
from torghut.ports import ReviewProvider

CACHE_SECONDS = 60.0
TIMEOUT_SECONDS = 3.0


@runtime_checkable
class ListsModels(Protocol):
    async def served_models(self) -> list[str]: ...


class ModelMissing(Exception):
    """The provider answered a model list without the configured model."""


async def check_model(provider: ReviewProvider, *, within: float = TIMEOUT_SECONDS) -> None:
    """Raise `ModelMissing` (one line, naming the model) when the provider lists its models
    and the configured one is not among them; `ReviewError` when the list cannot be had. A
    provider that cannot list models passes."""
    if not isinstance(provider, ListsModels):
        return
    try:
        async with asyncio.timeout(within):
            models = await provider.served_models()
    except TimeoutError:
        raise ReviewError(
            ReviewErrorCode.TIMEOUT, f"total timeout: no model list within {within:g}s"
        ) from None
    if provider.model not in models:
        listed = ", ".join(repr(m) for m in sorted(models)[:5]) or "none"
        more = f" and {len(models) - 5} more" if len(models) > 5 else ""
        raise ModelMissing(
            f"LLM_MODEL {provider.model!r} is not served by {provider.name} "
            f"(its /models lists {listed}{more})"
        )


class ModelCheck:
    """`check_model` for readiness: the last answer kept for `CACHE_SECONDS`."""

    def __init__(
        self,
        provider: ReviewProvider,
        *,
        clock: Callable[[], float] = time.monotonic,
        check: Callable[[ReviewProvider], Awaitable[None]] = check_model,
    ) -> None:
        self._provider = provider
        self._clock = clock
        self._check = check
        self._checked_at: float | None = None
        self._problem: str | None = None
        self._lock = asyncio.Lock()

    async def problem(self) -> str | None:
        """None when the model is served; else one line: `LLM_MODEL …` when it is definitely
        not, `unknown: …` when the list could not be had."""
        async with self._lock:
            now = self._clock()
            if self._checked_at is not None and now - self._checked_at < CACHE_SECONDS:
                return self._problem
            try:
                await self._check(self._provider)
                self._problem = None
            except ModelMissing as exc:
                self._problem = str(exc)
            except ReviewError as exc:
                self._problem = (
                    f"unknown: cannot tell whether LLM_MODEL {self._provider.model!r} is "
                    f"served: {exc.code.value}: {exc.message}"
                )
            self._checked_at = now
            return self._problem
