"""Webhook in, CJ declined: the real receiver and worker on a real RabbitMQ, with a fake CJ."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.amqp import parked, topology
from bridge.amqp.messages import ATTEMPTS_HEADER, PARK_REASON_HEADER
from bridge.cli.main import main
from bridge.demo.fake_cj import TOKEN, FakeCJ, Reply, accepted, error_in_200
from bridge.store.lifecycle import StepKind
from bridge.store.status import order_status
from bridge.targets import plan
from bridge.web.app import create_app
from contracts.events import OrderCancelled
from handlers.base import Headers, HttpCall, Outcome, Rejected
from tests.harness.broker import delete_target_queues, receive
from tests.harness.pipeline import (
    DELAYS,
    SETTLE_TIMEOUT,
    Client,
    Pipeline,
    pipeline_config,
    worker_for,
)
from tests.harness.receiver import ClientFactory, shoplazza_webhook, wait_ready


async def test_webhook_leads_to_exactly_one_cancel_orders_call(pipeline: Pipeline) -> None:
    order_id = await pipeline.post(cancel_reason="fraud suspected")
    await pipeline.settled("delivered")
    calls = pipeline.cj.calls_for(order_id)
    assert len(calls) == 1
    assert calls[0].authorization == f"Bearer {TOKEN}"
    assert calls[0].order == {
        "enterpriseId": "1234567",
        "actionTrackerId": 987654,
        "orderId": order_id,
        "updateTime": "2024-05-01T02:00:00Z",
        "correctionReason": "InvalidCreditCard",
        "status": "Declined",
    }
    assert len(pipeline.cj.calls) == 1


async def test_two_500s_then_success_is_delivered_on_the_third_attempt(pipeline: Pipeline) -> None:
    """Retries go through the delay queues, each at least its configured delay later."""
    order = "five-hundred-twice"
    pipeline.cj.script[order] = [Reply(status=500, body=b"oops"), Reply(status=503, body=b"busy")]
    await pipeline.post(id=order)
    await pipeline.settled("delivered")
    calls = pipeline.cj.calls_for(order)
    assert len(calls) == 3
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert gaps[0] >= DELAYS[0]
    assert gaps[1] >= DELAYS[1]
    assert pipeline.worker.outcomes["retried"] == 2
    assert await pipeline.parked.get(fail=False) is None


async def test_retry_after_is_honoured(pipeline: Pipeline) -> None:
    order = "throttled"
    pipeline.cj.script[order] = [Reply(status=429, headers={"Retry-After": "1"}, body=b"")]
    await pipeline.post(id=order)
    await pipeline.settled("delivered")
    calls = pipeline.cj.calls_for(order)
    assert len(calls) == 2
    assert calls[1].at - calls[0].at >= 1.0  # not the 0.2 s of the schedule


async def test_rejected_answer_is_parked_with_its_reason(pipeline: Pipeline) -> None:
    order = "unknown-order"
    pipeline.cj.script[order] = [error_in_200("Order not found")]
    await pipeline.post(id=order)
    await pipeline.settled("parked")
    parked = await receive(pipeline.parked)
    assert parked.headers[PARK_REASON_HEADER] == "cj: Order not found"
    assert parked.headers[ATTEMPTS_HEADER] == 1
    assert orjson.loads(parked.body)["order_id"] == order
    assert len(pipeline.cj.calls_for(order)) == 1


@dataclass
class ExplodingTarget:
    """A target adapter with a bug: building the call raises (counts how often it was tried)."""

    tries: int = 0

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """Raise, as a handler bug would."""
        del event, now, order_id
        self.tries += 1
        msg = "adapter bug"
        raise RuntimeError(msg)

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome:
        """Never reached."""
        raise AssertionError((call, status, headers, body, now))


async def test_a_handler_that_raises_is_parked_not_looping(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> None:
    """The quorum delivery limit dead-letters the poison message to the parked queue."""
    config = pipeline_config(amqp_url, cj.url)
    exploding = ExplodingTarget()
    worker_plan = dataclasses.replace(plan(config, "cj"), adapter=exploding)
    channel = await amqp.channel()
    await topology.declare_target(channel, worker_plan.topology)
    parked = await channel.get_queue(worker_plan.topology.parked.name)
    await parked.purge()
    client: Client = await aiohttp_client(create_app(config))
    await wait_ready(client)
    try:
        async with worker_for(config, worker_plan, amqp_url):
            hook = shoplazza_webhook()
            response = await client.post(
                "/webhooks/shoplazza", data=hook.body, headers=hook.headers
            )
            assert response.status == 200
            dead = await receive(parked, within=SETTLE_TIMEOUT)
    finally:
        await delete_target_queues(channel, worker_plan.topology)
    delivery_id = hook.headers["X-Shoplazza-Deduplication-ID"]
    assert orjson.loads(dead.body)["delivery_id"] == delivery_id
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    poison_attempts = config.settings.worker.poison_attempts
    assert poison_attempts <= exploding.tries <= poison_attempts + 1, exploding.tries
    assert cj.calls == []


async def test_parked_then_replayed_after_the_fix_is_delivered(
    pipeline: Pipeline, amqp_url: str
) -> None:
    """Rejected -> parked with its reason; the fake is fixed; replay by event id delivers it."""
    order = "fixed-later"
    pipeline.cj.script[order] = [error_in_200("Invalid actionTrackerId")]
    await pipeline.post(id=order)
    await pipeline.settled("parked")
    parked_name = topology.parked_queue("cj")
    rows = await parked.list_rows(amqp_url, parked_name, time.time())
    assert [(row.order.split("/")[-1], row.reason, row.attempts) for row in rows] == [
        (order, "cj: Invalid actionTrackerId", 1)
    ]
    assert "cj: Invalid actionTrackerId" in parked.table(rows)
    listed_again = await parked.list_rows(amqp_url, parked_name, time.time())
    assert [row.event_id for row in listed_again] == [rows[0].event_id]  # listing moved nothing

    # the fake is "fixed": its script for the order is used up, so it accepts now
    moved = await parked.replay(
        amqp_url,
        parked_name,
        topology.work_queue("cj"),
        lambda message: message.message_id == rows[0].event_id,
    )
    assert moved == 1
    await pipeline.settled("delivered")
    assert len(pipeline.cj.calls_for(order)) == 2
    assert await parked.list_rows(amqp_url, parked_name, time.time()) == []


async def test_drop_removes_only_the_chosen(pipeline: Pipeline, amqp_url: str) -> None:
    for order in ("drop-me", "keep-me"):
        pipeline.cj.script[order] = [error_in_200("Order not found")]
        await pipeline.post(id=order)
    await pipeline.settled("parked", 2)
    parked_name = topology.parked_queue("cj")
    rows = await parked.list_rows(amqp_url, parked_name, time.time())
    doomed = {row.event_id for row in rows if row.order.endswith("/drop-me")}
    assert await parked.drop(amqp_url, parked_name, lambda m: m.message_id in doomed) == 1
    left = await parked.list_rows(amqp_url, parked_name, time.time())
    assert [row.order.split("/")[-1] for row in left] == ["keep-me"]


async def test_receiver_declares_routed_queues_before_accepting(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> None:
    """With no worker started yet, an accepted event waits in the target queue, not unrouted."""
    config = pipeline_config(amqp_url, cj.url)
    spec = plan(config, "cj").topology
    channel = await amqp.channel()
    await delete_target_queues(channel, spec)
    client: Client = await aiohttp_client(create_app(config))
    await wait_ready(client)
    try:
        hook = shoplazza_webhook()
        response = await client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
        assert response.status == 200
        event_id = orjson.loads(await response.read())["event_id"]
        work = await channel.get_queue(spec.work.name)
        assert (await receive(work)).message_id == event_id
    finally:
        await delete_target_queues(channel, spec)


async def test_answer_slower_than_the_timeout_is_retried(pipeline: Pipeline) -> None:
    """A call past timeout_s may have landed: it is retried, and the retry settles it."""
    order = "slow-answer"
    pipeline.cj.script[order] = [Reply(delay=5.0)]  # timeout_s is 1.0 in this pipeline
    await pipeline.post(id=order)
    await pipeline.settled("delivered")
    assert len(pipeline.cj.calls_for(order)) == 2
    assert pipeline.worker.outcomes["retried"] == 1


async def test_refused_credentials_are_parked(pipeline: Pipeline) -> None:
    order = "bad-token"
    pipeline.cj.script[order] = [Reply(status=401, body={"message": "Unauthorized"})]
    await pipeline.post(id=order)
    await pipeline.settled("parked")
    parked_message = await receive(pipeline.parked)
    assert parked_message.headers[PARK_REASON_HEADER] == "cj credentials refused (HTTP 401)"


async def test_worker_survives_a_refused_declaration(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> None:
    """Queues left with other arguments: the worker says so and retries, and consumes once fixed."""
    config = pipeline_config(amqp_url, cj.url)
    worker_plan = plan(config, "cj")
    channel = await amqp.channel()
    await delete_target_queues(channel, worker_plan.topology)
    await channel.declare_queue(
        worker_plan.topology.work.name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    try:
        async with worker_for(config, worker_plan, amqp_url) as worker:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                await worker.wait_outcomes("declare_failed", 1)
            await channel.queue_delete(worker_plan.topology.work.name)  # the operator's fix
            client: Client = await aiohttp_client(create_app(config))
            await wait_ready(client)
            hook = shoplazza_webhook()
            response = await client.post(
                "/webhooks/shoplazza", data=hook.body, headers=hook.headers
            )
            assert response.status == 200
            async with asyncio.timeout(SETTLE_TIMEOUT):
                await worker.wait_outcomes("delivered", 1)
    finally:
        await delete_target_queues(channel, worker_plan.topology)
    assert len(cj.calls) == 1


async def test_shutdown_lets_the_message_in_hand_settle(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> None:
    """Stopping while CJ is answering: the call completes and is acked, nothing is requeued."""
    config = pipeline_config(amqp_url, cj.url)
    worker_plan = plan(config, "cj")
    channel = await amqp.channel()
    client: Client = await aiohttp_client(create_app(config))
    await wait_ready(client)
    order = "in-hand-at-shutdown"
    cj.script[order] = [dataclasses.replace(accepted(order), delay=0.5)]
    try:
        async with worker_for(config, worker_plan, amqp_url) as worker:
            hook = shoplazza_webhook({"id": order})
            response = await client.post(
                "/webhooks/shoplazza", data=hook.body, headers=hook.headers
            )
            assert response.status == 200
            async with asyncio.timeout(SETTLE_TIMEOUT):
                await cj.wait_calls(1)  # the call is in flight; now stop the worker
        assert worker.outcomes["delivered"] == 1
        work = await channel.declare_queue(worker_plan.topology.work.name, passive=True)
        assert work.declaration_result.message_count == 0
    finally:
        await delete_target_queues(channel, worker_plan.topology)


async def test_parked_commands_write_what_they_did_into_the_history(
    pipeline: Pipeline, amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parked replay` / `parked drop` from the command line leave a step in the pair's history."""
    replayed, dropped = f"cli-replay-{uuid.uuid4().hex[:6]}", f"cli-drop-{uuid.uuid4().hex[:6]}"
    for order in (replayed, dropped):
        pipeline.cj.script[order] = [error_in_200("Order not found")]
        await pipeline.post(id=order)
    await pipeline.settled("parked", 2)
    store_url = pipeline.config.store_url.get_secret_value()
    store = 'url_env = "CB_CLI_STORE"' if "://" in store_url else f'path = "{store_url}"'
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[broker]\nurl_env = "CB_CLI_AMQP"\n[store]\n{store}\n'
        '[sources.shoplazza]\nsecret_env = "CB_CLI_SECRET"\n'
    )
    for name, value in {
        "CB_CLI_AMQP": amqp_url,
        "CB_CLI_STORE": store_url,
        "CB_CLI_SECRET": "s",
    }.items():
        monkeypatch.setenv(name, value)
    ids = {}
    for order in (replayed, dropped):
        found = await order_status(pipeline.store, order, "shoplazza")
        ids[order] = found[0]["event_id"]
    command = ["--target", "cj", "--config", str(config), "--event-id"]
    assert await asyncio.to_thread(main, ["parked", "replay", *command, ids[replayed]]) == 0
    await pipeline.settled("delivered")
    assert await asyncio.to_thread(main, ["parked", "drop", *command, ids[dropped]]) == 0

    def steps(order: str) -> list[str]:
        return [step["detail"] or "" for step in history[order]]

    history = {}
    for order in (replayed, dropped):
        found = await order_status(pipeline.store, order, "shoplazza")
        history[order] = found[0]["deliveries"][0]["history"]
    assert any(
        s.startswith(f"{StepKind.REPLAYED.marker}: with cancel-bridge parked replay")
        for s in steps(replayed)
    )
    assert history[replayed][-1]["state"] == "delivered"
    assert steps(dropped)[-1].startswith(
        f"{StepKind.DROPPED.marker}: with cancel-bridge parked drop"
    )
