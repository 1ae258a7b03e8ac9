"""One effect per (target, target order), whatever the event id: the whole bridge, both engines.

Found by a probe: Shoplazza's signature does not cover `X-Shoplazza-Shop-Domain`, so one signed
body sent under 24 shop names gave 24 events and 24 CJ calls for one order. The shop allowlist
refuses the forged shops where it is set (`test_shop_allowlist_integration.py`); without it the
24 events still reach the worker, and each claim is bound to CJ's orderId: one call, the other
23 pairs wait for it and then settle as `duplicate`, pointing at the event that holds the order.
A holder that gives up (parked) hands the order to the next event naming it.
"""

from __future__ import annotations

import uuid

import orjson

from bridge.demo.fake_cj import Reply, error_in_200
from bridge.store.lifecycle import DeliveryState
from tests.harness.pipeline import Pipeline
from tests.harness.receiver import shoplazza_webhook

SHOPS = [f"shop-{n}.myshoplaza.com" for n in range(24)]


async def post(pipeline: Pipeline, order: str, shop: str) -> str:
    """One signed cancellation of `order` said to come from `shop`; its event id."""
    hook = shoplazza_webhook({"id": order}, shop=shop)
    response = await pipeline.client.post(
        "/webhooks/shoplazza", data=hook.body, headers=hook.headers
    )
    assert response.status == 200
    return str(orjson.loads(await response.read())["event_id"])


async def test_one_order_under_many_shop_headers_is_declined_once(pipeline: Pipeline) -> None:
    order = f"probe-{uuid.uuid4().hex[:8]}"
    events = [await post(pipeline, order, shop) for shop in SHOPS]
    assert len(set(events)) == len(SHOPS)  # the event id names the shop: 24 events
    await pipeline.settled("delivered")
    await pipeline.settled("duplicate", len(SHOPS) - 1)
    assert len(pipeline.cj.calls_for(order)) == 1
    states = [await pipeline.store.delivery(event, "cj") for event in events]
    assert all(state is not None for state in states)
    delivered = [row for row in states if row and row.state == DeliveryState.DELIVERED]
    assert len(delivered) == 1
    holder = delivered[0].event_id
    duplicates = [row for row in states if row and row.state == DeliveryState.DUPLICATE]
    assert len(duplicates) == len(SHOPS) - 1
    assert {row.reference for row in duplicates} == {holder}

    # Later, another shop name again: settled as duplicate at once, no call.
    late = await post(pipeline, order, "late.myshoplaza.com")
    await pipeline.settled("duplicate", len(SHOPS))
    row = await pipeline.store.delivery(late, "cj")
    assert row is not None
    assert (row.state, row.reference) == (DeliveryState.DUPLICATE, holder)
    assert len(pipeline.cj.calls_for(order)) == 1


async def test_the_holder_keeps_the_order_while_it_retries(pipeline: Pipeline) -> None:
    """A second event for the order while the first is retrying: duplicate, never a call."""
    order = f"retry-{uuid.uuid4().hex[:8]}"
    pipeline.cj.script[order] = [Reply(status=503, body=b"busy")]
    first = await post(pipeline, order, SHOPS[0])
    await pipeline.settled("retried")
    second = await post(pipeline, order, SHOPS[1])
    await pipeline.settled("duplicate")
    await pipeline.settled("delivered")
    assert len(pipeline.cj.calls_for(order)) == 2  # the holder's failed call and its retry
    holder = await pipeline.store.delivery(first, "cj")
    twin = await pipeline.store.delivery(second, "cj")
    assert holder is not None
    assert twin is not None
    assert (holder.state, holder.attempts) == (DeliveryState.DELIVERED, 2)
    assert (twin.state, twin.reference) == (DeliveryState.DUPLICATE, first)


async def test_a_parked_holder_hands_the_order_over(pipeline: Pipeline) -> None:
    """The first event's call is refused (parked): a later event naming the order calls."""
    order = f"handover-{uuid.uuid4().hex[:8]}"
    pipeline.cj.script[order] = [error_in_200("Order not found")]  # tracking not caught up yet
    first = await post(pipeline, order, SHOPS[0])
    await pipeline.settled("parked")
    second = await post(pipeline, order, SHOPS[1])
    await pipeline.settled("delivered")
    assert len(pipeline.cj.calls_for(order)) == 2
    assert pipeline.cj.accepted[order] == 1
    parked = await pipeline.store.delivery(first, "cj")
    heir = await pipeline.store.delivery(second, "cj")
    assert parked is not None
    assert heir is not None
    assert (parked.state, heir.state) == (DeliveryState.PARKED, DeliveryState.DELIVERED)
