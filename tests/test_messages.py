"""How events and quarantined bodies become AMQP messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from aio_pika import DeliveryMode

from bridge.amqp.messages import (
    ce_source,
    event_message,
    event_properties,
    quarantine_message,
    rfc3339,
)
from contracts.events import CancelReason, OrderCancelled, Source

RECEIVED = datetime(2024, 3, 1, 12, 0, 5, tzinfo=UTC)
EVENT = OrderCancelled.create(
    source=Source.SHOPLAZZA,
    shop="demo-shop.myshoplaza.com",
    order_id="1001",
    order_number="#1001",
    reason=CancelReason.FRAUD,
    source_reason="fraud",
    cancelled_at=datetime(2024, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=8))),
    received_at=RECEIVED,
    delivery_id="dedup-0001",
)


def test_event_message_properties() -> None:
    message = event_message(EVENT, app_id="cancel-bridge-test")
    assert message.body == EVENT.to_json()
    assert OrderCancelled.from_json(message.body) == EVENT
    assert message.delivery_mode == DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.message_id == str(EVENT.event_id)
    assert message.type == "order.cancelled"
    assert message.timestamp == RECEIVED
    assert message.app_id == "cancel-bridge-test"


def test_the_receivers_properties_are_the_messages() -> None:
    """The receiver publishes `event_properties` without aio-pika's Message: same wire."""
    for seen in (1, 3):
        built = event_properties(EVENT, app_id="cancel-bridge", seen=seen)
        assert built == event_message(EVENT, app_id="cancel-bridge", seen=seen).properties
        assert built.headers is not None
        assert ("x-cancel-bridge-seen" in built.headers) is (seen > 1)


def test_event_message_cloudevents_headers() -> None:
    headers = event_message(EVENT, app_id="cancel-bridge").headers
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == str(EVENT.event_id)
    assert headers["ce-source"] == "/cancel-bridge/shoplazza/demo-shop.myshoplaza.com"
    assert headers["ce-type"] == "order.cancelled"
    assert headers["ce-time"] == "2024-03-01T02:00:00Z"
    assert headers["x-schema-version"] == 1


def test_message_id_is_the_event_id_for_every_delivery() -> None:
    """Consumers de-duplicate on message_id: a redelivery must carry the same one."""
    again = EVENT.model_copy(update={"delivery_id": "dedup-0002"})
    assert (
        event_message(EVENT, app_id="a").message_id == event_message(again, app_id="a").message_id
    )


def test_ce_source_escapes_the_shop() -> None:
    """The shop is one path segment, whatever it contains."""
    odd = EVENT.model_copy(update={"shop": "a/b c"})
    assert ce_source(odd) == "/cancel-bridge/shoplazza/a%2Fb%20c"


def test_rfc3339_uses_z_for_utc() -> None:
    assert rfc3339(datetime(2024, 3, 1, 2, 0, tzinfo=UTC)) == "2024-03-01T02:00:00Z"


def test_quarantine_message_keeps_body_and_reason() -> None:
    body = b'\xff\x00{"id": not json'
    message = quarantine_message(
        body,
        content_type="application/json; charset=utf-8",
        reason="body is not JSON: unexpected character",
        source="shoplazza",
        received_at=RECEIVED,
        platform_headers={"X-Shoplazza-Topic": "orders/cancelled", "X-Shoplazza-Hmac-Sha256": "s"},
        app_id="cancel-bridge-test",
    )
    assert message.body == body
    headers = message.headers
    assert headers["x-quarantine-reason"] == "body is not JSON: unexpected character"
    assert headers["x-source"] == "shoplazza"
    assert headers["x-received-at"] == "2024-03-01T12:00:05Z"
    assert headers["x-http-x-shoplazza-topic"] == "orders/cancelled"
    assert message.content_type == "application/json; charset=utf-8"
    assert message.delivery_mode == DeliveryMode.PERSISTENT
    assert message.type == "quarantine"
    assert message.app_id == "cancel-bridge-test"
    assert message.timestamp == RECEIVED


def test_quarantine_copies_have_distinct_message_ids() -> None:
    """Two copies of one bad body are two messages: never two in flight under one id."""
    ids = {
        quarantine_message(
            b"x",
            content_type="text/plain",
            reason="r",
            source="shoplazza",
            received_at=RECEIVED,
            platform_headers={},
            app_id="a",
        ).message_id
        for _ in range(2)
    }
    assert len(ids) == 2
    assert None not in ids
