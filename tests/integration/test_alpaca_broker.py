"""`AlpacaBroker` against a local server on 127.0.0.1 that speaks the part of Alpaca's trading
API the broker uses (a Starlette app run by uvicorn in a background thread)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from torghut.domain import Action, OrderRequest, OrderType, TimeInForce
from torghut.errors import BrokerError
from torghut.ports import Broker
from torghut.trading.alpaca import AlpacaBroker, AlpacaConfig

KEY_ID = "PKTESTKEYID1234567890"
SECRET = "s3cr3t-Alpaca-Secret-Key-0987654321"


@dataclass
class FakeAlpaca:
    """The server's state; tests arrange it and read what the server saw."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by client_order_id
    headers: list[dict[str, str]] = field(default_factory=list)
    posts: int = 0
    sleep: float = 0.0
    post_sleep: float = 0.0  # an order POST only: read, then answered (and placed) this late
    reject: tuple[int, dict[str, Any] | str] | None = None
    positions: list[dict[str, Any]] = field(default_factory=list)
    status_for_new: str = "accepted"
    # Alpaca's rate limit, scaled down: at most `per_second` requests in each wall-clock second
    # (0: no limit); every answer carries X-RateLimit-*, a refusal 429 with Retry-After.
    per_second: int = 0
    window: tuple[int, int] = (0, 0)  # (second, requests answered in it)
    seen: list[tuple[float, str, int]] = field(default_factory=list)  # (time, what, status)

    def count(self, what: str, status: int | None = None) -> int:
        return sum(1 for _, w, st in self.seen if w == what and status in (None, st))

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


def _order_json(body: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "client_order_id": body["client_order_id"],
        "symbol": body["symbol"],
        "side": body["side"],
        "type": body["type"],
        "order_type": body["type"],
        "time_in_force": body["time_in_force"],
        "qty": body["qty"],
        "filled_qty": "0",
        "filled_avg_price": None,
        "limit_price": body.get("limit_price"),
        "stop_price": body.get("stop_price"),
        "extended_hours": body.get("extended_hours", False),
        "status": status,
        "asset_class": "us_equity",
        "created_at": "2026-03-02T15:30:00Z",
        "submitted_at": datetime.now(UTC).isoformat(),
    }


