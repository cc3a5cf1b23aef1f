"""One trading cycle, top to bottom: signals, strategy, risk, review, gate, audit, execute.

Read `run_cycle` first; every step below it is a small method. The batch is first judged in
signal order, with no await between decisions (`_judge`: prices through the band, each
decision sized and checked at its own point by `judge.judge` against the `ledger.BatchLedger`,
approved ones reserved at once), so results do not depend on the batch size. Then decisions
run concurrently (bounded): review, audit row, order; without a review, a batch's new
decisions are sent together instead (`_send_together`). Orders of one symbol reach the broker
in signal order. A decision left `planned` by an earlier run follows `orders.recovery_step`. One
failing decision never stops the batch; the signal cursor (and the band's references, and the
simulated broker's marks) move past a batch only when every decision in it is final.
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
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torghut import logs
from torghut.domain import (
    Account,
    Book,
    BrokerOrder,
    EffectiveAction,
    FailMode,
    OrderRequest,
    Position,
    Signal,
    TradeDecision,
    TradingMode,
    utcnow,
)
from torghut.errors import BrokerError
from torghut.metrics import Metrics
from torghut.ports import AuditStore, Broker, Execution, SignalSource
from torghut.trading.audit_rows import review_row
from torghut.trading.gate import GateDecision, apply_gate
from torghut.trading.group_commit import GroupCommit
from torghut.trading.halt import HALTED_REASON, TradingHalt
from torghut.trading.judge import JudgingSettings, exit_sized, judge, strategy_limits
from torghut.trading.ledger import BatchLedger, Reservation
from torghut.trading.llm.context import ReviewFacts
from torghut.trading.llm.review_engine import ReviewEngine, ReviewOutcome
from torghut.trading.llm.schema import PolicyBounds
from torghut.trading.orders import (
    BROKER_NO_ANSWER,
    OrderState,
    PendingOrder,
    RecoveryStep,
    recovery_step,
)
from torghut.trading.risk import RiskLimits
from torghut.trading.strategy import Firing, StrategyDefaults, StrategySpec, fire

if TYPE_CHECKING:
    from torghut.db.engine import Database

log = logging.getLogger("torghut.pipeline")

_SHADOW_WRITE_ATTEMPTS = 4
_DECISIONS_IN_FLIGHT = 256
# Decisions sent together without a review (`_send_together`): no read of theirs queues on the
# pool, so a whole default batch (500) goes in one round, one transaction per step; the bound
# keeps one broker call (Alpaca: one request each, side by side) to a sane size.
_SENT_TOGETHER = 1000
_SETTLE_SECONDS = 30.0


class StrategySource(Protocol):
    async def load_all(self) -> list[StrategySpec]:
        """Every strategy to evaluate, disabled ones included (their decisions are rejected
        `strategy_disabled`)."""
        ...


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


@dataclass(frozen=True, slots=True)
class TradingRules:
    """What decides and sizes orders: the risk limits, the strategies' default sizing, the
    checks of CONTRACT §8, and how long an order whose answer was lost may be sent again."""

    limits: RiskLimits
    sizing: StrategyDefaults
    judging: JudgingSettings = field(default_factory=JudgingSettings)
    resend_window_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ReviewSetup:
    """The review gate: its settings, its engine (None: no gate), the policy bounds and the
    prompt version a request carries, and how many reviews may run at once."""

    gate: GateSettings
    engine: ReviewEngine | None
    bounds: PolicyBounds
    prompt_version: str
    max_concurrency: int


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
class _Item:
    decision: TradeDecision
    signal: Signal
    hash: str
    decision_id: Any
    strategy: StrategySpec | None
    resumed: bool = False  # left `planned` by an earlier run that stopped mid-batch
    rejection: str | None = None  # judged rejected before any order or review
    reservation: Reservation | None = None
    # The book as the decision saw it, for its review (point in time).
    account: Account | None = None
    positions: list[Position] = field(default_factory=list)
    open_orders: list[BrokerOrder] = field(default_factory=list)
    pending: PendingOrder = field(default_factory=lambda: PendingOrder(OrderState.NEVER_SENT))
    final: bool = False
    placed: bool = False  # the broker holds its order: never to be marked rejected
    # Orders of one symbol reach the broker in signal order (a sell after the buy it closes):
    # `turn` is set once this item's order is queued or it will send none; the next item of
    # its symbol waits for it (`after`).
    turn: asyncio.Event = field(default_factory=asyncio.Event)
    after: asyncio.Event | None = None


class TradingPipeline:
    def __init__(
        self,
        *,
        db: Database,
        store: AuditStore,
        source: SignalSource,
        strategies: StrategySource,
        broker: Broker,
        rules: TradingRules,
        review: ReviewSetup,
        metrics: Metrics,
        batch_size: int,
        halt: TradingHalt | None = None,
    ) -> None:
        self.db = db  # handed on to reconciliation; the cycle itself writes through `store`
        self.store = store
        self.halt = halt
        self.source = source
        self.strategies = strategies
        self.broker = broker
        # A runtime-checkable Protocol's isinstance walks its members: asked once, not twice
        # a cycle.
        self._marks_prices = isinstance(broker, MarksPrices)
        self.limits = rules.limits
        self.sizing = rules.sizing
        self.judging = rules.judging
        self.resend_window = timedelta(seconds=rules.resend_window_seconds)
        self.gate = review.gate
        self.reviewer = review.engine
        self.bounds = review.bounds
        self.prompt_version = review.prompt_version
        self.metrics = metrics
        # Counted on every order: the labelled series looked up once.
        self._orders_sent = metrics.orders.labels(broker=broker.name)
        self._decisions_submitted = metrics.decisions.labels(status="submitted")
        self.batch_size = batch_size
        max_concurrency = review.max_concurrency
        # Reviews are bounded by `_review_slots`. The work slots bound decisions in flight:
        # their own reads queue on the connection pool and must not outwait its timeout. They
        # are wide, so that a batch's orders and rows go to the broker and the database in a
        # few group commits rather than one transaction per decision.
        self._work_slots = max(4 * max_concurrency, _DECISIONS_IN_FLIGHT)
        self._review_slots = asyncio.Semaphore(max_concurrency)
        self._pending: GroupCommit[tuple[Any, dict[str, Any]], None] = GroupCommit(
            self._record_pending
        )
        self._orders: GroupCommit[OrderRequest, BrokerOrder] = GroupCommit(
            self.broker.submit_orders
        )
        self._executions: GroupCommit[Execution, None] = GroupCommit(self._record_executions)
        self._rejections: GroupCommit[tuple[Any, str], None] = GroupCommit(self._record_rejections)
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
        if self.halt is not None and (await self.halt.refresh()).halted:
            return result  # halted: no signal is read (CONTRACT §8)
        signals = await self.source.fetch(self.batch_size)
        if not signals:
            return result
        result.signals = len(signals)
        if self.reviewer is not None:
            self.reviewer.observe(signals)  # the reviewer's bar history
        self.metrics.signals_read(s.event_ts for s in signals)
        strategies = await self.strategies.load_all()
        # Whether a rule fires does not depend on the book (only the size does), nor does a
        # decision's hash: a batch where nothing fires needs neither the book nor the store.
        fired: dict[int, list[tuple[Firing, str]]] = {}  # signal's place -> rules that fired
        for at, signal in enumerate(signals):
            for spec in strategies:
                firing = fire(spec, signal, self.sizing)
                if firing is not None:
                    fired.setdefault(at, []).append((firing, firing.hash))
        calendar = self.judging.calendar
        if fired and not calendar.loaded():
            # Its first use imports pandas and builds the calendar: not on the event loop.
            await asyncio.to_thread(calendar.load)
        ledger = await self._open_ledger(signals, with_book=bool(fired))
        items = await self._judge(signals, strategies, ledger, fired, result)
        try:
            await self._run_bounded([item for item in items if not item.final], ledger, result)
        except asyncio.CancelledError:
            # A cancelled cycle (shutdown past its grace) sends nothing more: its queued and
            # in-flight group writes are cancelled with it, before the scheduler lets another
            # leader in. Unfinished decisions stay `planned`; the next run asks the broker.
            await self.quiesce()
            raise
        if all(item.final for item in items):
            await self._close_batch(ledger)
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
        writes = await self.store.settle(max(0.0, deadline - loop.time()))
        if writes:
            log.error("%d database transactions still running after %gs", writes, grace_seconds)
        return requests + writes

    @property
    def reviews_in_flight(self) -> int:
        """Reviews waiting for the gateway now, shadow or enforcing."""
        return self._reviewing

    # ------------------------------------------------------------------------------- steps
    def _now(self, signal: Signal) -> datetime:
        clock = self.judging.clock
        return signal.event_ts if clock is None else clock()

    async def _open_ledger(self, signals: Sequence[Signal], *, with_book: bool) -> BatchLedger:
        """The ledger at the start of the batch. Without a decision to judge, only the price
        references matter (the band still follows every price)."""
        symbols = sorted({s.symbol for s in signals})
        references = await self.store.price_references(symbols)
        if with_book:
            book = await self.broker.get_book()
            # Only the cooldown reads when a symbol last traded, and the read grows with the
            # decisions stored: without a cooldown it is not made.
            last_trades = (
                await self.store.last_trades_by_symbol(symbols)
                if self.limits.cooldown_seconds > 0
                else {}
            )
        else:
            book, last_trades = Book(Account(Decimal(0), Decimal(0), Decimal(0)), [], []), {}
        return BatchLedger.open(
            book,
            limits=self.limits,
            max_price_move=self.judging.max_price_move,
            fills_at_once=self._marks_prices,
            references=references,
            last_trade_at=last_trades,
        )

    async def _judge(
        self,
        signals: Sequence[Signal],
        strategies: Sequence[StrategySpec],
        ledger: BatchLedger,
        fired: Mapping[int, list[tuple[Firing, str]]],
        result: CycleResult,
    ) -> list[_Item]:
        """Walk the batch in signal order: each signal marks its price (if the band accepts
        it), then each of its decisions is sized and judged against the book at that moment
        and, when approved, reserved in the ledger before the next one is judged. `fired`:
        the signals whose rules fire, in strategy order, with their decisions' hashes (their
        stored rows, if any, are one read for the batch)."""
        by_name = {spec.name: spec for spec in strategies}
        stored = await self.store.existing_decisions(
            [h for firings in fired.values() for _, h in firings]
        )
        items: list[_Item] = []
        seen: set[str] = set()
        for at, signal in enumerate(signals):
            price, accepted = signal.price, True
            # A price that is no price (absent, zero, negative, not finite) is not banded: the
            # strategy gives its decision no price, and risk says `missing_price`.
            if price is not None and price.is_finite() and price > 0:
                accepted = ledger.mark(signal.symbol, price)
            if at not in fired:
                continue
            # Firing does not depend on the book: the rules that fired in `run_cycle` are
            # sized here, at this point of the batch.
            for firing, h in fired[at]:
                spec = firing.strategy
                decision = firing.decide(ledger.equity)
                row = stored.get(h)
                if h in seen or (row is not None and row.status != "planned"):
                    # Already decided: a replay, or another loop got there first (not this
                    # process in an earlier, unfinished read of the same batch: counted then).
                    if h not in self._carried:
                        result.duplicates += 1
                    continue
                seen.add(h)
                item = _Item(
                    decision, signal, h, row.id if row else None, spec, resumed=row is not None
                )
                if row is not None:
                    if row.decision_json is not None:
                        # Finish the decision as it was first made, not as re-sized today.
                        item.decision = TradeDecision.model_validate(row.decision_json)
                    item.strategy = by_name.get(item.decision.strategy_id)
                    item.pending = PendingOrder.from_row(row.pending_order_json)
                    if item.pending.state is OrderState.UNREADABLE:
                        log.error(
                            "decision %s: its pending order cannot be read; it is "
                            "neither re-sent nor rejected until an operator looks",
                            h,
                        )
                    if item.pending.state is not OrderState.NEVER_SENT:
                        items.append(item)  # recovered as it was sent, not judged again
                        continue
                else:
                    item.decision = exit_sized(decision, spec, ledger, self.limits)
                judgment = judge(
                    item.decision,
                    h,
                    now=self._now(signal),
                    price_accepted=accepted,
                    spec=item.strategy,
                    ledger=ledger,
                    limits=self.limits,
                    settings=self.judging,
                    with_view=self.reviewer is not None and self.gate.enabled,
                )
                item.rejection, item.reservation = judgment.reason, judgment.reservation
                item.account, item.positions = judgment.account, list(judgment.positions)
                # Orders of its symbol still open at its signal time (a live broker's, and the
                # batch's earlier ones), for its review.
                item.open_orders = [
                    BrokerOrder(
                        broker_order_id="",
                        client_order_id=order.client_order_id or "",
                        symbol=order.symbol,
                        status="open",
                        side=order.side,
                        qty=order.qty,
                        limit_price=order.price,
                    )
                    for order in ledger.open_orders.get(item.decision.symbol, ())
                    if order.client_order_id != h
                ]
                items.append(item)
        items = await self._store_new(items, result)
        self._chain_by_symbol(items)
        return items

    async def _store_new(self, items: list[_Item], result: CycleResult) -> list[_Item]:
        """Insert the batch's new decisions, each `planned` or already `rejected` with its
        reason (one statement for the row and its rejection). Returns the items to finish:
        a decision another loop stored meanwhile is theirs."""
        new = [item for item in items if item.decision_id is None]
        theirs: set[str] = set()
        stored = await self.store.insert_judged_decisions(
            [(i.decision, i.hash, i.rejection) for i in new]
        )
        for item in new:
            row = stored[item.hash]
            item.decision_id = row.id
            if not row.created:
                # Another loop stored it meanwhile: it is theirs to finish.
                result.duplicates += 1
                self._give_back(item)
                theirs.add(item.hash)
            elif item.rejection is not None:
                item.final = True
                self._count_rejection(result, item.rejection)
        return [item for item in items if item.hash not in theirs]

    @staticmethod
    def _chain_by_symbol(items: list[_Item]) -> None:
        last: dict[str, asyncio.Event] = {}
        for item in items:
            if item.final:
                continue
            item.after = last.get(item.decision.symbol)
            last[item.decision.symbol] = item.turn

    async def _close_batch(self, ledger: BatchLedger) -> None:
        """Once every decision of the batch is final: the simulated broker learns the prices
        the band accepted (the last of each symbol), and the symbols' references are stored,
        both before the cursor moves past the batch."""
        if self._marks_prices and ledger.marked:
            await self.broker.mark_prices(ledger.marked)  # type: ignore[attr-defined]
        await self.store.save_price_references(
            {s: ledger.references[s] for s in sorted(ledger.changed_references)}
        )

    def _give_back(self, item: _Item) -> None:
        if item.reservation is not None:
            item.reservation.ledger.release(item.reservation)

    async def _run_bounded(
        self, items: Sequence[_Item], ledger: BatchLedger, result: CycleResult
    ) -> None:
        """Every item through `_guarded`, at most `_work_slots` at once, started in order: a
        fixed set of workers, each taking the next item when it is done with one. (As a
        semaphore did, without one task per item waiting on it: asyncio's semaphore wakes its
        next waiter by walking all of them, quadratic in a batch's size.) Without a review,
        a batch of new decisions takes `_send_together` instead, in rounds of
        `_SENT_TOGETHER`."""
        if (self.reviewer is None or not self.gate.enabled) and all(
            not item.resumed and item.rejection is None and item.reservation is not None
            for item in items
        ):
            for start in range(0, len(items), _SENT_TOGETHER):
                await self._send_together(items[start : start + _SENT_TOGETHER], result)
            return
        queue = iter(items)

        async def worker() -> None:
            for item in queue:
                await self._guarded(item, ledger, result)

        await asyncio.gather(*(worker() for _ in range(min(self._work_slots, len(items)))))

    async def _send_together(self, items: Sequence[_Item], result: CycleResult) -> None:
        """What `_guarded` does to each of these new, approved decisions when there is no review
        (the halt, the order written ahead, sent in signal order, the broker's answer recorded),
        done for all of them at once: one write of their pending orders, one call to the broker,
        one write of the answers, one of the rejections, as the group commits would batch them,
        without a task, a future and an event per decision. Same outcomes, decision for
        decision; a bug rejects them all if it struck before their orders left, none after."""
        rejections: list[tuple[_Item, str]] = []
        sent: list[bool] = []  # set once the orders left: any of them may be live from then on
        try:
            await self._send_all(items, result, rejections, sent)
        except asyncio.CancelledError:
            raise  # a cancelled cycle writes nothing more (see `run_cycle`)
        except Exception as exc:
            log.exception("a batch of %d decisions failed", len(items))
            if not sent:  # nothing went out: each is rejected, with the bug's name
                reason = f"internal_error:{type(exc).__name__}"
                rejections[:] = [(item, reason) for item in items]
            # Else the unfinished stay `planned`: the next cycle asks the broker about each.
        finally:
            # As leaving `with item.reservation` does: what did not go out is given back.
            for item in items:
                if item.reservation is not None and not item.reservation.kept:
                    self._give_back(item)
            self.last_progress = time.monotonic()
        await self._reject_together(rejections, result)

    async def _send_all(
        self,
        items: Sequence[_Item],
        result: CycleResult,
        rejections: list[tuple[_Item, str]],
        sent: list[bool],
    ) -> None:
        """`_send_together`'s steps; the decisions to reject go to `rejections`."""
        if self._halted():
            rejections.extend((item, HALTED_REASON) for item in items)
            return
        orders = [OrderRequest.for_decision(item.decision, item.hash) for item in items]
        try:
            await self.store.record_pending_orders(
                [(i.decision_id, self._pending_json(o)) for i, o in zip(items, orders, strict=True)]
            )
        except Exception:
            log.exception("pending orders of %d decisions not written: not sent", len(items))
            rejections.extend((item, "order_write_failed") for item in items)
            return
        sent.append(True)
        outcomes = await self._placed_together(orders)
        # Orders whose outcome is unknown are asked about side by side, as the decisions would
        # each ask alone: one at a time, a broker that is down would hold the loop for each
        # lookup's deadline in turn.
        unknown = [
            (at, item, outcome)
            for at, (item, outcome) in enumerate(zip(items, outcomes, strict=True))
            if isinstance(outcome, Exception)
            and not (isinstance(outcome, BrokerError) and outcome.rejected)
        ]
        found = await asyncio.gather(
            *(self._after_unknown_outcome(item, exc) for _, item, exc in unknown)
        )
        learned = {at: placed for (at, _, _), placed in zip(unknown, found, strict=True)}
        answered: list[tuple[_Item, OrderRequest, BrokerOrder]] = []
        for at, (item, order, outcome) in enumerate(zip(items, orders, outcomes, strict=True)):
            if isinstance(outcome, BrokerError) and outcome.rejected:
                logs.order_rejected_by_broker(order, str(outcome), broker=self.broker.name)
                rejections.append((item, f"broker_rejected:{outcome}"[:500]))
                continue
            placed = learned[at] if isinstance(outcome, Exception) else outcome
            if placed is None:
                self._keep(item)  # outcome unknown: it may be live, so it keeps its slot
                continue
            self._placed(item, placed)
            answered.append((item, order, placed))
        if not answered:
            return
        try:
            await self.store.record_executions(
                [(item.decision_id, order, placed) for item, order, placed in answered],
                broker=self.broker.name,
            )
        except Exception:
            # Live orders: never marked rejected; the next cycle adopts them.
            log.exception(
                "%d orders placed but not recorded; next cycle adopts them", len(answered)
            )
            return
        for item, order, placed in answered:
            self._recorded(item, order, placed, result)

    async def _placed_together(
        self, orders: Sequence[OrderRequest]
    ) -> Sequence[BrokerOrder | Exception]:
        """The broker's answer to each order, or the exception that stands for it (the whole
        call failing: every order's outcome is unknown)."""
        try:
            outcomes = await self.broker.submit_orders(orders)
        except BrokerError as exc:
            return [exc] * len(orders)
        except Exception as exc:  # a bug or an unmapped error: the orders may still be live
            log.exception("submitting %d orders failed", len(orders))
            return [exc] * len(orders)
        if len(outcomes) != len(orders):
            error = RuntimeError(f"broker answered {len(outcomes)} of {len(orders)} orders")
            return [error] * len(orders)
        return outcomes

    async def _reject_together(
        self, rejections: list[tuple[_Item, str]], result: CycleResult
    ) -> None:
        """Mark these rejected, with their reasons. A failed write is tried once more with
        `internal_error`, as `_guarded` does for one decision; a second failure leaves them
        `planned`, and the batch is read again."""
        if not rejections:
            return
        try:
            await self.store.reject_decisions([(item.decision_id, why) for item, why in rejections])
        except Exception as exc:
            log.exception("rejecting %d decisions failed", len(rejections))
            reason = f"internal_error:{type(exc).__name__}"
            rejections = [(item, reason) for item, _ in rejections]
            try:
                await self.store.reject_decisions([(i.decision_id, reason) for i, _ in rejections])
            except Exception:
                log.exception("could not mark %d decisions rejected", len(rejections))
                return
        for item, why in rejections:
            item.final = True
            self._count_rejection(result, why)

    async def _guarded(self, item: _Item, ledger: BatchLedger, result: CycleResult) -> None:
        """One decision, whatever happens: a bug here rejects this decision only."""
        try:
            await self._process(item, ledger, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("decision %s failed", item.hash)
            if item.placed:
                # The broker has its order: leave the decision `planned` for the next cycle
                # to adopt, never rejected with a live order.
                return
            self._give_back(item)
            reason = f"internal_error:{type(exc).__name__}"
            try:
                await self.store.reject_decisions([(item.decision_id, reason)])
                item.final = True
                self._count_rejection(result, reason)
            except Exception:
                log.exception("could not mark decision %s rejected", item.hash)
        finally:
            item.turn.set()
            self.last_progress = time.monotonic()

    async def _process(self, item: _Item, ledger: BatchLedger, result: CycleResult) -> None:
        if item.resumed and await self._recover(item, ledger, result):
            return
        if self._halted():  # halted since the batch was judged: first reason (CONTRACT §8)
            if item.reservation is not None:
                with item.reservation:  # given back: no order goes out
                    await self._reject(item, HALTED_REASON, result)
            else:
                await self._reject(item, HALTED_REASON, result)
            return
        if item.rejection is not None:
            await self._reject(item, item.rejection, result)
            return
        assert item.reservation is not None
        # Given back on the way out unless its order went out (`keep`).
        with item.reservation:
            if self.reviewer is None or not self.gate.enabled:
                await self._submit(item, item.decision, result)
                return
            if self.gate.shadow:
                # Shadow never delays the order: submit now, review beside it.
                await self._submit(item, item.decision, result)
                task = asyncio.create_task(self._shadow_review(item))
                self._shadow_tasks.add(task)
                task.add_done_callback(self._shadow_tasks.discard)
                return
            await self._enforced_review(item, ledger, result)

    async def _enforced_review(self, item: _Item, ledger: BatchLedger, result: CycleResult) -> None:
        assert item.reservation is not None
        outcome = await self._review(item)
        gate = self._enforced_gate(outcome)
        action = gate.effective_action
        reason = gate.rejection_reason
        to_submit: TradeDecision | None = item.decision
        if action is EffectiveAction.SUBMITTED_ADJUSTED:
            to_submit = outcome.adjusted_decision or item.decision
            # The adjusted order is checked again, the strategy's own limits included.
            checked = ledger.replace(
                item.reservation,
                to_submit,
                strategy_enabled=item.strategy is not None and item.strategy.enabled,
                strategy_limits=strategy_limits(item.strategy),
            )
            if not checked.approved:
                action, reason, to_submit = EffectiveAction.REJECTED, checked.reason, None
        elif action is EffectiveAction.REJECTED:
            to_submit = None
        if to_submit is not None and self._halted():  # halted while the review ran
            action, reason, to_submit = EffectiveAction.REJECTED, HALTED_REASON, None
        order = None if to_submit is None else OrderRequest.for_decision(to_submit, item.hash)
        # No order leaves before its audit row is written; a failed write means no order.
        # The order is written ahead in the same transaction: a crash after the review leaves
        # an order to send, never a decision to review a second time.
        try:
            await self.store.record_review(
                self._review_row(item, outcome, action, shadow=False),
                reject=(item.decision_id, reason or "llm_veto") if order is None else None,
                pending=None if order is None else (item.decision_id, self._pending_json(order)),
            )
        except Exception:
            log.exception("audit write failed for %s: order not sent", item.hash)
            self.metrics.audit_write_failures.inc()
            await self._reject(item, "audit_write_failed", result)
            return
        self._count_review(outcome, result)
        if order is None:
            item.final = True
            self._count_rejection(result, reason or "llm_veto")
            logs.review_vetoed(
                item.decision, item.hash, reason or "llm_veto", outcome.verdict, outcome.rationale
            )
            return
        await self._send(item, order, result, written=True)

    def _enforced_gate(self, outcome: ReviewOutcome) -> GateDecision:
        return apply_gate(
            outcome.verdict,
            shadow=False,
            fail_mode=self.gate.fail_mode,
            reason=outcome.reason,
            error_code=outcome.error_code,
        )

    async def _shadow_review(self, item: _Item) -> None:
        try:
            outcome = await self._review(item)
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
                await self.store.record_review(row)
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
        return await self.store.settle(grace_seconds)

    async def _review(self, item: _Item) -> ReviewOutcome:
        assert self.reviewer is not None
        # The engine builds the point-in-time request (trading/llm/context.py) from the book
        # as this decision saw it at its own signal time.
        assert item.account is not None
        facts = ReviewFacts(
            signal=item.signal,
            account=item.account,
            positions=item.positions,
            open_orders=item.open_orders,
        )
        async with self._review_slots:
            self.metrics.reviews_in_flight.inc()
            self._reviewing += 1
            try:
                outcome = await self.reviewer.review_decision(item.decision, facts)
            finally:
                self._reviewing -= 1
                self.metrics.reviews_in_flight.dec()
                self.last_progress = time.monotonic()
        self._observe(outcome)
        return outcome

    async def _submit(self, item: _Item, decision: TradeDecision, result: CycleResult) -> None:
        if self._halted():  # halted while this decision was being reviewed
            await self._reject(item, HALTED_REASON, result)
            return
        await self._send(item, OrderRequest.for_decision(decision, item.hash), result)

    @staticmethod
    def _pending_json(order: OrderRequest) -> dict[str, Any]:
        return {**order.to_json(), "sent_at": utcnow().isoformat()}

    async def _send(
        self,
        item: _Item,
        order: OrderRequest,
        result: CycleResult,
        *,
        resend: bool = False,
        written: bool = False,
    ) -> None:
        """Write the order ahead (unless `written` with its review), send it in its symbol's
        turn, record the broker's answer. The reservation is kept once the broker has it."""
        # Written before it leaves: from here on the order may be live, and whatever happens
        # to this process, the next run finishes exactly this order (see `_recover`).
        if not written:
            try:
                await self._pending((item.decision_id, self._pending_json(order)))
            except Exception:
                if resend:
                    # The first attempt may still be live: keep the decision `planned` (its
                    # pending order is on disk already) and try again next cycle.
                    log.exception("pending order %s not rewritten: re-send postponed", item.hash)
                    return
                log.exception("pending order %s not written: order not sent", item.hash)
                await self._reject(item, "order_write_failed", result)
                return
        if item.after is not None:
            await item.after.wait()
        try:
            item.turn.set()  # the next order of this symbol queues behind this one
            placed: BrokerOrder | None = await self._orders(order)
        except BrokerError as exc:
            if exc.rejected:
                logs.order_rejected_by_broker(order, str(exc), broker=self.broker.name)
                await self._reject(item, f"broker_rejected:{exc}"[:500], result)
                return
            placed = await self._after_unknown_outcome(item, exc)
        except Exception as exc:  # a bug or an unmapped error: the order may still be live
            log.exception("submitting %s failed", item.hash)
            placed = await self._after_unknown_outcome(item, exc)
        if placed is None:
            self._keep(item)  # outcome unknown: it may be live, so it keeps its slot
            return
        self._placed(item, placed)
        try:
            await self._executions((item.decision_id, order, placed))
        except Exception:
            # The order is live: never mark it rejected. Leaving the decision `planned` keeps
            # the batch's signals unconsumed, and the next cycle adopts the order.
            log.exception("order %s placed but not recorded; next cycle adopts it", item.hash)
            return
        self._recorded(item, order, placed, result)

    def _placed(self, item: _Item, placed: BrokerOrder) -> None:
        """The broker answered: it holds the order (never to be marked rejected), and the
        reservation is kept unless the broker refused it."""
        item.placed = True
        if placed.status not in ("rejected", "broker_rejected"):
            self._keep(item)

    def _recorded(
        self, item: _Item, order: OrderRequest, placed: BrokerOrder, result: CycleResult
    ) -> None:
        """The broker's answer is recorded: the decision is final, counted and logged."""
        item.final = True
        if placed.status in ("rejected", "broker_rejected"):
            logs.order_rejected_by_broker(
                order, placed.reject_reason or placed.status, broker=self.broker.name
            )
            self._count_rejection(result, "broker_rejected")
            return
        result.submitted += 1
        self._orders_sent.inc()
        self._decisions_submitted.inc()
        logs.order_submitted(order, placed, broker=self.broker.name)

    @staticmethod
    def _keep(item: _Item) -> None:
        if item.reservation is not None:
            item.reservation.keep()

    async def _after_unknown_outcome(self, item: _Item, exc: Exception) -> BrokerOrder | None:
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
            log.warning(
                "order %s: outcome unknown (%s); asked again next cycle", item.hash, str(exc)[:200]
            )
        return placed

    async def _recover(self, item: _Item, ledger: BatchLedger, result: CycleResult) -> bool:
        """A decision left `planned` by an earlier run: the broker is asked first, so that an
        order it has is recorded (not re-reviewed, not orphaned, never sent twice); the rest
        follows `orders.recovery_step`. True when the decision needs nothing more this cycle
        (False: never sent, judged afresh)."""
        try:
            placed = await self.broker.get_order(item.hash)
            has_it: bool | None = placed is not None
        except Exception:
            log.warning("order %s: the broker cannot be asked; retrying next cycle", item.hash)
            placed, has_it = None, None
        step = recovery_step(
            item.pending,
            broker_has_it=has_it,
            now=utcnow(),
            resend_window=self.resend_window,
            sending_stopped=self._sending_stopped(),
        )
        if step is RecoveryStep.DECIDE:
            return False
        # Whatever the step, the pass's fresh judgment of this decision does not apply.
        self._give_back(item)
        if step is RecoveryStep.WAIT:
            if item.pending.state is OrderState.SENT and has_it is False:
                log.warning("order %s not re-sent: orders are stopped", item.hash)
            return True  # still `planned`: the batch is read again, nothing is lost
        if step is RecoveryStep.GIVE_UP:
            await self._reject(item, BROKER_NO_ANSWER, result)
            return True
        if step is RecoveryStep.RESEND:
            assert item.pending.order is not None
            log.warning("re-sending order %s, whose outcome was never learned", item.hash)
            order = item.pending.order
            item.reservation = ledger.reserve(
                item.decision.model_copy(update={"qty": order.qty}), item.hash
            )
            with item.reservation:
                await self._send(item, order, result, resend=True)
            return True
        assert placed is not None
        log.warning("adopting order %s left by an earlier run", item.hash)
        item.placed = True
        # What was sent, if it was recorded (an adjusted order differs from the decision).
        order = item.pending.order or OrderRequest.for_decision(item.decision, item.hash)
        try:
            await self._executions((item.decision_id, order, placed))
        except Exception:
            log.exception("order %s adopted but not recorded; next cycle tries again", item.hash)
            return True  # still `planned`: the batch is read again, the order adopted again
        item.final = True
        result.submitted += 1
        return True

    async def _reject(self, item: _Item, reason: str, result: CycleResult) -> None:
        self._give_back(item)
        await self._rejections((item.decision_id, reason))
        item.final = True
        self._count_rejection(result, reason)

    # ------------------------------------------------------------------- group-commit flushes
    async def _record_executions(self, executions: list[Execution]) -> list[None]:
        await self.store.record_executions(executions, broker=self.broker.name)
        return [None] * len(executions)

    async def _record_pending(self, orders: list[tuple[Any, dict[str, Any]]]) -> list[None]:
        await self.store.record_pending_orders(orders)
        return [None] * len(orders)

    async def _record_rejections(self, rejections: list[tuple[Any, str]]) -> list[None]:
        await self.store.reject_decisions(rejections)
        return [None] * len(rejections)

    def _sending_stopped(self) -> bool:
        limits = self.limits
        live_blocked = limits.trading_mode is TradingMode.LIVE and not limits.live_enabled
        return limits.kill_switch or not limits.trading_enabled or live_blocked or self._halted()

    def _halted(self) -> bool:
        return self.halt is not None and self.halt.halted

    # ------------------------------------------------------------------------- bookkeeping
    def _review_row(
        self, item: _Item, outcome: ReviewOutcome, action: EffectiveAction, *, shadow: bool
    ) -> dict[str, Any]:
        return review_row(
            item.decision_id,
            outcome,
            action,
            shadow=shadow,
            fail_mode=self.gate.fail_mode,
            trading_mode=self.gate.trading_mode,
            notional=item.decision.notional,
        )

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
