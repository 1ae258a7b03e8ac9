"""The store's hot statements through asyncpg (`bridge/store/hot/`) against SQLAlchemy's.

The receiver's arrivals (`postgres.py`), the worker's claims and outcomes (`postgres_claims.py`).
"""

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
from bridge.store.claims import Busy, Claimed, Result, _finish_all, _take_many
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from bridge.store.hot import postgres, postgres_claims
from bridge.store.lifecycle import DeliveryState
from contracts.events import OrderCancelled
from tests.harness.hot_store import (
    NOW,
    SINCE,
    Scenario,
    assert_bound_rows,
    batches,
    bound_answers,
    bound_claims,
    claims_and_outcomes,
    event,
    key,
    scenario_answers,
    scenario_states,
    with_an_echo,
)
from tests.harness.stores import postgres_server


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


async def all_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the pair and echo tables, the arrivals' too."""
    db = await asyncpg.connect(url)
    try:
        query = "SELECT * FROM echoes ORDER BY platform, order_id"
        echoes = [tuple(row) for row in await db.fetch(query)]
        query = "SELECT * FROM effects ORDER BY target, order_key"
        effects = [tuple(row) for row in await db.fetch(query)]
    finally:
        await db.close()
    return await rows(url) | {"echoes": echoes, "effects": effects}


async def scenario(store: Store, *, hot: bool, run: Scenario = claims_and_outcomes) -> list[object]:
    """`claims_and_outcomes` through asyncpg (`hot`) or SQLAlchemy's path."""

    async def take(
        by_key: dict[str, OrderCancelled],
        worker: str,
        now: datetime,
        lease: datetime,
        orders: dict[str, str],
    ) -> object:
        if hot:
            return await postgres_claims.take_many(
                store._engine,
                by_key,
                target="cj",
                worker=worker,
                now=now,
                lease_until=lease,
                orders=orders,
            )
        params = {"keys": sorted(by_key), "t": "cj", "w": worker, "now": now, "lease": lease}
        return await store._transaction(lambda c: _take_many(c, by_key, params, orders))

    async def finish(results: list[Result]) -> object:
        if hot:
            return await postgres_claims.finish_all(store._engine, results)
        return await store._transaction(lambda c: _finish_all(c, results))

    return await run(store, take, finish)


async def test_claims_and_outcomes_through_the_driver_match_sqlalchemys() -> None:
    async with scratch_store() as (hot_url, hot), scratch_store() as (cold_url, cold):
        queries: list[str] = []
        with driver_queries(hot, queries.append):
            hot_answers = await scenario(hot, hot=True)
        cold_answers = await scenario(cold, hot=False)
        # `with_an_echo`'s, the first batch's, the last batch's in two rounds (k1 twice)
        assert queries.count(postgres_claims.FINISH_CLAIMS) == 4
        assert queries.count(postgres_claims.FINISH_UNSETTLED) == 2  # h1, then k1 again
        assert queries.count(postgres_claims.ECHOES_NEW) == 2  # `echoed`, then f1's
        assert hot_answers == cold_answers
        h1, k1 = key(event("h1")), key(event("k1"))
        assert hot_answers == scenario_answers()
        written = await all_rows(hot_url)
        assert written == await all_rows(cold_url)
        states = {(row[0], row[1]): row[2] for row in written["deliveries"]}
        assert states == scenario_states()
        again = NOW + timedelta(seconds=7)
        assert [row[:4] for row in written["echoes"]] == [
            ("shoplazza", "echoed", h1, NOW + timedelta(seconds=6)),
            ("shoplazza", "f1", k1, again),  # the last one recorded wins
        ]
        k1_steps = [row[2:] for row in written["transitions"] if row[:2] == (k1, "cj")]
        assert k1_steps == [
            ("retrying", NOW + timedelta(seconds=6), "HTTP 500"),
            ("delivered", again, "sub-3"),
        ]
        await pooled_connection_is_clean(hot, hot_url)


