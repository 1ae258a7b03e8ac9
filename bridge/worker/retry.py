"""When to try a target again: a pure schedule, and the broker-side delay tier that carries it.

Delays are served by per-TTL delay queues (one per tier) that dead-letter back to the target's
queue, so no worker sleeps and a long delay never holds up a short one.
"""

from __future__ import annotations

from collections.abc import Sequence


def retry_delay(attempt: int, *, delays: Sequence[float], retry_after: float | None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    delays[attempt - 1], the last one repeating once the schedule runs out; a target's own
    Retry-After wins when it asks for longer (it knows its load) and never shortens the wait.
    """
    if attempt < 1:
        raise ValueError("attempts count from 1")
    planned = delays[min(attempt, len(delays)) - 1]
    return max(planned, retry_after or 0.0)


def next_retry(
    attempt: int,
    *,
    elapsed: float,
    delays: Sequence[float],
    total: float,
    retry_after: float | None,
) -> float | None:
    """The wait before the next attempt, or None when it would end after `total` seconds.

    `elapsed` is the time since the first attempt; None means: give up and park.
    """
    delay = retry_delay(attempt, delays=delays, retry_after=retry_after)
    if elapsed + delay > total:
        return None
    return delay


def delay_tier(delay: float, tiers: Sequence[float]) -> float:
    """The delay queue to use: the shortest tier at least `delay` long, else the longest.

    A wait longer than the longest tier makes several trips; the message's `x-not-before`
    header tells the worker to send it round again instead of attempting early.
    """
    fitting = [tier for tier in tiers if tier >= delay]
    return min(fitting) if fitting else max(tiers)
