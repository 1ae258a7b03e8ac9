"""The AsyncAPI 3.0 document: valid per the official schema, and true to the code that publishes."""

from __future__ import annotations

import copy
import importlib.metadata
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT7

from bridge.amqp import asyncapi, messages, topology
from bridge.amqp.asyncapi import document
from bridge.cli.main import main
from bridge.tracing import TRACE_HEADERS
from contracts.events import SCHEMA_VERSION, Source
from contracts.schema import SCHEMA_ID, event_json_schema
from tests.harness.receiver import ClientFactory

OFFICIAL_SCHEMA = Path(__file__).parent / "data" / "asyncapi-3.0.0-without-id.json"
DOCUMENT_URI = "urn:cancel-bridge:test:asyncapi-document"

JsonObject = dict[str, Any]


def format_checker() -> FormatChecker:
    """Every format jsonschema knows, and RFC 3339 `date-time` (its checker is an extra)."""
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if "T" not in value.upper():
            raise ValueError("no T between date and time")
        if datetime.fromisoformat(value).tzinfo is None:
            raise ValueError("no offset")
        return True

    return checker


def official_validator() -> Draft7Validator:
    """The official AsyncAPI 3.0.0 JSON Schema (draft-07, internal refs only), offline.

    An explicit empty `Registry` retrieves nothing: a reference outside the file would fail
    instead of being fetched.
    """
    schema = orjson.loads(OFFICIAL_SCHEMA.read_bytes())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, registry=Registry(), format_checker=format_checker())


