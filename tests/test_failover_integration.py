"""Broker failover: `AMQP_URL` names several nodes; who loses theirs moves on to the next.

The first node is the real broker behind a cuttable proxy, the second the same broker directly
(two doors to one broker stand in for two nodes of a cluster: the cluster chaos test runs real
nodes). Cut the first door: the receiver keeps answering `accepted` (published, not spooled)
through the second, and a worker keeps consuming.
"""

from __future__ import annotations

import asyncio
import uuid

from aio_pika.abc import AbstractQueue, AbstractRobustConnection

from bridge.demo.fake_cj import FakeCJ
from tests.harness.broker import receive
from tests.harness.pipeline import SETTLE_TIMEOUT, SHOP, pipeline_config, running_bridge
from tests.harness.proxy import TcpProxy
from tests.harness.receiver import (
    READY_TIMEOUT,
    ClientFactory,
    make_config,
    post_fresh,
    publisher_of,
    shoplazza_webhook,
    started,
)


async def test_the_receiver_moves_to_the_next_node(
    aiohttp_client: ClientFactory,
    proxy: TcpProxy,
    proxied_url: str,
    amqp_url: str,
    subscriber: AbstractQueue,
) -> None:
    client = await started(aiohttp_client, make_config(f"{proxied_url},{amqp_url}"))
    status, answer, _ = await post_fresh(client)
    assert (status, answer["status"]) == (200, "accepted")
    assert (await receive(subscriber)).message_id == answer["event_id"]

    proxy.cut()
    publisher = publisher_of(client)
    async with asyncio.timeout(READY_TIMEOUT):
        await publisher.wait_down()
        await publisher.wait_ready()  # on the second node
    status, answer, _ = await post_fresh(client)
    assert (status, answer["status"]) == (200, "accepted"), answer  # published, not spooled
    assert (await receive(subscriber)).message_id == answer["event_id"]


async def test_a_first_node_that_is_down_at_start_is_passed_over(
    aiohttp_client: ClientFactory,
    proxy: TcpProxy,
    proxied_url: str,
    amqp_url: str,
    subscriber: AbstractQueue,
) -> None:
    proxy.cut()
    client = await started(aiohttp_client, make_config(f"{proxied_url},{amqp_url}"))
    status, answer, _ = await post_fresh(client)
    assert (status, answer["status"]) == (200, "accepted")
    assert (await receive(subscriber)).message_id == answer["event_id"]


async def test_a_worker_moves_to_the_next_node(  # noqa: PLR0913, PLR0917 - its fixtures
    aiohttp_client: ClientFactory,
    proxy: TcpProxy,
    proxied_url: str,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
) -> None:
    config = pipeline_config(amqp_url, cj.url)  # the receiver on the broker directly
    nodes = f"{proxied_url},{amqp_url}"  # the worker through the door that will close
    async with running_bridge(aiohttp_client, nodes, amqp, config, ["cj"]) as bridge:
        worker = bridge.workers["cj"]
        first = f"failover-{uuid.uuid4().hex[:6]}"
        hook = shoplazza_webhook({"id": first}, shop=SHOP)
        await bridge.client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await worker.wait_outcomes("delivered", 1)
        proxy.cut()
        second = f"failover-{uuid.uuid4().hex[:6]}"
        hook = shoplazza_webhook({"id": second}, shop=SHOP)
        await bridge.client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await worker.wait_outcomes("delivered", 2)
    assert [len(cj.calls_for(order)) for order in (first, second)] == [1, 1]
