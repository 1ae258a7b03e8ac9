"""Order links and echo suppression through a platform target.

Issue 6 brings the real platform adapters; here a fake Shoplazza *target* (a small aiohttp
server, and a test adapter that names the order by its linked id) is fed by Prime-sourced events,
as `[routes] prime = ["shoplazza"]` will feed it. What is under test is ours: the link lookup,
the `no_link` retry window and parking, the echo record, and the receiver refusing to fan the
echo out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from aiohttp import web

from bridge.amqp import topology
from bridge.amqp.messages import PARK_REASON_HEADER, event_message
from bridge.demo.fake_platform import FakePlatform
from bridge.settings import WorkerSettings
from bridge.worker.consumer import Worker
from bridge.worker.plan import WorkerPlan
from contracts.events import CancelReason, OrderCancelled, Source
from handlers.base import Delivered, Headers, HttpCall, Outcome, Rejected, RetryLater
from tests.harness.broker import delete_target_queues, receive
from tests.harness.pipeline import API_TOKEN, DELAYS, SETTLE_TIMEOUT, SHOP, Pipeline
from tests.harness.receiver import shoplazza_webhook

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
NO_LINK_WINDOW = 1.0  # seconds
# A window the test cannot outlast: whenever the late link is written (a loaded machine may take
# longer than NO_LINK_WINDOW to get there), the retries are still looking for it.
LATE_LINK_WINDOW = 2 * SETTLE_TIMEOUT


class FakeStorefront(FakePlatform):
    """Accepts `POST /orders/{id}/cancel` and remembers the ids."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled: list[str] = []

    async def _cancel(self, request: web.Request) -> web.Response:
        """Cancel: always accepted."""
        order_id = request.match_info["order_id"]
        self.cancelled.append(order_id)
        return web.json_response({"cancellation_id": f"c-{order_id}"})

    def routes(self, app: web.Application) -> None:
        """The one endpoint."""
        app.router.add_post("/orders/{order_id}/cancel", self._cancel)


@dataclass(frozen=True)
class StorefrontTarget:
    """A target adapter naming the order by the id the worker found in the links."""

    url: str

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """POST the cancel for the linked order id."""
        del now
        if order_id is None:
            return Rejected(f"no linked order for {event.order_id}")
        return HttpCall("POST", f"{self.url}/orders/{order_id}/cancel", {}, b"{}")

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome:
        """200 is delivered; anything else is retried."""
        del call, headers, now
        if status == 200:
            return Delivered(reference=str(orjson.loads(body)["cancellation_id"]))
        return RetryLater(f"HTTP {status}")


@dataclass
class Storefront:
    """The fake storefront and the worker that cancels there."""

    fake: FakeStorefront
    worker: Worker


@pytest.fixture
def no_link_window() -> float:
    """The storefront worker's `no_link_window` (a test parametrizes it to change it)."""
    return NO_LINK_WINDOW


@pytest.fixture
async def storefront(
    pipeline: Pipeline, amqp_url: str, amqp: AbstractRobustConnection, no_link_window: float
) -> AsyncIterator[Storefront]:
    """A `shoplazza` target worker fed by Prime events, next to the pipeline's receiver."""
    fake = FakeStorefront()
    await fake.start()
    spec = topology.target_topology("shoplazza", (Source.PRIME,), DELAYS, 3)
    settings = WorkerSettings(
        retry_delays=DELAYS, retry_total=60, no_link_window=no_link_window, lease_margin=1
    )
    worker_plan = WorkerPlan(
        "shoplazza", StorefrontTarget(fake.url), 2.0, spec, settings, link_platform="shoplazza"
    )
    channel = await amqp.channel()
    await delete_target_queues(channel, spec)
    await topology.declare_target(channel, spec)  # bound before anything is published
    try:
        broker = pipeline.config.settings.broker
        async with Worker.running(worker_plan, amqp_url, broker, pipeline.store) as worker:
            yield Storefront(fake, worker)
    finally:
        await delete_target_queues(channel, spec)
        await fake.stop()


def prime_event(order_id: str) -> OrderCancelled:
    now = datetime.now(UTC)
    return OrderCancelled.create(
        source=Source.PRIME,
        shop="prime-store",
        order_id=order_id,
        order_number=None,
        reason=CancelReason.CUSTOMER_REQUEST,
        source_reason=None,
        cancelled_at=now,
        received_at=now,
        delivery_id=None,
    )


