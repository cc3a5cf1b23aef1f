"""Fresh signals, in session (`trading/session.py`) and order recovery (`trading/orders.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from torghut.domain import Action, OrderRequest, OrderType, TimeInForce
from torghut.trading.orders import (
    OrderState,
    PendingOrder,
    RecoveryStep,
    recovery_step,
)
from torghut.trading.session import SessionCalendar, admission

REGULAR = SessionCalendar("XNYS")
EXTENDED = SessionCalendar("XNYS", extended_hours=True)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "regular", "extended"),
    [
        ("2025-03-03T14:30:00", True, True),  # 09:30 New York (EST): the open
        ("2025-03-03T14:29:59", False, True),
        ("2025-03-03T20:59:59", True, True),
        ("2025-03-03T21:00:00", False, True),  # 16:00: the close
        ("2025-03-04T00:59:00", False, True),  # 19:59 the evening before, New York
        ("2025-03-04T01:00:00", False, False),
        ("2025-03-03T08:59:00", False, False),  # 03:59 New York
        ("2025-03-10T13:30:00", True, True),  # after the switch to daylight time (EDT)
        ("2025-03-08T15:00:00", False, False),  # a Saturday
        ("2025-12-25T15:00:00", False, False),  # Christmas
        ("2025-11-28T18:30:00", False, True),  # the day after Thanksgiving closes at 13:00
        ("2025-11-28T22:00:00", False, False),  # and its after-hours end at 17:00
        ("2025-11-28T17:30:00", True, True),
    ],
)
def test_sessions_from_the_exchange_calendar(at: str, regular: bool, extended: bool) -> None:
    assert REGULAR.is_open(utc(at)) is regular
    assert EXTENDED.is_open(utc(at)) is extended


def test_always_open_needs_no_calendar() -> None:
    calendar = SessionCalendar("always")
    assert calendar.is_open(utc("2025-12-25T03:00:00"))
    assert calendar._calendar is None


def test_stale_comes_before_closed_and_age_is_inclusive() -> None:
    saturday = utc("2025-03-08T15:00:00")
    assert (
        admission(
            saturday - timedelta(seconds=121), saturday, max_age_seconds=120, calendar=REGULAR
        )
        == "signal_stale"
    )
    assert admission(saturday, saturday, max_age_seconds=120, calendar=REGULAR) == ("market_closed")
    monday = utc("2025-03-03T15:00:00")
    assert (
        admission(monday - timedelta(seconds=120), monday, max_age_seconds=120, calendar=REGULAR)
        is None
    )


def test_a_signal_from_the_future_is_not_fresh() -> None:
    """Dated more than the allowed age ahead of the wall clock (a bad tick's year, a feed's
    broken clock), a signal is `signal_stale`: it passed as fresh (a negative age) and, in
    `serve`, traded at once. Within the age either way (clock skew) it is fresh."""
    monday = utc("2025-03-03T15:00:00")
    for ahead, reason in ((120, None), (121, "signal_stale"), (73 * 365 * 86400, "signal_stale")):
        signal_ts = monday + timedelta(seconds=ahead)
        assert admission(signal_ts, monday, max_age_seconds=120, calendar=REGULAR) == reason


ORDER = OrderRequest(
    "th-x",
    "ACME",
    Action.BUY,
    Decimal(10),
    OrderType.MARKET,
    TimeInForce.DAY,
    reference_price=Decimal(100),
)
NOW = utc("2025-03-03T15:00:00")
SENT = PendingOrder(OrderState.SENT, ORDER, NOW - timedelta(seconds=30))


@pytest.mark.parametrize(
    ("pending", "has_it", "stopped", "window", "step"),
    [
        (PendingOrder(OrderState.NEVER_SENT), True, False, 60, RecoveryStep.ADOPT),
        (PendingOrder(OrderState.NEVER_SENT), False, False, 60, RecoveryStep.DECIDE),
        (PendingOrder(OrderState.NEVER_SENT), None, False, 60, RecoveryStep.WAIT),
        (SENT, True, False, 60, RecoveryStep.ADOPT),
        (SENT, False, False, 60, RecoveryStep.RESEND),
        (SENT, False, True, 60, RecoveryStep.WAIT),
        (SENT, False, False, 10, RecoveryStep.GIVE_UP),
        (SENT, None, False, 10, RecoveryStep.WAIT),
        (PendingOrder(OrderState.UNREADABLE), False, False, 60, RecoveryStep.WAIT),
        (PendingOrder(OrderState.UNREADABLE), True, False, 60, RecoveryStep.ADOPT),
    ],
)
def test_recovery_table(
    pending: PendingOrder,
    has_it: bool | None,
    stopped: bool,
    window: float,
    step: RecoveryStep,
) -> None:
    assert (
        recovery_step(
            pending,
            broker_has_it=has_it,
            now=NOW,
            resend_window=timedelta(seconds=window),
            sending_stopped=stopped,
        )
        is step
    )


def test_a_stored_pending_order_is_read_or_called_unreadable() -> None:
    stored = {**ORDER.to_json(), "sent_at": NOW.isoformat()}
    assert PendingOrder.from_row(stored) == PendingOrder(OrderState.SENT, ORDER, NOW)
    assert PendingOrder.from_row(None).state is OrderState.NEVER_SENT
    assert PendingOrder.from_row({"qty": "x"}).state is OrderState.UNREADABLE
