"""Echo records: orders the bridge itself cancelled on a platform.

When a target that is also a source (Prime, Shoplazza) cancels an order because of another
platform's event, that platform's webhook for it comes back: the receiver finds the echo record
(`echo_of`, or in `arrivals`' batch) and does not fan the event out again.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from bridge.store.engine import Engines
from bridge.store.tables import echoes


class Echoes(Engines):
    """Looking up and expiring echo records (the worker writes them with its outcome)."""

    async def echo_of(self, platform: str, order_id: str, since: datetime) -> str | None:
        """The event whose fan-out cancelled `order_id` on `platform` after `since`, if any."""
        async with self._read() as connection:
            found = await connection.scalar(
                sa.select(echoes.c.event_id).where(
                    echoes.c.platform == platform,
                    echoes.c.order_id == order_id,
                    echoes.c.created_at >= since,
                )
            )
        return None if found is None else str(found)

    async def expire_echoes(self, before: datetime) -> int:
        """Forget echoes recorded before `before`; returns how many."""
        async with self._write() as connection:
            result = await connection.execute(echoes.delete().where(echoes.c.created_at < before))
        return int(result.rowcount)


def remember_echo(
    connection: sa.Connection, echo: tuple[str, str], event_id: str, now: datetime
) -> None:
    """Record (platform, order id) `echo` as cancelled there by `event_id`'s fan-out."""
    platform, order_id = echo
    key = (echoes.c.platform == platform, echoes.c.order_id == order_id)
    updated = connection.execute(
        echoes.update().where(*key).values(event_id=event_id, created_at=now)
    )
    if updated.rowcount == 0:
        connection.execute(
            echoes.insert().values(
                platform=platform, order_id=order_id, event_id=event_id, created_at=now
            )
        )
