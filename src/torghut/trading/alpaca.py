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
| 429 still, once the call's deadline leaves no time to wait: not sent, try later | False |
| 408, 5xx, connection failure, timeout, a garbled answer: outcome unknown | False |

Pacing: every request, whatever the call, first takes a token from one `RequestBudget` per
broker (one account): `max_requests_per_minute` a minute (default 180, under the 200 Alpaca
allows an account), in bursts of at most a tenth of that, so no 60 s ever sees more than 1.1x
the rate. Alpaca's own count wins when it is lower: `X-RateLimit-Remaining` caps the tokens left,
`0` pauses every request until `X-RateLimit-Reset`, and a 429's `Retry-After` pauses them that
long (other clients of the account spend the same allowance). A 429 means Alpaca refused the
request unread, so it is sent again after the pause, within the call's deadline; an order whose
every sending was refused so is known not to exist: `get_order` answers None for it without
asking Alpaca (no look-ups that would only meet the same limit).

Prices: limit and stop prices are rounded to Alpaca's tick before they are sent (a sub-penny
price at or above $1.00 is refused with 422 "sub-penny increment does not fulfill minimum
pricing criteria"; see `tick_price`).

A duplicate `client_order_id` (Alpaca answers 422 "client_order_id must be unique") is not an
error: the existing order is fetched and adopted. The API keys travel only as the
`APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers; every message is passed through `redact`
with both keys, and `AlpacaConfig`'s repr hides them.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, TypeVar

import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from torghut.domain import (
    Account,
    Action,
    Book,
    BrokerOrder,
    OrderRequest,
    OrderType,
    Position,
    TimeInForce,
)
from torghut.errors import BrokerError, redact

T = TypeVar("T")
log = logging.getLogger("torghut.alpaca")

# Alpaca's largest page of orders (its default is 50).
_MAX_ORDERS = 500
# Requests in flight at once: a batch's orders go out side by side, a few at a time, as fast
# as the request budget allows (see the module doc).
_PARALLEL_REQUESTS = 4
# Threads: the requests in flight plus room for stragglers still sending past their deadline.
_THREADS = 16
# The longest pause a header may impose (a bogus or far-off reset must not stall us for ever).
_MAX_PAUSE_SECONDS = 60.0
# Orders sent lately whose sendings are remembered (see `get_order`); the oldest are forgotten.
_SENT_MEMORY = 10_000


@dataclass(frozen=True, slots=True)
class AlpacaConfig:
    key_id: str = field(repr=False)
    secret_key: str = field(repr=False)
    paper: bool = True
    # Overrides the paper/live URL (a proxy, a test server). Without `/v2`.
    base_url: str | None = None
    timeout_seconds: float = 10.0
    # Requests a minute, every call together (Alpaca allows an account 200).
    max_requests_per_minute: int = 180
    # TRADING_EXTENDED_HOURS: limit DAY orders may fill in the pre- and after-market sessions.
    extended_hours: bool = False

    @property
    def secrets(self) -> tuple[str, str]:
        return (self.key_id, self.secret_key)


def _extended_eligible(order: OrderRequest) -> bool:
    """Whether Alpaca lets `order` trade in the extended session: a limit order, TIF day."""
    return order.order_type is OrderType.LIMIT and order.time_in_force is TimeInForce.DAY


class AlpacaError(BrokerError):
    """A `BrokerError` that knows the HTTP status Alpaca answered with (None: no answer)."""

    def __init__(self, message: str, *, rejected: bool, status: int | None = None) -> None:
        super().__init__(message, rejected=rejected)
        self.status = status


class RequestBudget:
    """A token bucket for one Alpaca account, corrected by what Alpaca says is left.

    Written here rather than taken from a rate-limiting library: those pace only the calls
    they see, and this one must also stop when Alpaca's headers say the account's allowance is
    spent (by other clients too) and until when. Answers are read on worker threads, tokens
    taken on the event loop: the state sits behind a plain lock held for a few operations."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._rate = per_minute / 60.0  # tokens a second
        self._capacity = max(1.0, per_minute / 10.0)
        self._clock, self._wall_clock = clock, wall_clock
        self._lock = threading.Lock()
        self._tokens = self._capacity
        self._updated = clock()
        self._paused_until = 0.0  # on `clock`

    def reserve(self) -> float:
        """Take a token; the seconds to wait before sending (0: now). Tokens may go below
        zero: each caller then waits its turn, one every 1/rate seconds."""
        with self._lock:
            now = self._refill()
            self._tokens -= 1
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
            return max(wait, self._paused_until - now)

    def pause_left(self) -> float:
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """What an answer says of the allowance: `X-RateLimit-Remaining` caps the tokens,
        `0` (or a 429) pauses until `X-RateLimit-Reset` / for `Retry-After`."""
        remaining = _header_number(headers.get("X-RateLimit-Remaining"))
        pause: float | None = None
        if status == 429:
            pause = _retry_after(headers.get("Retry-After"), self._wall_clock())
        if pause is None and (status == 429 or remaining == 0):
            reset = _header_number(headers.get("X-RateLimit-Reset"))
            # An epoch in seconds (Alpaca's); a small number would be seconds from now.
            pause = 1.0 if reset is None else (reset - self._wall_clock() if reset > 1e9 else reset)
        with self._lock:
            now = self._refill()
            if remaining is not None:
                self._tokens = min(self._tokens, remaining)
            if pause is not None:
                until = now + min(max(pause, 0.0), _MAX_PAUSE_SECONDS)
                self._paused_until = max(self._paused_until, until)

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        return now


def _header_number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After`: seconds, or an HTTP date."""
    seconds = _header_number(value)
    if seconds is not None or value is None:
        return seconds
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class _DeadlineSession(requests.Session):
    """A requests session that never waits forever (a timeout on every request) and that shows
    every answer's rate-limit headers to the budget."""

    def __init__(self, timeout_seconds: float, budget: RequestBudget) -> None:
        super().__init__()
        self._timeout = (timeout_seconds, timeout_seconds)
        self._budget = budget

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # `Session.request` passes timeout=None when the caller (alpaca-py) gives none.
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        response = super().send(request, **kwargs)
        self._budget.observe(response.status_code, response.headers)
        return response


