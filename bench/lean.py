"""The minimum plus what the bridge adds per webhook, without a store: a lean reference (issue 16).

What the issue's throwaway did, kept so that any run can measure it: the minimum's HMAC check and
pydantic parse (`bench/minimum.verified_event`'s checks), then the bridge's canonical event (its
JSON with the UUIDv5 id, received and cancelled times, the delivery id), the CloudEvents headers
and the redelivery-free properties the bridge sends (`bridge.amqp.messages.event_properties`,
encoded by `FastProperties`), one JSON log line (`bridge.logs`), one Prometheus counter, and a
confirmed, mandatory publish through aiormq on uvloop. It records nothing, completes no thin
webhook, checks no echo, limits nothing and quarantines nothing: the distance between it and the
bridge (`bench.compare --lean`) is what the ledger and the layers around the publish cost.

    AMQP_URL=... SHOPLAZZA_CLIENT_SECRET=s python -m bench.lean --port 8092
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import aio_pika
import aiormq
import orjson
import structlog
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from bench.minimum import SECRET, healthz
from bridge import logs
from bridge.amqp import topology
from bridge.amqp.messages import event_properties
from contracts.events import CancelReason, OrderCancelled, Source
from contracts.shoplazza import ShoplazzaOrder
from handlers.shoplazza import DEDUP_HEADER, SHOP_HEADER, SIGNATURE_HEADER

CHANNEL = web.AppKey("channel", aiormq.abc.AbstractChannel)
ROUTING_KEY = topology.routing_key(Source.SHOPLAZZA)
log = structlog.get_logger("bench.lean")
WEBHOOKS = Counter(
    "webhooks", "Webhooks answered.", ["source", "status"], registry=CollectorRegistry()
)


async def webhook(request: web.Request) -> web.Response:
    """Verify, parse, build the canonical event, publish it confirmed, log, count, answer."""
    body = await request.read()
    sent = request.headers.get(SIGNATURE_HEADER, "").encode()
    mac = base64.b64encode(hmac.digest(request.app[SECRET], body, hashlib.sha256))
    if not hmac.compare_digest(mac, sent):
        return web.json_response({"error": "bad_signature"}, status=401)
    order = ShoplazzaOrder.model_validate_json(body)
    now = datetime.now(UTC)
    event = OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop=request.headers.get(SHOP_HEADER, ""),
        order_id=order.id,
        order_number=order.number,
        reason=CancelReason.OTHER,
        source_reason=order.cancel_reason,
        cancelled_at=now,
        received_at=now,
        delivery_id=request.headers.get(DEDUP_HEADER),
    )
    properties = event_properties(event, app_id="cancel-bridge-bench")
    await request.app[CHANNEL].basic_publish(
        event.to_json(),
        exchange=topology.ORDERS.name,
        routing_key=ROUTING_KEY,
        properties=properties,
        mandatory=True,
    )
    event_id = str(event.event_id)
    log.info("webhook.accepted", event_id=event_id, shop=event.shop, order_id=event.order_id)
    WEBHOOKS.labels("shoplazza", "200").inc()
    return web.Response(
        body=orjson.dumps({"status": "accepted", "event_id": event_id}),
        content_type="application/json",
    )


async def broker(app: web.Application) -> AsyncIterator[None]:
    """The topology declared, then one aiormq connection with one confirming channel."""
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    async with await aio_pika.connect(url) as declaring:
        await topology.declare(await declaring.channel())
    connection = await aiormq.connect(url)
    try:
        app[CHANNEL] = await connection.channel(publisher_confirms=True)
        yield
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve on uvloop until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m bench.lean", description=__doc__)
    parser.add_argument("--port", type=int, default=8092)
    args = parser.parse_args(argv)
    logs.configure("info")
    app = web.Application()
    app[SECRET] = os.environ["SHOPLAZZA_CLIENT_SECRET"].encode()
    app.cleanup_ctx.append(broker)
    app.router.add_post("/webhooks/shoplazza", webhook)
    app.router.add_get("/readyz", healthz)
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
