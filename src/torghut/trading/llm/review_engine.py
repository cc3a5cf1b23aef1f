"""One review: a decision in, a `ReviewOutcome` out.

breaker permit -> messages -> provider -> the review in the answer -> policy. Whatever fails
becomes an `error` outcome, never an exception to the caller: a `ReviewError` keeps its code;
anything unexpected is logged with its traceback and recorded as `protocol_error` ("unexpected
error: <type>"), since it means the provider or the answer broke an assumption. Cancellation is
never swallowed, and the breaker permit is released when it happens.

The breaker hears about the provider call and the answer only: a completion whose answer holds
a valid review is a success; a `ReviewError` that counts for the breaker (`invalid_json` and
`invalid_schema` included: the model failed to review) is a failure. Policy outcomes (veto,
adjust) are the review working, not failing.

This module knows the provider only through `ReviewProvider`: no HTTP, no concrete adapter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, is_dataclass
from decimal import Decimal
from typing import Any

from torghut.domain import (
    Account,
    LLMVerdict,
    OrderType,
    Position,
    Signal,
    TradeDecision,
    TradingMode,
    Usage,
    Verdict,
)
from torghut.errors import ReviewError, ReviewErrorCode, redact, redact_json
from torghut.ports import Completion, ReviewProvider
from torghut.trading.llm.circuit import CircuitBreaker
from torghut.trading.llm.context import PointInTimeContext, ReviewContextSource, ReviewFacts
from torghut.trading.llm.policy import apply_policy
from torghut.trading.llm.prompts import PromptTemplate, build_messages
from torghut.trading.llm.schema import (
    LLMReviewRequest,
    PolicyBounds,
    PortfolioSnapshot,
)

logger = logging.getLogger("torghut.review")

# A provider that states no deadline for its answer (a fake) gets this long for the search.
_DEFAULT_PARSE_SECONDS = 60.0


@dataclass(frozen=True)
class ReviewOutcome:
    provider: str
    model: str
    prompt_version: str
    prompt_hash: str
    # The body sent (messages included); for `circuit_open`, the body that would have been.
    request_json: dict[str, Any]
    # {"text", "reasoning", "review" (raw object, unknown keys kept), "error", "finish_reason"}
    response_json: dict[str, Any] | None
    llm_verdict: LLMVerdict | None  # what the model said
    verdict: Verdict  # after policy
    reason: str | None  # policy reason, or f"llm_error:{code}"
    confidence: float | None
    adjusted_qty: Decimal | None  # as the model asked; `adjusted_decision` holds what policy made
    adjusted_order_type: OrderType | None
    rationale: str | None
    risk_flags: list[str]
    usage: Usage | None
    latency_ms: int
    ttft_ms: int | None
    error_code: str | None
    error_message: str | None
    adjusted_decision: TradeDecision | None = None
    # With anonymising on: the request before it was anonymised (`request_json` is what was
    # sent). None otherwise.
    real_request_json: dict[str, Any] | None = None

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": self.error_message or ""}


@dataclass
class _Attempt:
    """What one review got as far as, so an error outcome still records it (an unparseable
    answer is audited with its text, usage and timings)."""

    request_json: dict[str, Any] = field(default_factory=dict)
    completion: Completion | None = None
    real_request_json: dict[str, Any] | None = None


class ReviewEngine:
    def __init__(
        self,
        provider: ReviewProvider,
        breaker: CircuitBreaker,
        prompt: PromptTemplate,
        bounds: PolicyBounds,
        *,
        secrets: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        context: ReviewContextSource | None = None,
        anonymize: bool = False,
    ) -> None:
        self._anonymize = anonymize
        # Without a configured context (unit tests), one with no history and no database.
        self._context: ReviewContextSource = context or PointInTimeContext(
            bounds=bounds, trading_mode=TradingMode.PAPER, prompt_version=prompt.version
        )
        self._provider = provider
        self._breaker = breaker
        self._prompt = prompt
        self._bounds = bounds
        self._secrets = tuple(secrets)
        self._clock = clock
        # Answer parsing gets threads of its own: the loop's default executor also runs DNS
        # look-ups, and stalled look-ups must not queue a review's parse behind them.
        self._executor: ThreadPoolExecutor | None = None

    async def aclose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _extract(self, completion: Completion) -> tuple[Any, dict[str, Any]]:
        """The review in the answer, searched on the engine's own thread (bounded, answer.py,
        but up to tens of milliseconds: not on the loop) within the review's total deadline."""
        # Imported at the first answer, not at start-up: `llm review` sends its request sooner
        # (the module and the build of the response model, which it completes, cost ~2 ms).
        from torghut.trading.llm.answer import extract_review

        text = completion.text
        if self._executor is None:
            self._executor = ThreadPoolExecutor(2, thread_name_prefix="torghut-answer")
        loop = asyncio.get_running_loop()
        deadline = completion.deadline
        if deadline is None:
            deadline = loop.time() + _DEFAULT_PARSE_SECONDS
        try:
            async with asyncio.timeout_at(deadline):
                return await loop.run_in_executor(self._executor, extract_review, text)
        except TimeoutError:
            raise ReviewError(
                ReviewErrorCode.TIMEOUT,
                "total timeout: the answer could not be searched before the deadline",
            ) from None

    @property
    def provider(self) -> ReviewProvider:
        return self._provider

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    @property
    def prompt(self) -> PromptTemplate:
        return self._prompt

    @property
    def bounds(self) -> PolicyBounds:
        return self._bounds

    @property
    def context(self) -> ReviewContextSource:
        return self._context

    def observe(self, signals: Sequence[Signal]) -> None:
        """Signals as they are read, for the context's bar history."""
        self._context.observe(signals)

    async def review_decision(self, decision: TradeDecision, facts: ReviewFacts) -> ReviewOutcome:
        """Review `decision`, described to the model by the point-in-time context built from
        `facts`. Never raises, except cancellation."""
        try:
            request = await self.context.build(decision, facts)
        except Exception:
            # A bug in the context must not cost the review: the decision alone, labelled.
            logger.exception("review context of %s failed", decision.symbol)
            request = LLMReviewRequest(
                decision=decision.model_dump(mode="json"),
                policy=self._bounds,
                prompt_version=self._prompt.version,
                missing=["context"],
            )
        return await self.review(decision, request)

    async def review(self, decision: TradeDecision, request: LLMReviewRequest) -> ReviewOutcome:
        """Review `decision` (described to the model by `request`). Never raises, except
        cancellation."""
        started = self._clock()
        attempt = _Attempt()
        try:
            return await self._review(decision, request, attempt, started)
        except ReviewError as exc:
            return self._error(attempt, exc, self._elapsed_ms(started))
        except Exception as exc:
            logger.exception("unexpected error in an LLM review of %s", decision.symbol)
            error = ReviewError(
                ReviewErrorCode.PROTOCOL_ERROR, f"unexpected error: {type(exc).__name__}"
            )
            return self._error(attempt, error, self._elapsed_ms(started))

    async def _review(
        self,
        decision: TradeDecision,
        request: LLMReviewRequest,
        attempt: _Attempt,
        started: float,
    ) -> ReviewOutcome:
        if self._anonymize:
            from torghut.trading.llm.anonymize import anonymize  # only with --anonymize

            real = request.model_dump(mode="json")
            attempt.real_request_json = real
            request = LLMReviewRequest.model_validate(anonymize(real))
        messages = build_messages(self._prompt, request)
        attempt.request_json = dict(self._provider.request_body(messages))
        permit = self._breaker.acquire()
        if permit is None:
            error = ReviewError(
                ReviewErrorCode.CIRCUIT_OPEN, "circuit breaker is open; no request was sent"
            )
            return self._error(attempt, error, latency_ms=0)
        # Leaving the block unsettled (cancellation) releases the permit: a cancelled probe
        # must not hold the half-open breaker forever.
        with permit:
            try:
                attempt.completion = await self._provider.complete(messages)
                review, raw = await self._extract(attempt.completion)
            except ReviewError as exc:
                if exc.counts_for_breaker:
                    permit.failure()
                raise
            except Exception:
                permit.failure()
                raise
            permit.success()
        completion = attempt.completion
        result = apply_policy(review, decision, self._bounds)
        return ReviewOutcome(
            provider=self._provider.name,
            model=self._provider.model,
            prompt_version=self._prompt.version,
            prompt_hash=self._prompt.sha256,
            request_json=self._scrub(attempt.request_json),
            response_json=self._response_json(completion, raw, None),
            llm_verdict=review.verdict,
            verdict=result.verdict,
            reason=result.reason,
            confidence=review.confidence,
            adjusted_qty=review.adjusted_qty,
            adjusted_order_type=review.adjusted_order_type,
            # Model-written text is redacted like everything else the gateway sends.
            rationale=self._redact(review.rationale),
            risk_flags=[self._redact(flag) or "" for flag in review.risk_flags],
            usage=completion.usage,
            latency_ms=self._elapsed_ms(started),
            ttft_ms=completion.ttft_ms,
            error_code=None,
            error_message=None,
            adjusted_decision=result.adjusted_decision,
            real_request_json=self._real(attempt),
        )

    def _elapsed_ms(self, started: float) -> int:
        return max(0, round((self._clock() - started) * 1000))

    def _redact(self, text: str | None) -> str | None:
        return None if text is None else redact(text, self._secrets, limit=None)

    def _scrub(self, value: Any) -> Any:
        """Every string inside `value`, dict keys included, redacted and made safe (audit rows
        must never hold a secret, a NUL or a lone surrogate)."""
        return redact_json(value, self._secrets)

    def _response_json(
        self,
        completion: Completion | None,
        review: dict[str, Any] | None,
        error: dict[str, str] | None,
    ) -> dict[str, Any]:
        return {
            "text": self._redact(completion.text) if completion else None,
            "reasoning": self._redact(completion.reasoning) if completion else None,
            "review": self._scrub(review) if review is not None else None,
            "error": error,
            "finish_reason": (
                redact(completion.finish_reason, self._secrets, limit=128, one_line=True)
                if completion and completion.finish_reason is not None
                else None
            ),
        }

    def _error(self, attempt: _Attempt, exc: ReviewError, latency_ms: int) -> ReviewOutcome:
        completion = attempt.completion
        code = exc.code.value
        message = redact(exc.message, self._secrets)
        return ReviewOutcome(
            provider=self._provider.name,
            model=self._provider.model,
            prompt_version=self._prompt.version,
            prompt_hash=self._prompt.sha256,
            request_json=self._scrub(attempt.request_json),
            response_json=self._response_json(completion, None, {"code": code, "message": message}),
            llm_verdict=None,
            verdict=Verdict.ERROR,
            reason=f"llm_error:{code}",
            confidence=None,
            adjusted_qty=None,
            adjusted_order_type=None,
            rationale=None,
            risk_flags=[],
            usage=completion.usage if completion else None,
            latency_ms=latency_ms,
            ttft_ms=completion.ttft_ms if completion else None,
            error_code=code,
            error_message=message,
            adjusted_decision=None,
            real_request_json=self._real(attempt),
        )

    def _real(self, attempt: _Attempt) -> dict[str, Any] | None:
        real = attempt.real_request_json
        return None if real is None else self._scrub(real)


def _position_dict(position: Position | Mapping[str, Any] | Any) -> Any:
    if is_dataclass(position) and not isinstance(position, type):
        return asdict(position)
    return position


def build_review_request(
    decision: TradeDecision,
    *,
    account: Account | None,
    positions: Sequence[Position | Mapping[str, Any]],
    market: Mapping[str, Any] | None,
    recent_decisions: Sequence[Mapping[str, Any]],
    bounds: PolicyBounds,
    trading_mode: TradingMode,
    prompt_version: str,
) -> LLMReviewRequest:
    """The request for `decision`. Payloads are normalised to plain JSON by the schema; the
    caller keeps `recent_decisions` short (it goes into every prompt)."""
    portfolio = PortfolioSnapshot(
        equity=account.equity if account else None,
        cash=account.cash if account else None,
        buying_power=account.buying_power if account else None,
        positions=[_position_dict(p) for p in positions],
    )
    return LLMReviewRequest(
        decision=decision.model_dump(mode="json"),
        portfolio=portfolio,
        market=dict(market) if market is not None else None,
        recent_decisions=[dict(d) for d in recent_decisions],
        policy=bounds,
        trading_mode=trading_mode,
        prompt_version=prompt_version,
    )
