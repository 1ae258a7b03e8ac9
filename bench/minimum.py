"""The bare minimum a receiver must do, to compare the bridge with (issue 7).

One aiohttp handler: check the Shoplazza HMAC, parse the body with pydantic, publish a small
event (shop, order id, status) with a publisher confirm on one channel, answer 200. No store, no
logging, no quarantine, no limits. `bench.webhooks` cleans its messages up like the bridge's.

    AMQP_URL=... SHOPLAZZA_CLIENT_SECRET=s python -m bench.minimum --port 8090
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aio_pika
import orjson
from aiohttp import web
from pydantic import ValidationError

from bridge.amqp import topology
from contracts.shoplazza import ShoplazzaOrder

CHANNEL = web.AppKey("channel", aio_pika.abc.AbstractChannel)
SECRET = web.AppKey("secret", bytes)


async def verified_event(request: web.Request) -> tuple[str, bytes] | web.Response:
    """Check the HMAC and parse the body: the order id and the event to publish, or the answer."""
    body = await request.read()
    secret = request.app[SECRET]
    sent = request.headers.get("X-Shoplazza-Hmac-Sha256", "").encode()
    if not hmac.compare_digest(base64.b64encode(hmac.digest(secret, body, hashlib.sha256)), sent):
        return web.json_response({"error": "bad_signature"}, status=401)
    try:
        order = ShoplazzaOrder.model_validate_json(body)
    except ValidationError:
        return web.json_response({"error": "bad_body"}, status=400)
    shop = request.headers.get("X-Shoplazza-Shop-Domain", "")
    return order.id, orjson.dumps({"shop": shop, "order_id": order.id, "status": order.status})


async def webhook(request: web.Request) -> web.Response:
    """Verify, parse, publish (confirmed), answer."""
    verified = await verified_event(request)
    if isinstance(verified, web.Response):
        return verified
    order_id, event = verified
    exchange = await request.app[CHANNEL].get_exchange(topology.ORDERS.name, ensure=False)
    await exchange.publish(
        aio_pika.Message(
            event, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=order_id
        ),
        routing_key="order.cancelled.shoplazza",
    )
    return web.json_response({"status": "accepted"})


async def healthz(_: web.Request) -> web.Response:
    """Readiness for the benchmark driver."""
    return web.json_response({"status": "ready"})


async def broker(app: web.Application) -> AsyncIterator[None]:
    """One connection, one confirming channel."""
    connection = await aio_pika.connect(
        os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel)
        app[CHANNEL] = channel
        yield


def serve(  # noqa: PLR0913 - what differs between the minimum and its peers
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    port: int,
    lifecycle: Callable[[web.Application], AsyncIterator[None]],
    handler: Callable[[web.Request], Awaitable[web.Response]],
) -> int:
    """Parse `--port`, serve `handler` on the webhook path with `lifecycle`, until interrupted."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=port)
    args = parser.parse_args(argv)
    app = web.Application()
    app[SECRET] = os.environ["SHOPLAZZA_CLIENT_SECRET"].encode()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/webhooks/shoplazza", handler)
    app.router.add_get("/readyz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted."""
    return serve(
        argv,
        prog="python -m bench.minimum",
        description=__doc__,
        port=8090,
        lifecycle=broker,
        handler=webhook,
    )


if __name__ == "__main__":
    raise SystemExit(main())
