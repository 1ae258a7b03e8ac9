"""Times as text: RFC 3339 in UTC with a `Z`, as the event body, headers and APIs write them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Timespec = Literal["auto", "seconds", "milliseconds", "microseconds"]


def utc_z(moment: datetime, timespec: Timespec = "auto") -> str:
    """`2026-11-24T01:00:00Z`: `moment` in UTC (one without a zone is taken as UTC).

    `timespec` is `datetime.isoformat`'s: `auto` writes microseconds only when there are some.
    """
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat(timespec=timespec).removesuffix("+00:00") + "Z"
