"""The store (PostgreSQL) unreachable: the receiver answers 503, workers hold their messages.

A TCP proxy between the bridge and PostgreSQL cuts the link, as a database failover or a network
partition would; nothing is lost and nothing is called twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import orjson
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from yarl import URL

from bridge.amqp import topology
from bridge.amqp.messages import REDELIVERY_HEADER
from bridge.demo.fake_cj import FakeCJ
from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from bridge.targets import plan
from bridge.web.app import create_app
from bridge.web.keys import CONFIG
from bridge.worker.consumer import Worker
from tests.harness.broker import delete_target_queues, fresh_target_queues, receive
from tests.harness.pipeline import SETTLE_TIMEOUT, SHOP, Client, pipeline_config
from tests.harness.proxy import TcpProxy
from tests.harness.receiver import ClientFactory, shoplazza_webhook, wait_ready


@dataclass
class Setup:
    """Receiver and worker whose store link goes through `proxy`."""

    client: Client
    worker: Worker
    store: Store
    proxy: TcpProxy
    cj: FakeCJ

    async def post(self, order_id: str) -> tuple[int, dict[str, object]]:
        """A signed cancellation of `order_id`; the status and JSON answer."""
        hook = shoplazza_webhook({"id": order_id}, shop=SHOP)
        response = await self.client.post(
            "/webhooks/shoplazza", data=hook.body, headers=hook.headers
        )
        return response.status, orjson.loads(await response.read())

    async def outcome(self, kind: str, count: int = 1) -> None:
        """Await the worker counting `count` of `kind`."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await self.worker.wait_outcomes(kind, count)


@pytest.fixture
async def setup(
    aiohttp_client: ClientFactory,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
    postgres_url: str,
) -> AsyncIterator[Setup]:
    database = URL(postgres_url)
    proxy = TcpProxy(database.host or "127.0.0.1", database.port or 5432)
    port = await proxy.start()
    proxied = str(database.with_host("127.0.0.1").with_port(port))
    config = pipeline_config(amqp_url, cj.url, proxied)
    worker_plan = plan(config, "cj")
    channel = await amqp.channel()
    await fresh_target_queues(channel, worker_plan.topology)
    try:
        async with Store.open(proxied) as store:
            client: Client = await aiohttp_client(create_app(config, store))
            await wait_ready(client)
            broker = config.settings.broker
            async with Worker.running(worker_plan, amqp_url, broker, store) as worker:
                yield Setup(client, worker, store, proxy, cj)
    finally:
        await delete_target_queues(channel, worker_plan.topology)
        await proxy.stop()


async def test_receiver_answers_503_without_the_store_and_recovers(
    setup: Setup, subscriber: AbstractQueue
) -> None:
    order = f"store-down-{uuid.uuid4().hex[:6]}"
    setup.proxy.cut()
    status, answer = await setup.post(order)
    assert (status, answer["error"]) == (503, "store_unavailable"), answer
    detail = str(answer["detail"])
    assert detail.startswith("store unavailable ("), answer
    assert "127.0.0.1" not in detail  # no address (nor credentials) of the database
    ready = await setup.client.get("/readyz")
    assert ready.status == 503
    expected = {"status": "not_ready", "broker": "up", "store": "down", "spooled": 0}
    assert await ready.json() == expected

    setup.proxy.restore()
    ready = await setup.client.get("/readyz")
    assert (ready.status, (await ready.json())["store"]) == (200, "up")
    status, answer = await setup.post(order)  # the platform's retry
    assert (status, answer["status"]) == (200, "accepted"), answer
    await setup.outcome("delivered")
    assert len(setup.cj.calls_for(order)) == 1
    sentinel = f"sentinel-{uuid.uuid4().hex[:6]}"
    assert (await setup.post(sentinel))[0] == 200
    published = [await receive(subscriber) for _ in range(2)]
    # The refused attempt was neither published nor counted: the retry is the first sighting.
    assert [orjson.loads(m.body)["order_id"] for m in published] == [order, sentinel]
    assert REDELIVERY_HEADER not in (published[0].headers or {})


async def test_a_stalled_store_is_a_503_within_the_request_timeout(
    setup: Setup, aiohttp_client: ClientFactory
) -> None:
    """Found by a probe: a stalled PostgreSQL link held webhooks 12-24 s before a 503.

    `[store] request_timeout` (0.5 s here) bounds the wait: the platform gets its 503 long before
    the driver's own command timeout (10 s), which this client would not wait for.
    """
    config = setup.client.app[CONFIG] if setup.client.app is not None else None
    assert config is not None
    settings = config.settings
    quick = settings.model_copy(
        update={"store": settings.store.model_copy(update={"request_timeout": 0.5})}
    )
    client: Client = await aiohttp_client(create_app(replace(config, settings=quick), setup.store))
    await wait_ready(client)
    setup.proxy.blackhole()
    hook = shoplazza_webhook({"id": f"stalled-{uuid.uuid4().hex[:6]}"}, shop=SHOP)
    async with asyncio.timeout(5):
        response = await client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
        answer = orjson.loads(await response.read())
    assert (response.status, answer["error"]) == (503, "store_unavailable"), answer
    assert answer["detail"] == "store did not answer within 0.5s"
    assert response.headers["Retry-After"] == "5"
    setup.proxy.cut()  # the stalled links go; the next ones work
    setup.proxy.restore()


async def test_worker_holds_its_message_until_the_store_returns(
    setup: Setup, amqp: AbstractRobustConnection
) -> None:
    order = f"held-{uuid.uuid4().hex[:6]}"
    status, _ = await setup.post(order)  # recorded and published while the store is up
    assert status == 200
    setup.proxy.cut()
    await setup.outcome("store_unavailable")  # cannot claim: holds the message, calls nothing
    assert setup.cj.calls == []
    setup.proxy.restore()
    await setup.outcome("delivered")
    assert len(setup.cj.calls_for(order)) == 1
    # The metrics say so: the worker waited for the store, and a claim failed meanwhile.
    registry = setup.worker.metrics.registry
    waited = {"target": "cj", "problem": "store_unavailable"}
    assert (registry.get_sample_value("cancel_bridge_worker_problems_total", waited) or 0) >= 1
    failed = {"operation": "claim", "result": "failed"}
    assert (registry.get_sample_value("cancel_bridge_store_seconds_count", failed) or 0) >= 1
    channel = await amqp.channel()
    parked = await channel.declare_queue(topology.parked_queue("cj"), passive=True)
    assert parked.declaration_result.message_count == 0


async def test_an_answer_in_hand_waits_for_the_store_and_is_not_asked_again(setup: Setup) -> None:
    order = f"answer-held-{uuid.uuid4().hex[:6]}"
    # Claimed and calling: the store is cut before CJ answers (the fake calls `on_call` first),
    # so the answer comes into a worker that cannot record it, however late this test runs.
    setup.cj.on_call = lambda _: setup.proxy.cut()
    status, answer = await setup.post(order)
    assert status == 200
    await setup.outcome("store_unavailable")
    setup.proxy.restore()
    await setup.outcome("delivered")
    assert len(setup.cj.calls_for(order)) == 1
    event_id = str(answer["event_id"])
    row = await setup.store.delivery(event_id, "cj")
    assert row is not None
    assert (row.state, row.attempts) == (DeliveryState.DELIVERED, 1)
