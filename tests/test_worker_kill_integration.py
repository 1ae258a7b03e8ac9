"""A worker process killed with SIGKILL while CJ is answering loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

from aio_pika.abc import AbstractRobustConnection

from bridge import topology
from bridge.fake_cj import TOKEN, FakeCJ, Reply
from bridge.messages import event_message
from bridge.retry import DEFAULT_DELAYS
from contracts.events import CancelReason, OrderCancelled, Source
from tests.conftest import delete_target_queues
from tests.processes import Bridge, spawn

CALL_TIMEOUT = 30.0


async def start_worker(config: Path, amqp_url: str) -> Bridge:
    env = {**os.environ, "AMQP_URL": amqp_url, "CJ_ACCESS_TOKEN": TOKEN}
    worker = await spawn(["worker", "--target", "cj", "--config", str(config)], env)
    await worker.wait_for("worker.consuming")
    return worker


async def test_sigkill_mid_call_redelivers(
    tmp_path: Path, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> None:
    """Killed while CJ holds the call open: the next worker gets the message and delivers it."""
    config = tmp_path / "worker.toml"
    config.write_text(
        "[broker]\nreconnect_interval = 0.2\n"
        f'[targets.cj]\nurl = "{cj.url}"\nenterprise_id = "1234567"\n'
        "action_tracker_id = 987654\ntimeout_s = 60\n"
        '[routes]\nshoplazza = ["cj"]\n'
    )
    event = OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="kill.myshoplaza.com",
        order_id="sigkill-1",
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=datetime(2024, 5, 1, tzinfo=UTC),
        received_at=datetime.now(UTC),
        delivery_id=None,
    )
    cj.script["sigkill-1"] = [Reply(delay=CALL_TIMEOUT * 2)]  # hangs until the worker dies
    first = await start_worker(config, amqp_url)
    channel = await amqp.channel(publisher_confirms=True)
    try:
        orders = await channel.get_exchange(topology.ORDERS.name)
        await orders.publish(
            event_message(event, app_id="test"), topology.routing_key(Source.SHOPLAZZA)
        )
        async with asyncio.timeout(CALL_TIMEOUT):
            await cj.wait_calls(1)
        first.process.send_signal(signal.SIGKILL)
        assert await first.process.wait() == -signal.SIGKILL

        second = await start_worker(config, amqp_url)
        async with asyncio.timeout(CALL_TIMEOUT):
            await cj.wait_calls(2)  # redelivered: nothing was lost
            await second.wait_for("cancel.delivered")
        status, _ = await second.stop()
        assert status == 0
        assert [call.order["orderId"] for call in cj.calls] == ["sigkill-1", "sigkill-1"]
        work = await channel.declare_queue("cancel-bridge.cj", passive=True)
        assert work.declaration_result.message_count == 0
    finally:
        spec = topology.target_topology("cj", (Source.SHOPLAZZA,), DEFAULT_DELAYS, 5)
        await delete_target_queues(channel, spec)
