"""`cancel-bridge demo`: one cancellation end to end, on this machine, in a few seconds.

Starts a fake CJ and the bridge (receiver + CJ worker) against the broker in `AMQP_URL`, sends a
signed Shoplazza `orders/cancelled` webhook as Shoplazza would, and shows the `cancelOrders`
request arriving at the fake CJ. It refuses to run on a broker that already has the bridge's CJ
queue (a real deployment), and deletes the queues it created when done.

`scratch_bridge` and `send_webhook` are that scratch bridge and its webhook, shared with the
README's console screenshots (`docs/screenshots.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiohttp
import orjson
from aio_pika.exceptions import ChannelNotFoundEntity

from bridge.amqp import topology
from bridge.demo.fake_cj import TOKEN, FakeCJ
from bridge.runtime import StartupError, start_receiver
from bridge.settings import DEFAULT_AMQP_URL, Config, parse_settings, redact_url, resolve
from bridge.store.deliveries import Store
from bridge.targets import plan
from bridge.web.webhooks import PUBLISHER
from bridge.worker.consumer import Worker
from handlers.base import format_duration
from handlers.shoplazza import sign

WAIT_SECONDS = 30.0
Say = Callable[[str], None]


API_TOKEN_ENV = "CONSOLE_TOKEN"  # noqa: S105 - the name of a variable, not a secret


def _silent(_: str) -> None:
    pass


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def demo_config(  # noqa: PLR0913 - where things are, and the two optional differences
    url: str,
    cj_url: str,
    port: int,
    secret: str,
    store: str,
    *,
    retry_delays: tuple[float, ...] = (1, 5),
    api_token: str | None = None,
) -> Config:
    """The configuration the demo runs: Shoplazza in, CJ out, short retries.

    With `api_token`, `/api` and the console are on (the screenshots script uses it).
    """
    receiver: dict[str, object] = {"port": port}
    env = {"AMQP_URL": url, "SHOPLAZZA_CLIENT_SECRET": secret, "CJ_ACCESS_TOKEN": TOKEN}
    if api_token is not None:
        receiver["api_token_env"] = API_TOKEN_ENV
        env[API_TOKEN_ENV] = api_token
    settings = parse_settings(
        {
            "receiver": receiver,
            "sources": {"shoplazza": {"secret_env": "SHOPLAZZA_CLIENT_SECRET"}},
            "targets": {
                "cj": {
                    "url": cj_url,
                    "enterprise_id": "1234567",
                    "action_tracker_id": 987654,
                    "open_ended_locking": True,
                    "order_id_from": "order_id",
                }
            },
            "routes": {"shoplazza": ["cj"]},
            "worker": {"retry_delays": [format_duration(delay) for delay in retry_delays]},
            "store": {"path": store},
        }
    )
    return resolve(settings, env)


async def refuse_live_broker(url: str) -> None:
    """A `StartupError` unless the broker is free of the bridge's CJ queue (never a deployment's).

    The demo and the console screenshots (`docs/screenshots.py`) make and delete that queue.
    """
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(topology.work_queue("cj"), passive=True)
        except ChannelNotFoundEntity:
            return
    msg = (
        f"{topology.work_queue('cj')} already exists on this broker: run the demo against a"
        " development broker or vhost (AMQP_URL)"
    )
    raise StartupError(msg)


@dataclass(frozen=True, slots=True)
class Scratch:
    """A running scratch bridge: the fake CJ, the receiver's port, the webhook secret, the parts."""

    cj: FakeCJ
    port: int
    secret: str
    store: Store
    worker: Worker