async def test_the_worker_claims_and_finishes_through_the_driver() -> None:
    queries: list[str] = []
    async with scratch_store() as (url, store):
        one, two = event("w1"), event("w2")
        await store.arrive_many([Arrival(one, NOW, ("cj",), SINCE)])
        with driver_queries(store, queries.append):
            claims = await store.claim_many([one, two], "cj", "w", timedelta(seconds=30))
            assert claims == [Claimed(1), Claimed(1)]  # two: no rows yet, inserted
            done = datetime.now(UTC)
            held = await store.finish_many(
                [
                    Result(key(e), "cj", "w", DeliveryState.DELIVERED, done, None, "ref")
                    for e in (one, two)
                ]
            )
            assert held == [True, True]
        for query in (
            postgres_claims.TAKE_MANY,
            postgres_claims.INSERT_CLAIMS,
            postgres_claims.FINISH_CLAIMS,
            postgres_claims.INSERT_STEPS,
        ):
            assert queries.count(query) == 1
        found = await store.delivery(key(two), "cj")  # SQLAlchemy reads what the driver wrote
        assert found is not None
        assert (found.state, found.attempts, found.reference) == (DeliveryState.DELIVERED, 1, "ref")
        await pooled_connection_is_clean(store, url)


async def test_a_pair_claimed_meanwhile_sends_the_batch_one_by_one() -> None:
    taken, fresh = event("taken"), event("fresh")
    pairs_read = asyncio.Event()

    def seen(query: str) -> None:
        if query == postgres_claims.PAIRS_OF:
            pairs_read.set()

    async with scratch_store() as (url, store):
        await store.arrive_many([Arrival(taken, NOW, ("prime",), SINCE)])  # no pair with cj
        lease = datetime.now(UTC) + timedelta(hours=1)
        other = await asyncpg.connect(url)  # another worker, claiming (taken, cj)
        try:
            commit = other.transaction()
            await commit.start()
            await other.execute(
                "INSERT INTO deliveries (event_id, target, state, attempts, created_at,"
                " updated_at, claimed_by, lease_until) VALUES ($1, 'cj', 'calling', 1, $2, $2,"
                " 'other', $3)",
                key(taken),
                NOW,
                lease,
            )
            with driver_queries(store, seen):
                claiming = asyncio.create_task(
                    store.claim_many([taken, fresh], "cj", "w", timedelta(seconds=30))
                )
                # The batch has read the pairs without `taken`'s (not committed yet): it inserts
                # it as new, and that insert meets the key once the other one commits.
                await pairs_read.wait()
                await commit.commit()
                assert await claiming == [Busy("other", lease), Claimed(1)]
        finally:
            await other.close()
        found = await store.delivery(key(fresh), "cj")
        assert found is not None
        assert (found.state, found.attempts) == (DeliveryState.CALLING, 1)
        await pooled_connection_is_clean(store, url)


async def test_an_echo_recorded_meanwhile_sends_the_outcomes_to_sqlalchemys_retry() -> None:
    done = event("done")
    echoes_read = asyncio.Event()
    queries: list[str] = []

    def seen(query: str) -> None:
        queries.append(query)
        if query == postgres_claims.ECHOES_AGAIN:
            echoes_read.set()

    async with scratch_store() as (url, store):
        assert await store.claim_many([done], "cj", "w", timedelta(seconds=30)) == [Claimed(1)]
        other = await asyncpg.connect(url)  # another worker, recording the same echo
        try:
            commit = other.transaction()
            await commit.start()
            await other.execute(
                "INSERT INTO echoes (platform, order_id, event_id, created_at)"
                " VALUES ('shoplazza', 'raced', 'someone-else', $1)",
                NOW,
            )
            result = Result(
                key(done),
                "cj",
                "w",
                DeliveryState.DELIVERED,
                NOW,
                None,
                "ref",
                ("shoplazza", "raced"),
            )
            with driver_queries(store, seen):
                finishing = asyncio.create_task(store.finish_many([result]))
                # The batch found no record to update (not committed yet): its insert meets
                # the key once the other one commits.
                await echoes_read.wait()
                await commit.commit()
                assert await finishing == [True]
            assert queries.count(postgres_claims.ECHOES_AGAIN) == 1  # then SQLAlchemy's path
            echo = await other.fetchrow("SELECT event_id, created_at FROM echoes")
            assert tuple(echo) == (key(done), NOW)  # updated by the retry
            steps = await other.fetch(
                "SELECT state FROM transitions WHERE event_id = $1", key(done)
            )
            assert [row["state"] for row in steps] == ["delivered"]  # once: the first undone
        finally:
            await other.close()
        await pooled_connection_is_clean(store, url)


