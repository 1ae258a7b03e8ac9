"""The spool as the console shows it: display rows from spooled events, and how long they wait.

Pure: the store's `Spooled` rows and `SpoolState` come in with `now`; nothing is read here.
A spooled body is the event's JSON as the receiver made it, but it is read defensively all the
same: a body that is not what we expect shows as blanks, never as an error page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from bridge.store.engine import utc
from bridge.store.spool import Spooled, SpoolState
from contracts.timestamps import utc_z

LIMIT = 100  # rows the spool page lists, oldest first
MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def age(since: datetime, now: datetime) -> str:
    """How long ago `since` was, in two units at most: `12 s`, `4 min 12 s`, `3 h 5 min`."""
    seconds = max(int((utc(now) - utc(since)).total_seconds()), 0)  # a clock step is not negative
    if seconds < MINUTE:
        return f"{seconds} s"
    if seconds < HOUR:
        return f"{seconds // MINUTE} min {seconds % MINUTE} s"
    if seconds < DAY:
        return f"{seconds // HOUR} h {seconds % HOUR // MINUTE} min"
    return f"{seconds // DAY} d {seconds % DAY // HOUR} h"


@dataclass(frozen=True, slots=True)
class SpoolRow:
    """One line of the spool page; `shop`, `order_id`, `reason` from the body (None if absent)."""

    event_id: str
    source: str
    shop: str | None
    order_id: str | None
    reason: str | None
    seen: int
    spooled_at: datetime
    age: str


@dataclass(frozen=True, slots=True)
class SpoolPage:
    """The spool at `now`: how many wait, since when, and the oldest of them (at most `LIMIT`)."""

    depth: int
    oldest: datetime | None
    oldest_age: str | None
    rows: tuple[SpoolRow, ...]

    @property
    def more(self) -> int:
        """Events waiting beyond the ones listed."""
        return max(self.depth - len(self.rows), 0)


def _text(body: object, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def spool_row(spooled: Spooled, now: datetime) -> SpoolRow:
    """A spooled event as a line: the body's shop, order id and reason, and its age at `now`."""
    try:
        body: object = orjson.loads(spooled.body)
    except orjson.JSONDecodeError:
        body = None
    return SpoolRow(
        event_id=spooled.event_id,
        source=spooled.source,
        shop=_text(body, "shop"),
        order_id=_text(body, "order_id"),
        reason=_text(body, "reason"),
        seen=spooled.seen,
        spooled_at=spooled.spooled_at,
        age=age(spooled.spooled_at, now),
    )


def spool_page(state: SpoolState, events: Sequence[Spooled], now: datetime) -> SpoolPage:
    """The page's content; `events` oldest first (two reads: the depth never shows below them)."""
    rows = tuple(spool_row(spooled, now) for spooled in events)
    oldest = state.oldest if state.oldest is not None or not rows else rows[0].spooled_at
    return SpoolPage(
        depth=max(state.depth, len(rows)),
        oldest=oldest,
        oldest_age=None if oldest is None else age(oldest, now),
        rows=rows,
    )


def spool_json(state: SpoolState, now: datetime) -> dict[str, object]:
    """The overview's spool: depth, the oldest's time and age, and the line the tile shows."""
    if state.oldest is None:
        return {"depth": state.depth, "oldest": None, "oldest_age_seconds": None, "waiting": ""}
    seconds = max(int((utc(now) - state.oldest).total_seconds()), 0)
    return {
        "depth": state.depth,
        "oldest": utc_z(state.oldest),
        "oldest_age_seconds": seconds,
        "waiting": f"oldest {age(state.oldest, now)} ago",
    }
