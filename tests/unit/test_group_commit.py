"""`GroupCommit`: callers that arrive together share one flush; each gets its own outcome."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence

import pytest

from torghut.trading.group_commit import GroupCommit


class Recorder:
    """A flush that records each batch and answers `item * 10`; optionally held on an event
    (so a test decides when a flush finishes) and counting how many run at the same time."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.hold_first = hold_first
        self.active = 0
        self.max_active = 0

    async def __call__(self, items: list[int]) -> Sequence[int | Exception]:
        self.batches.append(list(items))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.started.set()
            if self.hold_first and len(self.batches) == 1:
                await self.release.wait()
            return [item * 10 for item in items]
        finally:
            self.active -= 1


def no_hang(test: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """A broken group leaves its callers waiting forever: fail such a test instead of hanging
    the suite. The deadline is generous and asserts nothing about speed."""

    @functools.wraps(test)
    async def guarded() -> None:
        async with asyncio.timeout(30):
            await test()

    return guarded


async def settle() -> None:
    """Let every ready task run up to its next wait (no wall-clock time involved)."""
    for _ in range(5):
        await asyncio.sleep(0)


@no_hang
async def test_tasks_started_together_share_one_flush_in_order() -> None:
    flush = Recorder()
    group: GroupCommit[int, int] = GroupCommit(flush)
    results = await asyncio.gather(*(group(i) for i in range(50)))
    assert flush.batches == [list(range(50))]
    assert results == [i * 10 for i in range(50)]


@no_hang
async def test_a_lone_caller_is_flushed_without_waiting_for_company() -> None:
    flush = Recorder()
    group: GroupCommit[int, int] = GroupCommit(flush)
    assert await group(1) == 10
    assert await group(2) == 20
    assert flush.batches == [[1], [2]]


@no_hang
async def test_an_exception_outcome_is_raised_to_its_caller_only() -> None:
    bad = ValueError("item 1 refused")

    async def flush(items: list[int]) -> Sequence[int | Exception]:
        return [bad if item == 1 else item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(flush)
    results = await asyncio.gather(group(0), group(1), group(2), return_exceptions=True)
    assert results[0] == 0
    assert results[1] is bad
    assert results[2] == 20


@no_hang
async def test_an_exception_raised_by_flush_goes_to_every_caller_of_that_flush() -> None:
    boom = OSError("database gone")
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> Sequence[int | Exception]:
        calls.append(list(items))
        raise boom

    group: GroupCommit[int, int] = GroupCommit(flush)
    results = await asyncio.gather(*(group(i) for i in range(3)), return_exceptions=True)
    assert calls == [[0, 1, 2]]
    assert all(r is boom for r in results)


@no_hang
async def test_a_wrong_number_of_outcomes_is_a_runtime_error_for_every_caller() -> None:
    async def flush(items: list[int]) -> Sequence[int | Exception]:
        return [item * 10 for item in items][:-1]

    group: GroupCommit[int, int] = GroupCommit(flush)
    results = await asyncio.gather(*(group(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert "2 outcomes for 3 items" in str(results[0])


@no_hang
async def test_too_many_outcomes_is_also_a_runtime_error() -> None:
    async def flush(items: list[int]) -> Sequence[int | Exception]:
        return [*items, 99]

    group: GroupCommit[int, int] = GroupCommit(flush)
    with pytest.raises(RuntimeError, match="2 outcomes for 1 items"):
        await group(1)


@no_hang
async def test_items_queued_during_a_flush_go_to_the_next_one() -> None:
    flush = Recorder(hold_first=True)
    group: GroupCommit[int, int] = GroupCommit(flush)
    first = [asyncio.create_task(group(i)) for i in (1, 2)]
    await flush.started.wait()
    later = [asyncio.create_task(group(i)) for i in (3, 4, 5)]
    await settle()
    # The first flush is still held: nothing else has been flushed, no caller answered.
    assert flush.batches == [[1, 2]]
    assert not any(t.done() for t in first + later)
    flush.release.set()
    assert await asyncio.gather(*first) == [10, 20]
    assert await asyncio.gather(*later) == [30, 40, 50]
    assert flush.batches == [[1, 2], [3, 4, 5]]
    assert flush.max_active == 1  # one flush at a time


@no_hang
async def test_a_cancelled_caller_stops_waiting_but_its_item_is_flushed() -> None:
    flush = Recorder(hold_first=True)
    group: GroupCommit[int, int] = GroupCommit(flush)
    tasks = [asyncio.create_task(group(i)) for i in (1, 2, 3)]
    await flush.started.wait()
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert not tasks[0].done() and not tasks[2].done()
    flush.release.set()
    assert await tasks[0] == 10
    assert await tasks[2] == 30
    assert flush.batches == [[1, 2, 3]]
    # The group still works afterwards.
    assert await group(4) == 40


@no_hang
async def test_a_caller_cancelled_while_queued_takes_its_item_back() -> None:
    flush = Recorder(hold_first=True)
    group: GroupCommit[int, int] = GroupCommit(flush)
    held = asyncio.create_task(group(1))
    await flush.started.wait()
    queued = [asyncio.create_task(group(i)) for i in (2, 3)]
    await settle()
    queued[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued[0]
    flush.release.set()
    assert await held == 10
    assert await queued[1] == 30
    assert flush.batches == [[1], [3]]


@no_hang
async def test_the_group_works_again_after_a_failed_flush() -> None:
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> Sequence[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            raise OSError("first flush fails")
        if len(calls) == 2:
            return []  # wrong length
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(flush)
    with pytest.raises(OSError, match="first flush fails"):
        await group(1)
    with pytest.raises(RuntimeError):
        await group(2)
    assert list(await asyncio.gather(group(3), group(4))) == [30, 40]
    assert calls == [[1], [2], [3, 4]]


@no_hang
async def test_items_queued_during_a_failing_flush_are_still_flushed() -> None:
    release = asyncio.Event()
    started = asyncio.Event()
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> Sequence[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            started.set()
            await release.wait()
            raise OSError("first flush fails")
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(flush)
    failing = asyncio.create_task(group(1))
    await started.wait()
    later = asyncio.create_task(group(2))
    await settle()
    release.set()
    with pytest.raises(OSError, match="first flush fails"):
        await failing
    assert await later == 20
    assert calls == [[1], [2]]


@no_hang
async def test_a_caller_one_loop_turn_late_still_joins_the_flush() -> None:
    # The runner waits one turn of the loop before flushing, so a caller that reaches the
    # group one turn after the first (its task had one more await to pass) shares the flush.
    flush = Recorder()
    group: GroupCommit[int, int] = GroupCommit(flush)

    async def one_turn_late(item: int) -> int:
        await asyncio.sleep(0)
        return await group(item)

    assert list(await asyncio.gather(group(0), one_turn_late(1))) == [0, 10]
    assert flush.batches == [[0, 1]]


@no_hang
async def test_aclose_cancels_the_flush_in_progress_and_the_queue() -> None:
    flush = Recorder(hold_first=True)
    group: GroupCommit[int, int] = GroupCommit(flush)
    in_flight = asyncio.create_task(group(1))
    await flush.started.wait()
    queued = asyncio.create_task(group(2))
    await settle()
    await group.aclose()
    for task in (in_flight, queued):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert flush.batches == [[1]]  # 2 never reached a flush
    flush.release.set()
    assert await group(4) == 40  # usable again
    assert flush.batches == [[1], [4]]


@no_hang
async def test_a_runner_cancelled_before_its_first_flush_leaves_no_caller_waiting() -> None:
    flush = Recorder()
    group: GroupCommit[int, int] = GroupCommit(flush)
    caller = asyncio.create_task(group(1))
    await asyncio.sleep(0)  # the caller has queued and started the runner
    await group.aclose()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert flush.batches == []


@no_hang
async def test_cancelling_the_task_in_aclose_cancels_that_task() -> None:
    flush = Recorder(hold_first=True)
    group: GroupCommit[int, int] = GroupCommit(flush)
    caller = asyncio.create_task(group(1))
    await flush.started.wait()
    after_aclose: list[bool] = []

    async def closer() -> None:
        await group.aclose()
        after_aclose.append(True)

    closing = asyncio.create_task(closer())
    await asyncio.sleep(0)  # closer is inside aclose, waiting for the runner
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert after_aclose == []
    with pytest.raises(asyncio.CancelledError):
        await caller


@no_hang
async def test_a_caller_arriving_during_aclose_is_cancelled_not_flushed_beside_it() -> None:
    unwinding, unwound = asyncio.Event(), asyncio.Event()
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> Sequence[int | Exception]:
        batches.append(list(items))
        try:
            await asyncio.Event().wait()  # held until cancelled
        except asyncio.CancelledError:
            unwinding.set()
            await unwound.wait()  # a rollback taking its time
            raise
        return []

    group: GroupCommit[int, int] = GroupCommit(flush)
    first = asyncio.create_task(group(1))
    await settle()
    closing = asyncio.create_task(group.aclose())
    await unwinding.wait()
    late = asyncio.create_task(group(2))
    await settle()
    unwound.set()
    await closing
    for task in (first, late):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert batches == [[1]]


@no_hang
async def test_a_runner_that_fails_leaves_no_caller_waiting() -> None:
    async def flush(items: list[int]) -> Sequence[object]:
        # Not an Exception: handing it to a future fails, and the runner with it.
        return [StopIteration("broken"), 20]

    group: GroupCommit[int, object] = GroupCommit(flush)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(group(1), group(2), return_exceptions=True)
    assert [type(o) for o in outcomes] == [asyncio.CancelledError, asyncio.CancelledError]


@no_hang
async def test_aclose_from_inside_a_flush_is_refused() -> None:
    group: GroupCommit[int, int]

    async def flush(items: list[int]) -> Sequence[int | Exception]:
        await group.aclose()
        return [0]

    group = GroupCommit(flush)
    with pytest.raises(RuntimeError, match="from inside a flush"):
        await group(1)
