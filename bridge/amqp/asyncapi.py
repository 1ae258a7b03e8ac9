"""The AsyncAPI 3.0 document of what the bridge publishes, and `GET /asyncapi.json`.

Built from the code that publishes, so it cannot drift from the wire: the payload is the
pydantic model's JSON Schema (`contracts.schema`) with its `$defs` moved to `components/schemas`;
exchange, queue and routing-key names come from `bridge.amqp.topology`; header names and property
values from `bridge.amqp.messages`. Only the words are written here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aio_pika import Message
from aiohttp import web

from bridge.amqp import messages, topology
from bridge.settings import BrokerSettings
from bridge.tracing import TRACE_HEADERS
from contracts.events import (
    EVENT_TYPE,
    MAX_ID,
    SCHEMA_VERSION,
    CancelReason,
    OrderCancelled,
    Source,
)
from contracts.schema import SCHEMA_ID, event_json_schema

JsonObject = dict[str, Any]

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
AMQP_VERSION = "0.9.1"
DISTRIBUTION = "cancel-bridge"
DOCUMENT_ID = "urn:cancel-bridge:asyncapi"
DEFAULT_VHOST = "/"
CACHE_CONTROL = "public, max-age=300"

# `bridge.amqp.topology` declares everything durable; `Publisher._send` publishes mandatory.
DURABLE = True
MANDATORY = True

# Component names.
PAYLOAD = "OrderCancelled"
EVENT_HEADERS = "OrderCancelledHeaders"
EVENT_PROPERTIES = "OrderCancelledProperties"
QUARANTINE_BODY = "QuarantinedBody"
QUARANTINE_HEADERS = "QuarantinedHeaders"
QUARANTINE_PROPERTIES = "QuarantinedProperties"
EVENT_MESSAGE = "OrderCancelled"
QUARANTINE_MESSAGE = "QuarantinedWebhook"
SOURCE_PARAMETER = "source"

DEFS_PREFIX = "#/$defs/"
SCHEMAS_PREFIX = "#/components/schemas/"

# A fixed `received_at` for the sample messages: the document is the same on every call.
_SAMPLE_RECEIVED = datetime(2024, 5, 1, 2, 0, 3, tzinfo=UTC)


def _ref(*path: str) -> JsonObject:
    return {"$ref": "#/" + "/".join(path)}


def move_refs(node: Any, old: str, new: str) -> Any:  # noqa: ANN401 - any JSON value
    """`node` with every `$ref` that starts with `old` made to start with `new` instead."""
    if isinstance(node, dict):
        return {
            key: (
                new + value.removeprefix(old)
                if key == "$ref" and isinstance(value, str) and value.startswith(old)
                else move_refs(value, old, new)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [move_refs(item, old, new) for item in node]
    return node


def payload_schemas() -> dict[str, JsonObject]:
    """The event's JSON Schema as component schemas: the event itself, then its `$defs`.

    `$schema` and `$id` are left out: inside the document an `$id` would move the base of every
    `#/components/...` reference. The schema id travels as the message's `x-schema-id`.
    """
    schema = event_json_schema()
    definitions: dict[str, JsonObject] = schema.pop("$defs", {})
    del schema["$schema"], schema["$id"]
    ours = {
        PAYLOAD,
        EVENT_HEADERS,
        EVENT_PROPERTIES,
        QUARANTINE_BODY,
        QUARANTINE_HEADERS,
        QUARANTINE_PROPERTIES,
    }
    if clash := set(definitions) & ours:
        raise ValueError(f"event schema definitions clash with component names: {clash}")
    moved = {PAYLOAD: schema, **definitions}
    return {name: move_refs(part, DEFS_PREFIX, SCHEMAS_PREFIX) for name, part in moved.items()}


def sample_event() -> OrderCancelled:
    """The event the document's example shows."""
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id="1001",
        order_number="#1001",
        reason=CancelReason.INVENTORY,
        source_reason="Out of stock",
        cancelled_at=datetime(2024, 5, 1, 2, 0, tzinfo=UTC),
        received_at=_SAMPLE_RECEIVED,
        delivery_id="6f1c0d0e-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
    )


