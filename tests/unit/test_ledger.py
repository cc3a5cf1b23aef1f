"""The batch ledger and the price band: pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from torghut.domain import Account, Action, Book, OrderType, Position, TradeDecision
from torghut.trading.ledger import (
    BAND_CONFIRMATIONS,
    BatchLedger,
    PriceReference,
    check_price,
)
from torghut.trading.risk import RecentTrade, RiskLimits

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
BAND = Decimal("0.10")


def walk(prices: list[str]) -> list[bool]:
    reference: PriceReference | None = None
    accepted = []
    for price in prices:
        ok, reference = check_price(reference, Decimal(price), BAND)
        accepted.append(ok)
    return accepted


def test_the_first_price_is_the_reference_and_moves_within_the_band_follow() -> None:
    assert walk(["100", "110", "121", "108.9"]) == [True, True, True, True]


def test_a_lone_bad_tick_is_refused_and_is_not_the_reference() -> None:
    assert walk(["50", "0.05", "50.2", "0.00000001", "49.9"]) == [True, False, True, False, True]


def test_a_level_shift_is_taken_after_n_agreeing_ticks() -> None:
    assert BAND_CONFIRMATIONS == 3
    assert walk(["100", "130", "131", "129", "130"]) == [True, False, False, True, True]


def test_an_in_band_tick_breaks_the_run() -> None:
    assert walk(["100", "130", "131", "101", "130", "131"]) == [
        True,
        False,
        False,
        True,
        False,
        False,
    ]


def test_ticks_that_disagree_start_a_new_run() -> None:
    assert walk(["100", "130", "60", "130", "60", "130", "131", "130"]) == [
        True,
        False,
        False,
        False,
        False,
        False,
        False,
        True,
    ]


def decision(
    action: Action = Action.BUY, qty: str = "10", price: str = "100", minute: int = 0
) -> TradeDecision:
    return TradeDecision(
        strategy_id="s",
        symbol="ACME",
        action=action,
        qty=Decimal(qty),
        order_type=OrderType.MARKET,
        event_ts=NOW + timedelta(minutes=minute),
        timeframe="1Min",
        params={"price": price},
    )


def ledger(*, fills: bool = True, held: str = "0", cooldown: float = 0) -> BatchLedger:
    positions = (
        [] if held == "0" else [Position("ACME", Decimal(held), Decimal(100), Decimal(held) * 100)]
    )
    cash = Decimal(10_000)
    book = Book(
        Account(cash, cash + sum((p.market_value for p in positions), Decimal(0)), cash),
        positions,
        [],
    )
    return BatchLedger.open(
        book,
        limits=RiskLimits(
            max_position_pct_equity=Decimal(1),
            cooldown_seconds=cooldown,
            max_notional_per_trade=Decimal(1200),
        ),
        max_price_move=BAND,
        fills_at_once=fills,
        references={},
        last_trade_at={},
    )


def test_an_approved_buy_counts_as_held_with_a_broker_that_fills_at_once() -> None:
    book = ledger(fills=True)
    book.reserve(decision(), "a")
    assert book.position("ACME") == 10
    assert book.snapshot().cash == Decimal(9_000)
    # A sell later in the batch closes what the buy holds.
    assert book.check(decision(Action.SELL, "10", minute=1), "b").approved


def test_an_approved_buy_is_an_open_order_with_a_live_broker() -> None:
    book = ledger(fills=False)
    book.reserve(decision(), "a")
    assert book.position("ACME") == 0
    assert book.closing("ACME", Action.BUY) == 10
    assert book.snapshot().buying_power == Decimal(9_000)
    assert book.check(decision(Action.SELL, "10", minute=1), "b").reasons == ("shorts_not_allowed",)


def test_marks_revalue_what_is_held() -> None:
    book = ledger(held="10")
    assert book.equity == Decimal(11_000)
    assert book.mark("ACME", Decimal(105))
    assert book.equity == Decimal(11_050)
    assert not book.mark("ACME", Decimal(500))  # refused: no revaluation
    assert book.equity == Decimal(11_050)


def test_a_reservation_given_back_frees_its_cash_shares_and_cooldown_slot() -> None:
    book = ledger(cooldown=300)
    with book.reserve(decision(), "a"):
        assert book.check(decision(minute=1), "b").reasons == ("cooldown_active",)
    # Left without keep(): its order never went out.
    assert book.position("ACME") == 0 and book.snapshot().cash == Decimal(10_000)
    assert book.check(decision(minute=1), "b").approved


def test_a_kept_reservation_stays() -> None:
    book = ledger(cooldown=300)
    with book.reserve(decision(), "a") as slot:
        slot.keep()
    assert book.position("ACME") == 10
    assert isinstance(book.last_trade_at["ACME"], RecentTrade)


def test_an_adjusted_order_replaces_the_original_in_place() -> None:
    book = ledger()
    slot = book.reserve(decision(qty="10"), "a")
    assert book.replace(slot, decision(qty="12")).approved
    assert book.position("ACME") == 12 and book.snapshot().cash == Decimal(8_800)
    refused = book.replace(slot, decision(qty="200"))
    assert not refused.approved
    assert book.position("ACME") == 12, "a refused adjustment leaves the reservation as it was"


@pytest.mark.parametrize(("held", "qty", "exempt"), [("10", "10", True), ("10", "11", False)])
def test_an_exit_is_exempt_from_the_notional_cap(held: str, qty: str, exempt: bool) -> None:
    book = ledger(held=held)
    result = book.check(decision(Action.SELL, qty, price="150"), "x")
    assert ("max_notional_exceeded" not in result.reasons) is exempt


def test_judge_checks_in_contract_order_first_match_alone() -> None:
    from torghut.trading.judge import JudgingSettings, judge
    from torghut.trading.session import SessionCalendar

    settings = JudgingSettings(max_signal_age_seconds=120, calendar=SessionCalendar("XNYS"))
    saturday = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    old = decision()  # signal at NOW, a Monday in session

    def reason(
        *,
        limits: RiskLimits | None = None,
        now: datetime = NOW,
        accepted: bool = True,
        the_decision: TradeDecision = old,
    ) -> str | None:
        return judge(
            the_decision,
            "k",
            now=now,
            price_accepted=accepted,
            spec=None,
            ledger=ledger(),
            limits=limits or RiskLimits(),
            settings=settings,
        ).reason

    assert reason(limits=RiskLimits(kill_switch=True), now=saturday, accepted=False) == (
        "kill_switch"
    )
    assert reason(now=saturday, accepted=False) == "signal_stale"
    late = decision().model_copy(update={"event_ts": saturday})
    assert reason(now=saturday, accepted=False, the_decision=late) == "market_closed"
    assert reason(accepted=False) == "price_out_of_band"
    # spec None: the decision's strategy left the catalog.
    assert reason() == "strategy_disabled"
