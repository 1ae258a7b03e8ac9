"""What reconciliation needs of the store, on both engines: the stored event, reopening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bridge.reconcile import report as reconcile_report
from bridge.store.arrivals import Arrival
from bridge.store.claims import Claimed, Result, Settled
from bridge.store.deliveries import Store
from bridge.store.engine import async_url, upgrade
from bridge.store.lifecycle import DeliveryState, StepKind
from bridge.store.tables import events
from contracts.events import CancelReason, OrderCancelled, Source

NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
DETAIL = f"{StepKind.REOPENED.marker}: no decline at CJ for order 1001"


def event(order_id: str = "1001") -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id=order_id,
        order_number="#1001",
        reason=CancelReason.INVENTORY,
        source_reason="Out of stock",
        cancelled_at=NOW - timedelta(minutes=5),
        received_at=NOW,
        delivery_id="d-1",
    )


async def stored_json(store: Store, evt: OrderCancelled) -> str | None:
    async with store.reading() as connection:
        found = await connection.scalar(
            sa.select(events.c.event_json).where(events.c.event_id == str(evt.event_id))
        )
    return None if found is None else str(found)


async def test_every_way_an_event_is_first_recorded_keeps_its_json(database_url: str) -> None:
    """Receiver (batched and alone) and a worker's first claims store the event as published."""
    given, batched, alone, claimed_many, claimed = (event(f"o-{n}") for n in range(5))
    body = given.to_json()
    async with Store.open(database_url) as store:
        await store.arrive_many(
            [
                Arrival(given, NOW, ("cj",), NOW - timedelta(days=7), body=body),
                Arrival(batched, NOW, ("cj",), NOW - timedelta(days=7)),
            ]
        )
        await store.record_event(alone, NOW, ("cj",))
        await store.claim_many([claimed_many], "cj", "w1", LEASE)
        await store.claim(claimed, "cj", "w1", NOW, NOW + LEASE)
        assert await stored_json(store, given) == body.decode()
        for evt in (batched, alone, claimed_many, claimed):
            found = await stored_json(store, evt)
            assert found is not None
            assert OrderCancelled.from_json(found.encode()) == evt


async def delivered(store: Store, evt: OrderCancelled, at: datetime = NOW) -> None:
    await store.record_event(evt, at, ("cj",))
    assert await store.claim(evt, "cj", "w1", at, at + LEASE) == Claimed(1)
    assert await store.finish(
        str(evt.event_id), "cj", "w1", DeliveryState.DELIVERED, at, reference="sub-1"
    )


async def test_delivered_between_is_the_window_the_target_and_the_state(database_url: str) -> None:
    inside, before, done_already, elsewhere = (event(f"o-{n}") for n in range(4))
    async with Store.open(database_url) as store:
        await delivered(store, inside)
        await delivered(store, before, NOW - timedelta(hours=2))
        await store.record_event(done_already, NOW, ("cj",))
        await store.claim(done_already, "cj", "w1", NOW, NOW + LEASE)
        await store.finish(str(done_already.event_id), "cj", "w1", DeliveryState.ALREADY_DONE, NOW)
        await store.record_event(elsewhere, NOW, ("occ",))
        await store.claim(elsewhere, "occ", "w1", NOW, NOW + LEASE)
        await store.finish(str(elsewhere.event_id), "occ", "w1", DeliveryState.DELIVERED, NOW)
        rows = await store.delivered_between(
            "cj", NOW - timedelta(hours=1), NOW + timedelta(seconds=1)
        )
    assert [row.order_id for row in rows] == ["o-0"]
    (row,) = rows
    assert (row.delivered_at, row.reference, row.attempts, row.linked) == (NOW, "sub-1", 1, None)
    assert reconcile_report.original_event(row) == inside


async def test_delivered_rows_carry_the_linked_cj_order_id(database_url: str) -> None:
    linked, unlinked = event("o-1"), event("o-2")
    async with Store.open(database_url) as store:
        await store.link({"shoplazza": "o-1", "cj": "CJ-1"}, NOW)
        await store.link({"shoplazza": "o-2", "occ": "OCC-2"}, NOW)
        await delivered(store, linked)
        await delivered(store, unlinked)
        rows = await store.delivered_between("cj", NOW - timedelta(hours=1), NOW, "cj")
    assert {row.order_id: row.linked for row in rows} == {"o-1": "CJ-1", "o-2": None}


