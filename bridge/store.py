"""The state store: what the bridge knows about each event and each (event, target) delivery.

One code path for two engines through SQLAlchemy 2 async Core: SQLite (a file, WAL mode; the
embedded default) and PostgreSQL (scale-out). The schema is versioned with Alembic and upgraded
on open. Writes are portable: an INSERT, and on a key conflict an UPDATE (no dialect switches).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from contracts.events import OrderCancelled

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("shop", sa.String(255), nullable=False),
    sa.Column("order_id", sa.String(255), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivery_count", sa.Integer, nullable=False),
    sa.Index("events_by_order", "source", "order_id"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("event_id", sa.String(36), sa.ForeignKey("events.event_id"), primary_key=True),
    sa.Column("target", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("reference", sa.String(255)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

MIGRATIONS = Path(__file__).with_name("migrations")
SCHEMA_HEAD = "0001"  # the newest migration's revision


def async_url(url: str) -> str:
    """A user's database URL with the async driver SQLAlchemy needs.

    `postgresql://...` -> asyncpg; `sqlite:///path` or a bare file path -> aiosqlite.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if "://" in url:
        return url  # already a SQLAlchemy URL with a driver
    return f"sqlite+aiosqlite:///{url}"


def _sqlite_pragmas(dbapi_connection: Any, _: object) -> None:  # noqa: ANN401 - DBAPI object
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _upgrade(connection: sa.Connection) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (event, target) row."""

    event_id: str
    target: str
    state: str
    attempts: int
    last_error: str | None
    reference: str | None


class Store:
    """The bridge's state, on SQLite or PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Store]:
        """Connect, upgrade the schema to the newest version, and close on exit."""
        full = async_url(url)
        engine = create_async_engine(full)
        if full.startswith("sqlite"):
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_upgrade)
            yield cls(engine)
        finally:
            await engine.dispose()

    async def record_event(self, event: OrderCancelled, now: datetime) -> int:
        """Remember that `event` arrived (again); returns how many times it has."""
        key = str(event.event_id)
        async with self._engine.begin() as connection:
            if await self._insert(
                connection,
                events,
                event_id=key,
                source=event.source.value,
                shop=event.shop,
                order_id=event.order_id,
                reason=event.reason.value,
                first_seen=now,
                last_seen=now,
                delivery_count=1,
            ):
                return 1
            await connection.execute(
                events.update()
                .where(events.c.event_id == key)
                .values(last_seen=now, delivery_count=events.c.delivery_count + 1)
            )
            count = await connection.scalar(
                sa.select(events.c.delivery_count).where(events.c.event_id == key)
            )
            return int(count or 0)

    async def delivery(self, event_id: str, target: str) -> Delivery | None:
        """The (event, target) row, if there is one."""
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(deliveries).where(
                        deliveries.c.event_id == event_id, deliveries.c.target == target
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return Delivery(
            row.event_id, row.target, row.state, row.attempts, row.last_error, row.reference
        )

    @staticmethod
    async def _insert(connection: AsyncConnection, table: sa.Table, **values: object) -> bool:
        """INSERT in a savepoint; False when the key exists (the caller updates instead)."""
        try:
            async with connection.begin_nested():
                await connection.execute(table.insert().values(**values))
        except IntegrityError:
            return False
        return True
