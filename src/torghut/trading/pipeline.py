"""One trading cycle, top to bottom: signals, strategy, risk, review, gate, audit, execute.

Read `run_cycle` first; every step below it is a small method. Decisions of a batch run
concurrently (bounded); one failing decision never stops the batch; the signal cursor moves
past a batch only when every decision in it has reached a final status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from torghut import logs
from torghut.db import repo
from torghut.db.engine import Database
from torghut.domain import (
    Account,
    Action,
    Book,
    BrokerOrder,
    EffectiveAction,
    FailMode,
    OrderRequest,
    Position,
    RiskResult,
    Signal,
    TradeDecision,
    TradingMode,
    decision_hash,
    utcnow,
)
from torghut.errors import BrokerError
from torghut.metrics import Metrics
from torghut.ports import Broker, SignalSource
from torghut.trading.gate import GateDecision, apply_gate
from torghut.trading.group_commit import GroupCommit
from torghut.trading.llm.review_engine import ReviewEngine, ReviewOutcome, build_review_request
from torghut.trading.llm.schema import PolicyBounds
from torghut.trading.risk import OpenOrder, RecentTrade, RiskContext, RiskLimits, evaluate_risk
from torghut.trading.strategy import StrategyDefaults, StrategySpec, evaluate

log = logging.getLogger("torghut.pipeline")

_SHADOW_WRITE_ATTEMPTS = 4
_DECISIONS_IN_FLIGHT = 256
_SETTLE_SECONDS = 30.0


class StrategySource(Protocol):
    async def load(self) -> list[StrategySpec]: ...


@runtime_checkable
class MarksPrices(Protocol):
    """A broker that learns prices from the signals (the simulated one)."""

    async def mark_prices(self, prices: Mapping[str, Decimal]) -> Book:
        """Mark, then return the book as the marks left it."""
        ...


@dataclass(frozen=True, slots=True)
class GateSettings:
    enabled: bool
    shadow: bool
    fail_mode: FailMode
    trading_mode: TradingMode


@dataclass
class CycleResult:
    signals: int = 0
    decisions: int = 0
    submitted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    reviews: Counter[str] = field(default_factory=Counter)
    committed: bool = False

    def merge(self, other: CycleResult) -> None:
        self.signals += other.signals
        self.decisions += other.decisions
        self.submitted += other.submitted
        self.duplicates += other.duplicates
        self.rejected.update(other.rejected)
        self.reviews.update(other.reviews)


@dataclass
class _Book:
    """What this batch has already committed to, so that risk checks running side by side
    count each other's orders (buying power, position size, cooldown).

    The broker's open orders and the batch's reservations are indexed by symbol, with a
    running total of the cash reserved for buys, so that one check costs the same whatever
    the size of the batch (risk only looks at the decision's own symbol)."""

    account: Account
    positions: dict[str, Position]
    open_orders: list[BrokerOrder]
    last_trade_at: dict[str, datetime | RecentTrade] = field(default_factory=dict)
    reserved: dict[str, OpenOrder] = field(default_factory=dict, init=False)
    _open_by_symbol: dict[str, list[OpenOrder]] = field(default_factory=dict, init=False)
    _reserved_by_symbol: dict[str, dict[str, OpenOrder]] = field(
        default_factory=dict, init=False
    )
    _reserved_buys: Decimal = field(default=Decimal(0), init=False)

    def __post_init__(self) -> None:
        for order in self.open_orders:
            # What risk would count of it: a broker order without side or quantity cannot be.
            converted = OpenOrder.from_broker_order(order)
            if converted is not None:
                self._open_by_symbol.setdefault(converted.symbol, []).append(converted)

    def reserve(self, key: str, order: OpenOrder) -> None:
        self.release(key)
        self.reserved[key] = order
        self._reserved_by_symbol.setdefault(order.symbol.upper(), {})[key] = order
        self._reserved_buys += _buy_value(order)

    def release(self, key: str) -> None:
        order = self.reserved.pop(key, None)
        if order is not None:
            del self._reserved_by_symbol[order.symbol.upper()][key]
            self._reserved_buys -= _buy_value(order)

    def reserved_buys(self, *, excluding: str) -> Decimal:
        """Cash promised to this batch's buys, leaving out the decision `excluding`."""
        own = self.reserved.get(excluding)
        return self._reserved_buys - (_buy_value(own) if own is not None else Decimal(0))

    def orders_in(self, symbol: str, *, excluding: str) -> list[OpenOrder]:
        """Open and reserved orders in `symbol`, leaving out the decision `excluding`."""
        symbol = symbol.upper()
        mine = self._reserved_by_symbol.get(symbol, {})
        return [
            *self._open_by_symbol.get(symbol, ()),
            *(order for key, order in mine.items() if key != excluding),
        ]


def _buy_value(order: OpenOrder) -> Decimal:
    return order.qty * (order.price or Decimal(0)) if order.side is Action.BUY else Decimal(0)


@dataclass
class _Item:
    decision: TradeDecision
    signal: Signal
    hash: str
    decision_id: Any
    resumed: bool = False  # left `planned` by an earlier run that stopped mid-batch
    final: bool = False
    placed: bool = False  # the broker holds its order: never to be marked rejected
    # An order handed to the broker by an earlier run whose answer was never recorded.
    pending_order: OrderRequest | None = None
    pending_unreadable: bool = False  # there is one, but its stored form cannot be read
    pending_sent_at: datetime | None = None  # when that order was last handed to the broker


class TradingPipeline:
    def __init__(
        self,
        *,
        db: Database,
        source: SignalSource,
        strategies: StrategySource,
        broker: Broker,
        limits: RiskLimits,
        sizing: StrategyDefaults,
        gate: GateSettings,
        reviewer: ReviewEngine | None,
        bounds: PolicyBounds,
        prompt_version: str,
        metrics: Metrics,
        max_concurrency: int,
        batch_size: int,
        resend_window_seconds: float = 60.0,
    ) -> None:
        self.db = db
        self.source = source
        self.strategies = strategies
        self.broker = broker
        self.limits = limits
        self.sizing = sizing
        self.gate = gate
        self.reviewer = reviewer
        self.bounds = bounds
        self.prompt_version = prompt_version
        self.metrics = metrics
        self.batch_size = batch_size
        self.resend_window = timedelta(seconds=resend_window_seconds)
        # Reviews are bounded by `_review_slots`. The work slots bound decisions in flight:
        # their own reads queue on the connection pool and must not outwait its timeout. They
        # are wide, so that a batch's orders and rows go to the broker and the database in a
        # few group commits rather than one transaction per decision.
        self._work_slots = asyncio.Semaphore(max(4 * max_concurrency, _DECISIONS_IN_FLIGHT))
        self._review_slots = asyncio.Semaphore(max_concurrency)
        self._pending: GroupCommit[tuple[Any, dict[str, Any]], None] = GroupCommit(
            self._record_pending
        )
        self._orders: GroupCommit[OrderRequest, BrokerOrder] = GroupCommit(
            self.broker.submit_orders
        )
        self._executions: GroupCommit[repo.Execution, None] = GroupCommit(
            self._record_executions
        )
        self._rejections: GroupCommit[tuple[Any, str], None] = GroupCommit(
            self._record_rejections
        )
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._reviewing = 0
        self.totals = CycleResult()
        # Decisions finished in a batch that is to be read again (issue 12: not counted twice).
        self._carried: set[str] = set()
        # Monotonic time of the last sign of life (a cycle began or ended, a decision
        # finished), so /readyz can tell a long batch from a stuck loop.
        self.last_progress = time.monotonic()

    # ----------------------------------------------------------------------------- the cycle
    async def run_cycle(self) -> CycleResult:
        self.last_progress = time.monotonic()
        result = CycleResult()
        signals = await self.source.fetch(self.batch_size)
        if not signals:
            return result
        result.signals = len(signals)
        self.metrics.signals_read(s.event_ts for s in signals)
        marked = await self._mark_prices(signals)
        strategies = await self.strategies.load()
        book = await self._open_book(signals, marked)
        items = await self._decide(signals, strategies, book, result)
        try:
            await asyncio.gather(*(self._guarded(item, book, result) for item in items))
        except asyncio.CancelledError:
            # A cancelled cycle (shutdown past its grace) sends nothing more: its queued and
            # in-flight group writes are cancelled with it, before the scheduler lets another
            # leader in. Unfinished decisions stay `planned`; the next run asks the broker.
            await self.quiesce()
            raise
        if all(item.final for item in items):
            await self.source.commit(signals)
            result.committed = True
        else:
            log.warning("batch left decisions unfinished; its signals will be read again")
        # A batch read again is counted once, when it is done: its signals when the cursor
        # moves past them, a decision when it reaches its final status (issue 12).
        result.decisions = sum(1 for item in items if item.final)
        if result.committed:
            self._carried.clear()
        else:
            self._carried.update(item.hash for item in items if item.final)
        counted = dataclasses.replace(result, signals=result.signals if result.committed else 0)
        self.metrics.signals.inc(counted.signals)
        self.totals.merge(counted)
        self.last_progress = time.monotonic()
        return result

    async def drain(self, grace_seconds: float | None = None) -> int:
        """Wait for shadow reviews still in flight (each bounded by its own deadline), at
        most `grace_seconds`; returns how many are still running (0: all done)."""
        loop = asyncio.get_running_loop()
        deadline = None if grace_seconds is None else loop.time() + grace_seconds
        while self._shadow_tasks:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            # asyncio.wait, not gather: running out of time must not cancel the reviews.
            await asyncio.wait(list(self._shadow_tasks), timeout=remaining)
        return sum(1 for task in self._shadow_tasks if not task.done())

    async def quiesce(self, grace_seconds: float = _SETTLE_SECONDS) -> int:
        """Cancel the group writes (orders, executions, rejections) queued or in flight, then
        wait, at most `grace_seconds`, for broker requests and database transactions already
        on their way (work handed to a thread cannot be called back). Returns how many are
        still running."""
        for group in (self._pending, self._orders, self._executions, self._rejections):
            await group.aclose()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        requests = await self.broker.settle(grace_seconds)
        if requests:
            log.error("%d broker requests still running after %gs", requests, grace_seconds)
        # Cancelled writes finish in the database's threads: wait for them too, so that no
        # write of this leader lands after another one took over.
        writes = await self.db.settle(max(0.0, deadline - loop.time()))
        if writes:
            log.error("%d database transactions still running after %gs", writes,
                      grace_seconds)
        return requests + writes

    @property
    def reviews_in_flight(self) -> int:
        """Reviews waiting for the gateway now, shadow or enforcing."""
        return self._reviewing

    # ------------------------------------------------------------------------------- steps
    async def _mark_prices(self, signals: Sequence[Signal]) -> Book | None:
        """Prices to a broker that learns them from the signals; its book after them."""
        if not isinstance(self.broker, MarksPrices):
            return None
        latest: dict[str, Decimal] = {}
        for s in signals:
            if s.price is not None:
                latest[s.symbol] = s.price
        return await self.broker.mark_prices(latest)

    async def _open_book(self, signals: Sequence[Signal], marked: Book | None) -> _Book:
        held = marked if marked is not None else await self.broker.get_book()
        book = _Book(
            account=held.account,
            positions={p.symbol: p for p in held.positions},
            open_orders=held.open_orders,
        )
        symbols = sorted({s.symbol for s in signals})
        book.last_trade_at = dict(await repo.last_trades_by_symbol(self.db, symbols))
        return book

    async def _decide(
        self,
        signals: Sequence[Signal],
        strategies: Sequence[StrategySpec],
        book: _Book,
        result: CycleResult,
    ) -> list[_Item]:
        proposed: list[tuple[TradeDecision, Signal, str]] = []
        for signal in signals:
            for strategy in strategies:
                decision = evaluate(
                    strategy, signal, equity=book.account.equity, defaults=self.sizing
                )
                if decision is not None:
                    proposed.append((decision, signal, decision_hash(decision)))
        stored = await repo.insert_decisions(self.db, [(d, h) for d, _s, h in proposed])
        items: list[_Item] = []
        seen: set[str] = set()
        for decision, signal, h in proposed:
            row = stored[h]
            if row.status != "planned" or h in seen:
                # Already decided: a replay, or another loop got there first (not this
                # process in an earlier, unfinished read of the same batch: counted then).
                if h not in self._carried:
                    result.duplicates += 1
                continue
            seen.add(h)
            resumed = not row.created
            if resumed and row.decision_json is not None:
                # Finish the decision as it was first made, not as re-sized today.
                decision = TradeDecision.model_validate(row.decision_json)
            pending, unreadable, sent_at = None, False, None
            if resumed and row.pending_order_json:
                try:
                    pending = OrderRequest.from_json(row.pending_order_json)
                    sent_at = datetime.fromisoformat(str(row.pending_order_json["sent_at"]))
                except (KeyError, TypeError, ValueError, ArithmeticError):
                    log.error("decision %s: its pending order cannot be read; it is neither "
                              "re-sent nor rejected until an operator looks", h)
                    unreadable = True
            items.append(_Item(decision, signal, h, row.id, resumed=resumed,
                               pending_order=pending, pending_unreadable=unreadable,
                               pending_sent_at=sent_at))
        return items

    async def _guarded(self, item: _Item, book: _Book, result: CycleResult) -> None:
        """One decision, whatever happens: a bug here rejects this decision only."""
        async with self._work_slots:
            try:
                await self._process(item, book, result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("decision %s failed", item.hash)
                if item.placed:
                    # The broker has its order: leave the decision `planned` for the next
                    # cycle to adopt, never rejected with a live order.
                    return
                self._release(book, item.hash)
                reason = f"internal_error:{type(exc).__name__}"
                try:
                    await repo.mark_decision(self.db, item.decision_id, "rejected", reason)
                    item.final = True
                    self._count_rejection(result, reason)
                except Exception:
                    log.exception("could not mark decision %s rejected", item.hash)
            finally:
                self.last_progress = time.monotonic()

    async def _process(self, item: _Item, book: _Book, result: CycleResult) -> None:
        if item.resumed and await self._adopt_placed_order(item, book, result):
            return
        risk = self._check_and_reserve(item.decision, item.hash, book)
        if not risk.approved:
            await self._reject(item, risk.reason or "risk", result)
            return
        if self.reviewer is None or not self.gate.enabled:
            await self._submit(item, item.decision, book, result)
            return
        if self.gate.shadow:
            # Shadow never delays the order: submit now, review beside it.
            await self._submit(item, item.decision, book, result)
            task = asyncio.create_task(self._shadow_review(item, book))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
            return
        await self._enforced_review(item, book, result)

    async def _enforced_review(self, item: _Item, book: _Book, result: CycleResult) -> None:
        outcome = await self._review(item, book)
        gate = self._enforced_gate(outcome)
        action = gate.effective_action
        reason = gate.rejection_reason
        to_submit: TradeDecision | None = item.decision
        if action is EffectiveAction.SUBMITTED_ADJUSTED:
            to_submit = outcome.adjusted_decision or item.decision
            self._release(book, item.hash)
            risk = self._check_and_reserve(to_submit, item.hash, book)
            if not risk.approved:
                action, reason, to_submit = EffectiveAction.REJECTED, risk.reason, None
        elif action is EffectiveAction.REJECTED:
            to_submit = None
        # No order leaves before its audit row is written; a failed write means no order.
        try:
            await repo.record_review(
                self.db,
                self._review_row(item, outcome, action, shadow=False),
                reject=(item.decision_id, reason or "llm_veto") if to_submit is None else None,
            )
        except Exception:
            log.exception("audit write failed for %s: order not sent", item.hash)
            self.metrics.audit_write_failures.inc()
            self._release(book, item.hash)
            await self._reject(item, "audit_write_failed", result)
            return
        self._count_review(outcome, result)
        if to_submit is None:
            self._release(book, item.hash)
            item.final = True
            self._count_rejection(result, reason or "llm_veto")
            logs.review_vetoed(
                item.decision, item.hash, reason or "llm_veto", outcome.verdict, outcome.rationale
            )
            return
        await self._submit(item, to_submit, book, result)

    def _enforced_gate(self, outcome: ReviewOutcome) -> GateDecision:
        return apply_gate(
            outcome.verdict,
            shadow=False,
            fail_mode=self.gate.fail_mode,
            reason=outcome.reason,
            error_code=outcome.error_code,
        )

    async def _shadow_review(self, item: _Item, book: _Book) -> None:
        try:
            outcome = await self._review(item, book)
            # What the gate would have done had it been enforcing: a disagreement to report.
            would = self._enforced_gate(outcome)
            if would.effective_action is not EffectiveAction.SUBMITTED_ORIGINAL:
                self.metrics.shadow_disagreements.labels(verdict=outcome.verdict.value).inc()
            row = self._review_row(item, outcome, EffectiveAction.SUBMITTED_ORIGINAL, shadow=True)
            await self._write_with_retries(row, item.hash)
            # The cycle that started this review may be over: count on the running totals,
            # so that replay summaries include late shadow reviews.
            self.totals.reviews[outcome.verdict.value] += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shadow review of %s failed", item.hash)

    async def _write_with_retries(self, row: dict[str, Any], key: str) -> None:
        """A shadow row has no order waiting on it, so a failed write is worth a few retries
        (a database failover) before the row is given up, loudly."""
        for attempt in range(_SHADOW_WRITE_ATTEMPTS):
            try:
                await repo.record_review(self.db, row)
                return
            except Exception:
                if attempt == _SHADOW_WRITE_ATTEMPTS - 1:
                    log.exception("audit row of shadow review %s lost after retries", key)
                    self.metrics.audit_write_failures.inc()
                    return
                await asyncio.sleep(0.5 * 2**attempt)

    async def cancel_shadow_reviews(self, grace_seconds: float = _SETTLE_SECONDS) -> int:
        """Cancel reviews still running (shutdown past its grace period), then wait, at most
        `grace_seconds`, for audit writes of theirs already handed to the database (those
        cannot be called back). Returns how many reviews were cancelled."""
        pending = [t for t in self._shadow_tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace_seconds)
        return len(pending)

    async def settle_writes(self, grace_seconds: float) -> int:
        """Wait, at most `grace_seconds`, for database transactions still running; returns
        how many still are."""
        return await self.db.settle(grace_seconds)

    async def _review(self, item: _Item, book: _Book) -> ReviewOutcome:
        assert self.reviewer is not None
        try:
            recent = await repo.recent_decisions(
                self.db, item.decision.symbol, exclude_hash=item.hash
            )
        except Exception:
            # Context for the model, not a reason to skip the review.
            log.warning("recent decisions of %s unavailable for the review", item.hash)
            recent = []
        request = build_review_request(
            item.decision,
            account=book.account,
            positions=list(book.positions.values()),
            market=item.signal.model_dump(mode="json"),
            recent_decisions=recent,
            bounds=self.bounds,
            trading_mode=self.gate.trading_mode,
            prompt_version=self.prompt_version,
        )
        async with self._review_slots:
            self.metrics.reviews_in_flight.inc()
            self._reviewing += 1
            try:
                outcome = await self.reviewer.review(item.decision, request)
            finally:
                self._reviewing -= 1
                self.metrics.reviews_in_flight.dec()
                self.last_progress = time.monotonic()
        self._observe(outcome)
        return outcome

    async def _submit(
        self, item: _Item, decision: TradeDecision, book: _Book, result: CycleResult
    ) -> None:
        await self._send(item, OrderRequest.for_decision(decision, item.hash), book, result)

    async def _send(
        self,
        item: _Item,
        order: OrderRequest,
        book: _Book,
        result: CycleResult,
        *,
        resend: bool = False,
    ) -> None:
        # Written before it leaves: from here on the order may be live, and whatever happens
        # to this process, the next run finishes exactly this order (see `_adopt_placed_order`).
        pending = {**order.to_json(), "sent_at": utcnow().isoformat()}
        try:
            await self._pending((item.decision_id, pending))
        except Exception:
            self._release(book, item.hash)
            if resend:
                # The first attempt may still be live: keep the decision `planned` (its
                # pending order is on disk already) and try again next cycle.
                log.exception("pending order %s not rewritten: re-send postponed", item.hash)
                return
            log.exception("pending order %s not written: order not sent", item.hash)
            await self._reject(item, "order_write_failed", result)
            return
        try:
            placed: BrokerOrder | None = await self._orders(order)
        except BrokerError as exc:
            if exc.rejected:
                logs.order_rejected_by_broker(order, str(exc), broker=self.broker.name)
                self._release(book, item.hash)
                await self._reject(item, f"broker_rejected:{exc}"[:500], result)
                return
            placed = await self._after_unknown_outcome(item, book, exc, result)
        except Exception as exc:  # a bug or an unmapped error: the order may still be live
            log.exception("submitting %s failed", item.hash)
            placed = await self._after_unknown_outcome(item, book, exc, result)
        if placed is None:
            return
        item.placed = True
        try:
            await self._executions((item.decision_id, order, placed))
        except Exception:
            # The order is live: never mark it rejected. Leaving the decision `planned` keeps
            # the batch's signals unconsumed, and the next cycle adopts the order.
            log.exception("order %s placed but not recorded; next cycle adopts it", item.hash)
            return
        item.final = True
        if placed.status in ("rejected", "broker_rejected"):
            logs.order_rejected_by_broker(
                order, placed.reject_reason or placed.status, broker=self.broker.name
            )
            self._count_rejection(result, "broker_rejected")
            return
        book.last_trade_at[order.symbol] = RecentTrade(item.decision.event_ts, item.hash)
        result.submitted += 1
        self.metrics.orders.labels(broker=self.broker.name).inc()
        self.metrics.decisions.labels(status="submitted").inc()
        logs.order_submitted(order, placed, broker=self.broker.name)

    async def _after_unknown_outcome(
        self, item: _Item, book: _Book, exc: Exception, result: CycleResult
    ) -> BrokerOrder | None:
        """The broker did not say yes or no (timeout, 5xx, lost answer): ask it by client
        order id. Found: adopt it. Not found, or the broker cannot be asked: the decision stays
        `planned` with its pending order, never rejected on one "not found" (a request that
        timed out may still arrive); the next cycle asks again and re-sends that very order
        if the broker still has none."""
        try:
            placed = await self.broker.get_order(item.hash)
        except Exception:
            log.warning("order %s: outcome unknown and the broker cannot be asked", item.hash)
            return None
        if placed is None:
            log.warning("order %s: outcome unknown (%s); asked again next cycle", item.hash,
                        str(exc)[:200])
        return placed

    async def _adopt_placed_order(self, item: _Item, book: _Book, result: CycleResult) -> bool:
        """An earlier run may have sent this order and died before recording it: ask the broker
        first, so the order is recorded (not re-reviewed, not orphaned, never sent twice).
        If the broker has none but an order was handed to it, that exact order is sent again
        (same client order id: should the first still arrive, the broker refuses it as a
        duplicate and it is adopted). True when the decision needs nothing more this cycle."""
        try:
            placed = await self.broker.get_order(item.hash)
        except Exception:
            log.warning("order %s: the broker cannot be asked; retrying next cycle", item.hash)
            return True  # still `planned`: the batch is read again, nothing is lost
        if placed is None:
            if item.pending_unreadable:
                return True  # stays `planned`: see `_decide`
            if item.pending_order is None:
                return False  # never handed to the broker: decided afresh
            sent_at = item.pending_sent_at
            if sent_at is not None and utcnow() - sent_at > self.resend_window:
                # The broker still does not know an order last sent this long ago (and none of
                # our requests for it is on its way, or it would have said so): it was never
                # placed. Rejected rather than sent again at a price decided long ago.
                self._release(book, item.hash)
                await self._reject(item, "broker_no_answer", result)
                return True
            if self._sending_stopped():
                # Kill switch, trading off, live not enabled: no order leaves, not even this
                # one. It stays pending: adopted if the first one arrives, re-sent once the
                # operator allows orders again.
                log.warning("order %s not re-sent: orders are stopped", item.hash)
                return True
            log.warning("re-sending order %s, whose outcome was never learned", item.hash)
            order = item.pending_order
            book.reserve(item.hash, OpenOrder(
                symbol=order.symbol, side=order.side, qty=order.qty,
                price=order.limit_price or order.reference_price, client_order_id=item.hash,
            ))
            await self._send(item, order, book, result, resend=True)
            return True
        log.warning("adopting order %s left by an earlier run", item.hash)
        item.placed = True
        # What was sent, if it was recorded (an adjusted order differs from the decision).
        order = item.pending_order or OrderRequest.for_decision(item.decision, item.hash)
        try:
            await self._executions((item.decision_id, order, placed))
        except Exception:
            log.exception("order %s adopted but not recorded; next cycle tries again", item.hash)
            return True  # still `planned`: the batch is read again, the order adopted again
        item.final = True
        result.submitted += 1
        return True

    async def _reject(self, item: _Item, reason: str, result: CycleResult) -> None:
        await self._rejections((item.decision_id, reason))
        item.final = True
        self._count_rejection(result, reason)

    # ------------------------------------------------------------------- group-commit flushes
    async def _record_executions(self, executions: list[repo.Execution]) -> list[None]:
        await repo.record_executions(self.db, executions, broker=self.broker.name)
        return [None] * len(executions)

    async def _record_pending(self, orders: list[tuple[Any, dict[str, Any]]]) -> list[None]:
        await repo.record_pending_orders(self.db, orders)
        return [None] * len(orders)

    async def _record_rejections(self, rejections: list[tuple[Any, str]]) -> list[None]:
        await repo.reject_decisions(self.db, rejections)
        return [None] * len(rejections)

    def _sending_stopped(self) -> bool:
        limits = self.limits
        live_blocked = limits.trading_mode is TradingMode.LIVE and not limits.live_enabled
        return limits.kill_switch or not limits.trading_enabled or live_blocked

    # ---------------------------------------------------------------------- risk and books
    def _check_and_reserve(self, decision: TradeDecision, key: str, book: _Book) -> RiskResult:
        """Check and reserve with no await in between, so that decisions of one batch running
        side by side count each other's orders (buying power, position size, cooldown)."""
        reserved_buys = book.reserved_buys(excluding=key)
        account = Account(
            cash=book.account.cash - reserved_buys,
            equity=book.account.equity,
            buying_power=book.account.buying_power - reserved_buys,
        )
        ctx = RiskContext(
            account=account,
            now=decision.event_ts,
            positions=book.positions,
            open_orders=book.orders_in(decision.symbol, excluding=key),
            strategy_enabled=True,
            last_trade_at=book.last_trade_at,
        )
        result = evaluate_risk(decision, self.limits, ctx)
        if result.approved:
            book.reserve(key, OpenOrder(
                symbol=decision.symbol,
                side=decision.action,
                qty=decision.qty,
                price=decision.limit_price or decision.reference_price,
                client_order_id=key,
            ))
        return result

    def _release(self, book: _Book, key: str) -> None:
        book.release(key)

    # ------------------------------------------------------------------------- bookkeeping
    def _review_row(
        self, item: _Item, outcome: ReviewOutcome, action: EffectiveAction, *, shadow: bool
    ) -> dict[str, Any]:
        usage = outcome.usage
        return {
            "trade_decision_id": item.decision_id,
            "provider": outcome.provider,
            "model": outcome.model,
            "prompt_version": outcome.prompt_version,
            "prompt_hash": outcome.prompt_hash,
            "input_json": outcome.request_json,
            "response_json": outcome.response_json,
            "llm_verdict": outcome.llm_verdict.value if outcome.llm_verdict else None,
            "verdict": outcome.verdict.value,
            "reason": outcome.reason,
            "confidence": outcome.confidence,
            "adjusted_qty": outcome.adjusted_qty,
            "adjusted_order_type": (
                outcome.adjusted_order_type.value if outcome.adjusted_order_type else None
            ),
            "rationale": outcome.rationale,
            "risk_flags": list(outcome.risk_flags),
            "tokens_prompt": usage.prompt_tokens if usage else None,
            "tokens_completion": usage.completion_tokens if usage else None,
            "latency_ms": outcome.latency_ms,
            "ttft_ms": outcome.ttft_ms,
            "shadow": shadow,
            "fail_mode": self.gate.fail_mode.value,
            "trading_mode": self.gate.trading_mode.value,
            "effective_action": action.value,
            "error_code": outcome.error_code,
            "error_message": outcome.error_message,
            "notional": item.decision.notional,
        }

    def _observe(self, outcome: ReviewOutcome) -> None:
        m = self.metrics
        m.reviews.labels(verdict=outcome.verdict.value).inc()
        if outcome.error_code:
            m.review_errors.labels(code=outcome.error_code).inc()
        if outcome.error_code != "circuit_open":  # nothing was sent: no latency to observe
            m.review_latency.observe(outcome.latency_ms / 1000)
        if outcome.ttft_ms is not None:
            m.review_ttft.observe(outcome.ttft_ms / 1000)
        if outcome.usage:
            m.tokens.labels(kind="prompt").inc(outcome.usage.prompt_tokens or 0)
            m.tokens.labels(kind="completion").inc(outcome.usage.completion_tokens or 0)

    def _count_review(self, outcome: ReviewOutcome, result: CycleResult) -> None:
        result.reviews[outcome.verdict.value] += 1

    def _count_rejection(self, result: CycleResult, reason: str) -> None:
        result.rejected[reason] += 1
        self.metrics.decisions.labels(status="rejected").inc()
        self.metrics.rejections.labels(reason=reason.split(":", 1)[0]).inc()
