"""The receiver while the broker is cut off: 503 with Retry-After, then 200 again on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractQueue
from aiohttp.test_utils import TestClient

from bridge.receiver import create_app
from tests.conftest import (
    READY_TIMEOUT,
    ClientFactory,
    assert_empty,
    broker_address,
    make_config,
    publisher_of,
    receive,
    shoplazza_webhook,
    started,
    via,
    wait_ready,
)
from tests.proxy import TcpProxy

Client = TestClient[Any, Any]


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    """A cuttable link to the real broker."""
    link = TcpProxy(*broker_address(amqp_url))
    link.port = await link.start()
    yield link
    await link.stop()


@pytest.fixture
async def proxied_url(amqp_url: str, proxy: TcpProxy) -> str:
    """The broker URL through the proxy."""
    return via(amqp_url, proxy.port)


async def post(client: Client) -> tuple[int, dict[str, Any], str | None]:
    """Post a fresh cancellation; status, JSON answer and Retry-After."""
    hook = shoplazza_webhook()
    response = await client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    return response.status, orjson.loads(await response.read()), response.headers.get("Retry-After")


async def test_cut_link_answers_503_then_recovers(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str, subscriber: AbstractQueue
) -> None:
    """Link cut: 503 + Retry-After and /readyz 503; link back: 200 with no restart."""
    client = await started(aiohttp_client, make_config(proxied_url))
    status, answer, _ = await post(client)
    assert status == 200
    assert (await receive(subscriber)).message_id == answer["event_id"]

    proxy.cut()
    async with asyncio.timeout(READY_TIMEOUT):
        await publisher_of(client).wait_down()
    status, answer, retry_after = await post(client)
    assert status == 503, answer
    assert answer["error"] == "broker_unavailable"
    assert retry_after == "5"
    assert (await client.get("/readyz")).status == 503

    proxy.restore()
    await wait_ready(client)
    assert (await client.get("/readyz")).status == 200
    status, answer, _ = await post(client)
    assert status == 200, answer
    assert (await receive(subscriber)).message_id == answer["event_id"]
    await assert_empty(subscriber)  # the refused one was never published


async def test_unconfirmed_publish_times_out_to_503(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str
) -> None:
    """A broker that stops answering: no confirm within the timeout is a 503, never a 200."""
    client = await started(aiohttp_client, make_config(proxied_url, confirm_timeout=0.5))
    proxy.blackhole()
    status, answer, retry_after = await post(client)
    assert status == 503, answer
    assert answer["detail"] == "broker did not confirm within 0.5s"
    assert retry_after is not None
    proxy.cut()  # let the stalled connection go before teardown


async def test_starts_while_broker_is_away(
    aiohttp_client: ClientFactory, proxy: TcpProxy, proxied_url: str, subscriber: AbstractQueue
) -> None:
    """The receiver starts without a broker, answers 503, and becomes ready when it appears."""
    proxy.cut()
    client: Client = await aiohttp_client(create_app(make_config(proxied_url)))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 503
    status, _, retry_after = await post(client)
    assert (status, retry_after) == (503, "5")

    proxy.restore()
    await wait_ready(client)
    status, answer, _ = await post(client)
    assert status == 200
    assert (await receive(subscriber)).message_id == answer["event_id"]
