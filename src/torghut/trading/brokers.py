"""The simulated broker: cash, positions and orders kept in the database (`sim_accounts`,
`sim_positions`, `sim_orders`), so a replay or a demo survives a restart and the API can show
what it did.

Rules, kept deliberately simple:

- A market order fills at once, in full, at the order's `reference_price`; without one it is
  refused. A limit order fills at once when the reference price allows it (buy: price ≤
  limit; sell: price ≥ limit), at that price; otherwise it rests as `new` (an IOC or FOK limit
  is `canceled` instead) until `mark()` brings a price that allows it. Stop orders are refused.
- A buy needs cash net of what resting buys have reserved (their qty × limit); a sell needs
  the long position net of resting sells: the simulation never goes short.
- A refusal at submission raises `BrokerError(rejected=True)` with the reason and leaves no
  order behind, as a real broker answering 4xx would. A resting order that can no longer be
  paid for when its price comes becomes `rejected`, with its reason.
- Idempotent: submitting a `client_order_id` that exists returns that order (adoption) and
  never fills twice, across processes too.

Concurrency: every write starts by updating the account row, which serializes all writers of
one book on both databases (a row lock on PostgreSQL; SQLite's write lock, taken at the first
statement so that no reads happen on a stale snapshot first). After that lock, cash,
positions and orders are read fresh, so no update is lost. The primary key on
`sim_orders.client_order_id` stays the last guard: an `IntegrityError` means another writer
got there first, and its order is adopted.

The tables have no account column on positions and orders: one database holds one simulated
book; `account_id` names its cash row.
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from torghut.db.engine import Database, executemany, expect_all_matched, update_by_key
from torghut.db.tables import SimAccount, SimOrder, SimPosition
from torghut.domain import (
    Account,
    Action,
    Book,
    BrokerOrder,
    OrderRequest,
    OrderType,
    Position,
    TimeInForce,
    utcnow,
)
from torghut.errors import BrokerError

NEW = "new"
FILLED = "filled"
CANCELED = "canceled"
REJECTED = "rejected"

# The scale of the `Money` columns: amounts are rounded to it before they are stored, so what
# is read back is what was computed.
_QUANTUM = Decimal("0.00000001")


def _q(value: Decimal) -> Decimal:
    # Decimal(value) only for what is not one yet: it copies a Decimal for nothing.
    return (value if type(value) is Decimal else Decimal(value)).quantize(_QUANTUM)


# The sides as stored (an enum's `.value` is a property call, and these are compared on every
# order and every resting order it is weighed against), and back to the enum without `Action()`.
_BUY = Action.BUY.value
_SELL = Action.SELL.value
_ACTIONS = {action.value: action for action in Action}


def _sim_order_id() -> str:
    """`f"sim-{uuid.uuid4()}"`, spelled out: the same 16 random bytes with the same version
    (4) and variant (RFC 4122) bits, in the same text, for a third of its cost (a `UUID` object
    and its int-to-text round trip per order)."""
    h = os.urandom(16).hex()
    # Variant: the top two bits of byte 8 are 10, so its first hex digit is one of 8, 9, a, b.
    variant = "89ab"[int(h[16], 16) & 3]
    return f"sim-{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


# The book is read and written with Core statements into plain rows: it is read and written
# on every cycle, and SQLAlchemy's ORM (identity map, unit of work) cost several times more.
_ACCOUNTS: Table = SimAccount.__table__  # type: ignore[assignment]
_POSITIONS: Table = SimPosition.__table__  # type: ignore[assignment]
_ORDERS: Table = SimOrder.__table__  # type: ignore[assignment]


@dataclass(slots=True, eq=False)
class _AccountRow:
    id: str
    cash: Decimal
    updated_at: datetime | None = None


@dataclass(slots=True, eq=False)
class _PositionRow:
    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    last_price: Decimal
    updated_at: datetime | None = None


@dataclass(slots=True, eq=False)
class _OrderRow:
    client_order_id: str
    broker_order_id: str
    symbol: str
    side: str
    order_type: str
    time_in_force: str
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: str
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime


def _columns_of(row_type: type[Any]) -> Callable[[Any], dict[str, Any]]:
    """A row's values by column name, for an insert. Not dataclasses.asdict (it deep-copies
    every Decimal and datetime), nor `fields()` per row (it rebuilds the field list each time):
    the names are taken once, the values in one C call."""
    names = tuple(f.name for f in fields(row_type))
    values = operator.attrgetter(*names)
    return lambda row: dict(zip(names, values(row), strict=True))


_order_columns = _columns_of(_OrderRow)
_position_columns = _columns_of(_PositionRow)


# The book's statements are built once: building one (and its cache key) costs more than
# running it on a small book, and the book is read on every cycle. Parameters by name.
def _orders_where(where: ColumnElement[bool]) -> Select[Any]:
    return select(_ORDERS).where(where).order_by(_ORDERS.c.created_at, _ORDERS.c.client_order_id)


_OPEN_ORDERS = _orders_where(_ORDERS.c.status == NEW)
_ORDER = _orders_where(_ORDERS.c.client_order_id == bindparam("id"))
_ORDERS_IN = _orders_where(_ORDERS.c.client_order_id.in_(bindparam("ids", expanding=True)))
_POSITIONS_IN = (
    select(_POSITIONS)
    .where(_POSITIONS.c.symbol.in_(bindparam("symbols", expanding=True)))
    .order_by(_POSITIONS.c.symbol)
)
_ALL_POSITIONS = select(_POSITIONS).order_by(_POSITIONS.c.symbol)
_HELD = select(_POSITIONS).where(_POSITIONS.c.qty != 0).order_by(_POSITIONS.c.symbol)
_ACCOUNT = select(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("account"))
_TOUCH_ACCOUNT = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account"))
    .values(updated_at=bindparam("now", type_=_ACCOUNTS.c.updated_at.type))
)
_WRITE_ACCOUNT = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account"))
    .values(
        cash=bindparam("cash", type_=_ACCOUNTS.c.cash.type),
        updated_at=bindparam("now", type_=_ACCOUNTS.c.updated_at.type),
    )
)


def _same_order(table: Table, row_type: type[Any]) -> None:
    # The book's rows are built from result tuples by position (a Row's `_mapping` and keyword
    # arguments cost several times more, on every position and order of every batch): the
    # table's columns and the row's fields must agree, name by name.
    columns = [c.name for c in table.columns]
    names = [f.name for f in fields(row_type)]
    if columns != names:
        raise RuntimeError(f"{table.name} columns {columns} differ from {row_type.__name__}")


_same_order(_ACCOUNTS, _AccountRow)
_same_order(_POSITIONS, _PositionRow)
_same_order(_ORDERS, _OrderRow)


def _orders(
    conn: Connection, query: Select[Any], params: dict[str, Any] | None = None
) -> list[_OrderRow]:
    return [_OrderRow(*row) for row in conn.execute(query, params)]


def _positions(
    conn: Connection, query: Select[Any], params: dict[str, Any] | None = None
) -> list[_PositionRow]:
    return [_PositionRow(*row) for row in conn.execute(query, params)]


def _open_orders(conn: Connection) -> list[_OrderRow]:
    return _orders(conn, _OPEN_ORDERS)


def _held(conn: Connection) -> list[_PositionRow]:
    return _positions(conn, _HELD)


_ORDER_CHANGES = ("status", "filled_qty", "avg_fill_price", "reject_reason", "updated_at")
_POSITION_CHANGES = ("qty", "avg_entry_price", "last_price", "updated_at")
_UPDATE_ORDER = update_by_key(_ORDERS, "client_order_id", _ORDER_CHANGES)
_UPDATE_POSITION = update_by_key(_POSITIONS, "symbol", _POSITION_CHANGES)
_INSERT_ORDER = insert(_ORDERS)
_INSERT_POSITION = insert(_POSITIONS)


class SimBroker:
    """A `Broker` whose book lives in the database. See the module docstring for the rules."""

    def __init__(
        self,
        db: Database,
        *,
        starting_cash: Decimal,
        account_id: str = "default",
    ) -> None:
        self._db = db
        self._starting_cash = _q(Decimal(starting_cash))
        self._account_id = account_id
        self._account_ready = False

    @property
    def name(self) -> str:
        return "sim"

    async def aclose(self) -> None:
        """Nothing to release: the database belongs to the caller."""

    async def settle(self, grace_seconds: float) -> int:
        """Nothing of its own runs outside the event loop: its transactions run on the
        `Database`, which its owner settles (the pipeline's `quiesce`)."""
        return 0

    # --- reads -------------------------------------------------------------------------------

    async def get_book(self) -> Book:
        """Account, positions and resting orders from one session (one round of reads)."""
        await self._ensure_account()

        def read(session: Session) -> Book:
            conn = session.connection()
            row = conn.execute(
                _ACCOUNT, {"account": self._account_id}
            ).one()  # created above, never deleted
            return _as_book(_AccountRow(*row), _held(conn), _open_orders(conn))

        return await self._db.run(read)

    async def get_account(self) -> Account:
        return (await self.get_book()).account

    async def list_positions(self) -> list[Position]:
        return (await self.get_book()).positions

    async def list_open_orders(self) -> list[BrokerOrder]:
        return (await self.get_book()).open_orders

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        def read(session: Session) -> BrokerOrder | None:
            found = _orders(session.connection(), _ORDER, {"id": client_order_id})
            return _to_broker_order(found[0]) if found else None

        return await self._db.run(read)

    # --- writes ------------------------------------------------------------------------------

    async def submit_order(self, order: OrderRequest) -> BrokerOrder:
        """Fill, rest or refuse `order` in one transaction; adopt it if it already exists."""
        [outcome] = await self.submit_orders([order])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def submit_orders(self, orders: Sequence[OrderRequest]) -> list[BrokerOrder | Exception]:
        """`submit_order` for several orders in one transaction, in the given order (each sees
        the cash and positions the earlier ones left). A refusal is that order's
        `BrokerError`, in its place in the result; it leaves nothing behind."""
        if not orders:
            return []
        await self._ensure_account()

        def place(session: Session) -> list[BrokerOrder | Exception]:
            conn = session.connection()
            book = self._open_book(conn, {o.symbol.upper() for o in orders})
            ids = list(dict.fromkeys(o.client_order_id for o in orders))
            existing = {row.client_order_id: row for row in _orders(conn, _ORDERS_IN, {"ids": ids})}
            outcomes: list[BrokerOrder | Exception] = []
            for order in orders:
                known = existing.get(order.client_order_id)
                if known is not None:
                    outcomes.append(_to_broker_order(known))
                    continue
                try:
                    row = book.place(order)
                except BrokerError as exc:
                    outcomes.append(exc)
                    continue
                existing[row.client_order_id] = row
                outcomes.append(_to_broker_order(row))
            book.write(conn)
            return outcomes

        try:
            return await self._db.run(place)
        except IntegrityError:
            # Another writer inserted one of these client_order_ids between our read and our
            # insert: everything of ours was rolled back. One at a time, theirs is adopted.
            if len(orders) > 1:
                return await self._one_at_a_time(orders)
            adopted = await self.get_order(orders[0].client_order_id)
            if adopted is None:
                raise
            return [adopted]
        except (ArithmeticError, ValueError, TypeError, DataError):
            # One order the book cannot compute or store (a quantity past the columns'
            # precision, say) rolled the whole batch back: one at a time, only it fails.
            if len(orders) > 1:
                return await self._one_at_a_time(orders)
            raise

    async def _one_at_a_time(self, orders: Sequence[OrderRequest]) -> list[BrokerOrder | Exception]:
        outcomes: list[BrokerOrder | Exception] = []
        for order in orders:
            try:
                outcomes.extend(await self.submit_orders([order]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def mark(self, symbol: str, price: Decimal) -> None:
        """A new last price for `symbol`: see `mark_prices`."""
        await self.mark_prices({symbol: price})

    async def mark_prices(self, prices: Mapping[str, Decimal]) -> Book:
        """New last prices, in one transaction: each revalues its position and fills the
        resting limit orders it allows, oldest first (or rejects those that can no longer be
        paid for). Returns the book as the marks left it (what `get_book` would read next)."""
        latest: dict[str, Decimal] = {}
        for symbol, price in prices.items():
            price = _q(Decimal(price))
            if price <= 0:
                raise ValueError(f"price of {symbol} must be positive")
            latest[symbol.upper()] = price
        if not latest:
            return await self.get_book()
        await self._ensure_account()

        def mark(session: Session) -> Book:
            conn = session.connection()
            book = self._open_book(conn, None)
            for symbol, price in latest.items():
                book.mark(symbol, price)
            book.write(conn)
            held = [p for p in book.positions.values() if p.qty != 0]
            return _as_book(book.account, sorted(held, key=lambda p: p.symbol), book.resting)

        return await self._db.run(mark)

    async def cancel_order(self, client_order_id: str) -> BrokerOrder | None:
        """Cancel a resting order; a done order is returned as it is. None when unknown."""
        await self._ensure_account()

        def cancel(session: Session) -> BrokerOrder | None:
            conn = session.connection()
            self._lock_book(conn)
            found = _orders(conn, _ORDER, {"id": client_order_id})
            if not found:
                return None
            row = found[0]
            if row.status == NEW:
                row.status = CANCELED
                row.updated_at = utcnow()
                conn.execute(_UPDATE_ORDER, [_order_changes(row)])
            return _to_broker_order(row)

        return await self._db.run(cancel)

    # --- internals ---------------------------------------------------------------------------

    async def _ensure_account(self) -> None:
        if self._account_ready:
            return

        def create(session: Session) -> None:
            if session.get(SimAccount, self._account_id) is None:
                session.add(SimAccount(id=self._account_id, cash=self._starting_cash))

        # IntegrityError: created concurrently by another broker on the same database.
        with contextlib.suppress(IntegrityError):
            await self._db.run(create)
        self._account_ready = True

    def _lock_book(self, conn: Connection) -> _AccountRow:
        """Take the book's write lock (see the module docstring), then read the account."""
        conn.execute(_TOUCH_ACCOUNT, {"account": self._account_id, "now": utcnow()})
        row = conn.execute(_ACCOUNT, {"account": self._account_id}).one()
        return _AccountRow(*row)

    def _open_book(self, conn: Connection, symbols: set[str] | None) -> _Book:
        """Lock the book, then read what orders on `symbols` can touch: the account, those
        positions (every position with None) and every resting order (resting buys reserve
        cash across symbols)."""
        account = self._lock_book(conn)
        positions = (
            _positions(conn, _ALL_POSITIONS)
            if symbols is None
            else _positions(conn, _POSITIONS_IN, {"symbols": list(symbols)})
        )
        return _Book(
            account=account,
            positions={p.symbol: p for p in positions},
            resting=_open_orders(conn),
        )


def _changes_of(key: str, columns: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    """A row's parameters for `update_by_key(table, key, columns)`, names made once."""
    names = ("b_key", *(f"b_{c}" for c in columns))
    values = operator.attrgetter(key, *columns)
    return lambda row: dict(zip(names, values(row), strict=True))


_order_changes = _changes_of("client_order_id", _ORDER_CHANGES)
_position_changes = _changes_of("symbol", _POSITION_CHANGES)


@dataclass
class _Book:
    """One transaction's view of the book, after its lock: the account, the positions of the
    symbols in play and the resting orders. Orders are placed and prices marked in memory on
    these rows, and `write` stores what changed in a few statements, which is what lets a
    batch of orders cost one round of statements instead of one per order."""

    account: _AccountRow
    positions: dict[str, _PositionRow]
    resting: list[_OrderRow]
    # What `write` stores: rows to insert, rows to update (keyed, so each is written once).
    new_orders: dict[str, _OrderRow] = field(default_factory=dict)
    changed_orders: dict[str, _OrderRow] = field(default_factory=dict)
    new_positions: dict[str, _PositionRow] = field(default_factory=dict)
    changed_positions: dict[str, _PositionRow] = field(default_factory=dict)
    account_changed: bool = False
    # `_reserved(resting[:counted])`, carried on by `_resting_reserve` (see there).
    _reserve: tuple[int, Decimal] = field(default=(0, Decimal(0)), init=False, repr=False)

    def write(self, conn: Connection) -> None:
        now = utcnow()
        if self.account_changed:
            conn.execute(
                _WRITE_ACCOUNT, {"account": self.account.id, "cash": self.account.cash, "now": now}
            )
        for row in (*self.changed_positions.values(), *self.new_positions.values()):
            row.updated_at = now
        if self.new_positions:
            executemany(
                conn, _INSERT_POSITION, list(map(_position_columns, self.new_positions.values()))
            )
        if self.changed_positions:
            matched = executemany(
                conn,
                _UPDATE_POSITION,
                [_position_changes(p) for p in self.changed_positions.values()],
            )
            expect_all_matched(matched, len(self.changed_positions), _POSITIONS.name, conn)
        if self.new_orders:
            executemany(conn, _INSERT_ORDER, list(map(_order_columns, self.new_orders.values())))
        if self.changed_orders:
            matched = executemany(
                conn, _UPDATE_ORDER, [_order_changes(o) for o in self.changed_orders.values()]
            )
            expect_all_matched(matched, len(self.changed_orders), _ORDERS.name, conn)
        self.new_orders.clear()
        self.changed_orders.clear()
        self.new_positions.clear()
        self.changed_positions.clear()
        self.account_changed = False

    def _order_changed(self, row: _OrderRow) -> None:
        if row.client_order_id not in self.new_orders:
            self.changed_orders[row.client_order_id] = row

    def _position_changed(self, row: _PositionRow) -> None:
        if row.symbol not in self.new_positions:
            self.changed_positions[row.symbol] = row

    def place(self, order: OrderRequest) -> _OrderRow:
        """The new order row, filled, resting or canceled; raises when it is refused."""
        if order.qty <= 0:
            raise BrokerError("invalid_qty: quantity must be positive", rejected=True)
        if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
            raise BrokerError(
                f"unsupported_order_type: the simulated broker takes market and limit orders, "
                f"not {order.order_type.value}",
                rejected=True,
            )
        if order.order_type is OrderType.LIMIT and order.limit_price is None:
            raise BrokerError("missing_limit_price: a limit order needs one", rejected=True)
        now = utcnow()
        row = _OrderRow(
            client_order_id=order.client_order_id,
            broker_order_id=_sim_order_id(),
            symbol=order.symbol.upper(),
            side=order.side.value,
            order_type=order.order_type.value,
            time_in_force=order.time_in_force.value,
            qty=_q(order.qty),
            limit_price=None if order.limit_price is None else _q(order.limit_price),
            stop_price=None if order.stop_price is None else _q(order.stop_price),
            status=NEW,
            filled_qty=Decimal(0),
            reject_reason=None,
            avg_fill_price=None,
            created_at=now,
            updated_at=now,
        )
        ref = None if order.reference_price is None else _q(order.reference_price)
        if order.order_type is OrderType.MARKET:
            if ref is None or ref <= 0:
                raise BrokerError(
                    "missing_price: a market order needs a reference price to fill at",
                    rejected=True,
                )
            fill_price: Decimal | None = ref
        else:
            assert row.limit_price is not None
            allows = ref is not None and ref > 0 and _limit_allows(row.side, ref, row.limit_price)
            fill_price = ref if allows else None

        if fill_price is not None:
            refusal = self._fill_refusal(row, fill_price, new=True)
            if refusal is not None:
                raise BrokerError(refusal, rejected=True)
            self.new_orders[row.client_order_id] = row
            self._fill(row, fill_price)
        elif order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            row.status = CANCELED  # immediate-or-nothing: it could not fill now
        else:
            assert row.limit_price is not None
            refusal = self._fill_refusal(row, row.limit_price, new=True)
            if refusal is not None:
                raise BrokerError(refusal, rejected=True)
            self.resting.append(row)
        self.new_orders[row.client_order_id] = row
        return row

    def mark(self, symbol: str, price: Decimal) -> None:
        position = self.positions.get(symbol)
        if position is not None and position.last_price != price:
            position.last_price = price
            self._position_changed(position)
        for row in [o for o in self.resting if o.symbol == symbol]:  # oldest first
            if row.limit_price is None or not _limit_allows(row.side, price, row.limit_price):
                continue
            refusal = self._fill_refusal(row, price)
            if refusal is None:
                self._fill(row, price)
            else:
                row.status, row.reject_reason = REJECTED, refusal
                row.updated_at = utcnow()
                self._order_changed(row)
            self.resting.remove(row)
            self._reserve = (0, Decimal(0))  # no longer a prefix of what was summed

    def _fill_refusal(self, row: _OrderRow, price: Decimal, *, new: bool = False) -> str | None:
        """Why `row` cannot be paid for (buy) or delivered (sell) at `price`, or None. Claims
        on cash and shares rank by age: the resting orders older than `row` keep what they
        reserved (all of them, for a `new` order, which is not resting yet), the newer ones
        yield to it, so a mark fills the oldest first; `row` itself is never counted twice."""
        if new:
            others = self.resting
        else:
            at = next((i for i, o in enumerate(self.resting) if o is row), len(self.resting))
            others = self.resting[:at]
        if row.side == _BUY:
            cost = _q(row.qty * price)
            available = _q(self.account.cash) - (
                self._resting_reserve() if new else _reserved(others)
            )
            if cost > available:
                return f"insufficient_buying_power: needs {cost:f}, has {available:f}"
            return None
        position = self.positions.get(row.symbol)
        held = Decimal(0) if position is None else _q(position.qty)
        selling = sum(
            (o.qty for o in others if o.symbol == row.symbol and o.side == _SELL),
            Decimal(0),
        )
        if row.qty > held - selling:
            return (
                f"shorts_not_allowed: sell {row.qty:f} {row.symbol} with {held:f} held "
                f"and {selling:f} already being sold"
            )
        return None

    def _resting_reserve(self) -> Decimal:
        """`_reserved(self.resting)`, without summing again on every order of a batch: resting
        orders are only appended between marks (which start it over), and `sum` adds left to
        right, so the sum so far carried on over the new ones is that very sum."""
        counted, total = self._reserve
        if counted != len(self.resting):
            total = _reserved(self.resting[counted:], total)
            self._reserve = (len(self.resting), total)
        return total

    def _fill(self, row: _OrderRow, price: Decimal) -> None:
        qty = _q(row.qty)
        amount = _q(qty * price)
        position = self.positions.get(row.symbol)
        self.account_changed = True
        if row.side == _BUY:
            self.account.cash = _q(self.account.cash) - amount
            if position is None:
                position = _PositionRow(
                    symbol=row.symbol, qty=qty, avg_entry_price=price, last_price=price
                )
                self.new_positions[row.symbol] = position
                self.positions[row.symbol] = position
            else:
                held = _q(position.qty)
                total = held + qty
                cost = held * _q(position.avg_entry_price) + amount
                position.avg_entry_price = _q(cost / total)
                position.qty = total
                position.last_price = price
        else:
            assert position is not None  # checked by _fill_refusal
            self.account.cash = _q(self.account.cash) + amount
            # A closed position keeps its row at zero (reads skip those), so that a later
            # order of the batch buying it back updates that row.
            position.qty = _q(position.qty) - qty
            position.last_price = price
        self._position_changed(position)
        row.status = FILLED
        row.filled_qty = qty
        row.avg_fill_price = price
        row.updated_at = utcnow()
        self._order_changed(row)


def _as_book(
    account: _AccountRow, positions: Sequence[_PositionRow], open_orders: Sequence[_OrderRow]
) -> Book:
    cash = _q(account.cash)
    equity = cash + sum((_q(p.qty * p.last_price) for p in positions), Decimal(0))
    return Book(
        account=Account(cash=cash, equity=equity, buying_power=cash - _reserved(open_orders)),
        positions=[
            Position(
                symbol=p.symbol,
                qty=_q(p.qty),
                avg_entry_price=_q(p.avg_entry_price),
                market_value=_q(p.qty * p.last_price),
            )
            for p in positions
        ],
        open_orders=[_to_broker_order(o) for o in open_orders],
        last_prices={p.symbol: _q(p.last_price) for p in positions},
    )


def _limit_allows(side: str, price: Decimal, limit: Decimal) -> bool:
    return price <= limit if side == _BUY else price >= limit


def _reserved(open_orders: Sequence[_OrderRow], start: Decimal = Decimal(0)) -> Decimal:
    """Cash promised to resting buys, at their limit: the most each of them can cost (added
    to `start`: the sum over earlier orders, carried on)."""
    return sum(
        (
            _q((o.qty - o.filled_qty) * o.limit_price)
            for o in open_orders
            if o.side == _BUY and o.limit_price is not None
        ),
        start,
    )


def _to_broker_order(row: _OrderRow) -> BrokerOrder:
    # Each amount quantized once, for its field and its text alike (in the order the fields
    # are read, so that a value that cannot be quantized fails on the same one).
    filled_qty = _q(row.filled_qty)
    avg_fill_price = None if row.avg_fill_price is None else _q(row.avg_fill_price)
    side = _ACTIONS.get(row.side) or Action(row.side)
    qty = _q(row.qty)
    limit_price = None if row.limit_price is None else _q(row.limit_price)
    stop_price = None if row.stop_price is None else _q(row.stop_price)
    return BrokerOrder(
        broker_order_id=row.broker_order_id,
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        status=row.status,
        filled_qty=filled_qty,
        avg_fill_price=avg_fill_price,
        reject_reason=row.reject_reason,
        side=side,
        qty=qty,
        limit_price=limit_price,
        # The same keys as Alpaca's order JSON, for the execution row's `raw_json`.
        raw={
            "id": row.broker_order_id,
            "client_order_id": row.client_order_id,
            "symbol": row.symbol,
            "side": row.side,
            "type": row.order_type,
            "time_in_force": row.time_in_force,
            "qty": str(qty),
            "filled_qty": str(filled_qty),
            "limit_price": None if limit_price is None else str(limit_price),
            "stop_price": None if stop_price is None else str(stop_price),
            "filled_avg_price": None if avg_fill_price is None else str(avg_fill_price),
            "status": row.status,
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "updated_at": row.updated_at.isoformat() if row.updated_at else None,
        },
    )