async def lose_connections(url: str) -> None:
    """The server ends every other connection to the database (a restart would), and waits."""
    admin = await asyncpg.connect(url)
    try:
        ended = await admin.fetch(
            "SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert ended  # the store's pooled connections
        assert all(row["ended"] for row in ended)
    finally:
        await admin.close()


async def test_lost_connections_fail_claims_and_outcomes_as_store_unavailable() -> None:
    one = event("one")
    lease = timedelta(seconds=30)
    async with scratch_store() as (url, store):
        await store.arrive_many([Arrival(one, NOW, ("cj",), SINCE)])
        await lose_connections(url)
        with pytest.raises(StoreUnavailable, match=r"^store unavailable \(\w+\)$"):
            await store.claim_many([one], "cj", "w", lease)
        assert await store.claim_many([one], "cj", "w", lease) == [Claimed(1)]
        result = Result(key(one), "cj", "w", DeliveryState.DELIVERED, NOW)
        await lose_connections(url)
        with pytest.raises(StoreUnavailable, match=r"^store unavailable \(\w+\)$"):
            await store.finish_many([result])
        assert await store.finish_many([result]) == [True]  # the failed one wrote nothing
        await pooled_connection_is_clean(store, url)


async def test_statements_are_planned_for_their_parameters_as_tables_grow() -> None:
    # A generic plan made while `events` was small (a sequential scan) was kept as it grew,
    # with no ANALYZE to replace it (autovacuum off): each batch of arrivals read every row.
    async with scratch_store() as (_, store), store.reading() as connection:
        mode = await connection.scalar(sa.text("SHOW plan_cache_mode"))
        assert mode == "force_custom_plan"
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        assert await driver.fetchval("SHOW plan_cache_mode") == "force_custom_plan"


async def test_claims_bound_to_one_order_through_the_driver_match_sqlalchemys() -> None:
    """Two events naming one CJ order: one holds it, every other settles as duplicate."""
    async with scratch_store() as (hot_url, hot), scratch_store() as (cold_url, cold):
        hot_answers = await scenario(hot, hot=True, run=bound_claims)
        cold_answers = await scenario(cold, hot=False, run=bound_claims)
        assert hot_answers == cold_answers == bound_answers()
        written = await all_rows(hot_url)
        assert written == await all_rows(cold_url)
    assert_bound_rows(written, NOW + timedelta(seconds=80))


async def test_workers_binding_crossed_orders_never_deadlock() -> None:
    """Two batches naming the same two orders, crossed in event id order, at once, many times.

    Bound in event id order, PostgreSQL saw a deadlock in about one round in sixteen (each a
    `StoreUnavailable` and a paused batch); bound in order key order, none.
    """
    async with scratch_store() as (_, store):
        for n in range(100):
            a, b, c, d = sorted((event(f"x{n}-{m}") for m in range(4)), key=key)
            one, two = f"O1-{n}", f"O2-{n}"
            batches = (
                ([a, b], {key(a): one, key(b): two}),
                ([c, d], {key(c): two, key(d): one}),
            )
            claims = await asyncio.gather(
                *(
                    store.claim_many(events, "cj", f"w{m}", timedelta(seconds=30), orders)
                    for m, (events, orders) in enumerate(batches)
                )
            )
            assert sum(isinstance(claim, Claimed) for batch in claims for claim in batch) == 2
