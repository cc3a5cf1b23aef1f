"""Quarantined batches: signals the loop gave up on after they failed the same way several
times (issue 12), kept whole in `quarantined_batches` so nothing is lost, and so an operator
can see them (`/trading/status`) and replay them once the cause is fixed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from torghut.db.engine import Database, jsonable
from torghut.db.tables import QuarantinedBatch
from torghut.domain import Signal

_ERROR_MAX = 500  # quarantined_batches.error


@dataclass(frozen=True, slots=True)
class Quarantined:
    source: str
    signals: int
    error: str
    failures: int


async def record(
    db: Database, source: str, signals: Sequence[Signal], error: str, failures: int
) -> Quarantined:
    first, last = signals[0], signals[-1]
    rows: list[Any] = [jsonable(s.model_dump(mode="json")) for s in signals]

    def write(session: Session) -> None:
        session.add(
            QuarantinedBatch(
                source=source[:256],
                first_event_ts=first.event_ts,
                first_symbol=first.symbol,
                first_seq=first.seq,
                last_event_ts=last.event_ts,
                last_symbol=last.symbol,
                last_seq=last.seq,
                signal_count=len(signals),
                signals_json=rows,
                error=error[:_ERROR_MAX],
                failures=failures,
            )
        )

    await db.run(write)
    return Quarantined(source, len(signals), error, failures)


async def summary(db: Database) -> dict[str, Any]:
    """For `/trading/status`: how many batches are quarantined, and the latest one."""

    def read(session: Session) -> dict[str, Any]:
        count = session.execute(select(func.count()).select_from(QuarantinedBatch)).scalar_one()
        latest = session.execute(
            select(QuarantinedBatch).order_by(QuarantinedBatch.id.desc()).limit(1)
        ).scalar_one_or_none()
        last = None
        if latest is not None:
            last = {
                "source": latest.source,
                "first": [latest.first_event_ts.isoformat(), latest.first_symbol, latest.first_seq],
                "last": [latest.last_event_ts.isoformat(), latest.last_symbol, latest.last_seq],
                "signals": latest.signal_count,
                "error": latest.error,
                "failures": latest.failures,
                "at": latest.quarantined_at.isoformat(),
            }
        return {"batches": int(count), "last": last}

    return await db.run(read)
