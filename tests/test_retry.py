"""The retry schedule as a table: delays, Retry-After, the total, and delay-queue tiers."""

from __future__ import annotations

import pytest

from bridge.settings import DEFAULT_DELAYS, DEFAULT_TOTAL
from bridge.worker.retry import delay_tier, next_retry, retry_delay


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, None, 5),
        (2, None, 30),
        (3, None, 120),
        (4, None, 600),
        (5, None, 1800),
        (6, None, 3600),
        (7, None, 3600),  # then hourly
        (50, None, 3600),
        (1, 17.0, 17.0),  # the target asks for longer: honoured
        (2, 17.0, 30),  # never shorter than the schedule
        (1, 0.0, 5),
    ],
)
def test_retry_delay(attempt: int, retry_after: float | None, expected: float) -> None:
    assert retry_delay(attempt, delays=DEFAULT_DELAYS, retry_after=retry_after) == expected


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        retry_delay(0, delays=DEFAULT_DELAYS, retry_after=None)


def test_default_schedule_ends_after_about_a_day() -> None:
    """Attempts until the 24 h total: 6 scheduled steps, then hourly."""
    elapsed, attempt = 0.0, 1
    while (
        delay := next_retry(
            attempt, elapsed=elapsed, delays=DEFAULT_DELAYS, total=DEFAULT_TOTAL, retry_after=None
        )
    ) is not None:
        elapsed += delay
        attempt += 1
    assert elapsed <= DEFAULT_TOTAL
    assert elapsed + 3600 > DEFAULT_TOTAL
    assert attempt == 29  # the first try, 6 scheduled retries (6,155 s), 22 hourly ones


def test_retry_after_past_the_total_parks() -> None:
    assert next_retry(1, elapsed=0, delays=(5,), total=60, retry_after=3600) is None
    assert next_retry(1, elapsed=0, delays=(5,), total=60, retry_after=30) == 30


@pytest.mark.parametrize(
    ("delay", "expected"),
    [(0.5, 5), (5, 5), (6, 30), (17, 30), (3599, 3600), (3600, 3600), (86400, 3600)],
)
def test_delay_tier_rounds_up_to_a_queue(delay: float, expected: float) -> None:
    assert delay_tier(delay, DEFAULT_DELAYS) == expected
