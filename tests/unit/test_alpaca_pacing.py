"""Alpaca's request budget (a token bucket corrected by Alpaca's headers) and its price tick,
on a hand-driven clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from torghut.domain import Action
from torghut.trading.alpaca import RequestBudget, tick_price

EPOCH = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now


def budget(per_minute: int = 180) -> tuple[RequestBudget, Clock]:
    clock = Clock()
    return RequestBudget(per_minute, clock=clock, wall_clock=clock.wall), clock


def sent_within(b: RequestBudget, clock: Clock, seconds: float) -> int:
    """How many requests the budget lets start in `seconds` when callers queue without end."""
    start, sent = clock.now, 0
    while True:
        wait = b.reserve()
        if clock.now + wait > start + seconds:
            return sent
        clock.now += wait
        sent += 1


def test_a_minute_never_sees_more_than_the_rate_plus_one_burst() -> None:
    b, clock = budget(180)
    assert sent_within(b, clock, 60) <= 180 + 18  # 198: under Alpaca's 200
    b, clock = budget(180)
    clock.now += 3600  # idle for an hour: the burst is still a tenth of a minute's
    assert sent_within(b, clock, 1) <= 18 + 3


def test_waits_its_turn_after_the_burst() -> None:
    b, _clock = budget(60)  # one a second, bursts of 6
    waits = [b.reserve() for _ in range(9)]
    assert waits[:6] == [0.0] * 6
    assert waits[6:] == pytest.approx([1.0, 2.0, 3.0])


def test_remaining_caps_the_tokens() -> None:
    b, _clock = budget(180)
    b.observe(200, {"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": str(EPOCH + 160)})
    assert [b.reserve() > 0 for _ in range(3)] == [False, False, True]


def test_remaining_zero_pauses_until_the_reset() -> None:
    b, clock = budget(6000)
    b.observe(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(clock.wall() + 7)})
    assert b.reserve() == pytest.approx(7.0)
    clock.now += 7
    assert b.reserve() == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "Fri, 15 Jan 2027 08:00:05 GMT"}, 5.0),  # an HTTP date, 5 s ahead
        ({"X-RateLimit-Reset": "rubbish"}, 1.0),  # nothing usable: a second
        ({"Retry-After": "86400"}, 60.0),  # never longer than a minute
        ({"Retry-After": "-5"}, 0.0),
    ],
)
def test_a_429_pauses_every_request(headers: dict[str, str], pause: float) -> None:
    clock = Clock()
    clock.now = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp() - EPOCH
    b = RequestBudget(6000, clock=clock, wall_clock=clock.wall)
    b.observe(429, headers)
    assert b.pause_left() == pytest.approx(pause)
    assert b.reserve() == pytest.approx(pause)


def test_a_nonsense_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        RequestBudget(0)


@pytest.mark.parametrize(
    ("price", "side", "kind", "sent"),
    [
        ("11.055", Action.BUY, "limit", "11.05"),  # never pay more than decided
        ("11.055", Action.SELL, "limit", "11.06"),  # never sell for less
        ("11.055", Action.BUY, "stop", "11.06"),  # never triggered sooner
        ("11.055", Action.SELL, "stop", "11.05"),
        ("101.5", Action.BUY, "limit", "101.50"),
        ("1.00", Action.BUY, "limit", "1.00"),
        ("0.60134", Action.BUY, "limit", "0.6013"),  # under $1.00: four decimals
        ("0.60134", Action.SELL, "limit", "0.6014"),
        ("0.99999", Action.SELL, "limit", "1.0000"),
    ],
)
def test_prices_are_on_alpacas_tick(price: str, side: Action, kind: str, sent: str) -> None:
    ticked = tick_price(Decimal(price), side, kind)
    assert ticked == Decimal(sent)
    assert str(ticked) == sent
