"""Shared fixtures: a real RabbitMQ (AMQP_URL, else testcontainers), receiver, signed webhooks."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiohttp.test_utils import TestClient
from aiohttp.web import Application
from yarl import URL

from bench.scratch_db import scratch_database
from bridge.amqp import topology
from bridge.amqp.publisher import Publisher
from bridge.demo.fake_cj import FakeCJ
from bridge.settings import Config, parse_settings, resolve
from bridge.web.app import PUBLISHER, create_app
from handlers.shoplazza import sign

pytest_plugins = ["tests.pipeline"]

SECRET = "test-client-secret-4f1c9a"
PREVIOUS_SECRET = "test-previous-secret-77d2e0"
READY_TIMEOUT = 20.0
RECEIVE_TIMEOUT = 10.0

ClientFactory = Callable[[Application], Any]


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The broker URL: AMQP_URL when set; in CI it must be; else a testcontainers RabbitMQ."""
    if url := os.environ.get("AMQP_URL"):
        yield url
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but AMQP_URL is not set: integration tests need a real RabbitMQ")
    try:
        with warnings.catch_warnings():  # testcontainers 4.x warns about its own decorators
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.rabbitmq import RabbitMqContainer  # noqa: PLC0415 - only without AMQP_URL
    except ImportError as exc:  # pragma: no cover - dev extras missing
        pytest.skip(f"NO BROKER: AMQP_URL unset and testcontainers missing ({exc})")
    try:
        container = RabbitMqContainer("rabbitmq:3.13-management")
        container.start()
    except Exception as exc:  # noqa: BLE001 - any Docker failure means: no broker here  # pragma: no cover
        pytest.skip(f"NO BROKER: AMQP_URL unset and Docker unavailable ({exc})")
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/"
    finally:
        container.stop()


# Stores of tests that do not look at them: one fresh SQLite file per config, removed at exit.
_SCRATCH = tempfile.TemporaryDirectory(prefix="cancel-bridge-tests-")


def scratch_store() -> str:
    """A fresh SQLite file path for a store nobody inspects."""
    return str(Path(_SCRATCH.name) / f"{uuid.uuid4().hex}.db")


def store_section(database_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """`[store]` settings and the environment that select `database_url` (file or URL)."""
    if "://" in database_url:
        return {"url_env": "CB_TEST_STORE_URL"}, {"CB_TEST_STORE_URL": database_url}
    return {"path": database_url}, {}


def make_config(amqp_url: str, receiver: dict[str, float] | None = None, **broker: float) -> Config:
    """A receiver config for tests: fast timeouts, both secrets set, a scratch store."""
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2, **broker},
            "receiver": receiver or {},
            "store": {"path": scratch_store()},
            "sources": {
                "shoplazza": {
                    "secret_env": "SHOPLAZZA_CLIENT_SECRET",
                    "previous_secret_env": "SHOPLAZZA_CLIENT_SECRET_PREVIOUS",
                }
            },
        }
    )
    env = {
        "AMQP_URL": amqp_url,
        "SHOPLAZZA_CLIENT_SECRET": SECRET,
        "SHOPLAZZA_CLIENT_SECRET_PREVIOUS": PREVIOUS_SECRET,
    }
    return resolve(settings, env)


