"""The receiver against a real RabbitMQ: what is published, with what, and what is not."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import structlog
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from aiohttp.test_utils import TestClient

from bridge.amqp import topology
from contracts.events import OrderCancelled, Source, event_id_for
from tests.harness.broker import assert_empty, purged, receive
from tests.harness.receiver import PREVIOUS_SECRET, SECRET, Webhook, shoplazza_webhook, signed

Client = TestClient[Any, Any]


async def post(bridge: Client, hook: Webhook) -> tuple[int, dict[str, Any]]:
    """POST a webhook; the answer's status and JSON body."""
    response = await bridge.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    assert response.content_type == "application/json"
    return response.status, orjson.loads(await response.read())


async def test_signed_webhook_reaches_subscriber_with_contract(
    bridge: Client, subscriber: AbstractQueue
) -> None:
    """Body fields, properties, CloudEvents headers and routing key as the README promises."""
    order_id = str(uuid.uuid4().int % 10**12)
    hook = shoplazza_webhook(
        {
            "id": int(order_id),
            "number": 1001,
            "canceled_at": "2024-05-01T10:00:00+08:00",
            "cancel_reason": "Fraud suspected",
        },
        shop="Demo.myshoplaza.com",
        delivery_id="dedup-1",
    )
    status, answer = await post(bridge, hook)
    expected_id = str(event_id_for(Source.SHOPLAZZA, "demo.myshoplaza.com", order_id))
    assert (status, answer) == (200, {"status": "accepted", "event_id": expected_id})

    message = await receive(subscriber)
    body = orjson.loads(message.body)
    assert body == {
        "schema_version": 1,
        "event_id": expected_id,
        "type": "order.cancelled",
        "source": "shoplazza",
        "shop": "demo.myshoplaza.com",
        "order_id": order_id,
        "order_number": "1001",
        "reason": "fraud",
        "source_reason": "Fraud suspected",
        "cancelled_at": "2024-05-01T02:00:00Z",
        "received_at": body["received_at"],
        "delivery_id": "dedup-1",
        "aliases": {},
    }
    assert body["received_at"].endswith("Z")
    OrderCancelled.from_json(message.body)  # a subscriber can parse it with our model
    assert message.exchange == topology.ORDERS.name
    assert message.routing_key == "order.cancelled.shoplazza"
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2  # persistent
    assert message.message_id == expected_id
    assert message.type == "order.cancelled"
    assert message.app_id == "cancel-bridge"
    assert message.timestamp is not None
    assert message.headers["ce-specversion"] == "1.0"
    assert message.headers["ce-id"] == expected_id
    assert message.headers["ce-type"] == "order.cancelled"
    assert message.headers["ce-source"] == "/cancel-bridge/shoplazza/demo.myshoplaza.com"
    assert message.headers["ce-time"] == "2024-05-01T02:00:00Z"
    await assert_empty(subscriber)


async def test_redeliveries_share_the_event_id(bridge: Client, subscriber: AbstractQueue) -> None:
    """Three deliveries of one cancellation, with different delivery ids: one event id."""
    order = {"id": uuid.uuid4().hex}
    shop = "same.myshoplaza.com"
    ids = set()
    for n in range(3):
        status, answer = await post(
            bridge, shoplazza_webhook(order, shop=shop, delivery_id=f"d{n}")
        )
        assert status == 200
        ids.add(answer["event_id"])
    delivered = [orjson.loads((await receive(subscriber)).body) for _ in range(3)]
    assert len(ids) == 1
    assert {d["event_id"] for d in delivered} == ids
    assert [d["delivery_id"] for d in delivered] == ["d0", "d1", "d2"]


async def test_concurrent_duplicates_are_all_confirmed(
    bridge: Client, subscriber: AbstractQueue
) -> None:
    """The same event posted 10 times at once: each waits its turn on the channel, all land."""
    order = {"id": uuid.uuid4().hex}
    hooks = [shoplazza_webhook(order, shop="burst.myshoplaza.com") for _ in range(10)]
    answers = await asyncio.gather(*(post(bridge, hook) for hook in hooks))
    assert {status for status, _ in answers} == {200}
    assert len({answer["event_id"] for _, answer in answers}) == 1
    received = {orjson.loads((await receive(subscriber)).body)["delivery_id"] for _ in range(10)}
    assert received == {hook.headers["X-Shoplazza-Deduplication-ID"] for hook in hooks}


async def test_previous_secret_is_accepted(bridge: Client, subscriber: AbstractQueue) -> None:
    status, answer = await post(bridge, shoplazza_webhook(secret=PREVIOUS_SECRET))
    assert (status, answer["status"]) == (200, "accepted")
    assert (await receive(subscriber)).message_id == answer["event_id"]


async def _sentinel(bridge: Client, subscriber: AbstractQueue) -> None:
    """A good webhook after the bad ones: it must be the first and only message delivered."""
    status, answer = await post(bridge, shoplazza_webhook())
    assert status == 200
    first = await receive(subscriber)
    assert first.message_id == answer["event_id"], "something was published before the sentinel"
    await assert_empty(subscriber)


async def test_bad_signature_publishes_nothing(bridge: Client, subscriber: AbstractQueue) -> None:
    hook = shoplazza_webhook(secret="not-the-secret")
    status, answer = await post(bridge, hook)
    assert status == 401
    assert answer["error"] == "bad_signature"
    missing = shoplazza_webhook()
    del missing.headers["X-Shoplazza-Hmac-Sha256"]
    status, answer = await post(bridge, missing)
    assert (status, answer["error"]) == (401, "bad_signature")
    await _sentinel(bridge, subscriber)


