"""What the console reads from the store: the overview's counts, event search, one event, spool.

Every read goes through `Store.reading()` (the spool's through the store's own reads, which fail
alike), so a store that does not answer is `StoreUnavailable` (the pages say 503). Statements are
portable Core: no dialect switches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bridge.store.deliveries import Store
from bridge.store.effects import ACTED
from bridge.store.engine import utc
from bridge.store.lifecycle import DeliveryState, unmarked
from bridge.store.spool import SpoolState
from bridge.store.status import order_status
from bridge.store.tables import (
    deliveries,
    events,
    transitions,
)
from bridge.web.console.spooled import LIMIT, SpoolPage, spool_json, spool_page
from contracts.timestamps import utc_z

Json = dict[str, Any]
MINUTES = 60  # the overview's window, one bar a minute
PER_PAGE = 50


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview's numbers at `now`: the last hour, and the deliveries as they stand."""

    start: datetime  # the first minute's start; the last minute is the current one
    now: datetime
    per_minute: dict[str, list[int]]  # source -> new events in each minute, oldest first
    states: dict[str, dict[str, int]]  # target -> state -> deliveries in it now
    outcomes: dict[str, dict[str, int]]  # target -> state -> transitions in the last hour
    spool: SpoolState  # events held in the store while the broker is away

    @property
    def parked(self) -> dict[str, int]:
        """Parked deliveries per target (every target, zero included)."""
        return {
            target: by_state.get(DeliveryState.PARKED, 0)
            for target, by_state in self.states.items()
        }

    def as_json(self) -> Json:
        """The overview as `/console/overview.json` answers it."""
        last_hour = {source: sum(counts) for source, counts in self.per_minute.items()}
        return {
            "start": utc_z(self.start),
            "now": utc_z(self.now),
            "minutes": MINUTES,
            "events_per_minute": self.per_minute,
            "events_last_hour": last_hour,
            "deliveries_by_state": self.states,
            "outcomes_last_hour": self.outcomes,
            "parked": self.parked,
            "totals": {
                "events": sum(last_hour.values()),
                "delivered": sum(
                    by.get(state, 0) for by in self.outcomes.values() for state in ACTED
                ),
                "duplicates": sum(
                    by.get(DeliveryState.DUPLICATE, 0) for by in self.outcomes.values()
                ),
                "retrying": sum(by.get(DeliveryState.RETRYING, 0) for by in self.states.values()),
                "parked": sum(self.parked.values()),
            },
            "spool": spool_json(self.spool, self.now),
        }


def window(now: datetime) -> datetime:
    """The start of the overview's first minute: the current minute is the last of `MINUTES`."""
    minute = utc(now).replace(second=0, microsecond=0)
    return minute - timedelta(minutes=MINUTES - 1)


async def overview(store: Store, now: datetime, targets: Sequence[str] = ()) -> Overview:
    """Counts for the overview; `targets` (the configured ones) are listed even when idle."""
    start = window(now)
    edges = [start + timedelta(minutes=n) for n in range(MINUTES + 1)]
    minutes = [
        sa.func.count(
            sa.case((sa.and_(events.c.first_seen >= lo, events.c.first_seen < hi), 1))
        ).label(f"m{n}")
        for n, (lo, hi) in enumerate(itertools.pairwise(edges))
    ]
    per_source = (
        sa.select(events.c.source, *minutes)
        .where(events.c.first_seen >= start)
        .group_by(events.c.source)
        .order_by(events.c.source)
    )
    by_state = sa.select(deliveries.c.target, deliveries.c.state, sa.func.count()).group_by(
        deliveries.c.target, deliveries.c.state
    )
    recent = (
        sa.select(transitions.c.target, transitions.c.state, sa.func.count())
        .where(
            transitions.c.at >= start,
            # Attempts only: not reconciliation's reopens nor what an operator did.
            unmarked(transitions.c.detail),
        )
        .group_by(transitions.c.target, transitions.c.state)
    )
    async with store.reading() as connection:
        sources = (await connection.execute(per_source)).all()
        states = (await connection.execute(by_state)).all()
        outcomes = (await connection.execute(recent)).all()
    return Overview(
        start=start,
        now=utc(now),
        per_minute={row[0]: [int(count) for count in row[1:]] for row in sources},
        states=_nested(states, targets),
        outcomes=_nested(outcomes, targets),
        spool=await store.spool_state(),
    )


