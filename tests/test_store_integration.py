"""The state store on both engines: SQLite in a file, and PostgreSQL when DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bridge.cli.main import main
from bridge.settings import ConfigError, parse_settings, resolve
from bridge.store import status
from bridge.store.arrivals import Arrival, Echo, Seen
from bridge.store.claims import Busy, Claimed, Result, Settled
from bridge.store.deliveries import Store
from bridge.store.engine import SCHEMA_HEAD, async_url, upgrade
from bridge.store.lifecycle import DeliveryState
from contracts.events import OrderCancelled
from tests.harness.hot_store import event as cancellation

NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)


LEASE = timedelta(seconds=30)


def sqlite_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A SQLite store path and a minimal config file naming it (its secret set)."""
    store = tmp_path / "state.db"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
    )
    monkeypatch.setenv("SHOPLAZZA_CLIENT_SECRET", "s")
    return store, config


def event(order_id: str = "1001", aliases: dict[str, str] | None = None) -> OrderCancelled:
    """A Shoplazza cancellation of `order_id` at this file's NOW."""
    return cancellation(order_id, NOW, aliases)


async def test_events_count_their_deliveries(database_url: str) -> None:
    async with Store.open(database_url) as store:
        assert await store.record_event(event(), NOW) == 1
        assert await store.record_event(event(), NOW + timedelta(minutes=1)) == 2
        assert await store.record_event(event("other"), NOW) == 1


