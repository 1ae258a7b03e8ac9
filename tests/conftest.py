"""Fixtures only: a real RabbitMQ, queues, the receiver, the fake CJ, stores; markers by file name.

The broker is AMQP_URL, else a testcontainers RabbitMQ. Helpers live in `tests/harness/`, fake
platforms in `tests/fakes/`; `tests/harness/markers.py` says which file names get which marker.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from aiohttp.test_utils import TestClient

from bench.scratch_db import scratch_database
from bridge.amqp import topology
from bridge.demo.fake_cj import FakeCJ
from tests.harness.broker import broker_address, purged, via
from tests.harness.markers import marker_for
from tests.harness.proxy import TcpProxy
from tests.harness.receiver import ClientFactory, make_config, started
from tests.harness.stores import postgres_server

pytest_plugins = ["tests.harness.pipeline"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by its file's name (`tests/harness/markers.py`)."""
    for item in items:
        if (marker := marker_for(item.path)) is not None:
            item.add_marker(marker)


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


@pytest.fixture
async def quarantine(amqp: AbstractRobustConnection) -> AbstractQueue:
    """`orders.quarantine`, emptied."""
    return await purged(amqp, topology.QUARANTINE_QUEUE)


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


@pytest.fixture
async def bridge(aiohttp_client: ClientFactory, amqp_url: str) -> TestClient[Any, Any]:
    """The receiver on the real broker, ready."""
    return await started(aiohttp_client, make_config(amqp_url))


@pytest.fixture
async def cj() -> AsyncIterator[FakeCJ]:
    """A fake CJ on an ephemeral loopback port; no request may fall outside CJ's schema."""
    fake = FakeCJ()
    await fake.start()
    yield fake
    await fake.stop()
    assert fake.refused == [], "a request outside CJ's published schema (see fake.refused)"


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
