"""Alpaca, through alpaca-py's `TradingClient`.

alpaca-py is synchronous (requests) and sets no timeout on its HTTP calls, so:

- every call runs in a worker thread (`asyncio.to_thread`), never on the event loop;
- every HTTP request gets `timeout=(timeout_seconds, timeout_seconds)` (connect, read) from a
  `requests.Session` that injects it, installed as the client's session;
- requests' read timeout bounds each read, not a whole answer trickled byte by byte, so each
  call also has a wall-clock deadline (`2 × timeout_seconds` per request it may make);
- alpaca-py's own retry (sleeping 3 s between tries on 429/504) is turned off: it would block
  the thread past every deadline. The caller retries on its next cycle, which
  `client_order_id` makes safe.

Orders go out as JSON built here, with quantities and prices as decimal strings: alpaca-py's
request models hold them as floats. Answers are read as raw JSON (`raw_data=True`) rather than
alpaca-py's models, which refuse a status their enum does not know yet: a new Alpaca status
must reach reconciliation, not crash it.

Errors, all `BrokerError`, mapped in `_broker_error` only:

| what happened | `rejected` |
|---|---|
| Alpaca answered 4xx (not 408/429): it refused; its message is the reason | True |
| 408, 429, 5xx, connection failure, timeout, a garbled answer: outcome unknown | False |

A duplicate `client_order_id` (Alpaca answers 422 "client_order_id must be unique") is not an
error: the existing order is fetched and adopted. The API keys travel only as the
`APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers; every message is passed through `redact`
with both keys, and `AlpacaConfig`'s repr hides them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from torghut.domain import Account, Action, Book, BrokerOrder, OrderRequest, Position
from torghut.errors import BrokerError, redact

T = TypeVar("T")

# Alpaca's largest page of orders (its default is 50).
_MAX_ORDERS = 500
# Requests in flight at once: a batch's orders go out side by side, a few at a time. Beyond
# Alpaca's rate limit (200 requests a minute per account, docs.alpaca.markets) it answers
# 429, an unknown outcome: the order is looked up by client order id before anything else.
_PARALLEL_REQUESTS = 4
# Threads: the requests in flight plus room for stragglers still sending past their deadline.
_THREADS = 16


@dataclass(frozen=True, slots=True)
class AlpacaConfig:
    key_id: str = field(repr=False)
    secret_key: str = field(repr=False)
    paper: bool = True
    # Overrides the paper/live URL (a proxy, a test server). Without `/v2`.
    base_url: str | None = None
    timeout_seconds: float = 10.0

    @property
    def secrets(self) -> tuple[str, str]:
        return (self.key_id, self.secret_key)


class AlpacaError(BrokerError):
    """A `BrokerError` that knows the HTTP status Alpaca answered with (None: no answer)."""

    def __init__(self, message: str, *, rejected: bool, status: int | None = None) -> None:
        super().__init__(message, rejected=rejected)
        self.status = status


class _DeadlineSession(requests.Session):
    """A requests session that never waits forever: a timeout on every request."""

    def __init__(self, timeout_seconds: float) -> None:
        super().__init__()
        self._timeout = (timeout_seconds, timeout_seconds)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # `Session.request` passes timeout=None when the caller (alpaca-py) gives none.
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


class _Client(TradingClient):
    """alpaca-py's trading client with our session and without its blocking retry loop."""

    def __init__(self, config: AlpacaConfig) -> None:
        super().__init__(
            api_key=config.key_id,
            secret_key=config.secret_key,
            paper=config.paper,
            raw_data=True,
            url_override=config.base_url.rstrip("/") if config.base_url else None,
        )
        self._session = _DeadlineSession(config.timeout_seconds)
        self._retry = 0