def event_header_schemas() -> dict[str, JsonObject]:
    """Every header `messages.event_headers` can set, with its schema."""
    return {
        "ce-specversion": {
            "type": "string",
            "const": messages.CE_SPECVERSION,
            "description": "CloudEvents spec version.",
        },
        "ce-id": {
            "type": "string",
            "format": "uuid",
            "description": "CloudEvents `id`: the event id, as `event_id` and `message_id`.",
        },
        "ce-source": {
            "type": "string",
            "format": "uri-reference",
            "description": (
                "CloudEvents `source`: `/cancel-bridge/<source>/<shop>`, the shop percent-encoded."
            ),
        },
        "ce-type": {"type": "string", "const": EVENT_TYPE, "description": "CloudEvents `type`."},
        "ce-time": {
            "type": "string",
            "format": "date-time",
            "description": "CloudEvents `time`: when the order was cancelled (`cancelled_at`).",
        },
        "ce-subject": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID,
            "description": "CloudEvents `subject`: the source platform's order id (`order_id`).",
        },
        "x-schema-version": {
            "type": "integer",
            "const": SCHEMA_VERSION,
            "description": "The body's `schema_version`, readable without parsing the body.",
        },
        messages.REDELIVERY_HEADER: {
            "type": "boolean",
            "const": True,
            "description": (
                "Present when the platform sent this cancellation before, so the same"
                " `event_id` was published already. Absent on the first delivery."
            ),
        },
        TRACE_HEADERS[0]: {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": (
                "W3C Trace Context of the receiver's publish span; only when the bridge runs with"
                " `[tracing] enabled` (OpenTelemetry). Continue the trace from it, or ignore it."
            ),
        },
        TRACE_HEADERS[1]: {
            "type": "string",
            "description": "W3C Trace Context vendor state, beside `traceparent` when any.",
        },
        messages.SEEN_HEADER: {
            "type": "integer",
            "minimum": 2,
            "description": (
                f"Present with `{messages.REDELIVERY_HEADER}`: how many times the bridge has"
                " received this cancellation."
            ),
        },
        messages.BACKSTOP_HEADER: {
            "type": "boolean",
            "const": True,
            "description": (
                "Present when no webhook brought this cancellation: the bridge found it by"
                " polling the platform (the backstop). Same body and `event_id` as a webhook's."
            ),
        },
    }


def _headers_schema(
    description: str,
    properties: JsonObject,
    required: list[str],
    pattern_properties: JsonObject | None = None,
) -> JsonObject:
    # Open to more headers: a broker adds its own on the way (`x-delivery-count` on quorum
    # queues, `x-death` when dead-lettered).
    schema: JsonObject = {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
    }
    if pattern_properties:
        schema["patternProperties"] = pattern_properties
    return schema


def _app_id_schema() -> JsonObject:
    schema: JsonObject = BrokerSettings.model_json_schema()["properties"]["app_id"]
    schema.pop("title", None)
    return {**schema, "description": "`[broker] app_id` of the publishing bridge."}


def event_properties_schema() -> JsonObject:
    """The AMQP basic properties of every event message, from `messages.event_properties`.

    Names as AMQP 0-9-1 clients (pika, aio-pika) spell them; the AMQP message binding has a
    field only for `type` (its `messageType`).
    """
    sample = messages.event_properties(sample_event(), app_id="-")
    return {
        "type": "object",
        "description": "AMQP 0-9-1 basic properties of the message.",
        "properties": {
            "content_type": {"type": "string", "const": sample.content_type},
            "delivery_mode": {
                "type": "integer",
                "const": sample.delivery_mode,
                "description": "Persistent.",
            },
            "message_id": {
                "type": "string",
                "format": "uuid",
                "description": "The event id: de-duplicate on it. Stable per order.",
            },
            "type": {"type": "string", "const": sample.message_type},
            "timestamp": {
                "type": "integer",
                "minimum": 0,
                "description": "`received_at` in whole epoch seconds (AMQP's resolution).",
            },
            "app_id": _app_id_schema(),
            "priority": {"type": "integer", "const": sample.priority},
        },
        "required": [
            "content_type",
            "delivery_mode",
            "message_id",
            "type",
            "timestamp",
            "app_id",
        ],
    }


def sample_quarantined() -> Message:
    """A quarantined body as `messages.quarantine_message` builds it, no platform headers."""
    return messages.quarantine_message(
        b"",
        content_type=None,
        reason="-",
        source=Source.SHOPLAZZA.value,
        received_at=_SAMPLE_RECEIVED,
        platform_headers={},
        app_id="-",
    )


