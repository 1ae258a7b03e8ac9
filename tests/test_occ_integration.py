"""An OCC Cancel Order webhook through the real receiver, broker, store and CJ worker."""

from __future__ import annotations

import uuid

import orjson
from aio_pika.abc import AbstractQueue

from handlers.occ import sign
from tests.harness.broker import receive
from tests.harness.pipeline import API_TOKEN, OCC_SECRET, Pipeline


async def post_occ(
    pipeline: Pipeline, body: bytes, signature: str, sha512_header: str | None = None
) -> tuple[int, dict[str, object]]:
    extra = {} if sha512_header is None else {"X-Oracle-CC-WebHook-Signature-SHA512": sha512_header}
    response = await pipeline.client.post(
        "/webhooks/occ",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Oracle-CC-WebHook-Signature": signature,
            "x-ccsite": "siteUS",
            **extra,
        },
    )
    return response.status, orjson.loads(await response.read())


async def test_an_occ_cancellation_is_published_and_declined_at_cj_once(
    pipeline: Pipeline, subscriber: AbstractQueue
) -> None:
    order = f"o{uuid.uuid4().hex[:8]}"
    body = orjson.dumps(
        {"order": {"id": order, "state": "REMOVED", "cancelReason": "changeOfMind"}}
    )
    for _ in range(3):  # OCC re-sends up to 5 times
        status, answer = await post_occ(pipeline, body, sign(body, OCC_SECRET))
        assert (status, answer["status"]) == (200, "accepted"), answer
    await pipeline.settled("delivered")
    await pipeline.settled("duplicate", 2)
    assert [call.order["orderId"] for call in pipeline.cj.calls_for(order)] == [order]

    message = await receive(subscriber)
    assert message.routing_key == "order.cancelled.occ"
    event = orjson.loads(message.body)
    assert (event["source"], event["shop"], event["order_id"], event["reason"]) == (
        "occ",
        "siteUS",
        order,
        "customer_request",
    )
    response = await pipeline.client.get(
        f"/api/orders/occ/{order}", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    [recorded] = orjson.loads(await response.read())["events"]
    assert recorded["times_received"] == 3
    assert recorded["deliveries"][0]["state"] == "delivered"


async def test_a_wrongly_signed_occ_webhook_is_401(pipeline: Pipeline) -> None:
    body = b'{"order": {"id": "o1"}}'
    other = "c29tZS1vdGhlci1zZWNyZXQ="
    status, answer = await post_occ(pipeline, body, sign(body, other, algorithm="sha256"))
    assert (status, answer["error"]) == (401, "bad_signature")
    status, answer = await post_occ(pipeline, body, sign(body, other), sign(body, other))
    assert (status, answer["error"]) == (401, "bad_signature")
    assert OCC_SECRET not in str(answer)


async def test_a_tenant_sending_both_signature_headers_is_accepted(
    pipeline: Pipeline, subscriber: AbstractQueue
) -> None:
    """An older plain SHA-1 header beside the -SHA512 one: each verifies with its algorithm."""
    order = f"o{uuid.uuid4().hex[:8]}"
    body = orjson.dumps({"order": {"id": order, "cancelReason": "changeOfMind"}})
    plain = sign(body, OCC_SECRET, algorithm="sha1")
    status, answer = await post_occ(pipeline, body, plain, sign(body, OCC_SECRET))
    assert (status, answer["status"]) == (200, "accepted"), answer
    await pipeline.settled("delivered")
    message = await receive(subscriber)
    assert orjson.loads(message.body)["order_id"] == order
