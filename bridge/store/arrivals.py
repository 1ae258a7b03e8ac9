"""Arrivals: what the receiver records of each webhook's event before publishing it.

A new event gets its row and a `pending` pair for each routed target; a known one is counted
again; an event whose order the bridge itself cancelled on that platform is an `Echo`, not
recorded. `arrive_many` does it for a batch in one transaction (echo lookup, counts, new events
with their pending pairs); a key conflict (another receiver recorded one of the events
meanwhile) redoes the batch one by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bridge.store.echoes import Echoes
from bridge.store.engine import KEY_CONFLICTS, utc
from bridge.store.history import insert_delivery
from bridge.store.lifecycle import DeliveryState
from bridge.store.links import OrderLinks
from bridge.store.statements import (
    COUNTS_OF,
    ECHOES_OF,
    SEEN_AGAIN,
    SEEN_MORE,
    delivery_row,
    event_row,
)
from bridge.store.tables import deliveries, events, transitions
from contracts.events import OrderCancelled


@dataclass(frozen=True, slots=True)
class Arrival:
    """An event the receiver is about to publish."""

    event: OrderCancelled
    at: datetime
    targets: tuple[str, ...]  # the targets routed from its source: `pending` deliveries
    echo_since: datetime  # echo records older than this are ignored
    body: bytes | None = None  # the event's JSON as published (else serialised again)


@dataclass(frozen=True, slots=True)
class Seen:
    """Recorded; the `count`-th arrival of this event."""

    count: int


@dataclass(frozen=True, slots=True)
class Echo:
    """The bridge cancelled this order on its platform itself (event `cause`): do not fan out."""

    cause: str


class Arrivals(OrderLinks, Echoes):
    """The receiver's writes: events and their pending pairs."""

    async def record_event(
        self, event: OrderCancelled, now: datetime, targets: tuple[str, ...] = ()
    ) -> int:
        """Remember that `event` arrived (again); returns how many times it has.

        A new event also gets a `pending` delivery for each of `targets`, and its aliases are
        linked to its order.
        """
        key = str(event.event_id)
        try:
            async with self._write() as connection:
                await connection.execute(events.insert(), event_row(event, now))
                for target in targets:
                    await insert_delivery(connection, key, target, DeliveryState.PENDING, now)
            count = 1
        except IntegrityError:
            async with self._write() as connection:
                found = await connection.scalar(SEEN_AGAIN, {"k": key, "now": now})
            count = int(found or 1)
        if event.aliases:
            await self._link_aliases(event, now)
        return count

    async def known_events(self, keys: Sequence[str]) -> set[str]:
        """Which of the event ids `keys` the store has recorded (the backstop's question)."""
        if not keys:
            return set()
        async with self._read() as connection:
            found = await connection.scalars(
                sa.select(events.c.event_id).where(events.c.event_id.in_(list(keys)))
            )
            return {str(key) for key in found}

    async def arrive_many(self, arrivals: Sequence[Arrival]) -> list[Seen | Echo]:
        """What the receiver does with each webhook's event, for many in one transaction.

        An event whose order the bridge itself cancelled on that platform since the arrival's
        `echo_since` is an `Echo` (not recorded); any other is recorded as `record_event` does
        and `Seen` with its count. On a key conflict (another receiver recorded one of the
        events meanwhile) each arrival is redone alone.
        """
        try:
            results = await self._arrive_hot(arrivals)
            if results is None:
                results = await self._transaction(lambda connection: _arrive(connection, arrivals))
        except KEY_CONFLICTS:
            return [await self._arrive_one(arrival) for arrival in arrivals]
        for arrival, result in zip(arrivals, results, strict=True):
            if arrival.event.aliases and isinstance(result, Seen):
                await self._link_aliases(arrival.event, arrival.at)
        return results

    async def _arrive_hot(self, arrivals: Sequence[Arrival]) -> list[Seen | Echo] | None:
        """The batch through the driver (`hot/`), or None: take the SQLAlchemy path."""
        if self._engine.dialect.driver == "asyncpg":
            from bridge.store.hot import postgres  # noqa: PLC0415 - it imports us

            return await postgres.arrive(self._engine, arrivals)
        from bridge.store.hot import sqlite  # noqa: PLC0415 - it imports us

        return await self._sqlite_write(lambda db: sqlite.arrive(db, arrivals))

    async def _link_aliases(self, event: OrderCancelled, now: datetime) -> None:
        ids: dict[str, str] = {event.source.value: event.order_id}
        ids.update((str(k), v) for k, v in event.aliases.items())
        await self.link(ids, now)

    async def _arrive_one(self, arrival: Arrival) -> Seen | Echo:
        event = arrival.event
        cause = await self.echo_of(event.source.value, event.order_id, arrival.echo_since)
        if cause is not None:
            return Echo(cause)
        return Seen(await self.record_event(event, arrival.at, arrival.targets))