async def test_schema_survives_reopening(database_url: str) -> None:
    """Migrations run on every open and are idempotent; data stays."""
    async with Store.open(database_url) as store:
        await store.record_event(event(), NOW)
    async with Store.open(database_url) as store:
        assert await store.record_event(event(), NOW) == 2
        assert await store.delivery(str(event().event_id), "cj") is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///var/lib/cb/state.db", "sqlite+aiosqlite:///var/lib/cb/state.db"),
        ("/var/lib/cb/state.db", "sqlite+aiosqlite:////var/lib/cb/state.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_async_url(given: str, expected: str) -> None:
    assert async_url(given) == expected


def test_db_upgrade_creates_the_sqlite_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, config = sqlite_config(tmp_path, monkeypatch)
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == f"store schema at {SCHEMA_HEAD}: {store}"
    assert store.exists()
    assert main(["db", "upgrade", "--config", str(config)]) == 0  # idempotent


def test_store_url_comes_from_the_named_variable_or_the_path() -> None:
    settings = parse_settings(
        {
            "store": {"path": "/var/lib/cb/state.db", "url_env": "DATABASE_URL"},
            "sources": {"shoplazza": {"secret_env": "S"}},
        }
    )
    pg = "postgresql://bridge:pw@db:5432/bridge"
    assert resolve(settings, {"S": "x", "DATABASE_URL": pg}).store_url.get_secret_value() == pg
    assert resolve(settings, {"S": "x"}).store_url.get_secret_value() == "/var/lib/cb/state.db"
    with pytest.raises(ConfigError) as caught:
        resolve(settings, {"S": "x", "DATABASE_URL": "mysql://db/x"})
    assert caught.value.key == "store.url_env"
    assert "pw" not in str(caught.value)


async def test_a_claim_is_taken_once_and_a_settled_pair_never_again(database_url: str) -> None:
    e = event()
    async with Store.open(database_url) as store:
        await store.record_event(e, NOW, ("cj",))
        assert (await store.delivery(str(e.event_id), "cj")).state == DeliveryState.PENDING  # type: ignore[union-attr]
        assert await store.claim(e, "cj", "w1", NOW, NOW + LEASE) == Claimed(1)
        busy = await store.claim(e, "cj", "w2", NOW, NOW + LEASE)
        assert busy == Busy("w1", NOW + LEASE)
        assert await store.finish(
            str(e.event_id), "cj", "w1", DeliveryState.DELIVERED, NOW, reference="sub-1"
        )
        assert await store.claim(e, "cj", "w2", NOW, NOW + LEASE) == Settled(
            DeliveryState.DELIVERED, "sub-1"
        )
        row = await store.delivery(str(e.event_id), "cj")
        assert row is not None
        assert (row.state, row.attempts, row.reference) == (DeliveryState.DELIVERED, 1, "sub-1")


async def test_retrying_pairs_are_claimed_again_and_count_attempts(database_url: str) -> None:
    e = event()
    async with Store.open(database_url) as store:
        await store.record_event(e, NOW, ("cj",))
        assert await store.claim(e, "cj", "w1", NOW, NOW + LEASE) == Claimed(1)
        await store.finish(
            str(e.event_id), "cj", "w1", DeliveryState.RETRYING, NOW, detail="HTTP 503"
        )
        row = await store.delivery(str(e.event_id), "cj")
        assert row is not None
        assert (row.state, row.last_error) == (DeliveryState.RETRYING, "HTTP 503")
        assert await store.claim(e, "cj", "w2", NOW, NOW + LEASE) == Claimed(2)
        await store.finish(
            str(e.event_id), "cj", "w2", DeliveryState.ALREADY_DONE, NOW, detail="already"
        )
        row = await store.delivery(str(e.event_id), "cj")
        assert row is not None
        assert (row.state, row.attempts, row.last_error) == (DeliveryState.ALREADY_DONE, 2, None)


async def test_an_expired_lease_can_be_taken_over(database_url: str) -> None:
    """A worker that died mid-call leaves `calling`; after the lease another worker may call."""
    e = event()
    async with Store.open(database_url) as store:
        assert await store.claim(e, "cj", "dead", NOW, NOW + LEASE) == Claimed(1)
        assert isinstance(await store.claim(e, "cj", "w2", NOW + LEASE / 2, NOW + LEASE), Busy)
        later = NOW + LEASE + timedelta(seconds=1)
        assert await store.claim(e, "cj", "w2", later, later + LEASE) == Claimed(2)
        # The dead worker's late answer no longer holds the claim, but a settled outcome stands.
        assert not await store.finish(str(e.event_id), "cj", "dead", DeliveryState.DELIVERED, later)
        assert await store.claim(e, "cj", "w3", later, later + LEASE) == Settled(
            DeliveryState.DELIVERED, None
        )


async def test_a_claim_records_an_event_the_receiver_never_saw(database_url: str) -> None:
    e = event("published-elsewhere")
    async with Store.open(database_url) as store:
        assert await store.claim(e, "cj", "w1", NOW, NOW + LEASE) == Claimed(1)
        assert await store.record_event(e, NOW) == 2


async def test_racing_claims_make_one_claimant(database_url: str) -> None:
    """Twenty concurrent claims on one new pair, on one engine: exactly one wins."""
    e = event("race")
    async with Store.open(database_url) as store:
        results = await asyncio.gather(
            *(store.claim(e, "cj", f"w{n}", NOW, NOW + LEASE) for n in range(20))
        )
    claimed = [r for r in results if isinstance(r, Claimed)]
    assert len(claimed) == 1, results
    assert all(isinstance(r, Busy) for r in results if not isinstance(r, Claimed)), results


async def test_racing_events_naming_one_order_make_one_holder(database_url: str) -> None:
    """Twenty events naming one CJ order, claimed at once: one holder, nineteen wait for it.

    Once it delivered they settle as duplicates; a parked holder hands its order over.
    """
    events = [event(f"twin-{n}") for n in range(20)]
    waiting = Busy(None, NOW + LEASE)  # the claim given back: the message comes back later

    async def claim(e: OrderCancelled, worker: str, order: str = "CJ-1") -> object:
        return await store.claim(e, "cj", worker, NOW, NOW + LEASE, order=order)

    async with Store.open(database_url) as store:
        results = await asyncio.gather(*(claim(e, f"w{n}") for n, e in enumerate(events)))
        claimed = [n for n, r in enumerate(results) if isinstance(r, Claimed)]
        assert len(claimed) == 1, results
        first, worker = events[claimed[0]], f"w{claimed[0]}"
        holder = str(first.event_id)
        assert [r for r in results if not isinstance(r, Claimed)] == [waiting] * 19
        waiter = await store.delivery(str(events[claimed[0] - 1].event_id), "cj")
        assert waiter is not None
        assert (waiter.state, waiter.attempts) == (DeliveryState.PENDING, 0)  # as before
        # the holder claims its own order again after a retry; the others still wait
        await store.finish(holder, "cj", worker, DeliveryState.RETRYING, NOW)
        assert await claim(first, "w1") == Claimed(2)
        assert await claim(event("late"), "w1") == waiting
        await store.finish(holder, "cj", "w1", DeliveryState.DELIVERED, NOW, reference="sub-1")
        after = [await claim(e, "w2") for e in (*events, event("late"))]
        assert after.pop(claimed[0]) == Settled(DeliveryState.DELIVERED, "sub-1")
        assert after == [Settled(DeliveryState.DUPLICATE, holder)] * 20
        # a parked holder gives its order up: the next event naming it calls
        parked, heir = event("parked"), event("heir")
        assert await claim(parked, "w1", "CJ-2") == Claimed(1)
        await store.finish(str(parked.event_id), "cj", "w1", DeliveryState.PARKED, NOW)
        assert await claim(heir, "w2", "CJ-2") == Claimed(1)
        assert await claim(parked, "w1", "CJ-2") == waiting  # replayed: the heir holds it now


async def test_links_join_merge_and_replace(database_url: str) -> None:
    async with Store.open(database_url) as store:
        await store.link({"shoplazza": "1001", "prime": "abc"}, NOW)
        await store.link({"occ": "o123", "cj": "1001"}, NOW)
        assert await store.linked_order("shoplazza", "1001", "cj") is None
        await store.link({"prime": "abc", "occ": "o123"}, NOW)  # joins the two groups
        assert await store.links_of("cj", "1001") == {
            "shoplazza": "1001",
            "prime": "abc",
            "occ": "o123",
            "cj": "1001",
        }
        await store.link({"shoplazza": "1001", "cj": "C-1001"}, NOW)  # corrects CJ's id
        assert await store.linked_order("shoplazza", "1001", "cj") == "C-1001"
        assert await store.linked_order("cj", "1001", "shoplazza") is None
        assert await store.linked_order("nowhere", "x", "cj") is None


async def test_an_events_aliases_become_links(database_url: str) -> None:
    async with Store.open(database_url) as store:
        await store.record_event(event("2002", aliases={"cj": "CJ-2002"}), NOW)
        assert await store.linked_order("shoplazza", "2002", "cj") == "CJ-2002"


async def test_echoes_are_recorded_with_a_settled_outcome_and_expire(database_url: str) -> None:
    e = event()
    async with Store.open(database_url) as store:
        await store.claim(e, "prime", "w1", NOW, NOW + LEASE)
        await store.finish(
            str(e.event_id), "prime", "w1", DeliveryState.DELIVERED, NOW, echo=("prime", "abc")
        )
        assert await store.echo_of("prime", "abc", NOW - timedelta(days=7)) == str(e.event_id)
        assert await store.echo_of("prime", "abc", NOW + timedelta(seconds=1)) is None
        assert await store.echo_of("prime", "other", NOW - timedelta(days=7)) is None
        assert await store.expire_echoes(NOW + timedelta(days=8)) == 1
        assert await store.echo_of("prime", "abc", NOW - timedelta(days=7)) is None


async def test_a_store_made_by_the_first_schema_is_upgraded_keeping_its_data(
    database_url: str,
) -> None:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade, "0001")
            await connection.execute(
                sa.text(
                    "INSERT INTO events (event_id, source, shop, order_id, reason, first_seen,"
                    " last_seen, delivery_count) VALUES (:id, 'shoplazza', 'demo.myshoplaza.com',"
                    " '1001', 'other', :now, :now, 3)"
                ),
                {"id": str(event().event_id), "now": NOW},
            )
    finally:
        await engine.dispose()
    async with Store.open(database_url) as store:
        assert await store.record_event(event(), NOW) == 4
        assert await store.claim(event(), "cj", "w1", NOW, NOW + LEASE) == Claimed(1)