async def test_a_reopened_delivery_is_claimable_again_with_its_attempts(database_url: str) -> None:
    evt = event()
    key = str(evt.event_id)
    later = NOW + timedelta(hours=3)
    async with Store.open(database_url) as store:
        await delivered(store, evt)
        assert await store.claim(evt, "cj", "w2", later, later + LEASE) == Settled(
            DeliveryState.DELIVERED, "sub-1"
        )
        assert await store.reopen(key, "cj", later, DETAIL, attempts=1)
        assert not await store.reopen(key, "cj", later, DETAIL, attempts=1)  # not delivered now
        found = await store.delivery(key, "cj")
        assert found is not None
        assert (found.state, found.attempts, found.last_error) == (
            DeliveryState.RETRYING,
            1,
            DETAIL,
        )
        assert await store.reopen_counts("cj", [key]) == {key: 1}
        assert await store.delivered_between("cj", NOW, later) == []
        assert await store.claim(evt, "cj", "w2", later, later + LEASE) == Claimed(2)
        # A worker holds it now: undoing the reopen must leave its claim alone.
        assert not await store.undo_reopen(key, "cj", later, DETAIL)
        found = await store.delivery(key, "cj")
        assert found is not None
        assert found.state == DeliveryState.CALLING


async def test_a_reopen_acts_only_on_the_delivery_as_it_was_seen(database_url: str) -> None:
    """Another reconciler's requeue, delivered again since, is not reopened a second time."""
    evt = event()
    key = str(evt.event_id)
    later = NOW + timedelta(hours=3)
    async with Store.open(database_url) as store:
        await delivered(store, evt)
        seen = (await store.delivered_between("cj", NOW - timedelta(hours=1), NOW))[0]
        assert seen.attempts == 1
        assert await store.reopen(key, "cj", later, DETAIL, attempts=seen.attempts)  # run A
        assert await store.claim(evt, "cj", "w2", later, later + LEASE) == Claimed(2)
        await store.finish_many([Result(key, "cj", "w2", DeliveryState.DELIVERED, later, "sub-2")])
        # Run B, with a report made before A's requeue: the pair is delivered again, but not
        # as B saw it; reopening it would ask CJ a third time.
        assert not await store.reopen(key, "cj", later, DETAIL, attempts=seen.attempts)
        found = await store.delivery(key, "cj")
        assert found is not None
        assert (found.state, found.attempts) == (DeliveryState.DELIVERED, 2)


async def test_an_undone_reopen_is_delivered_again_and_not_counted(database_url: str) -> None:
    evt = event()
    key = str(evt.event_id)
    async with Store.open(database_url) as store:
        await delivered(store, evt)
        assert await store.reopen(key, "cj", NOW, DETAIL, attempts=1)
        assert not await store.undo_reopen(key, "cj", NOW, "another reopen's detail")
        assert await store.undo_reopen(key, "cj", NOW, DETAIL)
        found = await store.delivery(key, "cj")
        assert found is not None
        assert (found.state, found.last_error, found.reference) == (
            DeliveryState.DELIVERED,
            None,
            "sub-1",
        )
        assert await store.reopen_counts("cj", [key]) == {key: 0}
        assert await store.reopen_counts("cj", []) == {}


async def test_a_retry_the_worker_recorded_is_not_undone(database_url: str) -> None:
    evt = event()
    key = str(evt.event_id)
    async with Store.open(database_url) as store:
        await delivered(store, evt)
        assert await store.reopen(key, "cj", NOW, DETAIL, attempts=1)
        assert await store.claim(evt, "cj", "w2", NOW, NOW + LEASE) == Claimed(2)
        await store.finish_many(
            [Result(key, "cj", "w2", DeliveryState.RETRYING, NOW, "cj answered HTTP 503")]
        )
        assert not await store.undo_reopen(key, "cj", NOW, DETAIL)
        found = await store.delivery(key, "cj")
        assert found is not None
        assert found.state == DeliveryState.RETRYING


async def test_rows_from_before_the_event_json_column_are_rebuilt(database_url: str) -> None:
    """A store made by migration 0002 is upgraded; its events are rebuilt from the columns."""
    evt = event()
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade, "0002")
            await connection.execute(
                sa.text(
                    "INSERT INTO events (event_id, source, shop, order_id, reason, first_seen,"
                    " last_seen, delivery_count) VALUES (:id, 'shoplazza', 'demo.myshoplaza.com',"
                    " '1001', 'inventory', :now, :now, 1)"
                ),
                {"id": str(evt.event_id), "now": NOW},
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO deliveries (event_id, target, state, attempts, reference,"
                    " created_at, updated_at) VALUES (:id, 'cj', 'delivered', 1, 'sub-0', :now,"
                    " :now)"
                ),
                {"id": str(evt.event_id), "now": NOW},
            )
    finally:
        await engine.dispose()
    async with Store.open(database_url) as store:
        (row,) = await store.delivered_between("cj", NOW - timedelta(hours=1), NOW)
    assert row.event_json is None
    rebuilt = reconcile_report.original_event(row)
    assert (rebuilt.event_id, rebuilt.order_id, rebuilt.reason) == (
        evt.event_id,
        "1001",
        CancelReason.INVENTORY,
    )
    assert rebuilt.received_at == NOW
