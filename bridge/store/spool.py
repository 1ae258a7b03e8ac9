"""The spool: events the broker could not take, held in the store until it can.

The receiver spools a verified event when the broker is away (link down or lost, no confirm in
time) and answers 2xx; the forwarder (`bridge/web/forwarder.py`) leases the oldest rows, publishes
them with confirms and deletes each after its confirm. A lease keeps two receiver processes from
publishing one row at once; a lease left by a process that died expires and the row is taken
again. A row published whose delete did not happen is published again: the event id keeps every
effect single.

Writes go through SQLAlchemy's connection (on SQLite in the store's thread), never the hot
path's: a spooled event is the only copy, so its commit is as durable as the store is
(SQLite's default `synchronous=FULL` there; the hot connection's `NORMAL` would not be).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from bridge.store.engine import Engines, utc
from bridge.store.tables import spool


@dataclass(frozen=True, slots=True)
class Spooled:
    """One spooled event: its JSON body as it would have been published, and its arrival count."""

    id: int
    event_id: str
    source: str
    body: bytes
    seen: int
    spooled_at: datetime


@dataclass(frozen=True, slots=True)
class ToSpool:
    """An event for the spool: what its row holds."""

    event_id: str
    source: str
    body: bytes
    seen: int
    at: datetime


@dataclass(frozen=True, slots=True)
class SpoolState:
    """How many events wait in the spool, and since when the oldest has."""

    depth: int
    oldest: datetime | None


def _row(row: sa.Row[tuple[object, ...]]) -> Spooled:
    return Spooled(
        id=int(row.id),
        event_id=str(row.event_id),
        source=str(row.source),
        body=str(row.event_json).encode(),
        seen=int(row.seen),
        spooled_at=utc(row.spooled_at),
    )


class Spool(Engines):
    """Holding, leasing and releasing spooled events."""

    async def spool_many(self, items: Sequence[ToSpool], limit: int) -> list[bool]:
        """Hold what fits under `limit`, in order, in one transaction; each item's answer.

        One count of the spool for the whole batch: a receiver spooling under load pays it
        (and the durable commit) once per batch, not per webhook.
        """

        def hold(connection: sa.Connection) -> list[bool]:
            held = connection.scalar(sa.select(sa.func.count()).select_from(spool)) or 0
            room = max(0, limit - held)
            taken = list(items[:room])
            if taken:
                connection.execute(
                    spool.insert(),
                    [
                        {
                            "event_id": item.event_id,
                            "source": item.source,
                            "event_json": item.body.decode(),
                            "seen": item.seen,
                            "spooled_at": item.at,
                        }
                        for item in taken
                    ],
                )
            return [n < room for n in range(len(items))]

        return await self._transaction(hold)

    async def lease_spooled(
        self, owner: str, now: datetime, until: datetime, limit: int
    ) -> list[Spooled]:
        """Lease the `limit` oldest rows not leased by a live lease to `owner`; oldest first."""

        def lease(connection: sa.Connection) -> list[Spooled]:
            free = sa.or_(spool.c.lease_until.is_(None), spool.c.lease_until < now)
            oldest = sa.select(spool.c.id).where(free).order_by(spool.c.id).limit(limit)
            ids = list(connection.scalars(oldest))
            if not ids:
                return []
            connection.execute(
                spool.update()
                .where(spool.c.id.in_(ids), free)
                .values(claimed_by=owner, lease_until=until)
            )
            rows = connection.execute(
                sa.select(spool)
                .where(spool.c.id.in_(ids), spool.c.claimed_by == owner)
                .order_by(spool.c.id)
            )
            return [_row(row) for row in rows]

        return await self._transaction(lease)

    async def unspool(self, ids: list[int]) -> None:
        """Forget rows whose events the broker confirmed."""
        if ids:
            async with self._write() as connection:
                await connection.execute(spool.delete().where(spool.c.id.in_(ids)))

    async def release_spooled(self, owner: str, ids: list[int]) -> None:
        """Give back `owner`'s leases on rows it could not publish (taken again at once)."""
        if ids:
            async with self._write() as connection:
                await connection.execute(
                    spool.update()
                    .where(spool.c.id.in_(ids), spool.c.claimed_by == owner)
                    .values(claimed_by=None, lease_until=None)
                )

    async def spool_state(self) -> SpoolState:
        """The spool's depth and its oldest row's time."""
        async with self._read() as connection:
            row = (
                await connection.execute(
                    sa.select(sa.func.count(), sa.func.min(spool.c.spooled_at)).select_from(spool)
                )
            ).one()
        depth, oldest = int(row[0] or 0), row[1]
        return SpoolState(depth, None if oldest is None else utc(oldest))

    async def spooled_events(self, limit: int) -> list[Spooled]:
        """The oldest `limit` spooled events (the console's list)."""
        async with self._read() as connection:
            rows = await connection.execute(sa.select(spool).order_by(spool.c.id).limit(limit))
        return [_row(row) for row in rows]
