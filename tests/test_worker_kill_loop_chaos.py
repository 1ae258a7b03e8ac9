"""Worker SIGKILL loop: every order declined once in effect, every pair settled, nothing parked.

The worker process is killed and restarted every 150 orders of 600.

The fake CJ declines an order on receipt and answers "already declined" to any later call, as a
tracker would; a call cut by a kill is therefore either recorded (no new call) or asked again
after the dead worker's lease (and answered "already").
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from bridge.amqp import topology
from bridge.amqp.messages import event_message
from bridge.demo.fake_cj import FakeCJ
from bridge.store.deliveries import Store
from bridge.store.lifecycle import SETTLED_STATES
from contracts.events import CancelReason, OrderCancelled, Source, event_id_for
from tests.harness.processes import Bridge
from tests.test_worker_kill_integration import (
    WORKER_DELAYS,
    Workers,
    cj_queues,
    killed,
    worker_config,
)

ORDERS = 600
KILL_EVERY = 150
SETTLE_TIMEOUT = 120.0
PREFETCH = 16  # the worker's default: at most this many calls in flight when it is killed
POLL = 0.2  # seconds between looks at state that cannot notify (queue depth, store rows)


async def drain(worker: Bridge, tail: collections.deque[bytes]) -> None:
    """Read a worker's log lines as they come, keeping the last few."""
    assert worker.process.stdout is not None
    while line := await worker.process.stdout.readline():
        tail.append(line)


async def publish_all(channel: AbstractChannel, orders: list[str]) -> None:
    exchange = await channel.get_exchange(topology.ORDERS.name)
    now = datetime.now(UTC)
    for start in range(0, len(orders), 100):
        await asyncio.gather(
            *(
                exchange.publish(
                    event_message(
                        OrderCancelled.create(
                            source=Source.SHOPLAZZA,
                            shop="loop.myshoplaza.com",
                            order_id=order,
                            order_number=None,
                            reason=CancelReason.OTHER,
                            source_reason=None,
                            cancelled_at=now,
                            received_at=now,
                            delivery_id=None,
                        ),
                        app_id="test",
                    ),
                    topology.routing_key(Source.SHOPLAZZA),
                )
                for order in orders[start : start + 100]
            )
        )


def worker_queue_names() -> list[str]:
    """The CJ worker's work, delay and parked queues (its own delay tiers)."""
    spec = topology.target_topology("cj", (Source.SHOPLAZZA,), WORKER_DELAYS, 5)
    return [queue.name for queue in spec.queues]


async def left_in(channel: AbstractChannel, names: list[str]) -> dict[str, int]:
    """What each queue still holds, by taking it out (ready or returned by a closed channel).

    A passive declare's message count on a quorum queue lags behind (RabbitMQ 3.10 reported
    messages there that `rabbitmqctl` did not): a `basic.get` that finds nothing is the answer.
    """
    left: dict[str, int] = {}
    for name in names:
        queue = await channel.declare_queue(name, passive=True)
        taken = 0
        while await queue.get(no_ack=True, fail=False) is not None:
            taken += 1
        if taken:
            left[name] = taken
    return left


async def settled_pairs(store: Store, orders: list[str]) -> int:
    """How many of the orders' (event, cj) pairs are delivered or already done."""
    done = 0
    for order in orders:
        event_id = event_id_for(Source.SHOPLAZZA, "loop.myshoplaza.com", order)
        row = await store.delivery(str(event_id), "cj")
        done += row is not None and row.state in SETTLED_STATES
    return done


@pytest.mark.timeout(300)
async def test_killing_the_worker_again_and_again_loses_and_doubles_nothing(
    tmp_path: Path, amqp_url: str, amqp: AbstractRobustConnection
) -> None:
    cj = FakeCJ(remember=True)
    await cj.start()
    database = str(tmp_path / "state.db")
    config, store_env = worker_config(tmp_path / "worker.toml", cj.url, database)
    workers = Workers(config, store_env)
    orders = [f"loop-{n}-{uuid.uuid4().hex[:6]}" for n in range(ORDERS)]
    kills = 0
    draining: list[asyncio.Task[None]] = []
    tail: collections.deque[bytes] = collections.deque(maxlen=20)

    async def start() -> Bridge:
        started = await workers.start(amqp_url)
        draining.append(asyncio.create_task(drain(started, tail)))  # a full pipe would block it
        return started

    try:
        async with cj_queues(amqp) as channel:
            worker = await start()
            await publish_all(channel, orders)
            for mark in range(KILL_EVERY, ORDERS, KILL_EVERY):
                async with asyncio.timeout(SETTLE_TIMEOUT):
                    await cj.wait_accepted(mark)
                await killed(worker)
                kills += 1
                worker = await start()
            settled = 0
            try:
                async with asyncio.timeout(SETTLE_TIMEOUT), Store.open(database) as store:
                    await cj.wait_accepted(ORDERS)
                    while (settled := await settled_pairs(store, orders)) < ORDERS:  # noqa: ASYNC110
                        await asyncio.sleep(POLL)  # paced: the store cannot notify
            except TimeoutError:
                lines = b"".join(tail).decode(errors="replace")
                msg = (
                    f"after {kills} kills: {len(cj.accepted)} of {ORDERS} declined, {settled}"
                    f" settled in the store; last log lines: {lines}"
                )
                raise AssertionError(msg) from None
            draining[-1].cancel()
            status, _ = await worker.stop()
            assert status == 0
            left = await left_in(channel, worker_queue_names())
            assert left == {}, f"left in the queues after every pair settled: {left}"
    finally:
        for task in draining:
            task.cancel()
        workers.kill_all()
        await cj.stop()
    doubled = {order: n for order, n in cj.accepted.items() if n != 1}
    assert kills == ORDERS // KILL_EVERY - 1
    assert len(cj.accepted) == ORDERS, f"declined {len(cj.accepted)} of {ORDERS}"
    assert doubled == {}, f"declined more than once: {doubled}"
    extra_calls = len(cj.calls) - ORDERS
    assert extra_calls <= kills * PREFETCH, f"{extra_calls} repeat calls for {kills} kills"
