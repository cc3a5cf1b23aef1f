"""The runtime halt in the database (`trading_halt`, one row; `trading_halt_events`, the
history): the `HaltStore` of the service, shared by every process on the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from torghut.db.engine import Database
from torghut.db.tables import TradingHaltEvent, TradingHaltRow, storable_text
from torghut.domain import utcnow
from torghut.trading.halt import RUNNING, HaltState

_KEY = "trading"
_HALT: Table = TradingHaltRow.__table__  # type: ignore[assignment]
# Read before every cycle: a Core statement on the session's connection, not an ORM `get`
# (whose identity map and loading cost several times the statement).
_READ = select(_HALT.c.halted, _HALT.c.reason, _HALT.c.since).where(_HALT.c.id == bindparam("id"))


def _state(row: Any) -> HaltState:
    """The state a `trading_halt` row (or a row of `_READ`) holds; None: never halted."""
    if row is None or not row.halted:
        return RUNNING
    # As stored: a row written in this session still holds the reason as given, and the
    # column stores it with NUL and lone surrogates replaced (what the operator is answered).
    reason = row.reason
    return HaltState(True, None if reason is None else storable_text(reason), row.since)


class DatabaseHaltStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load(self) -> HaltState:
        def read(session: Session) -> HaltState:
            return _state(session.connection().execute(_READ, {"id": _KEY}).first())

        return await self._db.run(read)

    async def save(self, state: HaltState, *, action: str, reason: str) -> HaltState:
        def write(session: Session) -> HaltState:
            row = session.get(TradingHaltRow, _KEY, with_for_update=True)
            if row is None:
                row = TradingHaltRow(id=_KEY)
                session.add(row)
            row.halted = state.halted
            row.reason = state.reason
            row.since = state.since
            row.updated_at = utcnow()
            session.add(TradingHaltEvent(action=action, reason=reason))
            session.flush()
            return _state(row)

        try:
            return await self._db.run(write)
        except IntegrityError:
            # Two first-ever writes raced to insert the row: the loser updates it instead.
            return await self._db.run(write)
