"""The circuit breaker, on a fake clock."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from torghut.trading.llm.circuit import CircuitBreaker, CircuitState, Permit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = datetime(2026, 2, 9, 12, 0, tzinfo=UTC)

    def __call__(self) -> float:
        return self.now

    def wall_clock(self) -> datetime:
        return self.wall + timedelta(seconds=self.now - 1000.0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transitions() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, transitions: list[tuple[str, str]]) -> CircuitBreaker:
    return CircuitBreaker(
        3,
        60,
        120,
        clock=clock,
        wall_clock=clock.wall_clock,
        on_transition=lambda old, new: transitions.append((old, new)),
    )


def state(breaker: CircuitBreaker) -> CircuitState:
    # A function, not the property: mypy would narrow the property across calls.
    return breaker.state


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        permit.failure()


def open_breaker(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.max_errors)
    assert state(breaker) is CircuitState.OPEN


def test_closed_gives_permits(breaker: CircuitBreaker) -> None:
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None and second is not None
    assert not first.probe
    first.success()
    second.success()
    assert breaker.snapshot()["state"] == "closed"


def test_opens_after_max_errors_within_window(
    breaker: CircuitBreaker, clock: FakeClock, transitions: list[tuple[str, str]]
) -> None:
    fail(breaker, 2)
    clock.advance(30)
    assert state(breaker) is CircuitState.CLOSED
    fail(breaker)
    assert state(breaker) is CircuitState.OPEN
    assert breaker.acquire() is None
    snap = breaker.snapshot()
    assert snap == {
        "state": "open",
        "open_until": (clock.wall_clock() + timedelta(seconds=120)).isoformat(),
        "recent_error_count": 3,
        "max_errors": 3,
        "window_seconds": 60.0,
        "cooldown_seconds": 120.0,
        "opened_count": 1,
    }
    assert transitions == [("closed", "open")]


def test_failures_outside_the_window_do_not_count(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 2)
    clock.advance(60)  # those two are now exactly a window old: out
    fail(breaker, 2)
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.snapshot()["recent_error_count"] == 2
    fail(breaker)
    assert state(breaker) is CircuitState.OPEN


def test_successes_do_not_reset_the_window(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    permit = breaker.acquire()
    assert permit is not None
    permit.success()
    fail(breaker)
    assert state(breaker) is CircuitState.OPEN


def test_open_refuses_until_cooldown(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_breaker(breaker)
    clock.advance(119.9)
    assert breaker.acquire() is None
    clock.advance(0.1)
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    assert breaker.snapshot()["state"] == "half_open"
    assert breaker.snapshot()["open_until"] is None


def test_half_open_lets_exactly_one_probe_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_breaker(breaker)
    clock.advance(120)
    probe = breaker.acquire()
    assert probe is not None
    assert [breaker.acquire() for _ in range(5)] == [None] * 5


def test_probe_success_closes_and_clears_the_window(
    breaker: CircuitBreaker, clock: FakeClock, transitions: list[tuple[str, str]]
) -> None:
    open_breaker(breaker)
    clock.advance(120)
    probe = breaker.acquire()
    assert probe is not None
    probe.success()
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.snapshot()["recent_error_count"] == 0
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    fail(breaker, 2)
    assert state(breaker) is CircuitState.CLOSED  # the old failures are gone


def test_probe_failure_reopens_for_a_full_cooldown(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_breaker(breaker)
    clock.advance(120)
    probe = breaker.acquire()
    assert probe is not None
    probe.failure()
    assert state(breaker) is CircuitState.OPEN
    assert breaker.snapshot()["opened_count"] == 2
    clock.advance(119)
    assert breaker.acquire() is None
    clock.advance(1)
    assert breaker.acquire() is not None


def test_release_without_outcome_allows_another_probe(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_breaker(breaker)
    clock.advance(120)
    probe = breaker.acquire()
    assert probe is not None
    assert breaker.acquire() is None
    probe.release()
    assert state(breaker) is CircuitState.HALF_OPEN
    second = breaker.acquire()
    assert second is not None and second.probe


def test_context_manager_releases_an_unsettled_permit(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_breaker(breaker)
    clock.advance(120)
    permit = breaker.acquire()
    assert permit is not None
    with pytest.raises(RuntimeError), permit as probe:
        assert isinstance(probe, Permit)
        raise RuntimeError("caller blew up")
    assert breaker.acquire() is not None


def test_context_manager_keeps_an_outcome(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_breaker(breaker)
    clock.advance(120)
    permit = breaker.acquire()
    assert permit is not None
    with permit:
        permit.failure()
    assert state(breaker) is CircuitState.OPEN


def test_settling_is_idempotent(breaker: CircuitBreaker, clock: FakeClock) -> None:
    permit = breaker.acquire()
    assert permit is not None
    permit.failure()
    permit.failure()
    permit.success()
    permit.release()
    assert permit.settled
    assert breaker.snapshot()["recent_error_count"] == 1


def test_stale_permits_cannot_move_a_newer_state(breaker: CircuitBreaker, clock: FakeClock) -> None:
    early = breaker.acquire()  # taken while closed, finishes after the breaker opened
    assert early is not None
    open_breaker(breaker)
    early.failure()
    assert breaker.snapshot()["opened_count"] == 1
    clock.advance(120)
    probe = breaker.acquire()
    assert probe is not None
    late = breaker.acquire()
    assert late is None
    probe.success()
    assert state(breaker) is CircuitState.CLOSED


def test_zero_cooldown_goes_straight_to_half_open(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 10, 0, clock=clock)
    fail(breaker)
    probe = breaker.acquire()
    assert probe is not None and probe.probe


@pytest.mark.parametrize(("args"), [(0, 1, 1), (1, 0, 1), (1, 1, -1)])
def test_bad_settings(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(*args)


def test_transitions_are_logged(
    breaker: CircuitBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="torghut.circuit")
    open_breaker(breaker)
    clock.advance(120)
    breaker.acquire()
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "torghut.circuit"]
    assert levels[0][0] == logging.WARNING and "-> open" in levels[0][1]
    assert levels[1][0] == logging.INFO and "open -> half_open" in levels[1][1]


def test_a_failing_transition_hook_is_contained(clock: FakeClock) -> None:
    def hook(old: str, new: str) -> None:
        raise RuntimeError("metrics down")

    breaker = CircuitBreaker(1, 10, 10, clock=clock, on_transition=hook)
    fail(breaker)
    assert state(breaker) is CircuitState.OPEN


async def test_concurrent_probes_in_one_event_loop(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    """Many tasks race for the half-open breaker while the probe's call is in flight: exactly
    one is sent; once it succeeds, everyone gets through again."""
    open_breaker(breaker)
    clock.advance(120)
    sent = 0
    in_flight = asyncio.Event()
    finish = asyncio.Event()

    async def call() -> str:
        nonlocal sent
        permit = breaker.acquire()
        if permit is None:
            return "refused"
        with permit:
            sent += 1
            in_flight.set()
            await finish.wait()  # the network call: no lock held across it
            permit.success()
        return "sent"

    tasks = [asyncio.create_task(call()) for _ in range(20)]
    await in_flight.wait()
    await asyncio.sleep(0)
    assert sent == 1
    finish.set()
    results = await asyncio.gather(*tasks)
    assert results.count("sent") == 1
    assert results.count("refused") == 19
    assert state(breaker) is CircuitState.CLOSED
    assert all(breaker.acquire() is not None for _ in range(5))


async def test_cancelled_probe_releases(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_breaker(breaker)
    clock.advance(120)
    started = asyncio.Event()

    async def probe_call() -> None:
        permit = breaker.acquire()
        assert permit is not None
        with permit:
            started.set()
            await asyncio.sleep(3600)
            permit.success()

    task = asyncio.create_task(probe_call())
    await started.wait()
    assert breaker.acquire() is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.acquire() is not None
