"""Natural batching: what callers submit while one flush runs goes into the next flush.

An idle batcher flushes a lone item at once (no added latency); under load, items queue while the
store is busy and go in together (one transaction for many messages).

With a `linger` and a `busy` test (the receiver: other webhooks are in flight), a batch also
waits up to `linger` for more items while `busy()` says more may come, or until it is full: a
transaction costs about as much for one row as for ten, and the requests in flight are waiting
for the broker's confirm anyway. A lone request never waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class Batcher(Generic[T, R]):
    """Submits items to `flush` in batches of at most `max_size`; each caller gets its result."""

    def __init__(
        self,
        flush: Flush[T, R],
        max_size: int = 128,
        *,
        linger: float = 0.0,
        busy: Callable[[int], bool] | None = None,
    ) -> None:
        self._flush = flush
        self._max_size = max_size
        self._linger = linger
        self._busy = busy  # given the batch's size so far: may more items come soon?
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None
        self._full: asyncio.Future[None] | None = None  # set when a lingering batch fills up

    async def submit(self, item: T) -> R:
        """`flush`'s result for `item` (or its exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        full = self._full
        if full is not None and len(self._waiting) >= self._max_size and not full.done():
            full.set_result(None)
        if self._running is None:
            self._running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._gather()
                batch = self._waiting[: self._max_size]
                del self._waiting[: self._max_size]
                await self._run(batch)
        finally:
            self._running = None
            _cancel(self._waiting)  # cancelled mid-flush: nobody will flush these
            self._waiting.clear()

    async def _gather(self) -> None:
        """Linger for more items while `busy` says they may come, up to `linger`, or until full."""
        size = len(self._waiting)
        if not self._linger or self._busy is None or size >= self._max_size:
            return
        if not self._busy(size):
            return
        self._full = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._linger):
                await self._full
        except TimeoutError:
            pass
        finally:
            self._full = None

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except asyncio.CancelledError:
            _cancel(batch)
            raise
        except Exception as exc:  # noqa: BLE001 - each caller handles it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a caller that was cancelled gave up on its result
                future.set_result(result)


def _cancel(waiting: Sequence[tuple[object, asyncio.Future[R]]]) -> None:
    for _, future in waiting:
        if not future.done():
            future.cancel()