def _nested(rows: Iterable[Sequence[Any]], targets: Sequence[str]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {target: {} for target in targets}
    for row in rows:
        found.setdefault(row[0], {})[row[1]] = int(row[2])
    return dict(sorted(found.items()))


@dataclass(frozen=True, slots=True)
class Search:
    """What the events list shows: `text` is an event id, or the start of an order id or shop."""

    text: str = ""
    source: str | None = None
    state: str | None = None  # events with a delivery in this state
    target: str | None = None  # ... to this target
    page: int = 1


@dataclass(frozen=True, slots=True)
class EventRow:
    """One line of the events list."""

    event_id: str
    source: str
    shop: str
    order_id: str
    reason: str
    first_seen: datetime
    times_received: int
    deliveries: tuple[tuple[str, str], ...]  # (target, state), by target


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of the list, newest first; `more` when an older page exists."""

    rows: tuple[EventRow, ...]
    page: int
    more: bool


def _matching(wanted: Search) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if wanted.text:
        where.append(
            sa.or_(
                events.c.event_id == wanted.text,
                events.c.order_id.startswith(wanted.text, autoescape=True),
                events.c.shop.startswith(wanted.text, autoescape=True),
            )
        )
    if wanted.source is not None:
        where.append(events.c.source == wanted.source)
    if wanted.state is not None or wanted.target is not None:
        inner = [deliveries.c.event_id == events.c.event_id]
        if wanted.state is not None:
            inner.append(deliveries.c.state == wanted.state)
        if wanted.target is not None:
            inner.append(deliveries.c.target == wanted.target)
        where.append(sa.exists().where(*inner))
    return where


async def search(store: Store, wanted: Search, per_page: int = PER_PAGE) -> EventPage:
    """The events matching `wanted`, newest first, one page of them with each target's state."""
    query = (
        sa.select(events)
        .where(*_matching(wanted))
        .order_by(events.c.first_seen.desc(), events.c.event_id.desc())
        .offset((wanted.page - 1) * per_page)
        .limit(per_page + 1)  # one more says whether there is a next page
    )
    async with store.reading() as connection:
        found = (await connection.execute(query)).all()
        shown = found[:per_page]
        ids = [row.event_id for row in shown]
        states = (
            await connection.execute(
                sa.select(deliveries.c.event_id, deliveries.c.target, deliveries.c.state)
                .where(deliveries.c.event_id.in_(ids))
                .order_by(deliveries.c.target)
            )
        ).all()
    per_event: dict[str, list[tuple[str, str]]] = {}
    for event_id, target, state in states:
        per_event.setdefault(event_id, []).append((target, state))
    rows = tuple(
        EventRow(
            event_id=row.event_id,
            source=row.source,
            shop=row.shop,
            order_id=row.order_id,
            reason=row.reason,
            first_seen=utc(row.first_seen),
            times_received=int(row.delivery_count),
            deliveries=tuple(per_event.get(row.event_id, ())),
        )
        for row in shown
    )
    return EventPage(rows, wanted.page, more=len(found) > per_page)


async def event_detail(store: Store, event_id: str) -> Json | None:
    """The event as `order_status` reports it (deliveries, their history, links), or None."""
    async with store.reading() as connection:
        row = (
            await connection.execute(
                sa.select(events.c.source, events.c.order_id).where(events.c.event_id == event_id)
            )
        ).first()
    if row is None:
        return None
    found = await order_status(store, row.order_id, row.source)
    return next((event for event in found if event["event_id"] == event_id), None)


async def spool(store: Store, now: datetime, limit: int = LIMIT) -> SpoolPage:
    """The spool's depth and oldest, and its `limit` oldest events as the page lists them."""
    state = await store.spool_state()
    return spool_page(state, await store.spooled_events(limit), now)