def build_app(state: FakeAlpaca) -> Starlette:
    def auth(request: Request) -> Response | None:
        state.headers.append(dict(request.headers))
        key = request.headers.get("apca-api-key-id")
        secret = request.headers.get("apca-api-secret-key")
        if key != KEY_ID or secret != SECRET:
            return JSONResponse({"code": 40110000, "message": "request is not authorized"}, 401)
        return None

    def limited(what: str) -> Response | None:
        """Alpaca's limit, per wall-clock second; None when this request is within it."""
        now = time.time()
        second, used = state.window
        if int(now) != second:
            second, used = int(now), 0
        refused = bool(state.per_second) and used >= state.per_second
        state.window = (second, used if refused else used + 1)
        state.seen.append((now, what, 429 if refused else 200))
        if not refused:
            return None
        return JSONResponse(
            {"code": 42910000, "message": "rate limit exceeded"}, 429, headers={"Retry-After": "1"}
        )

    async def gate(request: Request) -> Response | None:
        if state.sleep:
            await asyncio.sleep(state.sleep)
        what = f"{request.method} {request.url.path}"
        return auth(request) or limited(what)

    def with_limit_headers(response: Response) -> Response:
        if state.per_second:
            second, used = state.window
            response.headers["X-RateLimit-Limit"] = str(state.per_second)
            response.headers["X-RateLimit-Remaining"] = str(max(0, state.per_second - used))
            response.headers["X-RateLimit-Reset"] = str(second + 1)
        return response

    async def orders(request: Request) -> Response:
        # Read the body first: a client that gave up during the sleep then is no error here.
        body = await request.json() if request.method == "POST" else {}
        if (denied := await gate(request)) is not None:
            return denied
        if request.method == "GET":
            wanted = request.query_params.get("status", "open")
            assert request.query_params.get("limit") == "500"
            done = {"filled", "canceled", "expired", "rejected", "done_for_day"}
            after = request.query_params.get("after")
            listed = [
                o
                for o in state.orders.values()
                if (wanted == "all" or (o["status"] in done) == (wanted == "closed"))
                and (
                    after is None
                    or datetime.fromisoformat(o["submitted_at"]) > datetime.fromisoformat(after)
                )
            ]
            listed.sort(key=lambda o: str(o["submitted_at"]))
            return with_limit_headers(JSONResponse(listed))
        if state.post_sleep:
            await asyncio.sleep(state.post_sleep)
        state.posts += 1
        if state.reject is not None:
            status, payload = state.reject
            if isinstance(payload, str):
                return Response(payload, status, media_type="text/plain")
            return JSONResponse(payload, status)
        if body["client_order_id"] in state.orders:
            return JSONResponse(
                {"code": 40010001, "message": "client_order_id must be unique"}, 422
            )
        order = _order_json(body, state.status_for_new)
        state.orders[body["client_order_id"]] = order
        return with_limit_headers(JSONResponse(order))

    async def by_client_id(request: Request) -> Response:
        if (denied := await gate(request)) is not None:
            return denied
        coid = request.query_params.get("client_order_id", "")
        if coid not in state.orders:
            return JSONResponse({"code": 40410000, "message": "order not found"}, 404)
        return with_limit_headers(JSONResponse(state.orders[coid]))

    async def by_id(request: Request) -> Response:
        if (denied := await gate(request)) is not None:
            return denied
        for order in state.orders.values():
            if order["id"] == request.path_params["order_id"]:
                return JSONResponse(order)
        return JSONResponse({"code": 40410000, "message": "order not found"}, 404)

    async def account(request: Request) -> Response:
        if (denied := await gate(request)) is not None:
            return denied
        return with_limit_headers(
            JSONResponse(
                {
                    "id": str(uuid.uuid4()),
                    "status": "ACTIVE",
                    "cash": "25000.5",
                    "equity": "30000.75",
                    "buying_power": "50001",
                    "currency": "USD",
                }
            )
        )

    async def positions(request: Request) -> Response:
        if (denied := await gate(request)) is not None:
            return denied
        return with_limit_headers(JSONResponse(state.positions))

    return Starlette(
        routes=[
            Route("/v2/orders", orders, methods=["GET", "POST"]),
            Route("/v2/orders:by_client_order_id", by_client_id),
            Route("/v2/orders/{order_id}", by_id),
            Route("/v2/account", account),
            Route("/v2/positions", positions),
        ]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    url: str
    state: FakeAlpaca


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    state = FakeAlpaca()
    port = free_port()
    config = uvicorn.Config(
        build_app(state),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake Alpaca server did not start")
        time.sleep(0.01)
    yield Served(f"http://127.0.0.1:{port}", state)
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fake(server: Served) -> FakeAlpaca:
    server.state.reset()
    return server.state


def make_broker(
    url: str,
    *,
    timeout: float = 5.0,
    secret: str = SECRET,
    per_minute: int = 60_000,
    extended_hours: bool = False,
) -> AlpacaBroker:
    """A broker on the fake; its request budget is out of the way unless a test is about it."""
    return AlpacaBroker(
        AlpacaConfig(
            key_id=KEY_ID,
            secret_key=secret,
            paper=True,
            base_url=url,
            timeout_seconds=timeout,
            max_requests_per_minute=per_minute,
            extended_hours=extended_hours,
        )
    )


def order(coid: str = "th-abc", **changes: Any) -> OrderRequest:
    values: dict[str, Any] = {
        "client_order_id": coid,
        "symbol": "AAPL",
        "side": Action.BUY,
        "qty": Decimal("10"),
        "order_type": OrderType.MARKET,
        "time_in_force": TimeInForce.DAY,
        "reference_price": Decimal("100"),
    }
    values.update(changes)
    return OrderRequest(**values)


@pytest.mark.parametrize("configured", [True, False])
async def test_extended_hours_flags_limit_day_orders_only(
    server: Served, fake: FakeAlpaca, configured: bool
) -> None:
    broker = make_broker(server.url, extended_hours=configured)
    limit_price = Decimal("101.50")
    await broker.submit_order(order("lim-day", order_type=OrderType.LIMIT, limit_price=limit_price))
    await broker.submit_order(
        order(
            "lim-gtc",
            order_type=OrderType.LIMIT,
            limit_price=limit_price,
            time_in_force=TimeInForce.GTC,
        )
    )
    await broker.submit_order(order("mkt-day"))
    flags = {coid: fake.orders[coid]["extended_hours"] for coid in fake.orders}
    assert flags == {"lim-day": configured, "lim-gtc": False, "mkt-day": False}
    await broker.aclose()


async def test_is_a_broker(server: Served, fake: FakeAlpaca) -> None:
    broker: Broker = make_broker(server.url)
    assert broker.name == "alpaca"
    await broker.aclose()


async def test_submit_sends_the_order_with_keys_as_headers(
    server: Served, fake: FakeAlpaca
) -> None:
    broker = make_broker(server.url)
    placed = await broker.submit_order(
        order(order_type=OrderType.LIMIT, limit_price=Decimal("101.50"), qty=Decimal("2.5"))
    )
    assert placed.client_order_id == "th-abc"
    assert placed.status == "accepted"
    assert placed.filled_qty == Decimal(0)
    assert placed.avg_fill_price is None
    stored = fake.orders["th-abc"]
    assert (stored["qty"], stored["limit_price"], stored["type"]) == ("2.5", "101.5", "limit")
    assert placed.broker_order_id == stored["id"]
    headers = fake.headers[-1]
    assert headers["apca-api-key-id"] == KEY_ID
    assert headers["apca-api-secret-key"] == SECRET
    await broker.aclose()


async def test_duplicate_client_order_id_is_adopted_not_resubmitted(
    server: Served, fake: FakeAlpaca
) -> None:
    broker = make_broker(server.url)
    first = await broker.submit_order(order())
    fake.orders["th-abc"]["status"] = "filled"
    fake.orders["th-abc"]["filled_qty"] = "10"
    fake.orders["th-abc"]["filled_avg_price"] = "99.95"
    again = await broker.submit_order(order())
    assert again.broker_order_id == first.broker_order_id
    assert again.status == "filled"
    assert again.filled_qty == Decimal(10)
    assert again.avg_fill_price == Decimal("99.95")
    assert len(fake.orders) == 1
    assert fake.posts == 2  # the second was refused by Alpaca, then adopted
    await broker.aclose()


async def test_rejection_raises_with_the_reason(server: Served, fake: FakeAlpaca) -> None:
    broker = make_broker(server.url)
    fake.reject = (403, {"code": 40310000, "message": "insufficient buying power"})
    with pytest.raises(BrokerError) as caught:
        await broker.submit_order(order())
    assert caught.value.rejected
    assert "insufficient buying power" in str(caught.value)
    assert "403" in str(caught.value)
    await broker.aclose()


async def test_unprocessable_client_order_id_that_is_no_duplicate_stays_a_rejection(
    server: Served, fake: FakeAlpaca
) -> None:
    broker = make_broker(server.url)
    fake.reject = (422, {"code": 40010001, "message": "client_order_id is too long"})
    with pytest.raises(BrokerError, match="too long") as caught:
        await broker.submit_order(order())
    assert caught.value.rejected
    await broker.aclose()


@pytest.mark.parametrize("status", [500, 503, 408])
async def test_server_errors_are_not_rejections(
    server: Served, fake: FakeAlpaca, status: int
) -> None:
    broker = make_broker(server.url)
    fake.reject = (status, "upstream trouble")
    with pytest.raises(BrokerError) as caught:
        await broker.submit_order(order())
    assert not caught.value.rejected
    assert str(status) in str(caught.value)
    assert fake.posts == 1  # alpaca-py's own blocking retry is off
    await broker.aclose()


async def test_slow_server_times_out_quickly(server: Served, fake: FakeAlpaca) -> None:
    broker = make_broker(server.url, timeout=0.3)
    fake.sleep = 3.0
    started = time.monotonic()
    with pytest.raises(BrokerError) as caught:
        await broker.submit_order(order())
    elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert not caught.value.rejected
    assert "timed out" in str(caught.value)
    with pytest.raises(BrokerError):
        await broker.get_account()
    await broker.aclose()


async def test_the_event_loop_is_free_while_alpaca_answers(
    server: Served, fake: FakeAlpaca
) -> None:
    broker = make_broker(server.url, timeout=2)
    fake.sleep = 0.3
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await broker.get_account()
    task.cancel()
    assert ticks >= 10
    await broker.aclose()


async def test_connection_refused_is_an_unknown_outcome() -> None:
    broker = make_broker(f"http://127.0.0.1:{free_port()}", timeout=1)
    with pytest.raises(BrokerError) as caught:
        await broker.submit_order(order())
    assert not caught.value.rejected
    assert "unreachable" in str(caught.value)
    await broker.aclose()


async def test_keys_never_appear_in_errors(server: Served, fake: FakeAlpaca) -> None:
    broker = make_broker(server.url)
    # A server (or a proxy) echoing the credentials back in its error text.
    fake.reject = (400, {"code": 1, "message": f"bad request from {KEY_ID}/{SECRET}"})
    with pytest.raises(BrokerError) as caught:
        await broker.submit_order(order())
    text = str(caught.value)
    assert SECRET not in text and KEY_ID not in text
    assert "***" in text
    # Wrong keys: the 401 says so without quoting them.
    wrong = make_broker(server.url, secret="another-wrong-secret-value")
    with pytest.raises(BrokerError) as caught:
        await wrong.get_account()
    assert "401" in str(caught.value)
    assert "another-wrong-secret-value" not in str(caught.value)
    assert SECRET not in repr(broker._config) and KEY_ID not in repr(broker._config)
    await broker.aclose()
    await wrong.aclose()


async def test_get_order_by_client_id(server: Served, fake: FakeAlpaca) -> None:
    broker = make_broker(server.url)
    assert await broker.get_order("th-none") is None
    await broker.submit_order(order("th-1"))
    fake.orders["th-1"]["status"] = "DONE_FOR_DAY"  # any case: mapped lowercased
    found = await broker.get_order("th-1")
    assert found is not None
    assert found.status == "done_for_day"
    assert found.is_final
    await broker.aclose()


async def test_account_positions_and_open_orders(server: Served, fake: FakeAlpaca) -> None:
    broker = make_broker(server.url)
    account = await broker.get_account()
    assert (account.cash, account.equity, account.buying_power) == (
        Decimal("25000.5"),
        Decimal("30000.75"),
        Decimal("50001"),
    )
    fake.positions = [
        {
            "symbol": "AAPL",
            "qty": "10",
            "avg_entry_price": "100.5",
            "market_value": "1010",
            "side": "long",
        },
        {"symbol": "MSFT", "qty": "-2", "avg_entry_price": "400", "market_value": "-810"},
    ]
    positions = await broker.list_positions()
    assert [(p.symbol, p.qty, p.market_value) for p in positions] == [
        ("AAPL", Decimal(10), Decimal(1010)),
        ("MSFT", Decimal(-2), Decimal(-810)),
    ]
    await broker.submit_order(order("th-open"))
    await broker.submit_order(order("th-done"))
    fake.orders["th-done"]["status"] = "filled"
    open_orders = await broker.list_open_orders()
    assert [o.client_order_id for o in open_orders] == ["th-open"]
    assert open_orders[0].raw["side"] == "buy"
    await broker.aclose()


async def test_garbled_answer_is_an_unknown_outcome(server: Served, fake: FakeAlpaca) -> None:
    broker = make_broker(server.url)
    fake.positions = [{"no": "symbol"}]
    with pytest.raises(BrokerError) as caught:
        await broker.list_positions()
    assert not caught.value.rejected
    await broker.aclose()


def test_paper_and_live_urls() -> None:
    paper = AlpacaBroker(AlpacaConfig(key_id=KEY_ID, secret_key=SECRET, paper=True))
    live = AlpacaBroker(AlpacaConfig(key_id=KEY_ID, secret_key=SECRET, paper=False))
    assert paper._client._base_url == "https://paper-api.alpaca.markets"
    assert live._client._base_url == "https://api.alpaca.markets"


async def test_book_reads_account_positions_and_open_orders_together(
    server: Served, fake: FakeAlpaca
) -> None:
    broker = make_broker(server.url)
    fake.positions = [
        {"symbol": "AAPL", "qty": "3", "avg_entry_price": "100", "market_value": "303"}
    ]
    await broker.submit_order(order("th-open"))
    book = await broker.get_book()
    assert book.account.cash == Decimal("25000.5")
    assert [(p.symbol, p.qty) for p in book.positions] == [("AAPL", Decimal(3))]
    assert [o.client_order_id for o in book.open_orders] == ["th-open"]
    await broker.aclose()


async def test_a_batch_of_orders_gives_each_its_own_outcome(
    server: Served, fake: FakeAlpaca
) -> None:
    broker = make_broker(server.url)
    await broker.submit_order(order("th-1"))
    outcomes = await broker.submit_orders([order("th-1"), order("th-2")])
    assert [getattr(o, "client_order_id", None) for o in outcomes] == ["th-1", "th-2"]
    assert len(fake.orders) == 2  # th-1 adopted, not sent twice
    fake.reject = (403, {"code": 40310000, "message": "insufficient buying power"})
    [refused] = await broker.submit_orders([order("th-3")])
    assert isinstance(refused, BrokerError) and refused.rejected
    assert "insufficient buying power" in str(refused)
    await broker.aclose()


async def test_a_big_batch_is_not_timed_out_waiting_for_threads(
    server: Served, fake: FakeAlpaca
) -> None:
    """Each request answers in 0.25 s, well inside its 1 s timeout (2 s deadline); 64 orders
    take longer than that in all, and none may time out for waiting its turn."""
    fake.sleep = 0.25
    broker = make_broker(server.url, timeout=1.0)
    outcomes = await broker.submit_orders([order(f"th-{i:03d}") for i in range(64)])
    assert [type(o).__name__ for o in outcomes] == ["BrokerOrder"] * 64
    # (not `fake.posts`: a slow request of an earlier test may still land on the shared fake)
    assert {f"th-{i:03d}" for i in range(64)} <= set(fake.orders)
    await broker.aclose()


# --- the pipeline on Alpaca: requests that outlive their call ------------------------------


def _alpaca_env(url: str, timeout: str) -> dict[str, str]:
    return {
        "TRADING_BROKER": "alpaca",
        "APCA_API_KEY_ID": KEY_ID,
        "APCA_API_SECRET_KEY": SECRET,
        "APCA_API_BASE_URL": url,
        "TRADING_BROKER_TIMEOUT_SECONDS": timeout,
    }


def _slow_posts(container: Any, seconds: float, sending: asyncio.Event | None = None) -> None:
    """Every order POST of `container`'s broker takes `seconds` before it leaves (a slow
    connect): the call gives up or is cancelled while its thread still sends the order."""
    loop = asyncio.get_running_loop()
    client = container.broker._client
    real = client.post

    def slow(path: str, body: Any) -> Any:
        if sending is not None:
            loop.call_soon_threadsafe(sending.set)
        time.sleep(seconds)
        return real(path, body)

    client.post = slow


async def _decision_statuses(database: Any) -> list[str]:
    from sqlalchemy import select

    from torghut.db.tables import TradeDecisionRow

    async with database.sessions() as session:
        return list((await session.execute(select(TradeDecisionRow.status))).scalars())


async def test_an_order_past_its_deadline_is_not_rejected_while_still_being_sent(
    database: Any, tmp_path: Any, server: Served, fake: FakeAlpaca
) -> None:
    from tests.integration.test_pipeline_behaviour import _buys
    from torghut.bootstrap import build_container
    from torghut.config import load_settings

    env = {"DB_DSN": database.dsn, **_alpaca_env(server.url, "0.25")}
    container = await build_container(
        load_settings(env, None), signals_path=_buys(tmp_path, 1), trading_enabled=True
    )
    _slow_posts(container, 0.8)  # past the 0.5 s deadline, then it lands
    try:
        first = await container.pipeline.run_cycle()
        # The broker cannot say yet: the decision waits, it is not rejected.
        assert (first.committed, first.rejected, first.submitted) == (False, {}, 0)
        assert await _decision_statuses(database) == ["planned"]
        assert await container.broker.settle(5) == 0
        assert list(fake.orders) and len(fake.orders) == 1
        second = await container.pipeline.run_cycle()  # the next poll adopts it
        assert (second.committed, second.submitted) == (True, 1)
        assert await _decision_statuses(database) == ["submitted"]
    finally:
        await container.aclose()


async def test_a_cancelled_cycle_waits_for_the_order_it_was_sending_and_it_is_adopted(
    database: Any, tmp_path: Any, server: Served, fake: FakeAlpaca
) -> None:
    """Shutdown cancels a cycle while an order is on its thread: the cycle ends only once that
    request is done, so the next leader, even one that would veto, finds and records it."""
    from tests.integration.test_gate_table import FakeProvider
    from tests.integration.test_pipeline_behaviour import _buys, _env, run_one_cycle
    from torghut.bootstrap import build_container
    from torghut.config import load_settings

    signals = _buys(tmp_path, 1)
    old = await build_container(
        load_settings({"DB_DSN": database.dsn, **_alpaca_env(server.url, "2")}, None),
        signals_path=signals,
        trading_enabled=True,
    )
    sending = asyncio.Event()
    _slow_posts(old, 0.5, sending)
    try:
        cycle = asyncio.create_task(old.pipeline.run_cycle())
        await sending.wait()
        cycle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cycle
        assert len(fake.orders) == 1  # landed before the cycle let go
        assert await _decision_statuses(database) == ["planned"]
        provider = FakeProvider("veto")
        env = _env(
            database.dsn,
            LLM_SHADOW_MODE="false",
            LLM_FAIL_MODE="veto",
            **_alpaca_env(server.url, "2"),
        )
        result = await run_one_cycle(env, signals, provider)
        assert (result.submitted, result.rejected, provider.calls) == (1, {}, 0)
        assert await _decision_statuses(database) == ["submitted"]
    finally:
        await old.aclose()


async def test_an_order_alpaca_places_after_our_read_timeout_is_adopted_not_rejected(
    database: Any, tmp_path: Any, server: Served, fake: FakeAlpaca
) -> None:
    """Alpaca answers after our read timeout gave up, then places the order: one "not found"
    right after the timeout must not reject the decision; the next cycle adopts the order."""
    from tests.integration.test_pipeline_behaviour import _buys
    from torghut.bootstrap import build_container
    from torghut.config import load_settings

    env = {"DB_DSN": database.dsn, **_alpaca_env(server.url, "0.25")}
    container = await build_container(
        load_settings(env, None), signals_path=_buys(tmp_path, 1), trading_enabled=True
    )
    fake.post_sleep = 0.8
    try:
        first = await container.pipeline.run_cycle()
        assert (first.committed, first.rejected, first.submitted) == (False, {}, 0)
        assert await _decision_statuses(database) == ["planned"]
        for _ in range(200):  # the late order lands (bounded wait, nothing timed is asserted)
            if fake.orders:
                break
            await asyncio.sleep(0.05)
        fake.post_sleep = 0
        second = await container.pipeline.run_cycle()
        assert (second.committed, second.submitted, second.rejected) == (True, 1, {})
        assert len(fake.orders) == 1
        assert await _decision_statuses(database) == ["submitted"]
    finally:
        await container.aclose()


# --- pacing: one budget for every call, Alpaca's headers obeyed ------------------------------


def _busiest(times: list[float], span: float) -> int:
    """The most requests seen in any window of `span` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= span:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_every_call_shares_one_budget_of_requests_per_minute(
    server: Served, fake: FakeAlpaca
) -> None:
    """600 a minute: bursts of 60, then 10 a second, orders and reads together."""
    broker = make_broker(server.url, per_minute=600)
    try:
        reads = [broker.get_account() for _ in range(10)]
        await asyncio.gather(broker.submit_orders([order(f"th-{i}") for i in range(70)]), *reads)
    finally:
        await broker.aclose()
    assert len(fake.orders) == 70
    times = [t for t, _what, _status in fake.seen]
    assert len(times) == 80
    # In any second: at most the burst, the second's tokens, and the 4 requests in flight.
    assert _busiest(times, 1.0) <= 60 + 10 + 4, _busiest(times, 1.0)


async def test_a_429_storm_places_every_order_once_without_looking_any_up(
    database: Any, tmp_path: Any, server: Served, fake: FakeAlpaca
) -> None:
    """Alpaca takes 8 requests a second and we would send 6000 a minute: its headers slow us
    down, a 429 is sent again after its pause instead of becoming an unknown outcome (that
    used to cost a look-up by client order id, itself refused), and one cycle places all."""
    from tests.integration.test_pipeline_behaviour import _buys
    from torghut.bootstrap import build_container
    from torghut.config import load_settings

    fake.per_second = 8
    env = {
        "DB_DSN": database.dsn,
        **_alpaca_env(server.url, "5"),
        "ALPACA_MAX_REQUESTS_PER_MINUTE": "6000",
    }
    container = await build_container(
        load_settings(env, None), signals_path=_buys(tmp_path, 24), trading_enabled=True
    )
    try:
        result = await container.pipeline.run_cycle()
    finally:
        await container.aclose()
    assert (result.submitted, result.rejected) == (24, {})
    assert await _decision_statuses(database) == ["submitted"] * 24
    assert len(fake.orders) == 24 and fake.count("POST /v2/orders", 200) == 24
    assert fake.count("GET /v2/orders:by_client_order_id") == 0  # no look-ups
    refused = fake.count("POST /v2/orders", 429) + fake.count("GET /v2/account", 429)
    seconds = {int(t) for t, _w, _s in fake.seen}
    # Refusals only from requests already in flight when the allowance ran out.
    assert refused <= 4 * len(seconds), (refused, len(seconds))


async def test_an_order_only_ever_refused_with_429_is_known_not_placed(
    server: Served, fake: FakeAlpaca
) -> None:
    broker = make_broker(server.url, timeout=0.5)
    fake.reject = (429, {"code": 42910000, "message": "rate limit exceeded"})
    try:
        with pytest.raises(BrokerError) as caught:
            await broker.submit_order(order("th-429"))
        assert not caught.value.rejected and "429" in str(caught.value)
        asked = len(fake.headers)
        assert await broker.get_order("th-429") is None
        assert len(fake.headers) == asked  # answered without asking Alpaca
        # Once a sending had another outcome, Alpaca is asked again.
        fake.reject = (500, "upstream trouble")
        with pytest.raises(BrokerError):
            await broker.submit_order(order("th-429"))
        fake.reject = None
        assert await broker.get_order("th-429") is None
        assert len(fake.headers) > asked + 1
    finally:
        await broker.aclose()


async def test_prices_go_out_on_alpacas_tick(server: Served, fake: FakeAlpaca) -> None:
    broker = make_broker(server.url)
    try:
        await broker.submit_order(
            order(
                "th-buy",
                order_type=OrderType.STOP_LIMIT,
                limit_price=Decimal("11.055"),
                stop_price=Decimal("11.055"),
            )
        )
        await broker.submit_order(
            order(
                "th-sell",
                side=Action.SELL,
                order_type=OrderType.LIMIT,
                limit_price=Decimal("0.601349"),
            )
        )
    finally:
        await broker.aclose()
    buy, sell = fake.orders["th-buy"], fake.orders["th-sell"]
    assert (buy["limit_price"], buy["stop_price"]) == ("11.05", "11.06")
    assert sell["limit_price"] == "0.6014"


# --- reconciliation on Alpaca: lists, not one look-up per order; the no-answer sweep ----------


def _place_at_fake(fake: FakeAlpaca, coid: str, status: str = "accepted", **fields: Any) -> None:
    fake.orders[coid] = {
        **_order_json(
            {
                "client_order_id": coid,
                "symbol": "AAPL",
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
                "qty": "10",
            },
            status,
        ),
        **fields,
    }


async def test_reconciliation_lists_orders_instead_of_looking_each_up(
    database: Any, server: Served, fake: FakeAlpaca
) -> None:
    """60 working orders: one request for the open ones, one for those closed since; none
    asked for by client order id (it was one request per order, every pass)."""
    from tests.integration.test_reconcile import add_execution, load
    from torghut.trading.reconcile import reconcile

    for i in range(60):
        await add_execution(database, f"th-{i:02d}", broker="alpaca")
        _place_at_fake(fake, f"th-{i:02d}")
    for i in range(0, 60, 3):
        fake.orders[f"th-{i:02d}"].update(
            status="filled",
            filled_qty="10",
            filled_avg_price="99.5",
            filled_at="2026-03-02T15:31:00Z",
        )
    fake.orders["th-01"]["status"] = "partially_filled"
    fake.orders["th-01"]["filled_qty"] = "4"
    broker = make_broker(server.url)
    try:
        result = await reconcile(database.db, broker)
    finally:
        await broker.aclose()
    assert (result.polled, result.errors, result.finalised) == (60, 0, 20)
    assert fake.count("GET /v2/orders") == 2 == result.requests
    assert fake.count("GET /v2/orders:by_client_order_id") == 0
    execution, decision = await load(database, "th-00")
    assert (execution.status, execution.filled_qty, decision.status) == ("filled", 10, "filled")
    execution, decision = await load(database, "th-01")
    assert (execution.status, execution.filled_qty) == ("partially_filled", 4)
    assert (await load(database, "th-02"))[0].status == "accepted"


async def test_an_order_neither_list_holds_is_looked_up_by_itself(
    database: Any, server: Served, fake: FakeAlpaca
) -> None:
    """Recorded long after it was sent (an earlier run's order adopted later), or unknown to
    Alpaca: only those are asked for one by one."""
    from tests.integration.test_reconcile import add_execution, load
    from torghut.trading.reconcile import MISSING_POLLS_KEY, reconcile

    await add_execution(database, "th-open", broker="alpaca")
    _place_at_fake(fake, "th-open")
    await add_execution(database, "th-old", broker="alpaca")
    _place_at_fake(
        fake,
        "th-old",
        status="filled",
        filled_qty="10",
        filled_avg_price="98",
        submitted_at="2020-01-01T00:00:00+00:00",
    )
    await add_execution(database, "th-gone", broker="alpaca")
    broker = make_broker(server.url)
    try:
        result = await reconcile(database.db, broker)
    finally:
        await broker.aclose()
    assert fake.count("GET /v2/orders") == 2
    assert fake.count("GET /v2/orders:by_client_order_id") == 2  # th-old and th-gone
    assert result.requests == 4
    assert (await load(database, "th-old"))[0].status == "filled"
    gone, _ = await load(database, "th-gone")
    assert gone.raw_json == {MISSING_POLLS_KEY: 1}


async def _add_unanswered(database: Any, coid: str, rejected_at: datetime) -> None:
    from torghut.db.tables import Strategy, TradeDecisionRow

    async with database.sessions() as session, session.begin():
        if await session.get(Strategy, "s1") is None:
            session.add(Strategy(id="s1", params={}))
            await session.flush()
        session.add(
            TradeDecisionRow(
                id=uuid.uuid4(),
                strategy_id="s1",
                symbol="AAPL",
                timeframe="1Min",
                action="buy",
                qty=Decimal(10),
                decision_json={"order_type": "limit"},
                decision_hash=coid,
                status="rejected",
                reason="broker_no_answer",
                event_ts=rejected_at,
                created_at=rejected_at - timedelta(minutes=2),
                updated_at=rejected_at,
            )
        )


async def _decision(database: Any, coid: str) -> Any:
    from sqlalchemy import select

    from torghut.db.tables import ExecutionRow, TradeDecisionRow

    async with database.sessions() as session:
        decision = (
            await session.execute(
                select(TradeDecisionRow).where(TradeDecisionRow.decision_hash == coid)
            )
        ).scalar_one()
        execution = (
            await session.execute(select(ExecutionRow).where(ExecutionRow.client_order_id == coid))
        ).scalar_one_or_none()
        return decision, execution


async def test_the_sweep_finds_and_records_a_broker_no_answer_order_that_landed(
    database: Any, server: Served, fake: FakeAlpaca
) -> None:
    from torghut.trading.reconcile import FOUND_REASON, reconcile

    now = datetime.now(UTC)
    await _add_unanswered(database, "th-landed", now - timedelta(minutes=1))
    await _add_unanswered(database, "th-never", now - timedelta(minutes=1))
    await _add_unanswered(database, "th-long-ago", now - timedelta(hours=3))
    _place_at_fake(
        fake,
        "th-landed",
        status="filled",
        filled_qty="10",
        filled_avg_price="99",
        type="limit",
        limit_price="100.5",
        filled_at="2026-03-02T15:31:00Z",
    )
    _place_at_fake(fake, "th-long-ago")  # past the sweep's hour: no longer looked for
    broker = make_broker(server.url)
    try:
        first = await reconcile(database.db, broker)
        second = await reconcile(database.db, broker)
    finally:
        await broker.aclose()
    assert (first.found, first.requests) == (1, 1)  # one list request for all of them
    assert fake.count("GET /v2/orders:by_client_order_id") == 0
    decision, execution = await _decision(database, "th-landed")
    assert (decision.status, decision.reason) == ("filled", FOUND_REASON)
    assert decision.executed_at is not None
    assert execution is not None
    assert (execution.status, execution.filled_qty, execution.avg_fill_price) == (
        "filled",
        10,
        Decimal("99"),
    )
    assert (execution.order_type, execution.limit_price, execution.broker) == (
        "limit",
        Decimal("100.5"),
        "alpaca",
    )
    for coid in ("th-never", "th-long-ago"):
        decision, execution = await _decision(database, coid)
        assert (decision.status, decision.reason, execution) == (
            "rejected",
            "broker_no_answer",
            None,
        )
    # Recorded once: the next pass reconciles it as an execution (final: not polled) and
    # sweeps only what is still unanswered.
    assert second.found == 0
