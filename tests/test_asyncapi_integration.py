"""The AsyncAPI document against what a real receiver publishes on a real RabbitMQ."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aiohttp.test_utils import TestClient

from bridge.amqp import asyncapi, messages
from bridge.amqp.asyncapi import document
from bridge.settings import parse_settings, resolve
from tests.harness.broker import assert_empty, receive
from tests.harness.receiver import (
    SECRET,
    ClientFactory,
    Webhook,
    shoplazza_webhook,
    signed,
    started,
)
from tests.harness.stores import scratch_store
from tests.test_asyncapi import (
    JsonObject,
    amqp_properties,
    errors,
    message_of,
    properties_for_json,
    validator_for,
)
from tests.test_asyncapi import (
    resolve as resolve_ref,
)

Client = TestClient[Any, Any]
API_TOKEN = "asyncapi-test-api-token-5d1e"


@pytest.fixture
async def receiver(aiohttp_client: ClientFactory, amqp_url: str) -> Client:
    """The receiver on the real broker, its `/api/*` locked behind a bearer token."""
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "receiver": {"api_token_env": "CB_TEST_API_TOKEN"},
            "store": {"path": scratch_store()},
            "sources": {"shoplazza": {"secret_env": "SHOPLAZZA_CLIENT_SECRET"}},
        }
    )
    env = {
        "AMQP_URL": amqp_url,
        "SHOPLAZZA_CLIENT_SECRET": SECRET,
        "CB_TEST_API_TOKEN": API_TOKEN,
    }
    return await started(aiohttp_client, resolve(settings, env))


async def post(client: Client, hook: Webhook) -> JsonObject:
    """POST a Shoplazza webhook; its JSON answer (which must be a 200)."""
    response = await client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    assert response.status == 200
    answer: JsonObject = orjson.loads(await response.read())
    return answer


def location_value(location: str, body: JsonObject) -> Any:  # noqa: ANN401 - any JSON value
    """The value a `$message.payload#/...` runtime expression names in `body`."""
    prefix = "$message.payload#/"
    assert location.startswith(prefix), location
    node: Any = body
    for part in location.removeprefix(prefix).split("/"):
        node = node[part]
    return node


def assert_matches(
    doc: JsonObject, channel_name: str, name: str, got: AbstractIncomingMessage
) -> None:
    """Headers, properties, content type, type, exchange and routing key as documented."""
    channel = doc["channels"][channel_name]
    message = message_of(doc, channel_name, name)
    headers_ref = message["headers"]["$ref"]
    assert errors(validator_for(doc, headers_ref.removeprefix("#")), got.headers) == []
    documented = resolve_ref(doc, headers_ref)
    undocumented = {
        header
        for header in got.headers
        if header not in documented["properties"]
        and not any(
            header.startswith(p.lstrip("^")) for p in documented.get("patternProperties", {})
        )
    }
    assert undocumented == set()
    properties_ref = message["x-amqp-properties"]["$ref"]
    properties = properties_for_json(amqp_properties(got.properties))
    assert errors(validator_for(doc, properties_ref.removeprefix("#")), properties) == []
    assert set(properties) <= set(resolve_ref(doc, properties_ref)["properties"])
    assert got.type == message["bindings"]["amqp"]["messageType"]
    binding = channel["bindings"]["amqp"]
    if binding["is"] == "routingKey":
        assert got.exchange == binding["exchange"]["name"]
        body = orjson.loads(got.body)
        address = channel["address"]
        for parameter, ref in channel.get("parameters", {}).items():
            value = location_value(resolve_ref(doc, ref["$ref"])["location"], body)
            address = address.replace(f"{{{parameter}}}", value)
        assert got.routing_key == address
    else:  # a queue, published to through the default exchange under its own name
        assert (got.exchange, got.routing_key) == ("", binding["queue"]["name"])
        assert got.routing_key == channel["address"]


async def test_published_event_matches_the_document(
    receiver: Client, subscriber: AbstractQueue
) -> None:
    """A signed webhook's event, and its redelivery, are what the document describes."""
    doc = document()
    message = message_of(doc, "orders", asyncapi.EVENT_MESSAGE)
    payload = validator_for(doc, message["payload"]["$ref"].removeprefix("#"))
    order = {"id": uuid.uuid4().hex[:12], "cancel_reason": "Fraud suspected"}
    shop = f"asyncapi-{uuid.uuid4().hex[:6]}.myshoplaza.com"

    first = await post(receiver, shoplazza_webhook(order, shop=shop, delivery_id="dd-1"))
    again = await post(receiver, shoplazza_webhook(order, shop=shop, delivery_id="dd-2"))
    assert first["status"] == again["status"] == "accepted"

    for delivery_id, redelivered in (("dd-1", False), ("dd-2", True)):
        got = await receive(subscriber)
        body = orjson.loads(got.body)
        assert errors(payload, body) == []
        assert body["delivery_id"] == delivery_id
        assert got.content_type == message["contentType"] == "application/json"
        assert got.message_id == body["event_id"] == got.headers["ce-id"] == first["event_id"]
        assert (messages.REDELIVERY_HEADER in got.headers) is redelivered
        assert_matches(doc, "orders", asyncapi.EVENT_MESSAGE, got)
    await assert_empty(subscriber)


async def test_quarantined_body_matches_the_document(
    receiver: Client, quarantine: AbstractQueue
) -> None:
    doc = document()
    hook = signed(b"\x00\xffnot json{", topic="orders/cancelled", shop="asyncapi.myshoplaza.com")
    answer = await post(receiver, hook)
    assert answer["status"] == "quarantined"

    got = await receive(quarantine)
    assert got.body == hook.body
    assert got.headers[messages.QUARANTINE_REASON_HEADER] == answer["reason"]
    assert "x-http-x-shoplazza-shop-domain" in got.headers  # a documented x-http- header
    assert_matches(doc, "quarantine", asyncapi.QUARANTINE_MESSAGE, got)
    await assert_empty(quarantine)


async def test_receiver_serves_the_document_without_a_token(receiver: Client) -> None:
    """`/api/*` wants the token; `/asyncapi.json` is public, and it is `document()`."""
    locked = await receiver.get("/api/orders/shoplazza/1001")
    assert locked.status == 401
    response = await receiver.get("/asyncapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert orjson.loads(await response.read()) == document()
    assert "Cache-Control" in response.headers
    assert API_TOKEN.encode() not in await response.read()
