"""The spool in the store, on SQLite and PostgreSQL: bounded, oldest first, leased, released."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.store.deliveries import Store
from bridge.store.spool import SpoolState, ToSpool

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A fresh store on each engine."""
    async with Store.open(database_url) as opened:
        yield opened


async def hold(store: Store, n: int, limit: int = 10) -> bool:
    """Spool event `n` (its body names it), spooled `n` seconds after T0."""
    body = f'{{"n": {n}}}'.encode()
    at = T0 + timedelta(seconds=n)
    (held,) = await store.spool_many([ToSpool(f"event-{n}", "shoplazza", body, n, at)], limit)
    return held


async def test_held_up_to_the_limit_and_read_back_as_spooled(store: Store) -> None:
    assert await store.spool_state() == SpoolState(0, None)
    assert [await hold(store, n, limit=3) for n in (1, 2, 3, 4)] == [True, True, True, False]
    assert await store.spool_state() == SpoolState(3, T0 + timedelta(seconds=1))
    listed = await store.spooled_events(limit=10)
    assert [(s.event_id, s.source, s.body, s.seen) for s in listed] == [
        (f"event-{n}", "shoplazza", f'{{"n": {n}}}'.encode(), n) for n in (1, 2, 3)
    ]
    assert [s.spooled_at for s in listed] == [T0 + timedelta(seconds=n) for n in (1, 2, 3)]


async def test_leases_are_oldest_first_and_exclusive_until_they_expire(store: Store) -> None:
    for n in range(1, 6):
        assert await hold(store, n)
    first = await store.lease_spooled("a", T0, T0 + LEASE, limit=2)
    assert [s.event_id for s in first] == ["event-1", "event-2"]
    second = await store.lease_spooled("b", T0, T0 + LEASE, limit=10)
    assert [s.event_id for s in second] == ["event-3", "event-4", "event-5"]
    assert await store.lease_spooled("c", T0, T0 + LEASE, limit=10) == []
    # "a" died: its leases expire and the rows are taken again.
    later = T0 + LEASE + timedelta(seconds=1)
    again = await store.lease_spooled("c", later, later + LEASE, limit=10)
    assert [s.event_id for s in again] == [f"event-{n}" for n in range(1, 6)]


async def test_unspool_forgets_and_release_gives_back(store: Store) -> None:
    for n in range(1, 4):
        assert await hold(store, n)
    leased = await store.lease_spooled("a", T0, T0 + LEASE, limit=10)
    await store.unspool([leased[0].id])
    await store.release_spooled("someone-else", [leased[1].id])  # not theirs: nothing
    await store.release_spooled("a", [leased[2].id])
    free = await store.lease_spooled("b", T0, T0 + LEASE, limit=10)
    assert [s.event_id for s in free] == ["event-3"]
    assert (await store.spool_state()).depth == 2
    await store.unspool([s.id for s in leased])
    assert await store.spool_state() == SpoolState(0, None)


async def test_a_batch_holds_what_fits_in_order(store: Store) -> None:
    """The receiver's spool writes go in batches: what fits under the limit, first come first."""
    items = [ToSpool(f"event-{n}", "shoplazza", b"{}", 1, T0) for n in range(5)]
    assert await store.spool_many(items, limit=3) == [True, True, True, False, False]
    assert await store.spool_many(items[3:], limit=4) == [True, False]
    listed = await store.spooled_events(limit=10)
    assert [s.event_id for s in listed] == ["event-0", "event-1", "event-2", "event-3"]
    assert await store.spool_many([], limit=4) == []
