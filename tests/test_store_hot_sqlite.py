"""The receiver's arrivals through `sqlite3` (`bridge/store/hot/sqlite.py`) against SQLAlchemy's."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from bridge.store.arrivals import Arrival, Echo, Seen, _arrive
from bridge.store.claims import Claimed, Result, _finish_all, _take_many
from bridge.store.deliveries import Store
from bridge.store.engine import LockTaken
from bridge.store.hot.sqlite import HotSqlite, arrive, stamp
from bridge.store.hot.sqlite_claims import finish_all, take_many
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


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row the arrivals write, in a stable order (transitions without their ids)."""
    with sqlite3.connect(path) as db:
        return {
            "events": db.execute("SELECT * FROM events ORDER BY event_id").fetchall(),
            "deliveries": db.execute(
                "SELECT * FROM deliveries ORDER BY event_id, target"
            ).fetchall(),
            "transitions": db.execute(
                "SELECT event_id, target, state, at, detail FROM transitions"
                " ORDER BY event_id, target, at"
            ).fetchall(),
        }


async def test_the_driver_and_sqlalchemy_write_the_same_rows_and_answers(tmp_path: Path) -> None:
    hot_path, cold_path = tmp_path / "hot.db", tmp_path / "cold.db"
    answers: dict[str, list[list[Seen | Echo]]] = {"hot": [], "cold": []}
    async with Store.open(str(hot_path)) as hot, Store.open(str(cold_path)) as cold:
        await with_an_echo(hot)
        await with_an_echo(cold)
        for batch in batches():
            answers["hot"].append(await hot.arrive_many(batch))
            answers["cold"].append(
                await cold._transaction(lambda connection, b=batch: _arrive(connection, b))  # type: ignore[misc]
            )
        assert hot._hot_sqlite is not None  # the hot store took the driver's path
    cause = str(event("cause").event_id)
    assert answers["hot"] == [
        [Seen(1), Seen(1), Seen(2)],
        [Seen(2), Echo(cause)],
        [Seen(1)],
    ]
    assert answers["hot"] == answers["cold"]
    written = rows(hot_path)
    assert written == rows(cold_path)
    assert len(written["deliveries"]) == 4  # 1001 x (cj, prime), 1002 x cj, the echo's cause
    # SQLAlchemy reads what the driver wrote: times, counts, the published JSON.
    async with Store.open(str(hot_path)) as store:
        found = await store.delivery(str(event("1001").event_id), "prime")
        assert found is not None
        assert found.state == DeliveryState.PENDING


def test_a_time_is_stored_as_sqlalchemy_stores_it() -> None:
    dialect = sqlite.dialect()
    process = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    plus_two = timezone(timedelta(hours=2))
    for moment in (NOW, NOW.replace(microsecond=0), datetime(2027, 1, 2, 3, 4, 5, 6, tzinfo=UTC)):
        assert stamp(moment) == process(moment)
        assert stamp(moment.astimezone(plus_two)) == process(moment)  # kept in UTC


async def test_a_held_lock_makes_the_batch_wait_on_the_loop_not_in_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with Store.open(str(path)) as store:
        await store.arrive_many([Arrival(event("first"), NOW, ("cj",), SINCE)])
        hot = store._hot_sqlite
        assert hot is not None
        written = hot._db.total_changes
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's lock
        batch = [Arrival(event("second"), NOW, ("cj",), SINCE)]
        with pytest.raises(LockTaken):  # the driver does not wait inside SQLite
            hot.write(lambda db: arrive(db, batch))
        assert hot._db.total_changes == written  # nothing done
        # The batch finds the lock taken and waits on the loop, which meanwhile runs the
        # blocker's commit (a loop blocked in SQLite's busy handler could not), then writes.
        task = asyncio.create_task(store.arrive_many(batch))
        committed = asyncio.Event()

        def commit() -> None:
            assert not task.done()  # the batch is still waiting for the lock
            blocker.execute("COMMIT")
            committed.set()

        asyncio.get_running_loop().call_soon(commit)
        assert await task == [Seen(1)]
        assert committed.is_set()
        blocker.close()
        assert hot._db.total_changes > written  # written on the driver's connection
        found = await store.delivery(str(event("second").event_id), "cj")
        assert found is not None
        assert found.state == DeliveryState.PENDING