class AlpacaBroker:
    """The `Broker` port on Alpaca (paper or live, by `AlpacaConfig.paper`)."""

    def __init__(self, config: AlpacaConfig) -> None:
        self._config = config
        self._client = _Client(config)
        # alpaca-py blocks, so every request runs on a thread of our own. A slot is taken
        # before a request is handed to a thread and given back when that thread is done with
        # it, so a request's deadline starts when it is sent, never while it waits for a
        # thread (a batch of 256 orders once timed out queued behind each other).
        self._executor = ThreadPoolExecutor(_THREADS, thread_name_prefix="alpaca")
        self._slots = asyncio.Semaphore(_PARALLEL_REQUESTS)
        # Requests handed to a thread, with the client order id each one posts (None for the
        # others); pruned of finished ones as new ones start. Only the event loop touches it.
        self._in_flight: dict[Future[Any], str | None] = {}

    @property
    def name(self) -> str:
        return "alpaca"

    async def settle(self, grace_seconds: float) -> int:
        """Wait, at most `grace_seconds`, for requests still on their way (a call that was
        cancelled or ran out of time may still be sending an order); returns how many are
        still running."""
        pending = [w for w in self._in_flight if not w.done()]
        if pending:
            await asyncio.wait([asyncio.wrap_future(w) for w in pending], timeout=grace_seconds)
        return sum(1 for w in pending if not w.done())

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client._session.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def get_account(self) -> Account:
        raw = await self._call(self._client.get_account)
        try:
            raw = _json_object(raw)
            return Account(
                cash=_decimal(raw["cash"]),
                equity=_decimal(raw["equity"]),
                buying_power=_decimal(raw["buying_power"]),
            )
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise self._unexpected("account", exc) from None

    async def get_book(self) -> Book:
        """Three requests (Alpaca has no single one for the three), sent side by side."""
        account, positions, open_orders = await asyncio.gather(
            self.get_account(), self.list_positions(), self.list_open_orders()
        )
        return Book(account=account, positions=positions, open_orders=open_orders)

    async def list_positions(self) -> list[Position]:
        raw = await self._call(self._client.get_all_positions)
        try:
            return [
                Position(
                    symbol=str(p["symbol"]).upper(),
                    qty=_decimal(p["qty"]),
                    avg_entry_price=_decimal(p["avg_entry_price"]),
                    market_value=_decimal(p.get("market_value") or 0),
                )
                for p in _json_list(raw)
            ]
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise self._unexpected("positions", exc) from None

    async def list_open_orders(self) -> list[BrokerOrder]:
        query = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_MAX_ORDERS)
        raw = await self._call(self._client.get_orders, query)
        try:
            orders = _json_list(raw)
        except TypeError as exc:
            raise self._unexpected("orders", exc) from None
        return [self._order(o) for o in orders]

    async def submit_order(self, order: OrderRequest) -> BrokerOrder:
        """Submit; a duplicate `client_order_id` adopts the order Alpaca already has."""
        body: dict[str, Any] = {
            "symbol": order.symbol,
            "qty": _text(order.qty),
            "side": order.side.value,
            "type": order.order_type.value,
            "time_in_force": order.time_in_force.value,
            "client_order_id": order.client_order_id,
        }
        if order.limit_price is not None:
            body["limit_price"] = _text(order.limit_price)
        if order.stop_price is not None:
            body["stop_price"] = _text(order.stop_price)
        try:
            raw = await self._call(
                self._client.post, "/orders", body, posting=order.client_order_id
            )
        except AlpacaError as exc:
            if not _is_duplicate(exc):
                raise
            existing = await self.get_order(order.client_order_id)
            if existing is None:
                raise  # a refusal about the id itself (too long...), not a duplicate
            return existing
        return self._order(raw)

    async def submit_orders(self, orders: Sequence[OrderRequest]) -> list[BrokerOrder | Exception]:
        """One request per order (Alpaca has no batch endpoint), sent side by side; the thread
        pool that runs alpaca-py bounds how many are in flight."""
        outcomes = await asyncio.gather(
            *(self.submit_order(order) for order in orders), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancellation, interrupts: not an order's outcome
        return [o for o in outcomes if isinstance(o, BrokerOrder | Exception)]

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client order id; None when Alpaca has none. A "not found"
        while our own request submitting it is still on its way means only "not arrived
        yet": that raises (outcome unknown) instead."""
        sending = any(o == client_order_id and not w.done() for w, o in self._in_flight.items())
        try:
            raw = await self._call(self._client.get_order_by_client_id, client_order_id)
        except AlpacaError as exc:
            if exc.status == 404:
                if sending:
                    raise AlpacaError(
                        f"alpaca: order {client_order_id} is still being sent; its outcome "
                        "is not known yet",
                        rejected=False,
                    ) from None
                return None
            raise
        return self._order(raw)

    # --- internals ---------------------------------------------------------------------------

    async def _call(
        self, fn: Callable[..., T], *args: Any, posting: str | None = None
    ) -> T:
        """One alpaca-py call (one HTTP request) on our threads, within its wall-clock
        deadline (the connect timeout plus one read timeout), counted from when it is handed
        to a thread, not while it waits for one of the `_PARALLEL_REQUESTS` slots (that wait
        ends: every slot is given back when its call returns, at its deadline at the latest).
        Should stragglers past their deadlines fill every thread, a new request's deadline
        runs out while it is queued, and a queued request is cancelled, never sent.
        `posting`: the client order id this request submits (see `get_order`)."""
        deadline = 2 * self._config.timeout_seconds
        await self._slots.acquire()
        try:
            work = self._executor.submit(fn, *args)
            self._in_flight = {w: o for w, o in self._in_flight.items() if not w.done()}
            self._in_flight[work] = posting
            return await asyncio.wait_for(asyncio.wrap_future(work), deadline)
        except TimeoutError:
            raise AlpacaError(
                f"alpaca: no complete answer within {deadline:g}s", rejected=False
            ) from None
        except Exception as exc:
            raise self._broker_error(exc) from None
        finally:
            # A request past its deadline may go on in its thread (requests cannot be
            # interrupted); its slot is free again, the thread pool has room for such
            # stragglers, and `get_order` / `settle` know about it.
            self._slots.release()

    def _broker_error(self, exc: Exception) -> AlpacaError:
        """The one place that turns what alpaca-py and requests raise into `BrokerError`."""
        if isinstance(exc, APIError):
            status = _status(exc)
            code, message = _api_message(str(exc))
            detail = f"alpaca {status}: {message}" + (f" (code {code})" if code else "")
            refused = status is not None and 400 <= status < 500 and status not in (408, 429)
            return AlpacaError(self._safe(detail), rejected=refused, status=status)
        if isinstance(exc, requests.exceptions.Timeout):
            return AlpacaError(
                f"alpaca: timed out after {self._config.timeout_seconds:g}s ({type(exc).__name__})",
                rejected=False,
            )
        if isinstance(exc, requests.exceptions.RequestException):
            return AlpacaError(
                self._safe(f"alpaca unreachable: {type(exc).__name__}: {exc}"), rejected=False
            )
        return self._unexpected("answer", exc)

    def _unexpected(self, what: str, exc: BaseException) -> AlpacaError:
        return AlpacaError(
            self._safe(f"alpaca: unexpected {what}: {type(exc).__name__}: {exc}"), rejected=False
        )

    def _safe(self, text: str) -> str:
        return redact(text, self._config.secrets)

    def _order(self, raw: object) -> BrokerOrder:
        try:
            return _to_broker_order(_json_object(raw))
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise self._unexpected("order", exc) from None


def _to_broker_order(raw: Mapping[str, Any]) -> BrokerOrder:
    filled = raw.get("filled_qty")
    price = raw.get("filled_avg_price")
    return BrokerOrder(
        broker_order_id=str(raw["id"]),
        client_order_id=str(raw["client_order_id"]),
        symbol=str(raw["symbol"]).upper(),
        # Alpaca's statuses are lowercase words already (`filled`, `done_for_day`...).
        status=str(raw["status"]).strip().lower(),
        filled_qty=_decimal(filled) if filled not in (None, "") else Decimal(0),
        avg_fill_price=_decimal(price) if price not in (None, "") else None,
        reject_reason=raw.get("reject_reason") or None,
        raw=dict(raw),
        side=_side(raw.get("side")),
        qty=_optional_decimal(raw.get("qty")),
        limit_price=_optional_decimal(raw.get("limit_price")),
    )


def _side(value: object) -> Action | None:
    try:
        return Action(str(value).lower())
    except ValueError:
        return None


def _optional_decimal(value: object) -> Decimal | None:
    """A quantity or price Alpaca sent as text, or None when absent or not a number."""
    if value in (None, ""):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def _json_object(value: object) -> dict[str, Any]:
    """What alpaca-py returns with `raw_data=True` is typed as its model or the JSON: check."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _json_list(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise TypeError(f"expected a JSON array, got {type(value).__name__}")
    return [_json_object(item) for item in value]


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value))


def _text(value: Decimal) -> str:
    """A decimal as Alpaca reads it: plain notation, no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def _status(exc: APIError) -> int | None:
    try:
        status = exc.status_code
    except Exception:  # alpaca-py reads it off the response; any oddity means: unknown
        return None
    return status if isinstance(status, int) else None


def _api_message(body: str) -> tuple[str | None, str]:
    """Alpaca's `{"code": …, "message": …}` error body; plain text when it is not that."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None, body.strip() or "no message"
    if isinstance(parsed, dict) and parsed.get("message"):
        code = parsed.get("code")
        return (None if code is None else str(code)), str(parsed["message"])
    return None, body.strip() or "no message"


def _is_duplicate(exc: AlpacaError) -> bool:
    return exc.status in (409, 422) and "client_order_id" in str(exc).lower()
