"""The receiver when the broker is cut off, refuses or returns: 503 with Retry-After, never 200.

With the spool off (`[receiver] spool = false`) for the broker away; a broker that refuses (nack,
return) gets 503 with the spool on too. The spool itself: `test_spool_integration.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from aiohttp.test_utils import TestClient

from bridge.amqp import topology
from bridge.web.app import create_app
from tests.harness.broker import assert_empty, receive
from tests.harness.proxy import TcpProxy
from tests.harness.receiver import (
    READY_TIMEOUT,
    ClientFactory,
    make_config,
    post_fresh,
    publisher_of,
    signed,
    started,
    wait_ready,
)

Client = TestClient[Any, Any]
NO_SPOOL: dict[str, float | bool] = {"spool": False}


async def test_cut_link_answers_503_then_recovers(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str, subscriber: AbstractQueue
) -> None:
    """Link cut: 503 + Retry-After and /readyz 503; link back: 200 with no restart."""
    client = await started(aiohttp_client, make_config(proxied_url, NO_SPOOL))
    status, answer, _ = await post_fresh(client)
    assert status == 200
    assert (await receive(subscriber)).message_id == answer["event_id"]

    proxy.cut()
    async with asyncio.timeout(READY_TIMEOUT):
        await publisher_of(client).wait_down()
    status, answer, retry_after = await post_fresh(client)
    assert status == 503, answer
    assert answer["error"] == "broker_unavailable"
    assert retry_after == "5"
    assert (await client.get("/readyz")).status == 503

    proxy.restore()
    await wait_ready(client)
    assert (await client.get("/readyz")).status == 200
    status, answer, _ = await post_fresh(client)
    assert status == 200, answer
    assert (await receive(subscriber)).message_id == answer["event_id"]
    await assert_empty(subscriber)  # the refused one was never published


async def test_unconfirmed_publish_times_out_to_503(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str
) -> None:
    """A broker that stops answering: no confirm within the timeout is a 503, never a 200."""
    client = await started(aiohttp_client, make_config(proxied_url, NO_SPOOL, confirm_timeout=0.5))
    proxy.blackhole()
    status, answer, retry_after = await post_fresh(client)
    assert status == 503, answer
    assert answer["detail"] == "broker did not confirm within 0.5s"
    assert retry_after is not None
    proxy.cut()  # let the stalled connection go before teardown


async def test_starts_while_broker_is_away(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str, subscriber: AbstractQueue
) -> None:
    """The receiver starts without a broker, answers 503, and becomes ready when it appears."""
    proxy.cut()
    client: Client = await aiohttp_client(create_app(make_config(proxied_url, NO_SPOOL)))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 503
    status, _, retry_after = await post_fresh(client)
    assert (status, retry_after) == (503, "5")

    proxy.restore()
    await wait_ready(client)
    status, answer, _ = await post_fresh(client)
    assert status == 200
    assert (await receive(subscriber)).message_id == answer["event_id"]


async def test_broker_nack_answers_503(
    bridge: Client, amqp: AbstractRobustConnection, subscriber: AbstractQueue
) -> None:
    """A queue that rejects publishes (full, reject-publish) makes the broker nack: 503."""
    channel = await amqp.channel()
    full = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    await full.bind(topology.ORDERS.name, f"{topology.ROUTING_KEY_PREFIX}.#")
    status, answer, retry_after = await post_fresh(bridge)
    assert (status, answer["detail"]) == (503, "broker refused the message (nack)")
    assert retry_after == "5"
    await full.delete(if_unused=False, if_empty=False)
    status, answer, _ = await post_fresh(bridge)
    assert status == 200, answer
    # The subscriber got a copy of the nacked one too: the broker routes before it nacks, and the
    # platform will send it again. At-least-once, never at-most-once.
    received = {(await receive(subscriber)).message_id for _ in range(2)}
    assert answer["event_id"] in received


async def test_returned_quarantine_publish_answers_503(
    bridge: Client, amqp: AbstractRobustConnection
) -> None:
    """With `orders.quarantine` deleted, the mandatory publish is returned: 503, not 200."""
    channel = await amqp.channel()
    await channel.queue_delete(topology.QUARANTINE_QUEUE.name)
    try:
        hook = signed(b"{not json", topic="orders/cancelled", shop="returned.myshoplaza.com")
        response = await bridge.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
        assert response.status == 503
        detail = orjson.loads(await response.read())["detail"]
        assert detail == "broker returned the message as unroutable"
    finally:
        await topology.declare(channel)
