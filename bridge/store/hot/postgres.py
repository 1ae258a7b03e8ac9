"""Arrivals through `asyncpg`, on a connection of the store's pool, in one transaction per batch.

`driver_transaction` is that transaction; the worker's claims and outcomes use it too
(`postgres_claims.py`). The connection is one of SQLAlchemy's pool
(`AsyncConnection.get_raw_connection()`, its `driver_connection`): no second pool, the same size
limit and checkout timeout. SQLAlchemy's adapter never sees the transaction
(`driver.transaction()`, not the adapter's), so its state stays as the pool left it; but the
pool's rollback on return undoes only what the adapter began, so a connection still in a
transaction after the block (a rollback that failed), or closed, is invalidated instead of going
back, and a closed one also marks the pool's older connections stale, as SQLAlchemy does on a
disconnect. Each statement has the store's command timeout (`PG_COMMAND_TIMEOUT`), as BEGIN and
COMMIT have through the connection's own.

Errors mean what they mean on SQLAlchemy's path: a key conflict
(`asyncpg.IntegrityConstraintViolationError`, SQLAlchemy's `IntegrityError`: another receiver
recorded one of the events meanwhile) is raised as it is, and the caller redoes the batch one
by one; any other driver error, OSError or timeout is `StoreUnavailable` (its text names the
type only). Not a fallback to SQLAlchemy's path, as on SQLite, where the driver's error may be
a lock SQLAlchemy's path would wait for: here a second try would meet the same server, and a
server that does not answer would hold the batch (and its webhooks) for two timeouts.

A commit is as durable as SQLAlchemy's (the server's `synchronous_commit`); an arrival is only
a record: the broker holds the confirmed message, and the worker's claim writes the event row
when it finds none.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from bridge.store.arrivals import (
    Arrival,
    Echo,
    Seen,
    arrival_keys,
    arrival_orders,
    plan_arrivals,
)
from bridge.store.engine import PG_COMMAND_TIMEOUT, StoreUnavailable, _unavailable, utc
from bridge.store.lifecycle import DeliveryState

PENDING = DeliveryState.PENDING.value
ECHOES_OF = (
    "SELECT platform, order_id, event_id, created_at FROM echoes WHERE order_id = ANY($1::text[])"
)
COUNTS_OF = "SELECT event_id, delivery_count FROM events WHERE event_id = ANY($1::text[])"
# One statement per table however large the batch: arrays, not a row per statement.
INSERT_EVENTS = (
    "INSERT INTO events (event_id, source, shop, order_id, reason, first_seen, last_seen,"
    " delivery_count, event_json)"
    " SELECT k, s, sh, o, r, at, at, 1, j FROM unnest($1::text[], $2::text[], $3::text[],"
    " $4::text[], $5::text[], $6::timestamptz[], $7::text[]) AS u(k, s, sh, o, r, at, j)"
)
INSERT_PENDING = (
    "INSERT INTO deliveries (event_id, target, state, attempts, created_at, updated_at)"
    " SELECT k, t, $3::text, 0, at, at FROM unnest($1::text[], $2::text[], $4::timestamptz[])"
    " AS u(k, t, at)"
)
INSERT_STEPS = (
    "INSERT INTO transitions (event_id, target, state, at, detail)"
    " SELECT k, t, $3::text, at, NULL FROM unnest($1::text[], $2::text[], $4::timestamptz[])"
    " AS u(k, t, at)"
)
SEEN_MORE = (
    "UPDATE events SET last_seen = $1, delivery_count = delivery_count + u.n"
    " FROM unnest($2::text[], $3::int[]) AS u(k, n) WHERE events.event_id = u.k"
)
# What the driver raises when the server or the link fails (key conflicts are handled first).
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


async def arrive(engine: AsyncEngine, arrivals: Sequence[Arrival]) -> list[Seen | Echo]:
    """`Arrivals.arrive_many`'s batch in one transaction on a pooled connection's driver.

    Raises `asyncpg.IntegrityConstraintViolationError` (a key conflict: the caller redoes it
    one by one) or `StoreUnavailable`.
    """
    async with driver_transaction(engine) as driver:
        return await _arrive(driver, arrivals)


@contextlib.asynccontextmanager
async def driver_transaction(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's driver, in one transaction committed when the block ends.

    Raises `asyncpg.IntegrityConstraintViolationError` (a key conflict) as it is, any other
    failure as `StoreUnavailable`; a connection left closed or in a transaction leaves the pool.
    """
    with _unavailable():  # the pool's: no connection in time, the server refusing one
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection  # never None once checked out
            try:
                async with driver.transaction():
                    yield driver
            except asyncpg.IntegrityConstraintViolationError:
                raise
            except DRIVER_ERRORS as exc:
                raise StoreUnavailable(f"store unavailable ({type(exc).__name__})") from exc
            finally:
                if driver.is_closed() or driver.is_in_transaction():
                    await _drop(engine, connection, raw, driver)


async def _drop(
    engine: AsyncEngine,
    connection: AsyncConnection,
    raw: PoolProxiedConnection,
    driver: asyncpg.Connection,
) -> None:
    """Keep a connection the block left unusable out of the pool."""
    if driver.is_closed():
        # A disconnect: SQLAlchemy's own handling (`Connection._handle_dbapi_exception`) marks
        # every connection of the pool made before now stale, so none is handed out again.
        engine.pool._invalidate(raw, None, _checkin=False)  # noqa: SLF001 - SQLAlchemy's way
    await connection.invalidate()


async def _arrive(driver: asyncpg.Connection, arrivals: Sequence[Arrival]) -> list[Seen | Echo]:
    found = await driver.fetch(ECHOES_OF, arrival_orders(arrivals), timeout=PG_COMMAND_TIMEOUT)
    echoed = {
        (row["platform"], row["order_id"]): (str(row["event_id"]), utc(row["created_at"]))
        for row in found
    }
    counted = await driver.fetch(COUNTS_OF, arrival_keys(arrivals), timeout=PG_COMMAND_TIMEOUT)
    counts = {row["event_id"]: int(row["delivery_count"]) for row in counted}
    plan = plan_arrivals(arrivals, echoed, counts)
    if plan.new:
        new = list(plan.new.values())
        await driver.execute(
            INSERT_EVENTS,
            list(plan.new),
            [a.event.source.value for a in new],
            [a.event.shop for a in new],
            [a.event.order_id for a in new],
            [a.event.reason.value for a in new],
            [a.at for a in new],
            [(a.body or a.event.to_json()).decode() for a in new],
            timeout=PG_COMMAND_TIMEOUT,
        )
        pending = plan.pending()
        if pending:
            keys, targets, times = (list(column) for column in zip(*pending, strict=True))
            for statement in (INSERT_PENDING, INSERT_STEPS):
                await driver.execute(
                    statement, keys, targets, PENDING, times, timeout=PG_COMMAND_TIMEOUT
                )
    if plan.more:
        await driver.execute(
            SEEN_MORE,
            plan.now,
            list(plan.more),
            list(plan.more.values()),
            timeout=PG_COMMAND_TIMEOUT,
        )
    return plan.results
