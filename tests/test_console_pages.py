"""The console's pages over plain HTTP: what they show, and 400/404/503 instead of a 500."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from contracts.events import OrderCancelled
from tests.harness.console_browser import SHOP, arrive, attempt, console_app, console_config, event
from tests.harness.pipeline import API_TOKEN
from tests.harness.proxy import TcpProxy
from tests.harness.receiver import ClientFactory
from tests.harness.stores import hold_in_spool

Client = TestClient[Any, Any]
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(str(tmp_path / "state.db")) as opened:
        yield opened


@pytest.fixture
async def client(aiohttp_client: ClientFactory, store: Store) -> Client:
    config = console_config()
    made: Client = await aiohttp_client(console_app(config, store))
    return made


async def page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path, headers=BEARER)
    text = await response.text()
    assert response.status == status, text[:500]
    assert response.content_type == "text/html"
    return html.unescape(text)


async def parked_and_delivered(store: Store) -> tuple[OrderCancelled, OrderCancelled]:
    now = datetime.now(UTC)
    parked, delivered = event("p-1001"), event("d-1002", shop="<b>odd</b>.example")
    for cancelled in (parked, delivered):
        await arrive(store, cancelled, now - timedelta(seconds=2))
    await attempt(store, parked, now - timedelta(seconds=1), DeliveryState.RETRYING, "HTTP 503")
    await attempt(store, parked, now, DeliveryState.PARKED, "cj: Order not found")
    await attempt(store, delivered, now, DeliveryState.DELIVERED)
    return parked, delivered


async def test_overview_shows_the_hour_and_the_states(client: Client, store: Store) -> None:
    await parked_and_delivered(store)
    text = await page(client, "/console")
    assert 'data-chart="shoplazza"' in text
    assert 'data-count="totals.events">2<' in text
    assert 'data-count="totals.parked">1<' in text
    assert 'data-count="deliveries_by_state.cj.parked">1<' in text
    assert 'data-count="outcomes_last_hour.cj.retrying">1<' in text
    assert '<script src="/console/static/console.js" defer></script>' in text
    data = orjson.loads(await (await client.get("/console/overview.json", headers=BEARER)).read())
    assert data["parked"] == {"cj": 1}
    assert sum(data["events_per_minute"]["shoplazza"]) == 2
    assert data["shape"] == "shoplazza|cj"


async def test_the_script_and_stylesheet_are_served_from_here(client: Client) -> None:
    for path, kind in (
        ("/console/static/console.js", "javascript"),
        ("/console/static/console.css", "css"),
    ):
        response = await client.get(path)
        assert response.status == 200
        assert kind in response.content_type
    assert "http" not in (await (await client.get("/console/static/console.css")).text())


async def test_events_list_and_search(client: Client, store: Store) -> None:
    parked, _ = await parked_and_delivered(store)
    text = await page(client, "/console/events")
    assert "cj: parked" in text
    assert "cj: delivered" in text
    found = await page(client, "/console/events?q=p-1001")
    assert f"/console/events/{parked.event_id}" in found
    assert "d-1002" not in found
    only_parked = await page(client, "/console/events?state=parked")
    assert "p-1001" in only_parked
    assert "d-1002" not in only_parked
    assert "Parked cancellations" in only_parked
    assert "Nothing matches this search." in await page(client, "/console/events?q=zzz")


async def test_what_the_platform_sent_is_escaped(client: Client, store: Store) -> None:
    await parked_and_delivered(store)
    response = await client.get("/console/events", headers=BEARER)
    raw = await response.text()
    assert "&lt;b&gt;odd&lt;/b&gt;.example" in raw
    assert "<b>odd</b>" not in raw


@pytest.mark.parametrize(
    "query",
    ["page=0", "page=x", "state=lost", "source=A%20B", "q=a%00b", f"q={'x' * 300}"],
)
async def test_bad_search_parameters_are_400(client: Client, query: str) -> None:
    text = await page(client, f"/console/events?{query}", 400)
    assert "Bad search" in text


async def test_the_event_page_tells_the_timeline(client: Client, store: Store) -> None:
    parked, delivered = await parked_and_delivered(store)
    text = await page(client, f"/console/events/{parked.event_id}")
    for expected in (
        "received from shoplazza",
        "accepted, queued for cj",
        "attempt 1: failed, will retry",
        "HTTP 503",
        "attempt 2: parked",
        "cj: Order not found",
        f"/console/events/{parked.event_id}/cj/replay",
        f"/console/events/{parked.event_id}/cj/drop",
    ):
        assert expected in text
    settled = await page(client, f"/console/events/{delivered.event_id}")
    assert "attempt 1: delivered" in settled
    assert "/replay" not in settled  # nothing parked, nothing to replay


async def test_a_retrying_delivery_can_be_replayed_if_the_broker_parked_it(
    client: Client, store: Store
) -> None:
    """A message over the delivery limit is parked by the broker; the store says `retrying`."""
    crashing = event("r-1003")
    now = datetime.now(UTC)
    await arrive(store, crashing, now - timedelta(seconds=1))
    await attempt(store, crashing, now, DeliveryState.RETRYING, "worker error: KeyError")
    text = await page(client, f"/console/events/{crashing.event_id}")
    assert "If the broker parked it" in text
    assert f"/console/events/{crashing.event_id}/cj/replay" in text
    assert f"/console/events/{crashing.event_id}/cj/drop" in text


async def test_the_confirmation_page_says_what_will_happen(client: Client, store: Store) -> None:
    parked, _ = await parked_and_delivered(store)
    replay = await page(client, f"/console/events/{parked.event_id}/cj/replay")
    assert "Replay this cancellation for cj?" in replay
    assert "cancel-bridge.cj.parked" in replay
    assert "Replay now" in replay
    drop = await page(client, f"/console/events/{parked.event_id}/cj/drop")
    assert "This cannot be undone." in drop
    assert "Drop for good" in drop


async def spool(store: Store, order_id: str, at: datetime, shop: str = SHOP) -> OrderCancelled:
    """Hold an event in the spool as the receiver does while the broker is away."""
    cancelled = event(order_id, shop=shop)
    await hold_in_spool(store, cancelled, at)
    return cancelled


async def test_the_spool_lists_what_waits_for_the_broker_oldest_first(
    client: Client, store: Store
) -> None:
    now = datetime.now(UTC)
    older = await spool(store, "s-2001", now - timedelta(minutes=3), shop="<b>odd</b>.example")
    newer = await spool(store, "s-2002", now - timedelta(seconds=20))
    text = await page(client, "/console/spool")
    assert "<strong>2</strong> events waiting, oldest 3 min" in text
    assert text.index(str(older.event_id)) < text.index(str(newer.event_id))
    assert f'<a class="order" href="/console/events/{older.event_id}">s-2001</a>' in text
    assert '<a href="/console/spool" aria-current="page">Spool</a>' in text
    raw = await (await client.get("/console/spool", headers=BEARER)).text()
    assert "&lt;b&gt;odd&lt;/b&gt;.example" in raw
    assert "<b>odd</b>" not in raw
    overview = await page(client, "/console")
    assert 'data-count="spool.depth">2<' in overview
    assert 'data-count="spool.waiting">oldest 3 min' in overview
    assert 'class="tile alarm" data-alarm="spool.depth"' in overview
    data = orjson.loads(await (await client.get("/console/overview.json", headers=BEARER)).read())
    assert data["spool"]["depth"] == 2
    assert data["spool"]["oldest_age_seconds"] >= 180


async def test_an_empty_spool_says_so(client: Client) -> None:
    text = await page(client, "/console/spool")
    assert "The spool is empty" in text
    assert "<table" not in text
    overview = await page(client, "/console")
    assert 'data-count="spool.depth">0<' in overview
    assert 'class="tile" data-alarm="spool.depth"' in overview
    data = orjson.loads(await (await client.get("/console/overview.json", headers=BEARER)).read())
    assert data["spool"] == {
        "depth": 0,
        "oldest": None,
        "oldest_age_seconds": None,
        "waiting": "",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/console/events/00000000-0000-5000-8000-000000000000",
        "/console/events/a%00b",
        f"/console/events/{'x' * 65}",
        "/console/events/{parked}/cj/explode",
        "/console/events/{parked}/nowhere/replay",
        "/console/events/00000000-0000-5000-8000-000000000000/cj/replay",
        "/console/nothing/here",
    ],
)
async def test_unknown_things_are_404_pages(client: Client, store: Store, path: str) -> None:
    parked, _ = await parked_and_delivered(store)
    text = await page(client, path.format(parked=parked.event_id), 404)
    assert "Not found" in text
    posted = await client.post(path.format(parked=parked.event_id), headers=BEARER)
    assert posted.status == 404


async def test_without_the_store_pages_are_503(
    aiohttp_client: ClientFactory, postgres_url: str
) -> None:
    database = URL(postgres_url)
    proxy = TcpProxy(database.host or "127.0.0.1", database.port or 5432)
    port = await proxy.start()
    proxied = str(database.with_host("127.0.0.1").with_port(port))
    config = console_config(proxied)
    try:
        async with Store.open(proxied) as store:
            parked, _ = await parked_and_delivered(store)
            client: Client = await aiohttp_client(console_app(config, store))
            await page(client, "/console")
            proxy.cut()
            for path in (
                "/console",
                "/console/events?q=1",
                f"/console/events/{parked.event_id}",
                f"/console/events/{parked.event_id}/cj/replay",
                "/console/spool",
            ):
                text = await page(client, path, 503)
                assert "Store unavailable" in text
                assert str(port) not in text  # no address of the database
            data = await client.get("/console/overview.json", headers=BEARER)
            assert data.status == 503
            assert data.headers["Retry-After"] == "5"
            assert orjson.loads(await data.read())["error"] == "store_unavailable"
            proxy.restore()
            await page(client, "/console")
    finally:
        await proxy.stop()