@pytest.fixture
async def amqp(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    """The test's own connection to the broker, for subscribing and inspecting queues."""
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        async with connection.channel() as channel:
            await topology.declare(channel)
        yield connection


@pytest.fixture
async def subscriber(amqp: AbstractRobustConnection) -> AbstractQueue:
    """A subscriber's queue bound to `order.cancelled.#`, as a downstream service would bind."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True)  # gone with the connection
    await queue.bind(topology.ORDERS.name, f"{topology.ROUTING_KEY_PREFIX}.#")
    return queue


async def purged(amqp: AbstractRobustConnection, spec: topology.QueueSpec) -> AbstractQueue:
    """One of the bridge's own queues, emptied, for a test to read what lands there."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(spec.name, durable=True, arguments=dict(spec.arguments))
    await queue.purge()
    return queue


@pytest.fixture
async def quarantine(amqp: AbstractRobustConnection) -> AbstractQueue:
    """`orders.quarantine`, emptied."""
    return await purged(amqp, topology.QUARANTINE_QUEUE)


async def fresh_target_queues(channel: AbstractChannel, spec: topology.TargetTopology) -> None:
    """Declare a target's queues (bound before anything is published) and empty them."""
    await topology.declare_target(channel, spec)
    for queue in spec.queues:
        await (await channel.get_queue(queue.name)).purge()


async def delete_target_queues(channel: AbstractChannel, spec: topology.TargetTopology) -> None:
    """Remove a target's queues, so `orders` is unbound for the next test."""
    for queue in spec.queues:
        await channel.queue_delete(queue.name)


async def receive(queue: AbstractQueue, within: float = RECEIVE_TIMEOUT) -> AbstractIncomingMessage:
    """The next message on `queue`, acked; fails the test after `within` seconds."""
    async with asyncio.timeout(within), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            return message
    msg = "queue iterator ended"
    raise AssertionError(msg)


async def assert_empty(queue: AbstractQueue) -> None:
    """Nothing is waiting on `queue` (basic.get answers empty)."""
    leftover = await queue.get(fail=False)
    assert leftover is None, f"unexpected message on {queue.name}: {leftover.body[:200]!r}"


@dataclass
class Webhook:
    """One Shoplazza webhook delivery: body and headers."""

    body: bytes
    headers: dict[str, str]


def shoplazza_webhook(
    order: dict[str, Any] | None = None,
    *,
    topic: str = "orders/cancelled",
    shop: str | None = None,
    secret: str = SECRET,
    delivery_id: str | None = None,
) -> Webhook:
    """A correctly signed Shoplazza webhook for a fresh order (unique id unless given)."""
    order = order if order is not None else {}
    order = {
        "id": uuid.uuid4().hex[:12],
        "number": "1001",
        "status": "cancelled",
        "cancel_reason": "Out of stock",
        "cancelled_at": "2024-05-01T10:00:00+08:00",
        **order,
    }
    body = orjson.dumps(order)
    return signed(
        body,
        topic=topic,
        shop=shop or f"shop-{uuid.uuid4().hex[:8]}.myshoplaza.com",
        secret=secret,
        delivery_id=delivery_id or str(uuid.uuid4()),
    )


def signed(
    body: bytes, *, topic: str, shop: str, secret: str = SECRET, delivery_id: str = "d-1"
) -> Webhook:
    """`body` with the five headers Shoplazza sends."""
    return Webhook(
        body,
        {
            "Content-Type": "application/json",
            "X-Shoplazza-Hmac-Sha256": sign(body, secret),
            "X-Shoplazza-Topic": topic,
            "X-Shoplazza-Shop-Domain": shop,
            "X-Shoplazza-Api-Version": "2022-01",
            "X-Shoplazza-Deduplication-ID": delivery_id,
        },
    )


async def started(client_factory: ClientFactory, config: Config) -> TestClient[Any, Any]:
    """A test client for a receiver built from `config`, after its broker channel is ready."""
    client: TestClient[Any, Any] = await client_factory(create_app(config))
    await wait_ready(client)
    return client


def publisher_of(client: TestClient[Any, Any]) -> Publisher:
    """The receiver's publisher (to await its state changes instead of sleeping)."""
    app = client.app
    assert app is not None
    publisher: Publisher = app[PUBLISHER]
    return publisher


async def wait_ready(client: TestClient[Any, Any]) -> None:
    """Await the publisher's readiness, bounded."""
    async with asyncio.timeout(READY_TIMEOUT):
        await publisher_of(client).wait_ready()


@pytest.fixture
async def bridge(aiohttp_client: ClientFactory, amqp_url: str) -> TestClient[Any, Any]:
    """The receiver on the real broker, ready."""
    return await started(aiohttp_client, make_config(amqp_url))


def broker_address(amqp_url: str) -> tuple[str, int]:
    """Host and port of the broker URL."""
    url = URL(amqp_url)
    return url.host or "127.0.0.1", url.port or 5672


def via(amqp_url: str, port: int) -> str:
    """`amqp_url` rewritten to go through 127.0.0.1:`port`."""
    return str(URL(amqp_url).with_host("127.0.0.1").with_port(port))


@pytest.fixture
async def cj() -> AsyncIterator[FakeCJ]:
    """A fake CJ on an ephemeral loopback port; no request may fall outside CJ's schema."""
    fake = FakeCJ()
    await fake.start()
    yield fake
    await fake.stop()
    assert fake.refused == [], "a request outside CJ's published schema (see fake.refused)"


def postgres_server() -> str:
    """DATABASE_URL (a server tests may create databases on); in CI it must be set."""
    server = os.environ.get("DATABASE_URL")
    if not server:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but DATABASE_URL is not set: the store needs PostgreSQL")
        pytest.skip("NO POSTGRESQL: DATABASE_URL unset (SQLite still tested)")
    return server


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
        return
    async with scratch_database(postgres_server()) as url:
        yield url


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (for tests about the network between bridge and store)."""
    async with scratch_database(postgres_server()) as url:
        yield url
