"""The batcher: what arrives during a flush goes into the next one; results find their caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bridge.store.batching import Batcher


class Recorder:
    """A flush that doubles numbers, records its batches, and can be held open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def flush(self, items: Sequence[int]) -> list[int]:
        """Double each item, once the gate is open; any negative item fails the batch."""
        self.batches.append(list(items))
        self.entered.set()
        await self.gate.wait()
        if any(item < 0 for item in items):
            raise ValueError("negative")
        return [item * 2 for item in items]


async def test_a_lone_item_is_flushed_at_once() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush)
    assert await batcher.submit(21) == 42
    assert recorder.batches == [[21]]


async def test_items_arriving_during_a_flush_go_together_into_the_next() -> None:
    # Tasks created before the gate opens run (and submit) before the flush resumes: the event
    # loop runs ready callbacks in order. No sleeping needed.
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.flush)
    first = asyncio.ensure_future(batcher.submit(1))
    await recorder.entered.wait()  # the first flush is running with [1]
    rest = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, 4)]
    recorder.gate.set()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_batches_are_capped() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.flush, max_size=2)
    first = asyncio.ensure_future(batcher.submit(0))
    await recorder.entered.wait()
    rest = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2, 3, 4, 5)]
    recorder.gate.set()
    await asyncio.gather(first, *rest)
    assert recorder.batches == [[0], [1, 2], [3, 4], [5]]


async def test_a_failed_flush_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.flush)
    bad = asyncio.ensure_future(batcher.submit(-1))
    await recorder.entered.wait()
    good = asyncio.ensure_future(batcher.submit(5))
    recorder.gate.set()
    with pytest.raises(ValueError, match="negative"):
        await bad
    assert await good == 10


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.flush)
    first = asyncio.ensure_future(batcher.submit(1))
    await recorder.entered.wait()
    quitter = asyncio.ensure_future(batcher.submit(2))
    stayer = asyncio.ensure_future(batcher.submit(3))
    quitter.cancel()
    recorder.gate.set()
    assert await first == 2
    assert await stayer == 6
    assert quitter.cancelled()
