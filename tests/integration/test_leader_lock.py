"""The trading lock: a released lock is free for the next service at once, not when the engine
that held it is disposed (the connection pool used to keep the advisory lock's session)."""

from __future__ import annotations

from tests.conftest import Database
from torghut.db.engine import create_engine_from_dsn
from torghut.trading.scheduler import LeaderLock


async def test_a_released_lock_is_taken_by_the_next_service_at_once(database: Database) -> None:
    first_engine = create_engine_from_dsn(database.dsn)
    second_engine = create_engine_from_dsn(database.dsn)
    first, second = LeaderLock(first_engine), LeaderLock(second_engine)
    try:
        assert await first.try_acquire()
        if database.kind == "postgresql":
            assert not await second.try_acquire(), "two leaders at once"
        await first.release()
        assert not first.held
        # The first engine stays open (the service goes on as a standby): its pool must not
        # keep the lock's session, and with it the lock.
        assert await second.try_acquire(), "the released lock is still held"
        if database.kind == "postgresql":
            assert not await first.try_acquire(), "the first took back a lock it lost"
        await second.release()
        assert await first.try_acquire(), "a lock taken and released twice is stuck"
        await first.release()
    finally:
        await first.release()
        await second.release()
        await first_engine.dispose()
        await second_engine.dispose()