async def test_oversize_body_publishes_nothing(bridge: Client, subscriber: AbstractQueue) -> None:
    """413 from Content-Length before reading, and from a chunked body while reading."""
    limit = 1024 * 1024
    hook = shoplazza_webhook({"note": "x" * limit})
    response = await bridge.post(
        "/webhooks/shoplazza", data=io.BytesIO(hook.body), headers=hook.headers
    )
    assert response.status == 413
    assert orjson.loads(await response.read())["error"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MiB in all, no Content-Length

    response = await bridge.post("/webhooks/shoplazza", data=chunks(), headers=hook.headers)
    assert response.status == 413
    assert orjson.loads(await response.read())["error"] == "body_too_large"
    await _sentinel(bridge, subscriber)


async def test_other_topics_are_ignored(bridge: Client, subscriber: AbstractQueue) -> None:
    status, answer = await post(bridge, shoplazza_webhook(topic="orders/create"))
    assert (status, answer["status"]) == (200, "ignored")
    status, answer = await post(
        bridge, shoplazza_webhook({"status": "opened"}, topic="orders/updated")
    )
    assert (status, answer["status"]) == (200, "ignored")
    await _sentinel(bridge, subscriber)


async def test_updated_to_cancelled_is_a_cancellation(
    bridge: Client, subscriber: AbstractQueue
) -> None:
    status, answer = await post(bridge, shoplazza_webhook(topic="orders/updated"))
    assert (status, answer["status"]) == (200, "accepted")
    assert (await receive(subscriber)).message_id == answer["event_id"]


async def test_garbage_body_is_quarantined_not_published(
    bridge: Client, subscriber: AbstractQueue, quarantine: AbstractQueue
) -> None:
    """Unsigned garbage: 401, kept nowhere. Signed garbage: quarantined, never fanned out."""
    shop = f"garbage-{uuid.uuid4().hex[:6]}.myshoplaza.com"

    unsigned = signed(b"\x00\xffnot json", topic="orders/cancelled", shop=shop, secret="wrong")
    status, answer = await post(bridge, unsigned)
    assert (status, answer["error"]) == (401, "bad_signature")

    garbage = signed(b"\x00\xffnot json{", topic="orders/cancelled", shop=shop)
    status, answer = await post(bridge, garbage)
    assert status == 200
    assert answer["status"] == "quarantined"
    assert answer["reason"].startswith("body is not JSON")

    kept = await receive(quarantine)
    assert kept.body == garbage.body  # byte for byte, the unsigned one never got here
    assert kept.headers["x-quarantine-reason"] == answer["reason"]
    assert kept.headers["x-source"] == "shoplazza"
    assert kept.headers["x-http-x-shoplazza-shop-domain"] == shop
    assert kept.delivery_mode == 2
    await assert_empty(quarantine)
    await _sentinel(bridge, subscriber)


async def test_unrouted_events_land_in_the_alternate_queue(
    bridge: Client, amqp: AbstractRobustConnection
) -> None:
    """With no subscriber bound, the event is kept in `orders.unrouted`, not dropped or returned."""
    unrouted = await purged(amqp, topology.UNROUTED_QUEUE)
    status, answer = await post(bridge, shoplazza_webhook())
    assert status == 200
    assert (await receive(unrouted)).message_id == answer["event_id"]


async def test_json_errors_for_unknown_paths_and_methods(bridge: Client) -> None:
    for method, path, status, error in (
        ("POST", "/webhooks/nowhere", 404, "unknown_source"),
        ("POST", "/webhooks/prime", 404, "unknown_source"),
        ("GET", "/webhooks/shoplazza", 405, "method_not_allowed"),
        ("GET", "/nothing/here", 404, "not_found"),
    ):
        response = await bridge.request(method, path)
        assert response.status == status, path
        assert orjson.loads(await response.read())["error"] == error, path


async def test_health_and_readiness(bridge: Client) -> None:
    assert (await bridge.get("/healthz")).status == 200
    ready = await bridge.get("/readyz")
    assert ready.status == 200
    expected = {"status": "ready", "broker": "up", "store": "up", "spooled": 0}
    assert orjson.loads(await ready.read()) == expected


async def test_logs_carry_event_id_and_no_secret(bridge: Client, subscriber: AbstractQueue) -> None:
    """Accepted and refused webhooks are logged with ids; neither secret appears anywhere."""
    with structlog.testing.capture_logs() as logs:
        status, answer = await post(bridge, shoplazza_webhook())
        assert status == 200
        await post(bridge, shoplazza_webhook(secret="wrong-secret"))
        await receive(subscriber)
    accepted = [entry for entry in logs if entry["event"] == "webhook.accepted"]
    assert [entry["event_id"] for entry in accepted] == [answer["event_id"]]
    assert any(entry["event"] == "webhook.rejected" for entry in logs)
    text = repr(logs)
    assert SECRET not in text
    assert PREVIOUS_SECRET not in text


async def test_odd_headers_on_quarantined_bodies_never_500(
    bridge: Client, quarantine: AbstractQueue
) -> None:
    """An over-long or non-ASCII Content-Type and non-ASCII platform headers are carried safely."""
    for content_type in ("application/" + "x" * 300, "application/jsön"):
        hook = signed(b"{not json", topic="orders/cancelled", shop="ßhop.example")
        hook.headers["Content-Type"] = content_type
        status, answer = await post(bridge, hook)
        assert (status, answer["status"]) == (200, "quarantined"), content_type
        kept = await receive(quarantine)
        assert kept.content_type == "application/octet-stream"
        assert kept.body == hook.body
