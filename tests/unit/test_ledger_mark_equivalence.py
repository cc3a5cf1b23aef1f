"""`BatchLedger.mark` (every signal's price goes through it) gives what it gave before its
common case was written inline (issue 16): on random runs of prices, the same answers, the
same references (down to each Decimal's spelling), the same changed symbols and marks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from torghut.domain import Account, Book, Position
from torghut.trading.ledger import BatchLedger, PriceReference, _value, check_price
from torghut.trading.risk import RiskLimits


def reference_mark(ledger: BatchLedger, symbol: str, price: Decimal) -> bool:
    """`BatchLedger.mark` before issue 16, verbatim (on the ledger's own state)."""
    symbol = symbol.upper()
    accepted, reference = check_price(ledger.references.get(symbol), price, ledger.max_price_move)
    if reference != ledger.references.get(symbol):
        ledger.references[symbol] = reference
        ledger.changed_references.add(symbol)
    if accepted:
        ledger.marked[symbol] = price
        holding = ledger.holdings.get(symbol)
        if holding is not None:
            before = _value(holding)
            holding.last_price = price
            ledger._held_value += _value(holding) - before
    return accepted


def _ledger(references: dict[str, PriceReference], move: Decimal) -> BatchLedger:
    book = Book(
        Account(Decimal(10_000), Decimal(10_500), Decimal(10_000)),
        [Position("AAPL", Decimal(5), Decimal(100), Decimal(500))],
        [],
    )
    return BatchLedger.open(
        book,
        limits=RiskLimits(),
        max_price_move=move,
        fills_at_once=True,
        references=references,
        last_trade_at={},
    )


def _state(ledger: BatchLedger) -> Any:
    return (
        sorted((s, repr(r)) for s, r in ledger.references.items()),
        sorted(ledger.changed_references),
        sorted((s, repr(p)) for s, p in ledger.marked.items()),
        repr(ledger.equity),
    )


_price = st.one_of(
    st.sampled_from(["100", "100.0", "100.00", "105", "111", "90", "89.99", "150", "150.0"]),
    st.decimals("50", "200", places=2).map(str),
).map(Decimal)
_reference = st.builds(
    PriceReference,
    st.sampled_from(["100", "100.0", "150"]).map(Decimal),
    st.one_of(st.none(), st.sampled_from(["150", "100"]).map(Decimal)),
    st.integers(0, 2),
)


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["AAPL", "MSFT"]), _reference, max_size=2),
    st.lists(st.tuples(st.sampled_from(["AAPL", "msft", "MSFT", "NVDA"]), _price), max_size=12),
    st.sampled_from([Decimal("0.10"), Decimal("0.5"), Decimal(0)]),
)
def test_mark_answers_and_leaves_what_it_did(
    references: dict[str, PriceReference], ticks: list[tuple[str, Decimal]], move: Decimal
) -> None:
    new, old = _ledger(references, move), _ledger(references, move)
    for symbol, price in ticks:
        assert new.mark(symbol, price) == reference_mark(old, symbol, price)
        assert _state(new) == _state(old)
