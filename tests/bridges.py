"""The whole bridge in one test process: receiver, one worker per target, one store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from bridge.settings import Config
from bridge.store.deliveries import Store
from bridge.targets import plan
from bridge.web.app import create_app
from bridge.worker.consumer import Worker
from tests.conftest import ClientFactory, delete_target_queues, fresh_target_queues, wait_ready
from tests.pipeline import Client


@contextlib.asynccontextmanager
async def running_bridge(
    aiohttp_client: ClientFactory,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    config: Config,
    targets: Sequence[str],
) -> AsyncIterator[tuple[Client, dict[str, Worker]]]:
    """The receiver's test client and the workers, as `cancel-bridge run` wires them."""
    plans = {target: plan(config, target) for target in targets}
    channel = await amqp.channel()
    for worker_plan in plans.values():
        await fresh_target_queues(channel, worker_plan.topology)
    try:
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(Store.open(config.store_url.get_secret_value()))
            client: Client = await aiohttp_client(create_app(config, store))
            await wait_ready(client)
            workers = {
                target: await stack.enter_async_context(
                    Worker.running(worker_plan, amqp_url, config.settings.broker, store)
                )
                for target, worker_plan in plans.items()
            }
            yield client, workers
    finally:
        for worker_plan in plans.values():
            await delete_target_queues(channel, worker_plan.topology)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve a fake platform on an ephemeral loopback port; its runner and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"
