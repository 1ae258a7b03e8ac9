"""The bare minimum (`bench/minimum.py`) with FastStream's RabbitBroker publishing (issue 16).

The same aiohttp handler as the minimum: the same path, the same Shoplazza HMAC check, the same
pydantic parse, the same small event (shop, order id, status) as the body, to the same exchange
(`orders`) with the same routing key, persistent, `message_id` the order id, mandatory, waiting
for the publisher confirm, and the same answers (200, 401 bad_signature, 400 bad_body). Only the
publish side is FastStream's: `RabbitBroker.publish` on the broker's default channel (publisher
confirms on, returns not raised: as the minimum's aio-pika channel).

What differs from the minimum, because FastStream does it on every publish:
- the connection is aio-pika's robust one (`connect_robust`), the minimum's a plain `connect`;
- each message also carries a `correlation_id` (a new uuid4) and a `timestamp` (now): FastStream
  sets both when not given (its `app_id` is turned off here, the minimum sends none);
- the message goes through FastStream's publish command and codec (bytes are sent as they are,
  no content type) and its middleware chain (empty here) before aio-pika's `Exchange.publish`;
- the topology (`bridge.amqp.topology`: exchanges, quorum queues, binding) is declared through
  FastStream's `RabbitExchange` / `RabbitQueue` instead of `topology.declare`.

    AMQP_URL=... SHOPLAZZA_CLIENT_SECRET=s python -m bench.faststream_peer --port 8091
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue

from bench.minimum import serve, verified_event
from bridge.amqp import topology

BROKER = web.AppKey("broker", RabbitBroker)
ROUTING_KEY = "order.cancelled.shoplazza"


def exchange(spec: topology.ExchangeSpec) -> RabbitExchange:
    """One of the bridge's exchanges as FastStream's object (durable, its alternate)."""
    arguments = {"alternate-exchange": spec.alternate} if spec.alternate else None
    return RabbitExchange(
        spec.name, type=ExchangeType(spec.type.value), durable=True, arguments=arguments
    )


EXCHANGES = {spec.name: exchange(spec) for spec in topology.EXCHANGES}
# The object publish() is given: equal to the declared one, so FastStream's declarer finds the
# exchange it declared at startup and sends no declaration per publish.
ORDERS = EXCHANGES[topology.ORDERS.name]


async def webhook(request: web.Request) -> web.Response:
    """Verify, parse (as the minimum does), publish (confirmed, through FastStream), answer."""
    verified = await verified_event(request)
    if isinstance(verified, web.Response):
        return verified
    order_id, event = verified
    await request.app[BROKER].publish(
        event,
        exchange=ORDERS,
        routing_key=ROUTING_KEY,
        mandatory=True,
        persist=True,
        message_id=order_id,
    )
    return web.json_response({"status": "accepted"})


async def declare(broker: RabbitBroker) -> None:
    """The bridge's topology (`bridge.amqp.topology`) through FastStream; idempotent."""
    declared = {name: await broker.declare_exchange(spec) for name, spec in EXCHANGES.items()}
    queues = {}
    for spec in topology.QUEUES:
        # Every queue of the bridge is a durable quorum queue (QueueSpec's arguments).
        queue = RabbitQueue(spec.name, queue_type=QueueType.QUORUM, durable=True)
        queues[spec.name] = await broker.declare_queue(queue)
    for binding in topology.BINDINGS:
        await queues[binding.queue].bind(declared[binding.exchange], binding.routing_key)


async def broker(app: web.Application) -> AsyncIterator[None]:
    """One FastStream broker: one connection, its default (confirming) channel."""
    rabbit = RabbitBroker(
        os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), app_id=None, logger=None
    )
    async with rabbit:  # connects; publishing needs no subscriber, so no start()
        await declare(rabbit)
        app[BROKER] = rabbit
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted."""
    return serve(
        argv,
        prog="python -m bench.faststream_peer",
        description=__doc__,
        port=8091,
        lifecycle=broker,
        handler=webhook,
    )


if __name__ == "__main__":
    raise SystemExit(main())