async def publish(amqp: AbstractRobustConnection, event: OrderCancelled) -> None:
    """What the Prime receiver (issue 6) will publish."""
    channel = await amqp.channel(publisher_confirms=True)
    orders = await channel.get_exchange(topology.ORDERS.name)
    await orders.publish(event_message(event, app_id="test"), topology.routing_key(Source.PRIME))


async def link(pipeline: Pipeline, ids: dict[str, str]) -> None:
    response = await pipeline.client.put("/api/links", headers=AUTH, json=ids)
    assert response.status == 200, await response.text()


async def order_api(pipeline: Pipeline, source: str, order_id: str) -> dict[str, Any]:
    response = await pipeline.client.get(f"/api/orders/{source}/{order_id}", headers=AUTH)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = orjson.loads(await response.read())
    return answer


async def test_the_echo_of_our_own_cancellation_is_not_fanned_out(
    pipeline: Pipeline,
    storefront: Storefront,
    amqp: AbstractRobustConnection,
    subscriber: AbstractQueue,
) -> None:
    prime_id, shop_id = f"P-{uuid.uuid4().hex[:8]}", f"S-{uuid.uuid4().hex[:8]}"
    await link(pipeline, {"prime": prime_id, "shoplazza": shop_id})
    event = prime_event(prime_id)
    await publish(amqp, event)
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await storefront.worker.wait_outcomes("delivered", 1)
    assert storefront.fake.cancelled == [shop_id]  # the linked id, not Prime's

    # Shoplazza now tells us about the cancellation we made: an echo.
    hook = shoplazza_webhook({"id": shop_id}, shop=SHOP)
    response = await pipeline.client.post(
        "/webhooks/shoplazza", data=hook.body, headers=hook.headers
    )
    answer = orjson.loads(await response.read())
    assert response.status == 200
    assert answer["status"] == "echo"
    assert answer["echo_of"] == str(event.event_id)

    sentinel = await pipeline.post()  # a genuine cancellation after the echo
    await pipeline.settled("delivered")
    seen = [orjson.loads((await receive(subscriber)).body)["order_id"] for _ in range(2)]
    assert seen == [prime_id, sentinel], "the echo must not be published"
    assert pipeline.cj.calls_for(shop_id) == []
    assert [call.order["orderId"] for call in pipeline.cj.calls] == [sentinel]


async def test_a_missing_link_retries_for_the_window_then_parks_as_no_link(
    pipeline: Pipeline, storefront: Storefront, amqp: AbstractRobustConnection
) -> None:
    prime_id = f"P-{uuid.uuid4().hex[:8]}"
    await publish(amqp, prime_event(prime_id))
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await storefront.worker.wait_outcomes("parked", 1)
    assert storefront.fake.cancelled == []
    assert storefront.worker.outcomes["retried"] >= 1
    channel = await amqp.channel()
    parked = await channel.get_queue(topology.parked_queue("shoplazza"))
    message = await receive(parked)
    assert (message.headers or {})[PARK_REASON_HEADER] == "no_link"

    [event] = (await order_api(pipeline, "prime", prime_id))["events"]
    [delivery] = event["deliveries"]
    assert delivery["state"] == "parked"
    assert delivery["last_error"].startswith("no_link: no shoplazza order linked")
    states = [step["state"] for step in delivery["history"]]
    assert len(states) >= 2, states
    assert set(states[:-1]) == {"retrying"}, states
    assert states[-1] == "parked"


@pytest.mark.parametrize("no_link_window", [LATE_LINK_WINDOW])
async def test_a_link_that_arrives_late_is_used(
    pipeline: Pipeline, storefront: Storefront, amqp: AbstractRobustConnection
) -> None:
    """The first attempt finds no link; one written after it is used by a retry."""
    prime_id, shop_id = f"P-{uuid.uuid4().hex[:8]}", f"S-{uuid.uuid4().hex[:8]}"
    await publish(amqp, prime_event(prime_id))
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await storefront.worker.wait_outcomes("retried", 1)  # it looked, and found no link
    await link(pipeline, {"prime": prime_id, "shoplazza": shop_id})
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await storefront.worker.wait_outcomes("delivered", 1)
    assert storefront.fake.cancelled == [shop_id]