def test_a_file_that_is_no_database_is_refused_not_taken_for_a_busy_one(tmp_path: Path) -> None:
    path = tmp_path / "not-a-store.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError) as refused:
        HotSqlite(str(path))
    assert refused.value.sqlite_errorcode == sqlite3.SQLITE_NOTADB


def all_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the pair and echo tables, the arrivals' too."""
    with sqlite3.connect(path) as db:
        return rows(path) | {
            "echoes": db.execute("SELECT * FROM echoes ORDER BY platform, order_id").fetchall(),
            "effects": db.execute("SELECT * FROM effects ORDER BY target, order_key").fetchall(),
        }


async def scenario(store: Store, *, hot: bool, run: Scenario = claims_and_outcomes) -> list[object]:
    """`claims_and_outcomes` through sqlite3 (`hot`) or SQLAlchemy's path."""

    async def take(
        by_key: dict[str, OrderCancelled],
        worker: str,
        now: datetime,
        lease: datetime,
        orders: dict[str, str],
    ) -> object:
        if hot:
            found = store._sqlite_hot()
            assert found is not None
            return found.write(
                lambda db: take_many(
                    db,
                    by_key,
                    target="cj",
                    worker=worker,
                    now=now,
                    lease_until=lease,
                    orders=orders,
                )
            )
        params = {"keys": sorted(by_key), "t": "cj", "w": worker, "now": now, "lease": lease}
        return await store._transaction(lambda c: _take_many(c, by_key, params, orders))

    async def finish(results: list[Result]) -> object:
        if hot:
            found = store._sqlite_hot()
            assert found is not None
            return found.write(lambda db: finish_all(db, results))
        return await store._transaction(lambda c: _finish_all(c, results))

    return await run(store, take, finish)


async def test_claims_and_outcomes_through_the_driver_match_sqlalchemys(tmp_path: Path) -> None:
    hot_path, cold_path = tmp_path / "hot.db", tmp_path / "cold.db"
    async with Store.open(str(hot_path)) as hot, Store.open(str(cold_path)) as cold:
        hot_answers = await scenario(hot, hot=True)
        cold_answers = await scenario(cold, hot=False)
    assert hot_answers == cold_answers
    h1, k1 = key(event("h1")), key(event("k1"))
    assert hot_answers == scenario_answers()
    written = all_rows(hot_path)
    assert written == all_rows(cold_path)
    states = {(row[0], row[1]): row[2] for row in written["deliveries"]}
    assert states == scenario_states()
    # the last echo recorded for an order wins
    assert [row[:3] for row in written["echoes"]] == [
        ("shoplazza", "echoed", h1),
        ("shoplazza", "f1", k1),
    ]


async def test_the_worker_claims_and_finishes_through_the_driver(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with Store.open(str(path)) as store:
        one, two = event("w1"), event("w2")
        await store.arrive_many([Arrival(one, NOW, ("cj",), SINCE)])
        hot = store._sqlite_hot()
        assert hot is not None
        before = hot._db.total_changes
        claims = await store.claim_many([one, two], "cj", "w", timedelta(seconds=30))
        assert claims == [Claimed(1), Claimed(1)]
        done = datetime.now(UTC)
        held = await store.finish_many(
            [Result(str(e.event_id), "cj", "w", DeliveryState.DELIVERED, done) for e in (one, two)]
        )
        assert held == [True, True]
        assert hot._db.total_changes > before  # written on the driver's connection
        found = await store.delivery(str(two.event_id), "cj")
        assert found is not None
        assert found.state == DeliveryState.DELIVERED


async def test_claims_bound_to_one_order_through_the_driver_match_sqlalchemys(
    tmp_path: Path,
) -> None:
    """Two events naming one CJ order: one holds it, every other settles as duplicate."""
    hot_path, cold_path = tmp_path / "hot.db", tmp_path / "cold.db"
    async with Store.open(str(hot_path)) as hot, Store.open(str(cold_path)) as cold:
        hot_answers = await scenario(hot, hot=True, run=bound_claims)
        cold_answers = await scenario(cold, hot=False, run=bound_claims)
    assert hot_answers == cold_answers == bound_answers()
    written = all_rows(hot_path)
    assert written == all_rows(cold_path)
    assert_bound_rows(written, stamp(NOW + timedelta(seconds=80)))
