"""`utc_z`: the one way the bridge writes a time as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts.timestamps import Timespec, utc_z

MOMENT = datetime(2026, 11, 24, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "timespec", "text"),
    [
        (MOMENT, "auto", "2026-11-24T01:00:00Z"),
        (MOMENT.replace(microsecond=250_000), "auto", "2026-11-24T01:00:00.250000Z"),
        (MOMENT.replace(microsecond=250_000), "seconds", "2026-11-24T01:00:00Z"),
        (MOMENT.astimezone(timezone(timedelta(hours=8))), "auto", "2026-11-24T01:00:00Z"),
        (MOMENT.replace(tzinfo=None), "auto", "2026-11-24T01:00:00Z"),
    ],
    ids=["utc", "microseconds", "seconds", "other-zone", "naive-is-utc"],
)
def test_utc_with_z(moment: datetime, timespec: Timespec, text: str) -> None:
    assert utc_z(moment, timespec) == text
