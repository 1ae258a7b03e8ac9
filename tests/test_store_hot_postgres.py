"""The receiver's arrivals through asyncpg (`bridge/store/hot/postgres.py`) against SQLAlchemy's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import QueuePool

from bench.scratch_db import scratch_database
from bridge.store.arrivals import Arrival, Echo, Seen, _arrive
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from bridge.store.hot import postgres
from bridge.store.lifecycle import DeliveryState
from contracts.events import CancelReason, OrderCancelled, Source
from tests.harness.stores import postgres_server

NOW = datetime(2026, 12, 4, 21, 30, 5, 120000, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)


def event(order_id: str) -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id=order_id,
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=NOW,
        received_at=NOW,
        delivery_id=None,
    )


def batches() -> list[list[Arrival]]:
    """Three batches: new events (one twice), counted again, an echo, no routes."""
    one, two, echoed = event("1001"), event("1002"), event("echoed")
    return [
        [
            Arrival(one, NOW, ("cj", "prime"), SINCE),
            Arrival(two, NOW, ("cj",), SINCE),
            Arrival(one, NOW + timedelta(seconds=1), ("cj", "prime"), SINCE),
        ],
        [
            Arrival(two, NOW + timedelta(minutes=1), ("cj",), SINCE),
            Arrival(echoed, NOW + timedelta(minutes=1), ("cj",), SINCE),
        ],
        [Arrival(event("1003"), NOW + timedelta(minutes=2), (), SINCE)],
    ]


@contextlib.asynccontextmanager
async def scratch_store() -> AsyncIterator[tuple[str, Store]]:
    """A store on a new PostgreSQL database (dropped afterwards), and the database's URL."""
    async with scratch_database(postgres_server()) as url, Store.open(url) as store:
        yield url, store


async def rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row the arrivals write, in a stable order (transitions without their ids)."""
    db = await asyncpg.connect(url)
    try:
        return {
            table: [tuple(row) for row in await db.fetch(query)]
            for table, query in {
                "events": "SELECT * FROM events ORDER BY event_id",
                "deliveries": "SELECT * FROM deliveries ORDER BY event_id, target",
                "transitions": "SELECT event_id, target, state, at, detail FROM transitions"
                " ORDER BY event_id, target, at",
            }.items()
        }
    finally:
        await db.close()


@contextlib.contextmanager
def driver_queries(store: Store, seen: Callable[[str], None]) -> Iterator[None]:
    """`seen(query)` after each query asyncpg itself runs on a connection the store checks out.

    SQLAlchemy's path runs prepared statements, which asyncpg does not log: what `seen` gets
    are the driver path's statements.
    """
    drivers: list[Any] = []

    def log(record: Any) -> None:  # noqa: ANN401 - asyncpg.LoggedQuery, untyped
        seen(record.query)

    def attach(dbapi_connection: Any, *_: object) -> None:  # noqa: ANN401 - SQLAlchemy's adapter
        drivers.append(dbapi_connection.driver_connection)
        drivers[-1].add_query_logger(log)

    sa.event.listen(store._engine.sync_engine, "checkout", attach)
    try:
        yield
    finally:
        sa.event.remove(store._engine.sync_engine, "checkout", attach)
        for driver in drivers:
            driver.remove_query_logger(log)


async def with_an_echo(store: Store) -> None:
    """The bridge cancelled order `echoed` on Shoplazza itself."""
    cause = event("cause")
    await store.claim(cause, "shoplazza", "w", NOW, NOW + timedelta(seconds=30))
    await store.finish(
        str(cause.event_id),
        "shoplazza",
        "w",
        DeliveryState.DELIVERED,
        NOW,
        echo=("shoplazza", "echoed"),
    )


def pool_of(store: Store) -> QueuePool:
    """The store's connection pool (PostgreSQL: a queue of them)."""
    pool = store._engine.pool
    assert isinstance(pool, QueuePool)
    return pool


async def driver_of(connection: AsyncConnection) -> Any:  # noqa: ANN401 - asyncpg, untyped
    """The asyncpg connection under a checked-out SQLAlchemy one."""
    return (await connection.get_raw_connection()).driver_connection


async def pooled_connection_is_clean(store: Store, url: str) -> None:
    """Nothing checked out; a pooled connection with no transaction open; SQLAlchemy commits."""
    assert pool_of(store).checkedout() == 0
    async with store._engine.connect() as connection:
        assert not (await driver_of(connection)).is_in_transaction()
    later = event("later")
    assert await store.record_event(later, NOW, ("cj",)) == 1  # SQLAlchemy's path
    db = await asyncpg.connect(url)
    try:  # committed, seen from elsewhere: not a savepoint in a transaction left open
        query = "SELECT delivery_count FROM events WHERE event_id = $1"
        assert await db.fetchval(query, str(later.event_id)) == 1
    finally:
        await db.close()
    assert pool_of(store).checkedout() == 0


