"""The whole bridge in one test process, as `cancel-bridge run` wires it.

`running_bridge` is the one way to do it: one store, the receiver (a ready test client), one
worker per target, one metrics registry, the targets' queues fresh before and deleted after.
The `pipeline` fixture is that bridge with the CJ target (`pipeline_config`) and the fake CJ;
registered as a pytest plugin by `conftest.py`, it runs on both store engines (a SQLite file,
and PostgreSQL when DATABASE_URL is set). `worker_for` adds a worker with its own store
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from aiohttp.test_utils import TestClient

from bridge.demo.fake_cj import TOKEN, FakeCJ
from bridge.metrics import Metrics
from bridge.settings import Config, parse_settings, resolve
from bridge.store.deliveries import Store
from bridge.targets import plan
from bridge.web.app import create_app
from bridge.worker.consumer import Worker
from bridge.worker.plan import WorkerPlan
from tests.harness.broker import delete_target_queues, fresh_target_queues
from tests.harness.receiver import SECRET, ClientFactory, shoplazza_webhook, wait_ready
from tests.harness.stores import scratch_store, store_section

SHOP = "pipeline.myshoplaza.com"
OCC_SECRET = "b2NjLXBpcGVsaW5lLXNlY3JldC0wMDE="  # base64, as OCC shows webhook secrets
API_TOKEN = "test-api-token-0123456789"


DELAYS = (0.2, 0.4)
SETTLE_TIMEOUT = 20.0

Client = TestClient[Any, Any]


def pipeline_config(amqp_url: str, cj_url: str, database_url: str | None = None) -> Config:
    """Sources Shoplazza and OCC routed to the CJ target at `cj_url`; fast retries."""
    store, store_env = store_section(database_url or scratch_store())
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "sources": {
                "shoplazza": {"secret_env": "SHOPLAZZA_CLIENT_SECRET"},
                "occ": {"secret_env": "OCC_WEBHOOK_SECRET"},
            },
            "targets": {
                "cj": {
                    "url": cj_url,
                    "enterprise_id": "1234567",
                    "action_tracker_id": 987654,
                    "open_ended_locking": True,
                    "order_id_from": "order_id",
                    "timeout": "1s",
                }
            },
            "routes": {"shoplazza": ["cj"], "occ": ["cj"]},
            "worker": {"retry_delays": list(DELAYS), "retry_total": 60, "poison_attempts": 3},
            "receiver": {"api_token_env": "CB_TEST_API_TOKEN"},
            "store": store,
        }
    )
    env = {
        "AMQP_URL": amqp_url,
        "SHOPLAZZA_CLIENT_SECRET": SECRET,
        "CJ_ACCESS_TOKEN": TOKEN,
        "CB_TEST_API_TOKEN": API_TOKEN,
        "OCC_WEBHOOK_SECRET": OCC_SECRET,
        **store_env,
    }
    return resolve(settings, env)


@dataclass
class RunningBridge:
    """What `running_bridge` started: the receiver's client, the workers by target, the store."""

    client: Client
    workers: dict[str, Worker]
    store: Store
    metrics: Metrics


@contextlib.asynccontextmanager
async def running_bridge(
    aiohttp_client: ClientFactory,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    config: Config,
    targets: Sequence[str],
) -> AsyncIterator[RunningBridge]:
    """The receiver's test client and the workers, as `cancel-bridge run` wires them."""
    plans = {target: plan(config, target) for target in targets}
    channel = await amqp.channel()
    for worker_plan in plans.values():
        await fresh_target_queues(channel, worker_plan.topology)
    metrics = Metrics()  # one registry for the receiver and the workers, as in `run`
    try:
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(Store.open(config.store_url.get_secret_value()))
            client: Client = await aiohttp_client(create_app(config, store, metrics))
            await wait_ready(client)
            workers = {
                target: await stack.enter_async_context(
                    Worker.running(
                        worker_plan, amqp_url, config.settings.broker, store, metrics=metrics
                    )
                )
                for target, worker_plan in plans.items()
            }
            yield RunningBridge(client, workers, store, metrics)
    finally:
        for worker_plan in plans.values():
            await delete_target_queues(channel, worker_plan.topology)


@contextlib.asynccontextmanager
async def worker_for(
    config: Config, worker_plan: WorkerPlan, amqp_url: str
) -> AsyncIterator[Worker]:
    """A worker with its own connection to the configured store."""
    async with (
        Store.open(config.store_url.get_secret_value()) as store,
        Worker.running(worker_plan, amqp_url, config.settings.broker, store) as worker,
    ):
        yield worker


@dataclass
class Pipeline:
    """Receiver client, worker and fake CJ, wired as `cancel-bridge run` wires them."""

    client: Client
    worker: Worker
    cj: FakeCJ
    parked: AbstractQueue
    store: Store
    config: Config
    metrics: Metrics

    async def post(self, delivery_id: str | None = None, shop: str = SHOP, **order: object) -> str:
        """Post a signed cancellation (fields of `order` over the defaults); its order id."""
        hook = shoplazza_webhook(order or None, delivery_id=delivery_id, shop=shop)
        response = await self.client.post(
            "/webhooks/shoplazza", data=hook.body, headers=hook.headers
        )
        assert response.status == 200
        answer = orjson.loads(await response.read())
        assert answer["status"] == "accepted"
        return str(orjson.loads(hook.body)["id"])

    async def settled(self, kind: str, count: int = 1) -> None:
        """Await the worker settling `count` messages as `kind` (delivered, parked, ...)."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await self.worker.wait_outcomes(kind, count)


@pytest.fixture
async def pipeline(
    aiohttp_client: ClientFactory,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
    database_url: str,
) -> AsyncIterator[Pipeline]:
    """The bridge with the CJ target and the fake CJ, on each store engine."""
    config = pipeline_config(amqp_url, cj.url, database_url)
    parked_name = plan(config, "cj").topology.parked.name
    async with running_bridge(aiohttp_client, amqp_url, amqp, config, ["cj"]) as bridge:
        parked = await (await amqp.channel()).get_queue(parked_name)
        yield Pipeline(
            bridge.client, bridge.workers["cj"], cj, parked, bridge.store, config, bridge.metrics
        )