def quarantine_header_schemas() -> dict[str, JsonObject]:
    """The fixed headers of a quarantined body."""
    return {
        messages.QUARANTINE_REASON_HEADER: {
            "type": "string",
            "description": "Why the signed body could not be read as a cancellation.",
        },
        "x-source": {
            "type": "string",
            "enum": [source.value for source in Source],
            "description": "The platform whose webhook endpoint received it.",
        },
        "x-received-at": {
            "type": "string",
            "format": "date-time",
            "description": "When the bridge received it (RFC 3339, UTC).",
        },
    }


def quarantine_properties_schema() -> JsonObject:
    """The AMQP basic properties of a quarantined body, from `messages.quarantine_message`."""
    sample = sample_quarantined()
    return {
        "type": "object",
        "description": "AMQP 0-9-1 basic properties of the message.",
        "properties": {
            "content_type": {
                "type": "string",
                "maxLength": messages.SHORTSTR_MAX,
                "description": (
                    "The webhook's own Content-Type if AMQP can carry it (ASCII, at most"
                    f" {messages.SHORTSTR_MAX} bytes), else `{messages.FALLBACK_CONTENT_TYPE}`."
                ),
            },
            "delivery_mode": {
                "type": "integer",
                "const": int(sample.delivery_mode),
                "description": "Persistent.",
            },
            "message_id": {
                "type": "string",
                "format": "uuid",
                "description": "Random: every quarantined copy is its own message.",
            },
            "type": {"type": "string", "const": sample.type},
            "timestamp": {
                "type": "integer",
                "minimum": 0,
                "description": "When it was received, in whole epoch seconds.",
            },
            "app_id": _app_id_schema(),
            "priority": {"type": "integer", "const": sample.priority},
        },
        "required": ["content_type", "delivery_mode", "message_id", "type", "timestamp", "app_id"],
    }


def _schemas() -> dict[str, JsonObject]:
    event_required = list(messages.event_headers(sample_event()))
    return {
        **payload_schemas(),
        EVENT_HEADERS: _headers_schema(
            "AMQP headers: the CloudEvents 1.0 attributes as `ce-` headers (as the RabbitMQ"
            " binding used by Knative reads them), the schema version, and the redelivery marks.",
            event_header_schemas(),
            event_required,
        ),
        EVENT_PROPERTIES: event_properties_schema(),
        QUARANTINE_BODY: {
            "type": "string",
            "format": "binary",
            "description": "The webhook body exactly as the platform sent it, byte for byte.",
        },
        QUARANTINE_HEADERS: _headers_schema(
            "Why and where from. The platform's own `X-` headers come along as `x-http-<name>`"
            " (lower case; signature headers left out, so a kept body cannot be replayed).",
            quarantine_header_schemas(),
            list(sample_quarantined().headers),
            {"^x-http-": {"type": "string"}},
        ),
        QUARANTINE_PROPERTIES: quarantine_properties_schema(),
    }


