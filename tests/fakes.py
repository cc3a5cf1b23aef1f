"""Fakes behind the ports, for injecting faults without patching module globals.

`FaultyBroker` wraps a real broker (the simulated one, usually) and misbehaves on cue:
answers lost, refusals, a broker that cannot be asked, a broker that holds its answer until
the test lets it go. `FaultyAuditStore` does the same for the audit store (a full disk, a
database that went away). Pass them to `build_container(wrap_broker=..., wrap_store=...)` or
`run_replay(...)`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from torghut.domain import Account, Book, BrokerOrder, OrderRequest, Position
from torghut.errors import BrokerError
from torghut.ports import AuditStore, Broker, Execution, JudgedDecision, StoredDecision
from torghut.trading.ledger import PriceReference


@dataclass
class FaultyBroker:
    """`submit_faults`: one entry per `submit_orders` call, in order: None (pass through), or
    an exception raised instead of answering (`lost()` after the broker took the orders,
    `refused()` or any other before). `lookup_fails`: `get_order` raises. `hold`: while set
    to an unset event, `submit_orders` waits on it (a cancelled wait is recorded)."""

    inner: Broker
    submit_faults: list[Exception | None] = field(default_factory=list)
    lookup_fails: bool = False
    lookup_faults: list[Exception | None] = field(default_factory=list)
    # Orders of an `arrives_later()` fault, until `deliver_late()` hands them to the broker.
    late: list[OrderRequest] = field(default_factory=list)
    hold: asyncio.Event | None = None
    held: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[list[OrderRequest]] = field(default_factory=list)
    cancelled: int = 0

    @property
    def name(self) -> str:
        return self.inner.name

    async def get_account(self) -> Account:
        return await self.inner.get_account()

    async def get_book(self) -> Book:
        return await self.inner.get_book()

    async def list_positions(self) -> list[Position]:
        return await self.inner.list_positions()

    async def list_open_orders(self) -> list[BrokerOrder]:
        return await self.inner.list_open_orders()

    async def mark_prices(self, prices: Mapping[str, Decimal]) -> Book:
        return await self.inner.mark_prices(prices)  # type: ignore[attr-defined, no-any-return]

    async def submit_order(self, order: OrderRequest) -> BrokerOrder:
        [outcome] = await self.submit_orders([order])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def submit_orders(self, orders: Sequence[OrderRequest]) -> list[BrokerOrder | Exception]:
        self.sent.append(list(orders))
        if self.hold is not None:
            self.held.set()
            try:
                await self.hold.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        fault = self.submit_faults.pop(0) if self.submit_faults else None
        if isinstance(fault, _Lost):
            await self.inner.submit_orders(orders)  # the broker took them; the answer is lost
            raise BrokerError(str(fault), rejected=False)
        if isinstance(fault, _Late):
            self.late.extend(orders)  # still on its way: the broker learns of it later
            raise BrokerError(str(fault), rejected=False)
        if isinstance(fault, _RefuseEach):
            return [BrokerError(str(fault), rejected=True) for _ in orders]
        if fault is not None:
            raise fault
        return await self.inner.submit_orders(orders)

    async def deliver_late(self) -> None:
        """The requests of an `arrives_later()` fault reach the broker now."""
        orders, self.late = self.late, []
        await self.inner.submit_orders(orders)

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        fault = self.lookup_faults.pop(0) if self.lookup_faults else None
        if self.lookup_fails or fault is not None:
            raise fault or BrokerError("broker unreachable", rejected=False)
        return await self.inner.get_order(client_order_id)

    async def settle(self, grace_seconds: float) -> int:
        return await self.inner.settle(grace_seconds)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Lost(Exception):
    pass


class _Late(Exception):
    pass


class _RefuseEach(Exception):
    pass


def arrives_later() -> Exception:
    """The answer is lost and the request itself is still on its way (`deliver_late`)."""
    return _Late("connection reset while the request was still on its way")


def refuse_each(reason: str = "insufficient buying power") -> Exception:
    """Each order of the call refused, in its place (not the whole call failing)."""
    return _RefuseEach(reason)


def lost() -> Exception:
    """The broker took the orders, and its answer never came back."""
    return _Lost("connection reset after the request was sent")


def unanswered() -> Exception:
    """The request never reached the broker, and the caller cannot tell."""
    return BrokerError("connection reset", rejected=False)


def refused(reason: str = "insufficient_buying_power: test") -> Exception:
    return BrokerError(reason, rejected=True)


@dataclass
class FaultyAuditStore:
    """An `AuditStore` around the real one. `fail[method]`: faults for its next calls, in
    order (None: pass through); `always[method]`: raised on every call; `hold[method]`: an
    event the call waits on first (after the real write when `hold_after` names it). `calls`
    records each call's batch size, per method."""

    inner: AuditStore
    fail: dict[str, list[Exception | None]] = field(default_factory=dict)
    always: dict[str, Exception] = field(default_factory=dict)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    hold_after: frozenset[str] = frozenset()
    calls: dict[str, list[int]] = field(default_factory=dict)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # a call waits on `hold`
    # `stall[method] = (started, release)`: the call first occupies one of the database's own
    # threads until `release` is set (`started` says it got there): a write that cannot be
    # called back from the event loop. Needs the real store's `db`.
    stall: dict[str, tuple[threading.Event, threading.Event]] = field(default_factory=dict)

    async def _guard(self, method: str, size: int) -> None:
        self.calls.setdefault(method, []).append(size)
        if method in self.always:
            raise self.always[method]
        queue = self.fail.get(method)
        fault = queue.pop(0) if queue else None
        if fault is not None:
            raise fault
        if method in self.hold and method not in self.hold_after:
            self.held.set()
            await self.hold[method].wait()
        if method in self.stall:
            started, release = self.stall[method]

            def occupy(_session: object) -> None:
                started.set()
                release.wait(30)

            await self.inner.db.run(occupy)  # type: ignore[attr-defined]

    async def _after(self, method: str) -> None:
        if method in self.hold and method in self.hold_after:
            self.held.set()
            await self.hold[method].wait()

    async def existing_decisions(self, hashes: Sequence[str]) -> dict[str, StoredDecision]:
        await self._guard("existing_decisions", len(hashes))
        return await self.inner.existing_decisions(hashes)

    async def insert_judged_decisions(
        self, decisions: Sequence[JudgedDecision]
    ) -> dict[str, StoredDecision]:
        await self._guard("insert_judged_decisions", len(decisions))
        return await self.inner.insert_judged_decisions(decisions)

    async def price_references(self, symbols: Sequence[str]) -> dict[str, PriceReference]:
        await self._guard("price_references", len(symbols))
        return await self.inner.price_references(symbols)

    async def save_price_references(self, references: Mapping[str, PriceReference]) -> None:
        await self._guard("save_price_references", len(references))
        await self.inner.save_price_references(references)

    async def last_trades_by_symbol(self, symbols: Sequence[str]) -> dict[str, datetime]:
        await self._guard("last_trades_by_symbol", len(symbols))
        return await self.inner.last_trades_by_symbol(symbols)

    async def recent_decisions(
        self, symbol: str, *, exclude_hash: str | None = None, before: datetime | None = None
    ) -> list[dict[str, Any]]:
        await self._guard("recent_decisions", 1)
        return await self.inner.recent_decisions(symbol, exclude_hash=exclude_hash, before=before)

    async def record_review(
        self,
        values: Mapping[str, Any],
        *,
        reject: tuple[Any, str] | None = None,
        pending: tuple[Any, dict[str, Any]] | None = None,
    ) -> Any:
        await self._guard("record_review", 1)
        written = await self.inner.record_review(values, reject=reject, pending=pending)
        await self._after("record_review")
        return written

    async def record_executions(self, executions: Sequence[Execution], *, broker: str) -> None:
        await self._guard("record_executions", len(executions))
        await self.inner.record_executions(executions, broker=broker)

    async def record_pending_orders(self, orders: Sequence[tuple[Any, dict[str, Any]]]) -> None:
        await self._guard("record_pending_orders", len(orders))
        await self.inner.record_pending_orders(orders)

    async def reject_decisions(self, rejections: Sequence[tuple[Any, str]]) -> None:
        await self._guard("reject_decisions", len(rejections))
        await self.inner.reject_decisions(rejections)

    async def settle(self, grace_seconds: float) -> int:
        return await self.inner.settle(grace_seconds)
