"""The spool: verified webhooks held in the store and answered 200 while the broker is away.

They are published, oldest first, once it is back; a full spool answers 503 again. The spool
off (503 while the broker is away): `test_broker_outage_integration.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aio_pika.abc import AbstractQueue
from aiohttp.test_utils import TestClient

from bridge.web.keys import METRICS, STORE
from tests.harness.broker import assert_empty, receive
from tests.harness.proxy import TcpProxy
from tests.harness.receiver import (
    READY_TIMEOUT,
    ClientFactory,
    forwarder_of,
    make_config,
    post_fresh,
    publisher_of,
    started,
)

Client = TestClient[Any, Any]


async def readiness(client: Client) -> tuple[int, dict[str, Any]]:
    """`/readyz`'s status and answer."""
    response = await client.get("/readyz")
    return response.status, orjson.loads(await response.read())


def sample(client: Client, name: str, **labels: str) -> float | None:
    """A metric's current value in the receiver's registry."""
    assert client.app is not None
    value: float | None = client.app[METRICS].registry.get_sample_value(name, labels)
    return value


async def broker_gone(client: Client, proxy: TcpProxy) -> None:
    """Cut the link and await the publisher noticing."""
    proxy.cut()
    async with asyncio.timeout(READY_TIMEOUT):
        await publisher_of(client).wait_down()


async def test_broker_away_spools_then_forwards_oldest_first(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str, subscriber: AbstractQueue
) -> None:
    client = await started(aiohttp_client, make_config(proxied_url))
    await broker_gone(client, proxy)
    answers = [await post_fresh(client) for _ in range(3)]
    assert [(status, answer["status"]) for status, answer, _ in answers] == [(200, "spooled")] * 3
    assert await readiness(client) == (
        200,
        {"status": "spooling", "broker": "down", "store": "up", "spooled": 3},
    )
    assert sample(client, "cancel_bridge_spooled_total", source="shoplazza") == 3
    assert sample(client, "cancel_bridge_spool_depth") == 3
    oldest = sample(client, "cancel_bridge_spool_oldest_seconds")
    assert oldest is not None
    assert oldest >= 0

    proxy.restore()
    received = [await receive(subscriber) for _ in answers]
    assert [m.message_id for m in received] == [answer["event_id"] for _, answer, _ in answers]
    assert all(m.headers["ce-id"] == m.message_id for m in received)
    assert all(orjson.loads(m.body)["event_id"] == m.message_id for m in received)
    async with asyncio.timeout(READY_TIMEOUT):
        await forwarder_of(client).wait_empty()
    assert client.app is not None
    assert (await client.app[STORE].spool_state()).depth == 0
    assert sample(client, "cancel_bridge_spool_forwarded_total") == 3
    assert sample(client, "cancel_bridge_spool_oldest_seconds") == 0
    assert await readiness(client) == (
        200,
        {"status": "ready", "broker": "up", "store": "up", "spooled": 0},
    )
    await assert_empty(subscriber)  # each once


async def test_no_confirm_in_time_is_spooled(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str, subscriber: AbstractQueue
) -> None:
    """A broker that stops answering: after `confirm_timeout` the event waits in the spool."""
    client = await started(aiohttp_client, make_config(proxied_url, confirm_timeout=0.5))
    proxy.blackhole()
    status, answer, _ = await post_fresh(client)
    assert (status, answer["status"]) == (200, "spooled")
    proxy.cut()  # the stalled link goes; a new one is made once it is restored
    proxy.restore()
    assert (await receive(subscriber)).message_id == answer["event_id"]
    async with asyncio.timeout(READY_TIMEOUT):
        await forwarder_of(client).wait_empty()
    await assert_empty(subscriber)


async def test_a_full_spool_answers_503(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str, subscriber: AbstractQueue
) -> None:
    client = await started(aiohttp_client, make_config(proxied_url, {"spool_max": 2}))
    await broker_gone(client, proxy)
    answers = [await post_fresh(client) for _ in range(3)]
    assert [(status, answer.get("status")) for status, answer, _ in answers[:2]] == [
        (200, "spooled")
    ] * 2
    status, refused, retry_after = answers[2]
    assert (status, refused["error"], retry_after) == (503, "spool_full", "5")
    assert "spool is full (2 events)" in refused["detail"]

    proxy.restore()
    received = {(await receive(subscriber)).message_id for _ in range(2)}
    assert received == {answer["event_id"] for _, answer, _ in answers[:2]}
    async with asyncio.timeout(READY_TIMEOUT):
        await forwarder_of(client).wait_empty()
    await assert_empty(subscriber)  # the refused one was never published