class _Client(TradingClient):
    """alpaca-py's trading client with our session and without its blocking retry loop."""

    def __init__(self, config: AlpacaConfig, budget: RequestBudget) -> None:
        super().__init__(
            api_key=config.key_id,
            secret_key=config.secret_key,
            paper=config.paper,
            raw_data=True,
            url_override=config.base_url.rstrip("/") if config.base_url else None,
        )
        self._session = _DeadlineSession(config.timeout_seconds, budget)
        self._retry = 0


class AlpacaBroker:
    """The `Broker` port on Alpaca (paper or live, by `AlpacaConfig.paper`)."""

    def __init__(self, config: AlpacaConfig) -> None:
        self._config = config
        self.budget = RequestBudget(config.max_requests_per_minute)
        self._client = _Client(config, self.budget)
        # Client order ids sent lately -> True while every sending met a 429 (so Alpaca has
        # no such order), False once one had another answer, or none. The event loop's only.
        self._only_throttled: OrderedDict[str, bool] = OrderedDict()
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

    async def list_orders_since(
        self, after: datetime, *, closed: bool = False
    ) -> list[BrokerOrder]:
        """One request: the orders submitted after `after` (Alpaca filters on submission
        time), oldest first, at most 500; all of them, or only the closed ones."""
        query = GetOrdersRequest(
            status=QueryOrderStatus.CLOSED if closed else QueryOrderStatus.ALL,
            limit=_MAX_ORDERS,
            after=after,
            direction=Sort.ASC,
        )
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
            body["limit_price"] = _text(self._tick(order.limit_price, order.side, "limit"))
        if order.stop_price is not None:
            body["stop_price"] = _text(self._tick(order.stop_price, order.side, "stop"))
        if self._config.extended_hours and _extended_eligible(order):
            # Without the flag Alpaca holds a limit order outside the regular session until the
            # open; it takes the flag on limit DAY orders only (422 on any other kind).
            body["extended_hours"] = True
        only_throttled = False
        try:
            raw = await self._call(
                self._client.post, "/orders", body, posting=order.client_order_id
            )
        except AlpacaError as exc:
            only_throttled = exc.status == 429
            if not _is_duplicate(exc):
                raise
            existing = await self.get_order(order.client_order_id)
            if existing is None:
                raise  # a refusal about the id itself (too long...), not a duplicate
            return existing
        finally:
            self._note_sending(order.client_order_id, only_throttled=only_throttled)
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
        if not sending and self._only_throttled.get(client_order_id):
            return None  # every sending was refused unread (429): Alpaca has no such order
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

    def _note_sending(self, client_order_id: str, *, only_throttled: bool) -> None:
        before = self._only_throttled.pop(client_order_id, True)
        self._only_throttled[client_order_id] = before and only_throttled
        while len(self._only_throttled) > _SENT_MEMORY:
            self._only_throttled.popitem(last=False)

    def _tick(self, price: Decimal, side: Action, kind: str) -> Decimal:
        ticked = tick_price(price, side, kind)
        if ticked <= 0:
            raise AlpacaError(
                f"alpaca: {kind} price {_text(price)} is below the smallest tick", rejected=True
            )
        return ticked

    async def _call(self, fn: Callable[..., T], *args: Any, posting: str | None = None) -> T:
        """One alpaca-py call: a token from the budget, then one HTTP request (`_send`). A 429
        (refused unread) is sent again once the budget's pause is over, as long as that pause
        ends within one deadline of the first refusal; otherwise the 429 is raised."""
        loop = asyncio.get_running_loop()
        give_up_at: float | None = None
        while True:
            wait = self.budget.reserve()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await self._send(fn, *args, posting=posting)
            except AlpacaError as exc:
                if exc.status != 429:
                    raise
                now = loop.time()
                if give_up_at is None:
                    give_up_at = now + 2 * self._config.timeout_seconds
                if now + self.budget.pause_left() >= give_up_at:
                    raise
                log.warning("alpaca: 429, sending again in %.1fs", self.budget.pause_left())

    async def _send(self, fn: Callable[..., T], *args: Any, posting: str | None = None) -> T:
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
            # A pause Alpaca asked for after this request took its token (while it waited for
            # a slot) holds it back too; holding the slot meanwhile holds the others back.
            pause = self.budget.pause_left()
            if pause > 0:
                await asyncio.sleep(pause)
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


_PENNY = Decimal("0.01")
_SUB_PENNY = Decimal("0.0001")


def tick_price(price: Decimal, side: Action, kind: str) -> Decimal:
    """`price` on Alpaca's tick for US equities: $0.01 at or above $1.00, $0.0001 below (SEC
    Regulation NMS Rule 612; Alpaca refuses e.g. a limit of 11.055 with 422 "sub-penny
    increment does not fulfill minimum pricing criteria" and takes 0.6013, as reported in
    alpacahq/alpaca-trade-api-csharp#497 and alpacahq/alpaca-trade-api-go#260).

    Rounded the cautious way, never past what was decided: a buy limit down and a sell limit
    up (never a worse price), a buy stop up and a sell stop down (never triggered sooner)."""
    up = (side is Action.SELL) if kind == "limit" else (side is Action.BUY)
    rounding = ROUND_CEILING if up else ROUND_FLOOR
    # (Rounding never crosses $1.00 onto a finer tick than it may have: a price at or above
    # it rounds to at least 1.00, one below it to at most 1.0000.)
    return price.quantize(_PENNY if price >= 1 else _SUB_PENNY, rounding=rounding)


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
