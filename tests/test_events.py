"""The canonical `OrderCancelled` event: its id, its wire body and its JSON Schema."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from contracts.events import (
    EVENT_NAMESPACE,
    CancelReason,
    OrderCancelled,
    Source,
    event_id_for,
)
from contracts.schema import SCHEMA_ID, event_json_schema

SHOP = "demo-shop.myshoplaza.com"
CANCELLED = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
RECEIVED = datetime(2024, 3, 1, 12, 0, 5, 250_000, tzinfo=UTC)

WIRE_KEYS = {
    "schema_version",
    "event_id",
    "type",
    "source",
    "shop",
    "order_id",
    "order_number",
    "reason",
    "source_reason",
    "cancelled_at",
    "received_at",
    "delivery_id",
    "aliases",
}
# RFC 3339 in UTC, as the contract promises: seconds, optional fraction, a literal Z.
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def make_event(  # noqa: PLR0913 - each argument is a field a test varies
    *,
    source: Source = Source.SHOPLAZZA,
    shop: str = SHOP,
    order_id: str = "1001",
    delivery_id: str | None = "dedup-0001",
    cancelled_at: datetime = CANCELLED,
    received_at: datetime = RECEIVED,
) -> OrderCancelled:
    return OrderCancelled.create(
        source=source,
        shop=shop,
        order_id=order_id,
        order_number="#1001",
        reason=CancelReason.CUSTOMER_REQUEST,
        source_reason="Customer changed mind",
        cancelled_at=cancelled_at,
        received_at=received_at,
        delivery_id=delivery_id,
    )


def wire(event: OrderCancelled) -> dict[str, Any]:
    decoded = orjson.loads(event.to_json())
    assert isinstance(decoded, dict)
    return decoded


# --- event id ----------------------------------------------------------------------------------


def test_event_id_is_stable_across_deliveries() -> None:
    """Another delivery of one cancellation (new delivery id, later receipt) has the same id."""
    first = make_event(delivery_id="dedup-0001", received_at=RECEIVED)
    again = make_event(delivery_id="dedup-0002", received_at=RECEIVED + timedelta(hours=2))
    unset = make_event(delivery_id=None)
    assert first.event_id == again.event_id == unset.event_id


@pytest.mark.parametrize(
    "other",
    [
        {"shop": "other-shop.myshoplaza.com"},
        {"order_id": "1002"},
        {"source": Source.OCC},
    ],
    ids=["shop", "order", "source"],
)
def test_event_id_differs_per_source_shop_and_order(other: dict[str, Any]) -> None:
    assert make_event(**other).event_id != make_event().event_id


def test_event_id_is_a_uuid_version_5() -> None:
    event_id = make_event().event_id
    assert isinstance(event_id, uuid.UUID)
    assert event_id.version == 5
    assert event_id.variant == uuid.RFC_4122


def test_event_id_known_answer() -> None:
    """The namespace is fixed forever: a change would break every subscriber's de-duplication."""
    # Computed once with the stdlib's uuid5 over the namespace and the NUL-joined parts.
    expected = uuid.UUID("e50bd3e8-981d-5177-8a8a-962493efeed5")
    assert event_id_for(Source.SHOPLAZZA, SHOP, "1001") == expected
    assert make_event().event_id == expected
    assert uuid.UUID("5b3c8a1e-2f6d-5e7a-9c4b-0d1e2f3a4b5c") == EVENT_NAMESPACE


def test_event_id_parts_cannot_run_together() -> None:
    """("a", "b/c") and ("a/b", "c") are different orders, so different ids."""
    assert event_id_for(Source.SHOPLAZZA, "a", "b/c") != event_id_for(Source.SHOPLAZZA, "a/b", "c")
    assert event_id_for(Source.SHOPLAZZA, "ab", "c") != event_id_for(Source.SHOPLAZZA, "a", "bc")


# --- wire body ---------------------------------------------------------------------------------


def test_to_json_has_exactly_the_contract_keys() -> None:
    assert set(wire(make_event())) == WIRE_KEYS


def test_to_json_values() -> None:
    event = make_event()
    body = wire(event)
    assert body["schema_version"] == 1
    assert body["type"] == "order.cancelled"
    assert body["event_id"] == str(event.event_id)
    assert body["source"] == "shoplazza"
    assert body["shop"] == SHOP
    assert body["order_id"] == "1001"
    assert body["order_number"] == "#1001"
    assert body["reason"] == "customer_request"
    assert body["source_reason"] == "Customer changed mind"
    assert body["delivery_id"] == "dedup-0001"
    assert body["cancelled_at"] == "2024-03-01T02:00:00Z"
    assert body["received_at"] == "2024-03-01T12:00:05.250000Z"