async def test_the_driver_and_sqlalchemy_write_the_same_rows_and_answers() -> None:
    answers: dict[str, list[list[Seen | Echo]]] = {"hot": [], "cold": []}
    queries: list[str] = []
    async with scratch_store() as (hot_url, hot), scratch_store() as (cold_url, cold):
        await with_an_echo(hot)
        await with_an_echo(cold)
        with driver_queries(hot, queries.append):
            for batch in batches():
                answers["hot"].append(await hot.arrive_many(batch))
                answers["cold"].append(
                    await cold._transaction(lambda connection, b=batch: _arrive(connection, b))  # type: ignore[misc]
                )
        assert queries.count(postgres.COUNTS_OF) == 3  # the hot store took the driver's path
        assert queries.count(postgres.SEEN_MORE) == 2
        cause = str(event("cause").event_id)
        assert answers["hot"] == [
            [Seen(1), Seen(1), Seen(2)],
            [Seen(2), Echo(cause)],
            [Seen(1)],
        ]
        assert answers["hot"] == answers["cold"]
        written = await rows(hot_url)
        assert written == await rows(cold_url)
        assert len(written["deliveries"]) == 4  # 1001 x (cj, prime), 1002 x cj, the echo's cause
        assert len(written["transitions"]) == 4  # the three pending ones, the cause delivered
        # SQLAlchemy reads what the driver wrote.
        found = await hot.delivery(str(event("1001").event_id), "prime")
        assert found is not None
        assert found.state == DeliveryState.PENDING
        assert await hot.record_event(event("1001"), NOW) == 3
        await pooled_connection_is_clean(hot, hot_url)


async def test_a_key_taken_after_the_counts_were_read_redoes_the_batch_one_by_one() -> None:
    taken, fresh = event("taken"), event("fresh")
    counts_read = asyncio.Event()

    def seen(query: str) -> None:
        if query == postgres.COUNTS_OF:
            counts_read.set()

    async with scratch_store() as (url, store):
        other = await asyncpg.connect(url)  # another receiver, recording `taken`
        try:
            commit = other.transaction()
            await commit.start()
            await other.execute(
                "INSERT INTO events (event_id, source, shop, order_id, reason, first_seen,"
                " last_seen, delivery_count) VALUES ($1, 'shoplazza', 'demo.myshoplaza.com',"
                " 'taken', 'other', $2, $2, 1)",
                str(taken.event_id),
                NOW,
            )
            with driver_queries(store, seen):
                batch = [Arrival(taken, NOW, ("cj",), SINCE), Arrival(fresh, NOW, ("cj",), SINCE)]
                arriving = asyncio.create_task(store.arrive_many(batch))
                # The batch has read the counts without `taken` (not committed yet): it inserts
                # `taken` as new, and that insert meets the key once the other one commits.
                await counts_read.wait()
                await commit.commit()
                assert await arriving == [Seen(2), Seen(1)]  # `taken` counted again
            steps = await other.fetch(
                "SELECT event_id FROM transitions WHERE state = 'pending' ORDER BY event_id"
            )
            assert [row["event_id"] for row in steps] == [str(fresh.event_id)]  # once: redone
        finally:
            await other.close()
        assert await store.delivery(str(taken.event_id), "cj") is None  # the other's to write
        found = await store.delivery(str(fresh.event_id), "cj")
        assert found is not None
        assert found.state == DeliveryState.PENDING
        await pooled_connection_is_clean(store, url)


async def test_lost_connections_are_store_unavailable_and_leave_the_pool() -> None:
    async with scratch_store() as (url, store):
        async with store._engine.connect() as one, store._engine.connect() as two:
            pids = [(await driver_of(c)).get_server_pid() for c in (one, two)]
        assert pool_of(store).checkedin() == 2
        admin = await asyncpg.connect(url)
        try:  # the server ends both (a restart would): waits until they are gone
            for pid in pids:
                assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await admin.close()
        batch = [Arrival(event("lost"), NOW, ("cj",), SINCE)]
        with pytest.raises(StoreUnavailable, match=r"^store unavailable \(\w+\)$") as lost:
            await store.arrive_many(batch)  # the error's type named, never the URL
        assert url not in str(lost.value)
        # The lost connection left the pool, and its twin is known stale: the next batch gets
        # a new connection.
        assert await store.arrive_many(batch) == [Seen(1)]
        await pooled_connection_is_clean(store, url)