@dataclass(frozen=True, slots=True)
class ArrivalPlan:
    """What a batch of arrivals writes: new events (with their pending pairs), counts added."""

    results: list[Seen | Echo]
    new: dict[str, Arrival]  # event id -> its first arrival in the batch
    more: dict[str, int]  # event id (already recorded) -> arrivals to add to its count
    now: datetime  # the latest arrival's time: `last_seen` of the events counted again

    def pending(self) -> list[tuple[str, str, datetime]]:
        """(event id, target, time) of each `pending` pair the new events get."""
        return [(key, target, a.at) for key, a in self.new.items() for target in a.targets]


def plan_arrivals(
    arrivals: Sequence[Arrival],
    echoed: Mapping[tuple[str, str], tuple[str, datetime]],
    counts: Mapping[str, int],
) -> ArrivalPlan:
    """Decide a batch from what the store holds (pure).

    `echoed` maps (platform, order id) to the echo record's (event id, time); `counts` maps the
    event ids already recorded to their arrival counts.
    """
    results: list[Seen | Echo] = []
    counted = dict(counts)
    new: dict[str, Arrival] = {}
    more: dict[str, int] = {}
    for arrival in arrivals:
        cause = echoed.get((arrival.event.source.value, arrival.event.order_id))
        if cause is not None and cause[1] >= arrival.echo_since:
            results.append(Echo(cause[0]))
            continue
        key = str(arrival.event.event_id)
        if key not in counted and key not in new:
            new[key] = arrival
            counted[key] = 1
        else:
            counted[key] += 1
            more[key] = more.get(key, 0) + 1  # a new event seen twice in the batch too
        results.append(Seen(counted[key]))
    now = max((a.at for a in arrivals), default=datetime.min.replace(tzinfo=UTC))
    return ArrivalPlan(results, new, more, now)


def arrival_orders(arrivals: Sequence[Arrival]) -> list[str]:
    """The order ids whose echo records a batch needs."""
    return sorted({a.event.order_id for a in arrivals})


def arrival_keys(arrivals: Sequence[Arrival]) -> list[str]:
    """The event ids whose counts a batch needs."""
    return sorted({str(a.event.event_id) for a in arrivals})


def _arrive(connection: sa.Connection, arrivals: Sequence[Arrival]) -> list[Seen | Echo]:
    found = connection.execute(ECHOES_OF, {"orders": arrival_orders(arrivals)})
    echoed = {
        (row.platform, row.order_id): (str(row.event_id), utc(row.created_at)) for row in found
    }
    counts = {
        row.event_id: int(row.delivery_count)
        for row in connection.execute(COUNTS_OF, {"keys": arrival_keys(arrivals)})
    }
    plan = plan_arrivals(arrivals, echoed, counts)
    if plan.new:
        connection.execute(
            events.insert(), [event_row(a.event, a.at, a.body) for a in plan.new.values()]
        )
        pending = plan.pending()
        if pending:
            connection.execute(
                deliveries.insert(),
                [
                    delivery_row(key, target, DeliveryState.PENDING, at)
                    for key, target, at in pending
                ],
            )
            connection.execute(
                transitions.insert(),
                [
                    {
                        "event_id": key,
                        "target": target,
                        "state": DeliveryState.PENDING,
                        "at": at,
                        "detail": None,
                    }
                    for key, target, at in pending
                ],
            )
    if plan.more:
        connection.execute(
            SEEN_MORE, [{"k": key, "n": n, "now": plan.now} for key, n in plan.more.items()]
        )
    return plan.results
