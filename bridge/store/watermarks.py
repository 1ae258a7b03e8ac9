"""Watermarks: where a scheduled poll got to, by name (`backstop shoplazza <shop>`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from bridge.store.engine import Engines, utc
from bridge.store.tables import watermarks


class Watermarks(Engines):
    """Reading and moving watermarks (a portable upsert: UPDATE, then INSERT if none)."""

    async def watermark(self, name: str) -> datetime | None:
        """Where the poll `name` got to, if it ever ran."""
        async with self._read() as connection:
            found = await connection.scalar(
                sa.select(watermarks.c.at).where(watermarks.c.name == name)
            )
        return None if found is None else utc(found)

    async def move_watermark(self, name: str, at: datetime) -> None:
        """Set `name`'s watermark to `at` (never back: a later one stays)."""

        def move(connection: sa.Connection) -> None:
            current = connection.scalar(sa.select(watermarks.c.at).where(watermarks.c.name == name))
            if current is None:
                connection.execute(watermarks.insert().values(name=name, at=at))
            elif utc(current) < at:
                connection.execute(
                    watermarks.update().where(watermarks.c.name == name).values(at=at)
                )

        await self._transaction(move)