def test_links_import_from_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, config = sqlite_config(tmp_path, monkeypatch)
    links = tmp_path / "links.csv"
    links.write_text("shoplazza,prime,cj\n1001,abc,CJ-1001\n1002,def,\n", encoding="utf-8")
    assert main(["links", "import", str(links), "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == f"linked 2 orders from {links}"

    async def linked() -> tuple[str | None, str | None]:
        async with Store.open(str(store)) as opened:
            return (
                await opened.linked_order("shoplazza", "1001", "cj"),
                await opened.linked_order("prime", "def", "shoplazza"),
            )

    assert asyncio.run(linked()) == ("CJ-1001", "1002")

    links.write_text("shoplazza,ebay\n1,2\n", encoding="utf-8")
    assert main(["links", "import", str(links), "--config", str(config)]) == 1
    assert "line 1: unknown platform 'ebay'" in capsys.readouterr().err
    assert main(["links", "import", str(tmp_path / "absent.csv"), "--config", str(config)]) == 1
    assert "cannot read" in capsys.readouterr().err


async def test_claim_many_takes_claimable_pairs_in_one_go(database_url: str) -> None:
    fresh, pending, done, again = event("fresh"), event("pending"), event("done"), event("pending")
    async with Store.open(database_url) as store:
        await store.record_event(pending, NOW, ("cj",))
        await store.record_event(done, NOW, ("cj",))
        await store.claim(done, "cj", "w0", NOW, NOW + LEASE)
        await store.finish(str(done.event_id), "cj", "w0", DeliveryState.DELIVERED, NOW)
        claims = await store.claim_many([pending, fresh, done, again], "cj", "w1", LEASE)
    assert claims[0] == Claimed(1)  # pending row: taken by the one UPDATE
    assert claims[1] == Claimed(1)  # no row yet: inserted
    assert claims[2] == Settled(DeliveryState.DELIVERED, None)
    assert isinstance(claims[3], Busy)  # the same event twice in a batch: the copy waits
    assert claims[3].claimed_by == "w1"


async def test_claim_many_claims_events_with_no_rows(database_url: str) -> None:
    """Events published by anything but the receiver have no rows: claimed in the batch."""
    unknown = [event(f"unknown-{n}") for n in range(5)]
    bare = event("bare")  # recorded without targets: an event row, no delivery row
    async with Store.open(database_url) as store:
        await store.record_event(bare, NOW)
        claims = await store.claim_many([*unknown, bare], "cj", "w1", LEASE)
        later = await store.claim_many([*unknown, bare], "cj", "w2", LEASE)
        rows = [await store.delivery(str(e.event_id), "cj") for e in [*unknown, bare]]
        found = await status.order_status(store, unknown[0].order_id, "shoplazza")
    assert claims == [Claimed(1)] * 6
    assert [(row.state, row.attempts) for row in rows if row is not None] == [
        (DeliveryState.CALLING, 1)
    ] * 6
    assert all(isinstance(claim, Busy) and claim.claimed_by == "w1" for claim in later), later
    assert found, "the unknown event was recorded with its claim"


async def test_finish_many_records_each_outcome_and_its_history(database_url: str) -> None:
    first, second = event("one"), event("two")
    async with Store.open(database_url) as store:
        for e in (first, second):
            await store.record_event(e, NOW, ("cj",))
            await store.claim(e, "cj", "w1", NOW, NOW + LEASE)
        held = await store.finish_many(
            [
                Result(
                    str(first.event_id), "cj", "w1", DeliveryState.DELIVERED, NOW, reference="sub-1"
                ),
                Result(
                    str(second.event_id),
                    "cj",
                    "w-other",
                    DeliveryState.RETRYING,
                    NOW,
                    detail="HTTP 503",
                ),
            ]
        )
        assert held == [True, False]  # the second claim was not w-other's
        one = await store.delivery(str(first.event_id), "cj")
        two = await store.delivery(str(second.event_id), "cj")
    assert one is not None
    assert two is not None
    assert (one.state, one.reference) == (DeliveryState.DELIVERED, "sub-1")
    assert (
        two.state == DeliveryState.CALLING
    )  # a non-settling outcome of a lost claim changes nothing


async def test_arrive_many_counts_records_and_spots_echoes(database_url: str) -> None:
    since = NOW - timedelta(days=7)
    known, fresh, echoed = event("known"), event("fresh"), event("echoed")
    async with Store.open(database_url) as store:
        await store.record_event(known, NOW)
        await store.claim(event("cause"), "shoplazza", "w", NOW, NOW + LEASE)
        await store.finish(
            str(event("cause").event_id),
            "shoplazza",
            "w",
            DeliveryState.DELIVERED,
            NOW,
            echo=("shoplazza", "echoed"),
        )
        results = await store.arrive_many(
            [
                Arrival(fresh, NOW, ("cj",), since),
                Arrival(known, NOW, ("cj",), since),
                Arrival(fresh, NOW, ("cj",), since),
                Arrival(echoed, NOW, ("cj",), since),
                Arrival(fresh, NOW, ("cj",), since),
            ]
        )
        assert results == [Seen(1), Seen(2), Seen(2), Echo(str(event("cause").event_id)), Seen(3)]
        row = await store.delivery(str(fresh.event_id), "cj")
        assert row is not None
        assert row.state == DeliveryState.PENDING
        assert await store.record_event(fresh, NOW) == 4
        assert await store.delivery(str(echoed.event_id), "cj") is None  # echoes are not recorded
        later = await store.arrive_many([Arrival(echoed, NOW, (), NOW + timedelta(seconds=1))])
        assert later == [Seen(1)]  # an echo record older than `echo_since` no longer counts


async def test_a_new_sqlite_store_opens_while_another_process_holds_the_file(
    tmp_path: Path,
) -> None:
    # A receiver and a worker started together on a fresh file: switching it to WAL answers
    # "database is locked" at once (no busy handler) while the other holds a transaction.
    path = tmp_path / "fresh.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other_process (x)")
    release = threading.Timer(0.5, holder.execute, ("COMMIT",))
    release.start()
    try:
        async with Store.open(str(path)) as store:
            await store.record_event(event(), NOW)
            assert await store.record_event(event(), NOW) == 2
    finally:
        release.join()
        holder.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
