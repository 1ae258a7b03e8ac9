"""The bridge's queues as a test reads them (emptied, declared, drained); the broker's address."""

from __future__ import annotations

import asyncio

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from yarl import URL

from bridge.amqp import topology

RECEIVE_TIMEOUT = 10.0


async def purged(amqp: AbstractRobustConnection, spec: topology.QueueSpec) -> AbstractQueue:
    """One of the bridge's own queues, emptied, for a test to read what lands there."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(spec.name, durable=True, arguments=dict(spec.arguments))
    await queue.purge()
    return queue


async def fresh_target_queues(channel: AbstractChannel, spec: topology.TargetTopology) -> None:
    """Declare a target's queues (bound before anything is published) and empty them."""
    await topology.declare_target(channel, spec)
    for queue in spec.queues:
        await (await channel.get_queue(queue.name)).purge()


async def delete_target_queues(channel: AbstractChannel, spec: topology.TargetTopology) -> None:
    """Remove a target's queues, so `orders` is unbound for the next test."""
    for queue in spec.queues:
        await channel.queue_delete(queue.name)


async def receive(queue: AbstractQueue, within: float = RECEIVE_TIMEOUT) -> AbstractIncomingMessage:
    """The next message on `queue`, acked; fails the test after `within` seconds."""
    async with asyncio.timeout(within), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            return message
    msg = "queue iterator ended"
    raise AssertionError(msg)


async def listening(amqp: AbstractRobustConnection, routing_key: str) -> AbstractQueue:
    """A queue of this test's own, bound to the `orders` exchange by `routing_key`."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("orders", routing_key)
    return queue


async def assert_empty(queue: AbstractQueue) -> None:
    """Nothing is waiting on `queue` (basic.get answers empty)."""
    leftover = await queue.get(fail=False)
    assert leftover is None, f"unexpected message on {queue.name}: {leftover.body[:200]!r}"


def broker_address(amqp_url: str) -> tuple[str, int]:
    """Host and port of the broker URL."""
    url = URL(amqp_url)
    return url.host or "127.0.0.1", url.port or 5672


def via(amqp_url: str, port: int) -> str:
    """`amqp_url` rewritten to go through 127.0.0.1:`port`."""
    return str(URL(amqp_url).with_host("127.0.0.1").with_port(port))
