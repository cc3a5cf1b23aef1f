"""Fakes behind the ports, for injecting faults without patching module globals.

`FaultyBroker` wraps a real broker (the simulated one, usually) and misbehaves on cue:
answers lost, refusals, a broker that cannot be asked, a broker that holds its answer until
the test lets it go. Pass it to `build_container(wrap_broker=...)` or `run_replay`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from torghut.domain import Account, Book, BrokerOrder, OrderRequest, Position
from torghut.errors import BrokerError
from torghut.ports import Broker


@dataclass
class FaultyBroker:
    """`submit_faults`: one entry per `submit_orders` call, in order: None (pass through), or
    an exception raised instead of answering (`lost()` after the broker took the orders,
    `refused()` or any other before). `lookup_fails`: `get_order` raises. `hold`: while set
    to an unset event, `submit_orders` waits on it (a cancelled wait is recorded)."""

    inner: Broker
    submit_faults: list[Exception | None] = field(default_factory=list)
    lookup_fails: bool = False
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
        if fault is not None:
            raise fault
        return await self.inner.submit_orders(orders)

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        if self.lookup_fails:
            raise BrokerError("broker unreachable", rejected=False)
        return await self.inner.get_order(client_order_id)

    async def settle(self, grace_seconds: float) -> int:
        return await self.inner.settle(grace_seconds)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Lost(Exception):
    pass


def lost() -> Exception:
    """The broker took the orders, and its answer never came back."""
    return _Lost("connection reset after the request was sent")


def unanswered() -> Exception:
    """The request never reached the broker, and the caller cannot tell."""
    return BrokerError("connection reset", rejected=False)


def refused(reason: str = "insufficient_buying_power: test") -> Exception:
    return BrokerError(reason, rejected=True)