def test_to_json_keeps_null_fields() -> None:
    """Optional fields are present as null, never dropped: the key set is the contract."""
    event = OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop=SHOP,
        order_id="1001",
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=CANCELLED,
        received_at=RECEIVED,
        delivery_id=None,
    )
    body = wire(event)
    assert set(body) == WIRE_KEYS
    assert body["order_number"] is None
    assert body["source_reason"] is None
    assert body["delivery_id"] is None


def test_to_json_is_compact() -> None:
    assert b": " not in make_event().to_json()
    assert b"\n" not in make_event().to_json()


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=8))),
        datetime(2024, 2, 29, 21, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2024, 3, 1, 2, 0, tzinfo=UTC),
    ],
    ids=["plus-8", "minus-5", "utc"],
)
def test_timestamps_are_rfc3339_in_utc_with_z(moment: datetime) -> None:
    body = wire(make_event(cancelled_at=moment, received_at=moment))
    for key in ("cancelled_at", "received_at"):
        assert RFC3339_UTC.match(body[key]), body[key]
        assert datetime.fromisoformat(body[key]) == moment
    assert body["cancelled_at"] == "2024-03-01T02:00:00Z"


def test_round_trips_through_from_json() -> None:
    event = make_event(
        cancelled_at=datetime(2024, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    )
    parsed = OrderCancelled.from_json(event.to_json())
    assert parsed == event
    assert parsed.to_json() == event.to_json()
    assert parsed.cancelled_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("field", ["cancelled_at", "received_at"])
def test_naive_datetime_is_rejected(field: str) -> None:
    naive: dict[str, Any] = {field: datetime(2024, 3, 1, 2, 0)}  # noqa: DTZ001 - the point
    with pytest.raises(ValidationError, match="time zone"):
        make_event(**naive)


def test_from_json_rejects_naive_timestamps() -> None:
    body = wire(make_event())
    body["cancelled_at"] = "2024-03-01T02:00:00"
    with pytest.raises(ValidationError):
        OrderCancelled.from_json(orjson.dumps(body))


def test_from_json_rejects_unknown_keys() -> None:
    body = wire(make_event())
    body["surprise"] = 1
    with pytest.raises(ValidationError):
        OrderCancelled.from_json(orjson.dumps(body))


def test_events_are_frozen() -> None:
    event = make_event()
    with pytest.raises(ValidationError):
        event.order_id = "1002"  # type: ignore[misc]  # frozen model: mypy agrees it is read-only


@pytest.mark.parametrize("field", ["shop", "order_id"])
def test_empty_identity_parts_are_rejected(field: str) -> None:
    empty: dict[str, Any] = {field: ""}
    with pytest.raises(ValidationError):
        make_event(**empty)


# --- JSON Schema -------------------------------------------------------------------------------


def test_schema_names_its_dialect_and_id() -> None:
    schema = event_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert SCHEMA_ID.endswith(":v1")


def test_schema_lists_every_wire_field() -> None:
    schema = event_json_schema()
    assert set(schema["properties"]) == WIRE_KEYS
    assert set(schema["required"]) <= WIRE_KEYS
    # Everything without a fixed value must be present; constants and `aliases` have defaults.
    assert WIRE_KEYS - {"schema_version", "type", "aliases"} <= set(schema["required"])
    assert schema["properties"]["schema_version"]["const"] == 1
    assert schema["properties"]["type"]["const"] == "order.cancelled"
    assert schema["additionalProperties"] is False


def test_schema_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(event_json_schema())


def test_schema_validates_a_real_event() -> None:
    validator = Draft202012Validator(
        event_json_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = list(validator.iter_errors(wire(make_event())))
    assert errors == []


@pytest.mark.parametrize(
    ("change", "drop"),
    [
        ({"surprise": 1}, None),
        ({"reason": "bored"}, None),
        ({"source": "shopify"}, None),
        ({"schema_version": 2}, None),
        ({"shop": ""}, None),
        ({}, "event_id"),
        ({}, "delivery_id"),
    ],
    ids=["extra-key", "bad-reason", "bad-source", "other-version", "empty-shop", "no-id", "no-dd"],
)
def test_schema_rejects_a_broken_event(change: dict[str, Any], drop: str | None) -> None:
    body = {**wire(make_event()), **change}
    if drop is not None:
        del body[drop]
    assert not Draft202012Validator(event_json_schema()).is_valid(body)
