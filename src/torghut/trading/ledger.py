"""The batch ledger: the book as each decision of a batch sees it, at its own signal time.
Pure: no I/O, no clock, no asyncio.

A batch's signals are walked in order. Each signal's price is first checked against the
symbol's reference price (`check_price`) and, when accepted, marks the symbol; then each of its
decisions is judged against the book as it stands at that moment: the broker's book at the
start of the batch, the prices marked so far, and the decisions of the batch judged before it
that risk approved. With a broker that fills at once (the simulated one) those count as held
(cash spent, shares in the position); with a live broker, as open orders. So a replay gives the
same decisions whatever its batch size: batch 1 sees exactly what the batch's walk sees.

A reservation is given back (`Reservation.__exit__` without `keep()`) when its order does not go
out: its cash, shares and cooldown slot are free again for what comes next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import TracebackType

from torghut.domain import (
    Account,
    Action,
    Book,
    OrderType,
    Position,
    RiskResult,
    TradeDecision,
)
from torghut.trading.risk import (
    OpenOrder,
    RecentTrade,
    RiskContext,
    RiskLimits,
    StrategyLimits,
    evaluate_risk,
)

# A price outside the band becomes the reference only once this many consecutive ticks of the
# symbol, all within the band of the first of them, say so: one bad tick (or two) is refused,
# a genuine level shift (a gap at the open, a split) holds the symbol for two ticks only.
BAND_CONFIRMATIONS = 3


@dataclass(frozen=True, slots=True)
class PriceReference:
    """A symbol's reference price (the last accepted one) and the run of out-of-band ticks
    that agree with each other since (`candidate`: the first of them; `streak`: how many)."""

    price: Decimal
    candidate: Decimal | None = None
    streak: int = 0


def check_price(
    reference: PriceReference | None, price: Decimal, max_move: Decimal
) -> tuple[bool, PriceReference]:
    """Whether `price` is accepted, and the symbol's reference after it. The first price of a
    symbol is accepted. A refused price never becomes the reference; it only counts towards a
    level shift (`BAND_CONFIRMATIONS`)."""
    if reference is None or _within(price, reference.price, max_move):
        return True, PriceReference(price)
    if reference.candidate is not None and _within(price, reference.candidate, max_move):
        candidate, streak = reference.candidate, reference.streak + 1
    else:
        candidate, streak = price, 1
    if streak >= BAND_CONFIRMATIONS:
        return True, PriceReference(price)
    return False, PriceReference(reference.price, candidate, streak)


def _within(price: Decimal, reference: Decimal, max_move: Decimal) -> bool:
    return abs(price - reference) <= reference * max_move


@dataclass
class _Holding:
    qty: Decimal
    last_price: Decimal | None


@dataclass
class Reservation:
    """What one approved decision holds in the ledger until its order is out (`keep()`) or
    given back (leaving the `with` block without `keep()`)."""

    ledger: BatchLedger
    key: str
    order: OpenOrder
    held: bool  # counted as filled (cash and shares moved) rather than as an open order
    previous_trade: datetime | RecentTrade | None
    kept: bool = False
    released: bool = False

    def keep(self) -> None:
        self.kept = True

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.kept:
            self.ledger.release(self)


@dataclass
class BatchLedger:
    """See the module docstring. `fills_at_once`: the broker fills market orders (and limit
    orders their price allows) as it takes them, so an approved decision counts as held."""

    limits: RiskLimits
    max_price_move: Decimal
    fills_at_once: bool
    account: Account
    holdings: dict[str, _Holding]
    open_orders: dict[str, list[OpenOrder]]
    references: dict[str, PriceReference]
    last_trade_at: dict[str, datetime | RecentTrade]
    # Cash and buying power moved by the batch's reservations so far.
    _spent: Decimal = field(default=Decimal(0), init=False)
    # The broker's equity less what the ledger can value itself (0 for the simulated broker).
    _equity_offset: Decimal = field(default=Decimal(0), init=False)
    reservations: dict[str, Reservation] = field(default_factory=dict, init=False)
    # Running totals and an index, so that one check costs the same whatever the size of the
    # batch (risk looks at the decision's own symbol only): the value of what is held at its
    # last price, the cash promised to open buys, the batch's open orders by symbol.
    _held_value: Decimal = field(default=Decimal(0), init=False)
    _open_buy_value: Decimal = field(default=Decimal(0), init=False)
    _open_by_symbol: dict[str, dict[str, Reservation]] = field(default_factory=dict, init=False)
    # Symbols whose reference or last accepted price this batch changed.
    marked: dict[str, Decimal] = field(default_factory=dict, init=False)
    changed_references: set[str] = field(default_factory=set, init=False)

    @classmethod
    def open(
        cls,
        book: Book,
        *,
        limits: RiskLimits,
        max_price_move: Decimal,
        fills_at_once: bool,
        references: Mapping[str, PriceReference],
        last_trade_at: Mapping[str, datetime | RecentTrade],
    ) -> BatchLedger:
        holdings = {
            p.symbol.upper(): _Holding(
                p.qty,
                book.last_prices.get(p.symbol) or (p.market_value / p.qty if p.qty else None),
            )
            for p in book.positions
        }
        open_orders: dict[str, list[OpenOrder]] = {}
        for order in book.open_orders:
            # What risk would count of it: a broker order without side or quantity cannot be.
            converted = OpenOrder.from_broker_order(order)
            if converted is not None:
                open_orders.setdefault(converted.symbol, []).append(converted)
        ledger = cls(
            limits=limits,
            max_price_move=max_price_move,
            fills_at_once=fills_at_once,
            account=book.account,
            holdings=holdings,
            open_orders=open_orders,
            references=dict(references),
            last_trade_at=dict(last_trade_at),
        )
        ledger._held_value = sum((_value(h) for h in holdings.values()), Decimal(0))
        ledger._equity_offset = book.account.equity - ledger._valued()
        return ledger

    # ------------------------------------------------------------------------------ prices
    def mark(self, symbol: str, price: Decimal) -> bool:
        """A signal's price for `symbol`, in signal order: False when the band refuses it
        (then it changes neither the reference nor the valuation)."""
        symbol = symbol.upper()
        current = self.references.get(symbol)
        if current is None or _within(price, current.price, self.max_price_move):
            # `check_price`'s first case, inline (every signal comes here): accepted, and the
            # reference becomes `PriceReference(price)`, a change unless it is that already.
            accepted = True
            if (
                current is None
                or current.price != price
                or current.candidate is not None
                or current.streak != 0
            ):
                self.references[symbol] = PriceReference(price)
                self.changed_references.add(symbol)
        else:
            accepted, reference = check_price(current, price, self.max_price_move)
            if reference != current:
                self.references[symbol] = reference
                self.changed_references.add(symbol)
        if accepted:
            self.marked[symbol] = price
            holding = self.holdings.get(symbol)
            if holding is not None:
                before = _value(holding)
                holding.last_price = price
                self._held_value += _value(holding) - before
        return accepted

    # ------------------------------------------------------------------------------- views
    @property
    def equity(self) -> Decimal:
        return self._equity_offset + self._valued()

    def _valued(self) -> Decimal:
        return self.account.cash - self._spent + self._held_value

    def position(self, symbol: str) -> Decimal:
        holding = self.holdings.get(symbol.upper())
        return holding.qty if holding is not None else Decimal(0)

    def closing(self, symbol: str, side: Action) -> Decimal:
        """Shares of `symbol` that open orders (the broker's and the batch's) on `side` take."""
        return sum((o.qty for o in self._orders_in(symbol) if o.side is side), Decimal(0))

    def positions(self) -> list[Position]:
        return [
            Position(symbol, h.qty, h.last_price or Decimal(0), h.qty * (h.last_price or 0))
            for symbol, h in sorted(self.holdings.items())
            if h.qty
        ]

    def snapshot(self) -> Account:
        """The account as the next decision sees it."""
        return Account(
            cash=self.account.cash - self._spent - self._open_buys(),
            equity=self.equity,
            buying_power=self.account.buying_power - self._spent - self._open_buys(),
        )

    def _open_buys(self) -> Decimal:
        return self._open_buy_value

    def _orders_in(self, symbol: str, excluding: str | None = None) -> list[OpenOrder]:
        symbol = symbol.upper()
        mine = self._open_by_symbol.get(symbol, {})
        return [
            *self.open_orders.get(symbol, ()),
            *(r.order for key, r in mine.items() if key != excluding),
        ]

    # ------------------------------------------------------------------------ check, hold
    def check(
        self,
        decision: TradeDecision,
        key: str,
        *,
        strategy_enabled: bool = True,
        strategy_limits: StrategyLimits | None = None,
    ) -> RiskResult:
        """Risk on `decision` against the book as it stands, leaving out its own reservation
        (an adjusted decision is checked in place of the original)."""
        own = self.reservations.get(key)
        ctx = RiskContext(
            account=self._without(own),
            now=decision.event_ts,
            positions=self._positions_without(decision.symbol, own),
            open_orders=self._orders_in(decision.symbol, excluding=key),
            strategy_enabled=strategy_enabled,
            strategy_limits=strategy_limits,
            last_trade_at=self.last_trade_at,
        )
        return evaluate_risk(decision, self.limits, ctx, own_hash=key)

    def _without(self, own: Reservation | None) -> Account:
        account = self.snapshot()
        if own is None:
            return account
        # What its reservation took from cash and buying power (a held sell added to them).
        if own.order.side is Action.BUY:
            back = _cost(own.order)
        else:
            back = -_cost(own.order) if own.held else Decimal(0)
        return Account(account.cash + back, account.equity, account.buying_power + back)

    def _positions_without(self, symbol: str, own: Reservation | None) -> dict[str, Position]:
        """The position in `symbol` (risk reads no other), without `own`'s shares."""
        symbol = symbol.upper()
        qty = self.position(symbol)
        if own is not None and own.held and own.order.symbol == symbol:
            qty -= _signed(own.order)
        if not qty:
            return {}
        holding = self.holdings.get(symbol)
        price = holding.last_price if holding and holding.last_price else Decimal(0)
        return {symbol: Position(symbol, qty, price, qty * price)}

    def reserve(self, decision: TradeDecision, key: str) -> Reservation:
        """Hold what an approved decision takes: its cash and shares (held) or its open order,
        and its symbol's cooldown slot, at once, so that later decisions of the batch see it."""
        reference = decision.reference_price
        price = decision.limit_price or reference
        order = OpenOrder(
            symbol=decision.symbol.upper(),
            side=decision.action,
            qty=decision.qty,
            price=price,
            client_order_id=key,
        )
        fills = decision.order_type is OrderType.MARKET or (
            decision.order_type is OrderType.LIMIT
            and reference is not None
            and decision.limit_price is not None
            and (
                reference <= decision.limit_price
                if decision.action is Action.BUY
                else reference >= decision.limit_price
            )
        )
        held = self.fills_at_once and fills and reference is not None
        if held:
            # Filled at the reference price, as the simulated broker does.
            order = OpenOrder(order.symbol, order.side, order.qty, reference, key)
        reservation = Reservation(
            ledger=self,
            key=key,
            order=order,
            held=held,
            previous_trade=self.last_trade_at.get(order.symbol),
        )
        self._apply(reservation, +1)
        self.reservations[key] = reservation
        self.last_trade_at[order.symbol] = RecentTrade(decision.event_ts, key)
        return reservation

    def replace(
        self,
        reservation: Reservation,
        decision: TradeDecision,
        *,
        strategy_enabled: bool = True,
        strategy_limits: StrategyLimits | None = None,
    ) -> RiskResult:
        """Re-check an adjusted decision in place of what `reservation` holds; when risk
        approves, the reservation now holds the adjusted order (else it is unchanged)."""
        risk = self.check(
            decision,
            reservation.key,
            strategy_enabled=strategy_enabled,
            strategy_limits=strategy_limits,
        )
        if risk.approved:
            self._apply(reservation, -1)
            del self.reservations[reservation.key]
            renewed = self.reserve(decision, reservation.key)
            reservation.order, reservation.held = renewed.order, renewed.held
            self.reservations[reservation.key] = reservation
        return risk

    def release(self, reservation: Reservation) -> None:
        if reservation.released or self.reservations.get(reservation.key) is not reservation:
            return
        reservation.released = True
        self._apply(reservation, -1)
        del self.reservations[reservation.key]
        symbol = reservation.order.symbol
        current = self.last_trade_at.get(symbol)
        if isinstance(current, RecentTrade) and current.decision_hash == reservation.key:
            if reservation.previous_trade is None:
                del self.last_trade_at[symbol]
            else:
                self.last_trade_at[symbol] = reservation.previous_trade

    def _apply(self, reservation: Reservation, sign: int) -> None:
        order = reservation.order
        if not reservation.held:
            mine = self._open_by_symbol.setdefault(order.symbol, {})
            if sign > 0:
                mine[reservation.key] = reservation
            else:
                mine.pop(reservation.key, None)
            if order.side is Action.BUY:
                self._open_buy_value += sign * _cost(order)
            return
        self._spent += sign * _cost(order) * (1 if order.side is Action.BUY else -1)
        holding = self.holdings.setdefault(order.symbol, _Holding(Decimal(0), order.price))
        before = _value(holding)
        holding.qty += sign * _signed(order)
        if sign > 0 and holding.last_price is None:
            holding.last_price = order.price
        self._held_value += _value(holding) - before


def _value(holding: _Holding) -> Decimal:
    return Decimal(0) if holding.last_price is None else holding.qty * holding.last_price


def _cost(order: OpenOrder) -> Decimal:
    return order.qty * (order.price or Decimal(0))


def _signed(order: OpenOrder) -> Decimal:
    return order.qty if order.side is Action.BUY else -order.qty
