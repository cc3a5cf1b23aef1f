"""Group commit: decisions that reach the same write at about the same time share it.

The decisions of a batch run as concurrent tasks; each used to open its own transaction for
its order and for its execution row, and on SQLite every statement is a round trip to
aiosqlite's thread. A `GroupCommit` queues each caller's item and hands whatever is queued to
one `flush(items)` call: a batch of 500 decisions that all pass risk at once becomes one
broker transaction and one execution transaction, while a decision arriving alone (after its
review, say) is flushed at once, without waiting for company.

Written by hand: the asyncio standard library has no request-coalescing primitive, and the
ones in third-party libraries (dataloaders) batch reads by key rather than writes with
per-item outcomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]


class GroupCommit(Generic[T, R]):
    """`await group(item)` returns `item`'s result from `flush`, or raises its exception.

    One flush runs at a time; items queued while it runs go to the next one, in arrival order.
    `flush` returns one outcome per item, in order: a value, or the exception that item's
    caller gets. An exception raised by `flush` itself goes to every caller of that flush.

    Cancellation: a caller cancelled before its flush starts takes its item back (it is not
    written). A flush already running is not stopped by one caller leaving, since it carries
    other callers' items; `aclose()` stops everything, and the pipeline calls it when its cycle
    is cancelled, so nothing of a cancelled cycle reaches the broker afterwards."""

    def __init__(self, flush: Flush[T, R]) -> None:
        self._flush = flush
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._batch: list[tuple[T, asyncio.Future[R]]] = []  # the flush in progress
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
            self._runner.add_done_callback(self._runner_done)
        return await future

    async def aclose(self) -> None:
        """Cancel the flush in progress and everything queued (callers arriving meanwhile
        too); their callers get `CancelledError`. The group can be used again afterwards.
        Cancelling the task that awaits this cancels that task, as usual."""
        runner = self._runner
        if runner is asyncio.current_task():
            raise RuntimeError("aclose() from inside a flush would wait for itself")
        if runner is not None and not runner.done():
            runner.cancel()
            # `wait`, not `await runner`: the runner's own cancellation is expected, while a
            # cancellation of the task calling us must still reach it.
            await asyncio.wait([runner])
        self._abandon()

    async def _run(self) -> None:
        # One turn of the loop first, so that tasks started together (a batch's decisions) all
        # queue before the first flush.
        await asyncio.sleep(0)
        while True:
            # Callers cancelled while queued took their items back.
            self._batch = [(item, f) for item, f in self._queue if not f.done()]
            self._queue = []
            if not self._batch:
                return
            try:
                outcomes = await self._flush([item for item, _ in self._batch])
                if len(outcomes) != len(self._batch):
                    raise RuntimeError(
                        f"group flush returned {len(outcomes)} outcomes for "
                        f"{len(self._batch)} items"
                    )
            except Exception as exc:
                outcomes = [exc] * len(self._batch)
            for (_, future), outcome in zip(self._batch, outcomes, strict=True):
                if future.done():  # its caller was cancelled during the flush
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            self._batch = []

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        # However the runner ended (cancelled, even before its first step; or a bug), nobody
        # it was serving may be left waiting.
        if runner.cancelled() or runner.exception() is not None:
            self._abandon()

    def _abandon(self) -> None:
        pending, self._batch, self._queue = self._batch + self._queue, [], []
        for _, future in pending:
            if not future.done():
                future.cancel()
