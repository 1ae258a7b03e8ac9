"""Client-side pacing: at most `rate` calls per second per key (e.g. per Shoplazza store).

A leaky bucket per key: each call reserves the next free slot and waits until it comes, so a
burst to one store is spread out instead of drawing 429s; other keys are not held up.
"""

from __future__ import annotations

import asyncio


class Pacer:
    """Spaces calls that share a key `1 / rate` seconds apart."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next: dict[str, float] = {}

    def reserve(self, key: str, now: float) -> float:
        """Book the next slot for `key`; seconds to wait for it from `now` (0 if free)."""
        slot = max(now, self._next.get(key, now))
        self._next[key] = slot + self._interval
        return slot - now

    async def wait(self, key: str) -> None:
        """Wait for `key`'s next slot."""
        loop = asyncio.get_running_loop()
        delay = self.reserve(key, loop.time())
        if delay > 0:
            await asyncio.sleep(delay)  # the pacing itself, not a test's wait
