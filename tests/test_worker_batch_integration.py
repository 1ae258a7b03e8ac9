"""CJ batching in the real worker, on a real RabbitMQ and each store, against the fake CJ.

Cancellations wait in the target's queue before the worker starts, so the worker holds several
at once and gathers them into `cancelOrders` calls (`[targets.cj] batch_size`, `batch_linger`).
Each order is still claimed before it is sent and recorded before its message is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from bridge.amqp.messages import PARK_REASON_HEADER, event_message
from bridge.demo.fake_cj import TOKEN, Call, FakeCJ, Reply, error_in_200
from bridge.store.deliveries import Store
from bridge.store.status import order_status
from bridge.targets import plan
from bridge.worker.consumer import Worker
from bridge.worker.plan import WorkerPlan
from contracts.events import CancelReason, OrderCancelled, Source
from handlers import cj
from tests.harness.broker import delete_target_queues, fresh_target_queues, receive
from tests.harness.pipeline import SETTLE_TIMEOUT, pipeline_config

SHOP = "batch.myshoplaza.com"


def cancellation(order_id: str) -> OrderCancelled:
    now = datetime.now(UTC)
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop=SHOP,
        order_id=order_id,
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=now,
        received_at=now,
        delivery_id=None,
    )


def requests(calls: Sequence[Call]) -> list[list[str]]:
    """The orders of each request the fake received, in order (one request's share its `at`)."""
    return [
        [str(call.order["orderId"]) for call in group]
        for _, group in itertools.groupby(calls, key=lambda call: call.at)
    ]


@dataclasses.dataclass
class Batching:
    """A worker plan for the CJ target, its queues fresh, and what to fill them with."""

    amqp_url: str
    amqp: AbstractRobustConnection
    cj: FakeCJ
    store_url: str
    plan: WorkerPlan

    def with_batches(self, size: int, linger: float, prefetch: int | None = None) -> None:
        """Batch `size` orders, waiting `linger` seconds at most (and `prefetch`, if given)."""
        adapter = self.plan.adapter
        assert isinstance(adapter, cj.CJTarget)
        cfg = dataclasses.replace(adapter.cfg, batch_size=size, batch_linger=linger)
        settings = self.plan.settings
        if prefetch is not None:
            settings = settings.model_copy(update={"prefetch": prefetch})
        self.plan = dataclasses.replace(
            self.plan, adapter=cj.CJTarget(cfg, SecretStr(TOKEN)), settings=settings
        )

    async def fill(self, orders: Sequence[str]) -> None:
        """Publish, confirmed, a cancellation of each order to the work queue."""
        channel = await self.amqp.channel(publisher_confirms=True)
        for order in orders:
            message = event_message(cancellation(order), app_id="test")
            await channel.default_exchange.publish(message, self.plan.topology.work.name)

    async def drain(self, settled: dict[str, int], *, together: int = 0) -> Worker:
        """Run a worker until the outcomes in `settled` are counted; the worker, stopped.

        `together`: hold the store's write lock until that many messages are in the worker's
        hand, so none is claimed (nor sent) before the others arrived: a first message alone
        in hand is sent alone at once, by design, and the broker may deliver it a moment early.
        """
        async with Store.open(self.store_url) as store, contextlib.AsyncExitStack() as lock:
            if together:
                await lock.enter_async_context(write_lock(self.store_url))
            async with Worker.running(self.plan, self.amqp_url, BROKER, store) as worker:
                if together:
                    async with asyncio.timeout(SETTLE_TIMEOUT):
                        await worker.wait_in_hand(together)
                    await lock.aclose()  # the claims go on
                async with asyncio.timeout(SETTLE_TIMEOUT):
                    for kind, count in settled.items():
                        await worker.wait_outcomes(kind, count)
        return worker


BROKER = pipeline_config("amqp://unused", "http://unused").settings.broker


@contextlib.asynccontextmanager
async def write_lock(store_url: str) -> AsyncIterator[None]:
    """Hold the store's write lock (SQLite's file lock; PostgreSQL's on `deliveries`)."""
    if store_url.startswith(("postgresql://", "postgres://")):
        connection = await asyncpg.connect(store_url)
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("LOCK TABLE deliveries IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            await transaction.rollback()
            await connection.close()
        return
    path = store_url.removeprefix("sqlite:///")
    database = sqlite3.connect(path, isolation_level=None)
    database.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        database.execute("ROLLBACK")
        database.close()


@pytest.fixture
async def batching(
    amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ, database_url: str
) -> AsyncIterator[Batching]:
    config = pipeline_config(amqp_url, cj.url, database_url)
    worker_plan = plan(config, "cj")
    channel = await amqp.channel()
    await fresh_target_queues(channel, worker_plan.topology)
    try:
        yield Batching(amqp_url, amqp, cj, config.store_url.get_secret_value(), worker_plan)
    finally:
        await delete_target_queues(channel, worker_plan.topology)


async def references(store_url: str, orders: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    async with Store.open(store_url) as store:
        for order in orders:
            (event,) = await order_status(store, order, "shoplazza")
            (delivery,) = event["deliveries"]
            assert delivery["state"] == "delivered", delivery
            found[order] = delivery["reference"]
    return found


async def test_a_queue_of_cancellations_goes_in_batches_each_recorded_once(
    batching: Batching,
) -> None:
    """Fewer calls than orders; each order sent once and recorded with its own submissionId."""
    batching.with_batches(size=cj.BATCH_SIZE, linger=cj.BATCH_LINGER)
    orders = [f"many-{n}" for n in range(120)]
    await batching.fill(orders)
    await batching.drain({"delivered": len(orders)})
    sent = requests(batching.cj.calls)
    assert sorted(order for request in sent for order in request) == sorted(orders)
    assert len(sent) < len(orders) / 4, [len(request) for request in sent]
    assert max(len(request) for request in sent) <= cj.BATCH_SIZE
    found = await references(batching.store_url, orders)
    assert None not in found.values()
    assert len(set(found.values())) == len(orders)  # each its own, not its neighbour's


async def test_errors_that_name_no_order_send_their_orders_alone(batching: Batching) -> None:
    """The named are settled by the batch's answer; each unnamed one by its own, alone."""
    batching.with_batches(size=10, linger=5.0)
    orders = [f"ten-{n}" for n in range(10)]
    reasons = {orders[3]: "Order not found", orders[7]: "Invalid actionTrackerId"}
    for order, reason in reasons.items():
        batching.cj.script[order] = [error_in_200(reason)] * 2
    await batching.fill(orders)
    worker = await batching.drain({"delivered": 8, "parked": 2}, together=len(orders))
    sent = requests(batching.cj.calls)
    assert sent[0] == orders
    assert sorted(sent[1:]) == sorted([order] for order in reasons)
    parked = await (await batching.amqp.channel()).get_queue(batching.plan.topology.parked.name)
    found = {(await receive(parked)).headers[PARK_REASON_HEADER] for _ in reasons}
    assert found == {f"cj: {reason}" for reason in reasons.values()}
    assert worker.outcomes["already_done"] == 0


async def test_a_refused_document_sends_each_order_alone_and_done_ones_say_already(
    batching: Batching,
) -> None:
    """Top-level errors blame no order: each goes alone; those CJ took answer "already"."""
    batching.cj.remember = True  # a second cancel of an accepted order: "already declined"
    batching.with_batches(size=5, linger=5.0)
    orders = [f"five-{n}" for n in range(5)]
    refused = {"errors": [{"message": "Validation error of type WrongType"}], "data": None}
    batching.cj.script[orders[0]] = [Reply(body=refused)]
    await batching.fill(orders)
    worker = await batching.drain({"already_done": 4, "delivered": 1}, together=len(orders))
    sent = requests(batching.cj.calls)
    assert sent[0] == orders
    assert sorted(sent[1:]) == sorted([order] for order in orders)
    assert worker.outcomes["parked"] == 0
    assert {order: len(batching.cj.calls_for(order)) for order in orders} == dict.fromkeys(
        orders, 2
    )


async def test_a_batch_goes_at_once_when_no_more_can_join(batching: Batching) -> None:
    """No message in hand can still join: the call is made before the linger ends."""
    batching.with_batches(size=50, linger=SETTLE_TIMEOUT * 2, prefetch=3)
    orders = [f"three-{n}" for n in range(6)]
    await batching.fill(orders)
    await batching.drain({"delivered": len(orders)})  # within SETTLE_TIMEOUT, not the linger
    sent = requests(batching.cj.calls)
    assert sorted(order for request in sent for order in request) == sorted(orders)
    assert max(map(len, sent)) <= 3  # never more than the prefetch holds


async def test_batching_off_makes_one_call_per_order(batching: Batching) -> None:
    """`batch_size` 1, the default: one order per call, however many wait."""
    orders = [f"alone-{n}" for n in range(8)]
    await batching.fill(orders)
    await batching.drain({"delivered": len(orders)})
    assert sorted(requests(batching.cj.calls)) == sorted([order] for order in orders)
