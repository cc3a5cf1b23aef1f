"""The protocols the core calls. Adapters implement them; the core never names an adapter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from torghut.domain import (
    Account,
    Book,
    BrokerOrder,
    OrderRequest,
    Position,
    Signal,
    TradeDecision,
    Usage,
)

if TYPE_CHECKING:
    # Named in annotations only: importing the ledger (and risk with it) at run time cost
    # `llm review`, which never touches one, 7 ms of its start-up.
    from torghut.trading.ledger import PriceReference


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Completion:
    """One successful chat completion, whichever provider produced it.

    `text` is the answer (content deltas joined, the leading newline dropped); `reasoning` is
    the model's reasoning, kept apart because it is never part of the answer. `usage` is None
    when the gateway sent none. `latency_ms` is request to end; `ttft_ms` is request to the
    first `data:` event (or to the response for a non-streaming answer)."""

    text: str
    reasoning: str
    usage: Usage | None
    latency_ms: int
    ttft_ms: int | None
    model: str | None = None
    finish_reason: str | None = None
    # Event-loop time at which the review's total clock runs out: work on the answer after
    # the provider returned (searching it for the review) must end by then.
    deadline: float | None = None


class ReviewProvider(Protocol):
    """A chat-completion provider. `complete` raises only `ReviewError`."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    def request_body(self, messages: Sequence[ChatMessage]) -> dict[str, object]:
        """The JSON body this provider sends for `messages` (recorded in the audit row)."""
        ...

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion: ...

    async def aclose(self) -> None: ...


class Broker(Protocol):
    @property
    def name(self) -> str: ...

    async def get_account(self) -> Account: ...

    async def get_book(self) -> Book:
        """The account, positions and open orders, at once where the broker allows it."""
        ...

    async def list_positions(self) -> list[Position]: ...

    async def list_open_orders(self) -> list[BrokerOrder]: ...

    async def submit_order(self, order: OrderRequest) -> BrokerOrder:
        """Submit, or adopt the existing order with the same `client_order_id`."""
        ...

    async def submit_orders(self, orders: Sequence[OrderRequest]) -> list[BrokerOrder | Exception]:
        """`submit_order` for each order, in one go where the broker allows it; each order's
        outcome in its place (a `BrokerError` when it was refused)."""
        ...

    async def get_order(self, client_order_id: str) -> BrokerOrder | None: ...

    async def settle(self, grace_seconds: float) -> int:
        """Wait, at most `grace_seconds`, for requests still on their way to the broker (a
        cancelled call may still be sending an order); how many are still running."""
        ...

    async def aclose(self) -> None: ...


class SignalSource(Protocol):
    """Signals in order. `fetch` returns the next batch after the committed cursor; `commit`
    moves the cursor past a batch once every decision in it reached a final status."""

    async def fetch(self, limit: int) -> list[Signal]: ...

    async def commit(self, signals: Sequence[Signal]) -> None: ...

    async def aclose(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A decision as the audit store holds it."""

    id: Any
    status: str
    created: bool  # False when the hash was already there (a replay, a restart, a racing loop)
    decision_json: dict[str, Any] | None = None  # the stored decision, when not created
    pending_order_json: dict[str, Any] | None = None  # an order that may be live, when not created


# (decision id, the order sent, the broker's answer)
Execution = tuple[Any, OrderRequest, BrokerOrder]
# (decision, its hash, its rejection reason or None)
JudgedDecision = tuple[TradeDecision, str, str | None]


class AuditStore(Protocol):
    """Where the trading cycle records what it decided and did, and reads what it did before.
    Each call is one transaction: all of it or nothing."""

    async def existing_decisions(self, hashes: Sequence[str]) -> dict[str, StoredDecision]: ...

    async def insert_judged_decisions(
        self, decisions: Sequence[JudgedDecision]
    ) -> dict[str, StoredDecision]: ...

    async def price_references(self, symbols: Sequence[str]) -> dict[str, PriceReference]: ...

    async def save_price_references(self, references: Mapping[str, PriceReference]) -> None: ...

    async def last_trades_by_symbol(self, symbols: Sequence[str]) -> dict[str, datetime]: ...

    async def recent_decisions(
        self, symbol: str, *, exclude_hash: str | None = None, before: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The last decisions in `symbol` whose signals came `before` (the reviewer's
        context, point in time)."""
        ...

    async def record_review(
        self,
        values: Mapping[str, Any],
        *,
        reject: tuple[Any, str] | None = None,
        pending: tuple[Any, dict[str, Any]] | None = None,
    ) -> Any:
        """The review row; with `reject`, its decision's rejection; with `pending`, the order
        written ahead on its decision: one transaction."""
        ...

    async def record_executions(self, executions: Sequence[Execution], *, broker: str) -> None: ...

    async def record_pending_orders(self, orders: Sequence[tuple[Any, dict[str, Any]]]) -> None: ...

    async def reject_decisions(self, rejections: Sequence[tuple[Any, str]]) -> None: ...

    async def settle(self, grace_seconds: float) -> int:
        """Wait, at most `grace_seconds`, for transactions already running; how many still
        are."""
        ...