def validator_for(doc: JsonObject, pointer: str) -> Draft7Validator:
    """A validator for the schema at `pointer` in `doc`, its refs resolved within `doc`.

    AsyncAPI's default schema format is a superset of JSON Schema draft-07.
    """
    registry = Registry().with_resource(DOCUMENT_URI, DRAFT7.create_resource(doc))
    return Draft7Validator(
        {"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry, format_checker=format_checker()
    )


def errors(validator: Draft7Validator, instance: object) -> list[str]:
    """Every error, as `path: message` lines (empty when valid)."""
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def resolve(doc: JsonObject, ref: str) -> Any:  # noqa: ANN401 - any JSON value
    """The value a local `#/...` reference points at (KeyError if it points nowhere)."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs_in(node: object) -> Iterator[str]:
    """Every `$ref` string anywhere in `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def message_of(doc: JsonObject, channel: str, name: str) -> JsonObject:
    """A channel's message, dereferenced."""
    found: JsonObject = resolve(doc, doc["channels"][channel]["messages"][name]["$ref"])
    return found


def amqp_properties(properties: Any) -> JsonObject:  # noqa: ANN401 - pamqp's Basic.Properties
    """The set properties (pamqp's) under the names the document uses (`message_type` is `type`).

    Unset is None, or "" for `cluster_id` (pamqp's default, which RabbitMQ drops).
    """
    names = {"message_type": "type"}
    return {
        names.get(name, name): getattr(properties, name)
        for name in properties.attributes()
        if name != "headers" and getattr(properties, name) not in (None, "")
    }


def properties_for_json(values: JsonObject) -> JsonObject:
    """Properties as a JSON instance: the timestamp in whole epoch seconds, enums as ints."""
    return {
        name: int(value.timestamp())
        if isinstance(value, datetime)
        else int(value)
        if isinstance(value, IntEnum)
        else value
        for name, value in values.items()
    }


# --- the official schema -------------------------------------------------------------------


def test_document_is_valid_asyncapi_3() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert errors(official_validator(), doc) == []


def _wrong_version(doc: JsonObject) -> list[str]:
    doc["asyncapi"] = "2.6.0"
    return ["asyncapi"]


def _no_info_version(doc: JsonObject) -> list[str]:
    del doc["info"]["version"]
    return ["info"]


def _publish_action(doc: JsonObject) -> list[str]:
    doc["operations"]["publishOrderCancelled"]["action"] = "publish"  # AsyncAPI 2 wording
    return ["operations", "publishOrderCancelled"]


def _exchange_and_queue(doc: JsonObject) -> list[str]:
    doc["channels"]["orders"]["bindings"]["amqp"]["queue"] = {"name": "orders"}
    return ["channels", "orders"]


def _bad_exchange_type(doc: JsonObject) -> list[str]:
    doc["channels"]["orders"]["bindings"]["amqp"]["exchange"]["type"] = "x-consistent-hash"
    return ["channels", "orders"]


def _transient_persistent(doc: JsonObject) -> list[str]:
    doc["operations"]["publishOrderCancelled"]["bindings"]["amqp"]["deliveryMode"] = 3
    return ["operations", "publishOrderCancelled"]


def _server_without_protocol(doc: JsonObject) -> list[str]:
    del doc["servers"]["broker"]["protocol"]
    return ["servers", "broker"]


def _unknown_message_field(doc: JsonObject) -> list[str]:
    doc["components"]["messages"][asyncapi.EVENT_MESSAGE]["routingKey"] = "order.cancelled.#"
    return ["components", "messages", asyncapi.EVENT_MESSAGE]


def _payload_not_a_schema(doc: JsonObject) -> list[str]:
    doc["components"]["schemas"][asyncapi.PAYLOAD]["required"] = "event_id"
    return ["components", "schemas", asyncapi.PAYLOAD, "required"]


@pytest.mark.parametrize(
    "breakage",
    [
        _wrong_version,
        _no_info_version,
        _publish_action,
        _exchange_and_queue,
        _bad_exchange_type,
        _transient_persistent,
        _server_without_protocol,
        _unknown_message_field,
        _payload_not_a_schema,
    ],
)
def test_a_broken_document_is_refused(breakage: Callable[[JsonObject], list[str]]) -> None:
    """The validation can fail: each broken copy is refused, for what was broken."""
    doc = copy.deepcopy(document())
    broken = breakage(doc)
    found = list(official_validator().iter_errors(doc))
    assert found
    assert all(list(error.absolute_path)[: len(broken)] == broken for error in found)


def test_every_reference_resolves_and_operations_use_their_channel() -> None:
    doc = document()
    for ref in refs_in(doc):
        resolve(doc, ref)  # KeyError if dangling
    for name, operation in doc["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel}/messages/"), name


def test_channel_addresses_declare_their_parameters() -> None:
    doc = document()
    for name, channel in doc["channels"].items():
        used = set(re.findall(r"{([^}]+)}", channel["address"]))
        assert used == set(channel.get("parameters", {})), name


# --- generated from the code ---------------------------------------------------------------


def test_every_source_is_in_the_parameter_enum() -> None:
    doc = document()
    channel = doc["channels"]["orders"]
    parameter = resolve(doc, channel["parameters"]["source"]["$ref"])
    assert parameter["enum"] == [source.value for source in Source]
    assert parameter["location"] == "$message.payload#/source"
    for source in Source:
        address = channel["address"].replace("{source}", source.value)
        assert address == topology.routing_key(source)


def test_payload_is_the_event_schema_with_its_defs_moved() -> None:
    doc = document()
    message = message_of(doc, "orders", asyncapi.EVENT_MESSAGE)
    schemas = doc["components"]["schemas"]
    payload = resolve(doc, message["payload"]["$ref"])
    referenced = {
        ref.removeprefix(asyncapi.SCHEMAS_PREFIX)
        for ref in refs_in(payload)
        if ref.startswith(asyncapi.SCHEMAS_PREFIX)
    }
    assert referenced == {"Source", "CancelReason"}
    original = event_json_schema()
    rebuilt = {
        "$schema": original["$schema"],
        "$id": message["x-schema-id"],
        "$defs": {name: schemas[name] for name in sorted(referenced)},
        **payload,
    }
    rebuilt = asyncapi.move_refs(rebuilt, asyncapi.SCHEMAS_PREFIX, asyncapi.DEFS_PREFIX)
    assert rebuilt == original
    assert message["x-schema-id"] == SCHEMA_ID
    assert message["contentType"] == messages.JSON == "application/json"


def test_event_headers_are_the_ones_the_receiver_sets() -> None:
    """Names and values of `event_properties` headers, first delivery and redelivery."""
    doc = document()
    message = message_of(doc, "orders", asyncapi.EVENT_MESSAGE)
    headers = resolve(doc, message["headers"]["$ref"])
    event = asyncapi.sample_event()
    first = messages.event_properties(event, app_id="cancel-bridge").headers
    again = messages.event_properties(event, app_id="cancel-bridge", seen=3).headers
    assert first is not None
    assert again is not None
    # ... the trace context headers that only a tracing bridge adds (test_tracing_*), and the
    # backstop's mark (test_backstop_integration).
    backstop = {messages.BACKSTOP_HEADER}
    assert set(headers["properties"]) == set(first) | set(again) | set(TRACE_HEADERS) | backstop
    assert set(headers["required"]) == set(first)
    assert {name for name in headers["properties"] if name.startswith("ce-")} >= {
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
    }
    validator = validator_for(doc, message["headers"]["$ref"].removeprefix("#"))
    assert errors(validator, first) == []
    assert errors(validator, again) == []
    assert errors(validator, {**again, messages.SEEN_HEADER: 1}) != []
    assert errors(validator, {k: v for k, v in first.items() if k != "ce-id"}) != []


def test_event_properties_are_the_ones_the_receiver_sets() -> None:
    doc = document()
    message = message_of(doc, "orders", asyncapi.EVENT_MESSAGE)
    pointer = message["x-amqp-properties"]["$ref"]
    schema = resolve(doc, pointer)
    sent = amqp_properties(
        messages.event_properties(asyncapi.sample_event(), app_id="cancel-bridge")
    )
    assert set(schema["properties"]) == set(sent)
    validator = validator_for(doc, pointer.removeprefix("#"))
    assert errors(validator, properties_for_json(sent)) == []
    assert errors(validator, properties_for_json({**sent, "delivery_mode": 1})) != []
    assert message["bindings"]["amqp"]["messageType"] == sent["type"]
    publish = doc["operations"]["publishOrderCancelled"]["bindings"]["amqp"]
    assert (publish["deliveryMode"], publish["priority"]) == (2, 0)
    assert publish["mandatory"] is True


def test_quarantine_message_is_the_one_the_receiver_sends() -> None:
    doc = document()
    message = message_of(doc, "quarantine", asyncapi.QUARANTINE_MESSAGE)
    sent = messages.quarantine_message(
        b"\x00not json",
        content_type="application/json",
        reason="body is not JSON",
        source="prime",
        received_at=datetime.fromisoformat("2024-05-01T02:00:00+00:00"),
        platform_headers={"x-shoplazza-topic": "orders/cancelled"},
        app_id="cancel-bridge",
    )
    headers = resolve(doc, message["headers"]["$ref"])
    assert (
        set(headers["required"])
        == set(headers["properties"])
        == {
            messages.QUARANTINE_REASON_HEADER,
            "x-source",
            "x-received-at",
        }
    )
    header_validator = validator_for(doc, message["headers"]["$ref"].removeprefix("#"))
    assert errors(header_validator, sent.headers) == []
    assert errors(header_validator, {**sent.headers, "x-source": "cj"}) != []
    properties_pointer = message["x-amqp-properties"]["$ref"]
    properties = properties_for_json(amqp_properties(sent.properties))
    assert set(resolve(doc, properties_pointer)["properties"]) == set(properties)
    assert errors(validator_for(doc, properties_pointer.removeprefix("#")), properties) == []
    assert message["bindings"]["amqp"]["messageType"] == sent.type == "quarantine"
    binding = doc["channels"]["quarantine"]["bindings"]["amqp"]
    assert binding["queue"]["name"] == topology.QUARANTINE_QUEUE.name


def test_examples_are_valid_messages() -> None:
    doc = document()
    for name, message in doc["components"]["messages"].items():
        for example in message.get("examples", []):
            if "payload" in example:
                payload = validator_for(doc, message["payload"]["$ref"].removeprefix("#"))
                assert errors(payload, example["payload"]) == [], name
            if "headers" in example:
                headers = validator_for(doc, message["headers"]["$ref"].removeprefix("#"))
                assert errors(headers, example["headers"]) == [], name


def test_exchanges_and_queues_are_the_topology() -> None:
    doc = document()
    channels = doc["channels"]
    orders = channels["orders"]["bindings"]["amqp"]
    assert orders["is"] == "routingKey"
    assert orders["exchange"] == {
        "name": topology.ORDERS.name,
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    assert orders["x-alternate-exchange"] == topology.UNROUTED.name == "orders.unrouted"
    unrouted = channels["unrouted"]["bindings"]["amqp"]
    assert (unrouted["exchange"]["name"], unrouted["exchange"]["type"]) == (
        topology.UNROUTED.name,
        "fanout",
    )
    for channel, spec in (
        ("unroutedQueue", topology.UNROUTED_QUEUE),
        ("quarantine", topology.QUARANTINE_QUEUE),
    ):
        binding = channels[channel]["bindings"]["amqp"]
        assert (binding["is"], binding["queue"]["name"]) == ("queue", spec.name)
        assert binding["x-queue-type"] == "quorum"
        assert channels[channel]["address"] == spec.name


def test_versions_and_no_credentials() -> None:
    doc = document()
    assert doc["info"]["version"] == importlib.metadata.version("cancel-bridge")
    assert doc["info"]["x-schema-version"] == SCHEMA_VERSION
    server = doc["servers"]["broker"]
    assert server["host"] == "{host}:{port}"
    assert server["variables"]["host"]["default"] == "localhost"
    text = orjson.dumps(doc).decode()
    assert "guest" not in text
    assert "amqp://" not in text
    assert document() == doc  # pure: the same on every call
    assert orjson.loads(text) == doc  # plain JSON values only


# --- serving and printing ------------------------------------------------------------------


async def test_get_asyncapi_json_serves_the_document(aiohttp_client: ClientFactory) -> None:
    """Public, JSON, cacheable: a matching If-None-Match gets a bodiless 304."""
    app = web.Application()
    asyncapi.add_routes(app)
    client = await aiohttp_client(app)
    response = await client.get("/asyncapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert orjson.loads(await response.read()) == document()
    assert response.headers["Cache-Control"] == "public, max-age=300"
    etag = response.headers["ETag"]
    again = await client.get("/asyncapi.json", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag
    other = await client.get("/asyncapi.json", headers={"If-None-Match": '"stale"'})
    assert other.status == 200
    head = await client.head("/asyncapi.json")
    assert (head.status, head.headers["ETag"]) == (200, etag)


def test_cli_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asyncapi"]) == 0
    out, _ = capsys.readouterr()
    assert orjson.loads(out) == document()
    assert out.startswith('{\n  "asyncapi": "3.0.0"')  # indented, for reading and diffing
