"""The receiver under test: its config, signed Shoplazza webhooks, a ready test client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from aiohttp.web import Application

from bridge.amqp.publisher import Publisher
from bridge.settings import Config, parse_settings, resolve
from bridge.web.app import create_app
from bridge.web.forwarder import Forwarder
from bridge.web.webhooks import FORWARDER, PUBLISHER
from handlers.shoplazza import sign
from tests.harness.stores import scratch_store

SECRET = "test-client-secret-4f1c9a"
PREVIOUS_SECRET = "test-previous-secret-77d2e0"
READY_TIMEOUT = 20.0

ClientFactory = Callable[[Application], Any]


def make_config(
    amqp_url: str, receiver: dict[str, float | bool] | None = None, **broker: float
) -> Config:
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


def forwarder_of(client: TestClient[Any, Any]) -> Forwarder:
    """The receiver's spool forwarder (to await the spool emptied)."""
    app = client.app
    assert app is not None
    forwarder: Forwarder = app[FORWARDER]
    return forwarder


async def post_fresh(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any], str | None]:
    """Post a fresh signed cancellation; status, JSON answer and Retry-After."""
    hook = shoplazza_webhook()
    response = await client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    return response.status, orjson.loads(await response.read()), response.headers.get("Retry-After")


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
