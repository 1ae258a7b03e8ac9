"""Natural batching: what callers submit while one flush runs goes into the next flush.

An idle batcher flushes a lone item at once (no added latency); under load, items queue while the
store is busy and go in together (one transaction for many messages). No timers.
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

    def __init__(self, flush: Flush[T, R], max_size: int = 128) -> None:
        self._flush = flush
        self._max_size = max_size
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """`flush`'s result for `item` (or its exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running is None:
            self._running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_size]
                del self._waiting[: self._max_size]
                await self._run(batch)
        finally:
            self._running = None
            _cancel(self._waiting)  # cancelled mid-flush: nobody will flush these
            self._waiting.clear()

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