def _messages() -> dict[str, JsonObject]:
    event = sample_event()
    payload = event_json_schema()
    return {
        EVENT_MESSAGE: {
            "name": EVENT_MESSAGE,
            "title": f"Order cancelled (schema version {SCHEMA_VERSION})",
            "summary": payload["description"],
            "description": (
                "The canonical cancellation event. Every redelivery of one cancellation carries"
                " the same `event_id` (UUIDv5 of source, shop and order id), also in `message_id`"
                " and `ce-id`: de-duplicate on it. Adding optional fields is compatible;"
                " renaming or removing one is a new `schema_version`."
            ),
            "contentType": messages.JSON,
            "headers": _ref("components", "schemas", EVENT_HEADERS),
            "payload": _ref("components", "schemas", PAYLOAD),
            "bindings": {
                "amqp": {"messageType": event.type, "bindingVersion": AMQP_BINDING_VERSION}
            },
            "examples": [
                {
                    "name": "shoplazzaOutOfStock",
                    "summary": "A Shoplazza order cancelled for lack of stock, first delivery.",
                    "headers": dict(messages.event_headers(event)),
                    "payload": orjson.loads(event.to_json()),
                }
            ],
            "x-schema-id": SCHEMA_ID,
            "x-schema-version": SCHEMA_VERSION,
            "x-amqp-properties": _ref("components", "schemas", EVENT_PROPERTIES),
        },
        QUARANTINE_MESSAGE: {
            "name": QUARANTINE_MESSAGE,
            "title": "Quarantined webhook",
            "summary": "A correctly signed webhook body the bridge could not parse.",
            "description": (
                "Never dropped and never fanned out: kept, confirmed, for an operator to read,"
                " fix and replay by hand."
            ),
            "contentType": messages.FALLBACK_CONTENT_TYPE,
            "headers": _ref("components", "schemas", QUARANTINE_HEADERS),
            "payload": _ref("components", "schemas", QUARANTINE_BODY),
            "bindings": {
                "amqp": {
                    "messageType": sample_quarantined().type,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            "x-amqp-properties": _ref("components", "schemas", QUARANTINE_PROPERTIES),
        },
    }


def _exchange_binding(spec: topology.ExchangeSpec) -> JsonObject:
    binding: JsonObject = {
        "is": "routingKey",
        "exchange": {
            "name": spec.name,
            "type": spec.type.value,
            "durable": DURABLE,
            "autoDelete": False,
            "vhost": DEFAULT_VHOST,
        },
        "bindingVersion": AMQP_BINDING_VERSION,
    }
    if spec.alternate:
        binding["x-alternate-exchange"] = spec.alternate
    return {"amqp": binding}


def _queue_binding(spec: topology.QueueSpec) -> JsonObject:
    return {
        "amqp": {
            "is": "queue",
            "queue": {
                "name": spec.name,
                "durable": DURABLE,
                "exclusive": False,
                "autoDelete": False,
                "vhost": DEFAULT_VHOST,
            },
            "bindingVersion": AMQP_BINDING_VERSION,
            **spec.arguments,  # x-queue-type: quorum
        }
    }


def _event_address() -> str:
    return f"{topology.ROUTING_KEY_PREFIX}.{{{SOURCE_PARAMETER}}}"


def _channels() -> dict[str, JsonObject]:
    event_message = {EVENT_MESSAGE: _ref("components", "messages", EVENT_MESSAGE)}
    source = {SOURCE_PARAMETER: _ref("components", "parameters", SOURCE_PARAMETER)}
    orders, unrouted = topology.ORDERS, topology.UNROUTED
    return {
        "orders": {
            "address": _event_address(),
            "title": f"Exchange {orders.name}",
            "description": (
                f"Topic exchange `{orders.name}`. Bind your own durable queue with"
                f" `{topology.ROUTING_KEY_PREFIX}.#` for every source, or"
                f" `{topology.routing_key(Source.SHOPLAZZA)}` for one. Whatever no queue is bound"
                f" for goes to the alternate exchange `{orders.alternate}`."
            ),
            "messages": event_message,
            "parameters": source,
            "bindings": _exchange_binding(orders),
        },
        "unrouted": {
            "address": _event_address(),
            "title": f"Exchange {unrouted.name}",
            "description": (
                f"Fanout exchange, the alternate exchange of `{orders.name}`: events no queue"
                f" was bound for, routing key kept. Bound to the queue `{unrouted.name}`."
            ),
            "messages": event_message,
            "parameters": source,
            "bindings": _exchange_binding(unrouted),
        },
        "unroutedQueue": {
            "address": topology.UNROUTED_QUEUE.name,
            "title": f"Queue {topology.UNROUTED_QUEUE.name}",
            "description": (
                f"Quorum queue holding what `{unrouted.name}` receives, so nothing published"
                " to a source with no subscriber is lost."
            ),
            "messages": event_message,
            "bindings": _queue_binding(topology.UNROUTED_QUEUE),
        },
        "quarantine": {
            "address": topology.QUARANTINE_QUEUE.name,
            "title": f"Queue {topology.QUARANTINE_QUEUE.name}",
            "description": (
                "Quorum queue of signed webhook bodies the bridge could not parse, published"
                " through the default exchange with the queue name as routing key."
            ),
            "messages": {QUARANTINE_MESSAGE: _ref("components", "messages", QUARANTINE_MESSAGE)},
            "bindings": _queue_binding(topology.QUARANTINE_QUEUE),
        },
    }


def _publish_binding(delivery_mode: int | None, priority: int | None) -> JsonObject:
    return {
        "amqp": {
            "deliveryMode": delivery_mode,
            "mandatory": MANDATORY,
            "timestamp": True,
            "priority": priority,
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }


def _operations() -> dict[str, JsonObject]:
    event = messages.event_properties(sample_event(), app_id="-")
    quarantined = sample_quarantined()
    return {
        "publishOrderCancelled": {
            "action": "send",
            "channel": _ref("channels", "orders"),
            "title": "Publish a cancellation",
            "summary": "Each accepted webhook, published persistent and mandatory, confirmed.",
            "description": (
                "The platform's webhook is answered 2xx only after the broker confirmed this"
                " publish. Redeliveries from the platform are published again with the same"
                " `event_id` and the redelivery headers."
            ),
            "messages": [_ref("channels", "orders", "messages", EVENT_MESSAGE)],
            "bindings": _publish_binding(event.delivery_mode, event.priority),
        },
        "quarantineWebhook": {
            "action": "send",
            "channel": _ref("channels", "quarantine"),
            "title": "Quarantine an unreadable webhook",
            "summary": "A signed body that is not a readable cancellation, kept as sent.",
            "messages": [_ref("channels", "quarantine", "messages", QUARANTINE_MESSAGE)],
            "bindings": _publish_binding(int(quarantined.delivery_mode), quarantined.priority),
        },
        "receiveOrderCancelled": {
            "action": "receive",
            "channel": _ref("channels", "orders"),
            "title": "Consume cancellations (subscriber example)",
            "summary": "What a subscriber, and each of the bridge's own target workers, does.",
            "description": (
                "Declare a durable (preferably quorum) queue, bind it to the exchange with the"
                " routing keys you want, consume with manual acks, ack after your own effect is"
                " durable, and treat a `message_id` you have already handled as done."
            ),
            "messages": [_ref("channels", "orders", "messages", EVENT_MESSAGE)],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": [{"name": "example", "description": "Describes subscribers, not a promise."}],
        },
    }


def document() -> JsonObject:
    """The AsyncAPI 3.0.0 document of the exchange `orders` and its neighbours (pure)."""
    version = importlib.metadata.version(DISTRIBUTION)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": DOCUMENT_ID,
        "info": {
            "title": "cancel-bridge order cancellations",
            "version": version,
            "description": (
                "Order cancellations from commerce platforms, published to RabbitMQ as one"
                f" canonical event (body schema version {SCHEMA_VERSION}). Generated by"
                f" cancel-bridge {version} from the models it publishes with; served at"
                " `GET /asyncapi.json` and printed by `cancel-bridge asyncapi`."
            ),
            "x-schema-version": SCHEMA_VERSION,
        },
        "defaultContentType": messages.JSON,
        "servers": {
            "broker": {
                "host": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": AMQP_VERSION,
                "title": "RabbitMQ",
                "description": (
                    "The broker of the bridge's `[broker] url_env` URL. The exchanges and queues"
                    f" live on its virtual host (`{DEFAULT_VHOST}` unless the URL names another)."
                ),
                "variables": {
                    "host": {"default": "localhost", "description": "Broker host name."},
                    "port": {"default": "5672", "description": "AMQP port (5671 with TLS)."},
                },
                "security": [_ref("components", "securitySchemes", "broker")],
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "schemas": _schemas(),
            "messages": _messages(),
            "parameters": {
                SOURCE_PARAMETER: {
                    "description": "The platform the cancellation came from.",
                    "enum": [source.value for source in Source],
                    "location": "$message.payload#/source",
                }
            },
            "securitySchemes": {
                "broker": {
                    "type": "userPassword",
                    "description": "The broker's own user and password (AMQP PLAIN).",
                }
            },
        },
    }


@dataclass(frozen=True, slots=True)
class Served:
    """The document as served: its JSON bytes and their entity tag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, doc: JsonObject) -> Served:
        """Serialise `doc` once; the tag is a digest of the bytes."""
        body = orjson.dumps(doc)
        return cls(body, hashlib.sha256(body).hexdigest()[:32])


SERVED = web.AppKey("asyncapi", Served)


async def asyncapi_json(request: web.Request) -> web.Response:
    """`GET /asyncapi.json`: the contract, public (it holds no secret), cacheable."""
    served = request.app[SERVED]
    headers = {"Cache-Control": CACHE_CONTROL}
    if any(tag.value in (served.etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(body=served.body, content_type=messages.JSON, headers=headers)
    response.etag = served.etag
    return response


def add_routes(app: web.Application) -> None:
    """Mount `GET /asyncapi.json` (and HEAD) on the receiver app."""
    app[SERVED] = Served.of(document())
    app.router.add_get("/asyncapi.json", asyncapi_json)
