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
import contextlib
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
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
            self._runner.add_done_callback(self._runner_done)
        return await future

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        # A runner cancelled before its first step never reaches its own handler: its
        # callers must not wait forever.
        if runner.cancelled() and runner is self._runner:
            self._cancel(self._queue)
            self._queue = []

    async def aclose(self) -> None:
        """Cancel the flush in progress and everything queued; their callers get
        `CancelledError`. The group can be used again afterwards."""
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._cancel(self._queue)
        self._queue = []

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            # One turn of the loop first, so that tasks started together (a batch's
            # decisions) all queue before the first flush.
            await asyncio.sleep(0)
            while True:
                # Callers cancelled while queued took their items back.
                batch = [(item, f) for item, f in self._queue if not f.done()]
                self._queue = []
                if not batch:
                    return
                try:
                    outcomes = await self._flush([item for item, _ in batch])
                    if len(outcomes) != len(batch):
                        raise RuntimeError(
                            f"group flush returned {len(outcomes)} outcomes for "
                            f"{len(batch)} items"
                        )
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller was cancelled during the flush
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                batch = []
        except asyncio.CancelledError:
            self._cancel(batch + self._queue)
            self._queue = []
            raise

    @staticmethod
    def _cancel(entries: list[tuple[T, asyncio.Future[R]]]) -> None:
        for _, future in entries:
            if not future.done():
                future.cancel()
