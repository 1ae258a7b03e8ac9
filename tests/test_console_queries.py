"""The console's store reads on both engines: overview counts, event search, one event, spool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from bridge.web.console.queries import Search, event_detail, overview, search, spool, window
from contracts.events import OrderCancelled, Source
from contracts.timestamps import utc_z
from tests.harness.console_browser import arrive, attempt, event
from tests.harness.stores import hold_in_spool

# Mid-minute, a minute ago: seeded times a second apart share their minute whatever the clock says.
NOW = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(minutes=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with Store.open(database_url) as opened:
        yield opened


async def seeded(store: Store) -> dict[str, OrderCancelled]:
    """Five events: four in the last hour (one per state), one two hours old."""
    found = {
        "delivered": event("1001", shop="alpha.myshoplaza.com"),
        "parked": event("1002", shop="alpha.myshoplaza.com"),
        "retrying": event("2001", shop="beta.myshoplaza.com"),
        "pending": event("occ-9", shop="site-1", source=Source.OCC),
        "old": event("0999", shop="alpha.myshoplaza.com"),
    }
    when = {
        "delivered": NOW - 5 * MINUTE,
        "parked": NOW - 5 * MINUTE + timedelta(seconds=1),
        "retrying": NOW - 30 * MINUTE,
        "pending": NOW - 2 * MINUTE,
        "old": NOW - 120 * MINUTE,
    }
    for name, cancelled in found.items():
        await arrive(store, cancelled, when[name])
    await attempt(
        store, found["delivered"], when["delivered"] + MINUTE / 2, DeliveryState.DELIVERED
    )
    await attempt(
        store, found["parked"], when["parked"], DeliveryState.PARKED, "cj: Order not found"
    )
    await attempt(store, found["retrying"], when["retrying"], DeliveryState.RETRYING, "HTTP 503")
    await attempt(store, found["old"], when["old"], DeliveryState.DELIVERED)
    return found


async def test_overview_counts_the_last_hour_by_minute_and_the_states_now(store: Store) -> None:
    await seeded(store)
    found = await overview(store, NOW, ("cj", "shoplazza"))
    assert found.start == window(NOW)
    assert set(found.per_minute) == {"shoplazza", "occ"}
    shoplazza = found.per_minute["shoplazza"]
    assert len(shoplazza) == 60
    assert shoplazza[59 - 5] == 2  # delivered and parked, five minutes ago
    assert shoplazza[59 - 30] == 1
    assert sum(shoplazza) == 3  # the two-hour-old event is outside the window
    assert found.per_minute["occ"][59 - 2] == 1
    assert found.states == {
        "cj": {"delivered": 2, "parked": 1, "retrying": 1, "pending": 1},
        "shoplazza": {},  # configured and idle: listed with nothing
    }
    assert found.outcomes == {
        "cj": {"pending": 4, "delivered": 1, "parked": 1, "retrying": 1},
        "shoplazza": {},
    }
    assert found.parked == {"cj": 1, "shoplazza": 0}
    data = found.as_json()
    assert data["totals"] == {
        "events": 4,
        "delivered": 1,
        "duplicates": 0,
        "retrying": 1,
        "parked": 1,
    }
    assert data["events_last_hour"] == {"occ": 1, "shoplazza": 3}
    assert str(data["now"]).endswith("Z")


async def test_duplicates_are_counted_apart_from_deliveries(store: Store) -> None:
    """One order under two shop names: one delivery, one duplicate, not two deliveries."""
    holder, twin = event("1001", shop="alpha.myshoplaza.com"), event("1001", shop="beta.example")
    for cancelled in (holder, twin):
        await arrive(store, cancelled, NOW - MINUTE)
    lease = NOW + MINUTE
    await store.claim(holder, "cj", "w", NOW - MINUTE, lease, order="1001")
    await store.finish(str(holder.event_id), "cj", "w", DeliveryState.DELIVERED, NOW - MINUTE)
    await store.claim(twin, "cj", "w", NOW - MINUTE, lease, order="1001")
    totals = (await overview(store, NOW, ("cj",))).as_json()["totals"]
    assert (totals["delivered"], totals["duplicates"]) == (1, 1)


async def test_overview_of_an_empty_store(store: Store) -> None:
    found = await overview(store, NOW, ("cj",))
    assert found.per_minute == {}
    assert found.states == {"cj": {}}
    assert found.as_json()["totals"] == {
        "events": 0,
        "delivered": 0,
        "duplicates": 0,
        "retrying": 0,
        "parked": 0,
    }
    assert found.as_json()["spool"]["depth"] == 0
    page = await spool(store, NOW)
    assert (page.depth, page.rows, page.oldest) == (0, (), None)


async def order_ids(store: Store, wanted: Search, per_page: int = 50) -> list[str]:
    return [row.order_id for row in (await search(store, wanted, per_page)).rows]


async def test_search_lists_newest_first_with_each_targets_state(store: Store) -> None:
    await seeded(store)
    page = await search(store, Search())
    assert [row.order_id for row in page.rows] == ["occ-9", "1002", "1001", "2001", "0999"]
    assert not page.more
    states = {row.order_id: row.deliveries for row in page.rows}
    assert states["1001"] == (("cj", "delivered"),)
    assert states["1002"] == (("cj", "parked"),)
    assert states["occ-9"] == (("cj", "pending"),)
    assert page.rows[0].source == "occ"
    assert page.rows[0].times_received == 1


async def test_search_by_order_event_id_or_shop(store: Store) -> None:
    found = await seeded(store)
    assert await order_ids(store, Search(text="1001")) == ["1001"]
    assert await order_ids(store, Search(text="100")) == ["1002", "1001"]  # an order id's start
    event_id = str(found["retrying"].event_id)
    assert await order_ids(store, Search(text=event_id)) == ["2001"]
    assert await order_ids(store, Search(text="beta.")) == ["2001"]
    assert await order_ids(store, Search(text="nothing-like-it")) == []


async def test_search_text_is_not_a_pattern(store: Store) -> None:
    for order in ("a_b", "axb", "c%d", "cxd"):
        await arrive(store, event(order), NOW)
    assert await order_ids(store, Search(text="a_")) == ["a_b"]
    assert await order_ids(store, Search(text="c%")) == ["c%d"]
    assert await order_ids(store, Search(text="%")) == []


async def test_search_filters_by_source_state_and_target(store: Store) -> None:
    await seeded(store)
    assert await order_ids(store, Search(source="occ")) == ["occ-9"]
    assert await order_ids(store, Search(state=DeliveryState.PARKED)) == ["1002"]
    assert await order_ids(store, Search(state=DeliveryState.DELIVERED, text="0")) == ["0999"]
    assert await order_ids(store, Search(state=DeliveryState.PARKED, target="cj")) == ["1002"]
    assert await order_ids(store, Search(state=DeliveryState.PARKED, target="shoplazza")) == []
    assert await order_ids(store, Search(target="cj", source="occ")) == ["occ-9"]


async def test_search_pages(store: Store) -> None:
    await seeded(store)
    first = await search(store, Search(page=1), per_page=2)
    second = await search(store, Search(page=2), per_page=2)
    third = await search(store, Search(page=3), per_page=2)
    assert [row.order_id for row in first.rows] == ["occ-9", "1002"]
    assert [row.order_id for row in second.rows] == ["1001", "2001"]
    assert [row.order_id for row in third.rows] == ["0999"]
    assert (first.more, second.more, third.more) == (True, True, False)
    assert (await search(store, Search(page=9), per_page=2)).rows == ()


async def test_one_event_with_its_history(store: Store) -> None:
    found = await seeded(store)
    parked = await event_detail(store, str(found["parked"].event_id))
    assert parked is not None
    assert (parked["order_id"], parked["source"], parked["times_received"]) == (
        "1002",
        "shoplazza",
        1,
    )
    [delivery] = parked["deliveries"]
    assert (delivery["target"], delivery["state"], delivery["attempts"]) == ("cj", "parked", 1)
    assert [step["state"] for step in delivery["history"]] == ["pending", "parked"]
    assert delivery["history"][1]["detail"] == "cj: Order not found"
    assert await event_detail(store, "00000000-0000-5000-8000-000000000000") is None


async def test_the_spool_oldest_first_bounded_with_its_depth(store: Store) -> None:
    first, second, third = event("s-1", shop="alpha.myshoplaza.com"), event("s-2"), event("s-3")
    await hold_in_spool(store, first, NOW - 10 * MINUTE, seen=2)
    await hold_in_spool(store, second, NOW - 5 * MINUTE)
    await hold_in_spool(store, third, NOW - MINUTE)
    page = await spool(store, NOW, limit=2)
    assert [row.order_id for row in page.rows] == ["s-1", "s-2"]
    assert (page.depth, page.more, page.oldest, page.oldest_age) == (
        3,
        1,
        NOW - 10 * MINUTE,
        "10 min 0 s",
    )
    oldest = page.rows[0]
    assert (oldest.event_id, oldest.source, oldest.shop, oldest.reason, oldest.seen) == (
        str(first.event_id),
        "shoplazza",
        "alpha.myshoplaza.com",
        "inventory",
        2,
    )
    assert oldest.spooled_at == NOW - 10 * MINUTE
    spool_now = (await overview(store, NOW, ("cj",))).as_json()["spool"]
    assert spool_now == {
        "depth": 3,
        "oldest": utc_z(NOW - 10 * MINUTE),
        "oldest_age_seconds": 600,
        "waiting": "oldest 10 min 0 s ago",
    }
