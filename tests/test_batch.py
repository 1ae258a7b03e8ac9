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


async def test_a_lingering_batch_waits_for_the_items_in_flight_until_it_is_full() -> None:
    recorder = Recorder()
    asked: list[int] = []
    lingering = asyncio.Event()

    def busy(size: int) -> bool:
        asked.append(size)
        lingering.set()
        return True  # more are always said to be coming: only a full batch ends the wait

    batcher = Batcher(recorder.flush, max_size=3, linger=3600, busy=busy)
    async with asyncio.timeout(30):  # a batch that waited out its linger would fail here
        first = asyncio.ensure_future(batcher.submit(1))
        await lingering.wait()  # the drain asked whether more may come: it lingers with [1]
        rest = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
        assert await asyncio.gather(first, *rest) == [2, 4, 6]
    assert recorder.batches == [[1, 2, 3]]
    assert asked == [1]


async def test_a_lone_item_does_not_linger_when_nothing_else_is_in_flight() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, linger=3600, busy=lambda size: size < 1)
    async with asyncio.timeout(30):
        assert await batcher.submit(21) == 42
    assert recorder.batches == [[21]]


async def test_a_linger_ends_with_what_it_has() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, linger=0.001, busy=lambda _: True)
    async with asyncio.timeout(30):
        assert await batcher.submit(4) == 8
    assert recorder.batches == [[4]]