@contextlib.asynccontextmanager
async def scratch_bridge(
    url: str,
    *,
    say: Say = _silent,
    retry_delays: tuple[float, ...] = (1, 5),
    api_token: str | None = None,
    wait: float = WAIT_SECONDS,
) -> AsyncIterator[Scratch]:
    """A fake CJ, the receiver and the CJ worker on `url`, with a scratch SQLite store.

    Ready (the receiver's publisher connected, within `wait` seconds) when it yields; on the way
    out it stops the fake CJ, deletes the scratch store and the queues the worker declared.
    Call `refuse_live_broker` first.
    """
    cj = FakeCJ()
    await cj.start()
    secret = secrets.token_urlsafe(24)
    port = free_port()
    scratch = tempfile.TemporaryDirectory(prefix="cancel-bridge-demo-")
    config = demo_config(
        url,
        cj.url,
        port,
        secret,
        str(Path(scratch.name) / "demo.db"),
        retry_delays=retry_delays,
        api_token=api_token,
    )
    worker_plan = plan(config, "cj")
    say(f"broker:   {redact_url(url)}")
    say(f"fake CJ:  {cj.url}")
    say(f"bridge:   http://127.0.0.1:{port} (receiver + CJ worker)")
    try:
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(Store.open(config.store_url.get_secret_value()))
            app = await start_receiver(config, stack, store)
            worker = await stack.enter_async_context(
                Worker.running(worker_plan, url, config.settings.broker, store)
            )
            async with asyncio.timeout(wait):
                await app[PUBLISHER].wait_ready()
            yield Scratch(cj, port, secret, store, worker)
    finally:
        await cj.stop()
        scratch.cleanup()
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            for queue in worker_plan.topology.queues:
                await channel.queue_delete(queue.name)


async def send_webhook(bridge: Scratch, shop: str, order: Mapping[str, object]) -> tuple[int, str]:
    """`order` as a signed Shoplazza `orders/cancelled` webhook: the answer's status and text."""
    body = orjson.dumps(order)
    headers = {
        "Content-Type": "application/json",
        "X-Shoplazza-Hmac-Sha256": sign(body, bridge.secret),
        "X-Shoplazza-Topic": "orders/cancelled",
        "X-Shoplazza-Shop-Domain": shop,
        "X-Shoplazza-Deduplication-ID": str(uuid.uuid4()),
    }
    timeout = aiohttp.ClientTimeout(total=WAIT_SECONDS)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(
            f"http://127.0.0.1:{bridge.port}/webhooks/shoplazza", data=body, headers=headers
        ) as response,
    ):
        return response.status, (await response.read()).decode()


async def run_demo(say: Say) -> None:
    """Run the demo, narrating through `say`."""
    url = os.environ.get("AMQP_URL", "").strip() or DEFAULT_AMQP_URL
    await refuse_live_broker(url)
    async with scratch_bridge(url, say=say) as bridge:
        await _send_and_watch(say, bridge)


async def _send_and_watch(say: Say, bridge: Scratch) -> None:
    order_id = f"demo-{uuid.uuid4().hex[:8]}"
    order = {
        "id": order_id,
        "number": "1001",
        "status": "cancelled",
        "cancel_reason": "Customer changed their mind",
        "cancelled_at": "2024-05-01T10:00:00+08:00",
    }
    say(f"\n1. Shoplazza -> POST /webhooks/shoplazza: order {order_id} cancelled (signed)")
    status, answer = await send_webhook(bridge, "demo.myshoplaza.com", order)
    say(f"   bridge answered {status} {answer}")
    if status != 200:  # noqa: PLR2004 - HTTP OK
        raise StartupError(f"the bridge did not accept the webhook: {answer}")
    cj, worker = bridge.cj, bridge.worker
    async with asyncio.timeout(WAIT_SECONDS):
        await worker.wait_outcomes("delivered", 1)
    call = cj.calls_for(order_id)[0]
    say("\n2. CJ <- cancelOrders, variables:")
    say(
        "   " + orjson.dumps(call.order, option=orjson.OPT_INDENT_2).decode().replace("\n", "\n   ")
    )
    say(f"\nDone: order {order_id} cancelled on Shoplazza, its commission declined at CJ.")
