"""Worker processes killed with SIGKILL around the target call: nothing lost, no second effect.

Both kill points, on both store engines:
- after CJ answered and the answer was recorded, before the ack reached the broker: the
  redelivered message is acked without a second call;
- while CJ held the call open (did it land? unknown): the next worker waits out the dead
  worker's lease, calls again, and CJ's "already" answer settles it as `already_done`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from bridge.amqp import topology
from bridge.amqp.messages import event_message
from bridge.demo.fake_cj import TOKEN, FakeCJ, Reply, error_in_200
from bridge.settings import DEFAULT_DELAYS
from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from bridge.store.tables import deliveries
from contracts.events import CancelReason, OrderCancelled, Source
from tests.harness.broker import broker_address, delete_target_queues, via
from tests.harness.processes import Bridge, spawn
from tests.harness.proxy import TcpProxy
from tests.harness.stores import store_section

CALL_TIMEOUT = 30.0
CJ_TIMEOUT = 2.0  # seconds; with LEASE_MARGIN, a dead worker's claim lasts 6 s
LEASE_MARGIN = 4.0
WORKER_DELAYS = (0.5, 1.0)


def worker_config(path: Path, cj_url: str, database_url: str) -> tuple[Path, dict[str, str]]:
    store, store_env = store_section(database_url)
    store_lines = "".join(f'{key} = "{value}"\n' for key, value in store.items())
    path.write_text(
        "[broker]\nreconnect_interval = 0.2\n"
        f'[targets.cj]\nurl = "{cj_url}"\nenterprise_id = "1234567"\n'
        f"action_tracker_id = 987654\ntimeout_s = {CJ_TIMEOUT}\n"
        'open_ended_locking = true\norder_id_from = "order_id"\n'
        f"[worker]\nlease_margin = {LEASE_MARGIN}\nretry_delays = {list(WORKER_DELAYS)}\n"
        '[routes]\nshoplazza = ["cj"]\n'
        f"[store]\n{store_lines}"
    )
    return path, store_env


def an_event(order_id: str) -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="kill.myshoplaza.com",
        order_id=order_id,
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=datetime(2024, 5, 1, tzinfo=UTC),
        received_at=datetime.now(UTC),
        delivery_id=None,
    )


class Workers:
    """Worker processes started by a test, all killed at its end whatever happened."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.env = env
        self.started: list[Bridge] = []

    async def start(self, amqp_url: str) -> Bridge:
        """A worker process on `amqp_url`, consuming."""
        env = {**os.environ, **self.env, "AMQP_URL": amqp_url, "CJ_ACCESS_TOKEN": TOKEN}
        worker = await spawn(["worker", "--target", "cj", "--config", str(self.config)], env)
        self.started.append(worker)
        await worker.wait_for("worker.consuming")
        return worker

    def kill_all(self) -> None:
        """SIGKILL whatever still runs."""
        for worker in self.started:
            if worker.process.returncode is None:
                worker.process.kill()


@contextlib.asynccontextmanager
async def cj_queues(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    channel = await amqp.channel(publisher_confirms=True)
    specs = [  # the worker's own delay tiers ([worker] retry_delays) and the defaults
        topology.target_topology("cj", (Source.SHOPLAZZA,), delays, 5)
        for delays in (DEFAULT_DELAYS, WORKER_DELAYS)
    ]
    for spec in specs:
        await delete_target_queues(channel, spec)
    try:
        yield channel
    finally:
        for spec in specs:
            await delete_target_queues(channel, spec)


async def publish(channel: AbstractChannel, event: OrderCancelled) -> None:
    orders = await channel.get_exchange(topology.ORDERS.name)
    await orders.publish(
        event_message(event, app_id="test"), topology.routing_key(Source.SHOPLAZZA)
    )


async def claimant(database_url: str, event: OrderCancelled, workers: list[Bridge]) -> Bridge:
    """The worker holding `event`'s CJ claim (a worker claims as `host:pid:random`)."""
    async with Store.open(database_url) as store, store.reading() as connection:
        holder = await connection.scalar(
            sa.select(deliveries.c.claimed_by).where(
                deliveries.c.event_id == str(event.event_id), deliveries.c.target == "cj"
            )
        )
    assert holder is not None, "the call was made without a claim"
    (found,) = [w for w in workers if str(holder).split(":")[-2] == str(w.process.pid)]
    return found


async def killed(worker: Bridge) -> None:
    worker.process.send_signal(signal.SIGKILL)
    assert await worker.process.wait() == -signal.SIGKILL


async def test_killed_after_the_answer_was_recorded_no_second_call(
    tmp_path: Path,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
    database_url: str,
) -> None:
    """The ack never reached the broker; the redelivered message finds `delivered`: no call."""
    order = "kill-after-answer"
    config, store_env = worker_config(tmp_path / "worker.toml", cj.url, database_url)
    workers = Workers(config, store_env)
    proxy = TcpProxy(*broker_address(amqp_url))
    port = await proxy.start()
    # Stalled before CJ answers (the fake calls `on_call` first): the worker's ack goes nowhere,
    # however late this test gets to run again.
    cj.on_call = lambda _: proxy.blackhole()
    try:
        async with cj_queues(amqp) as channel:
            first = await workers.start(via(amqp_url, port))
            await publish(channel, an_event(order))
            async with asyncio.timeout(CALL_TIMEOUT):
                await cj.wait_calls(1)
            await first.wait_for("cancel.delivered")
            await killed(first)
            proxy.cut()  # the broker sees the consumer's connection close: it requeues

            second = await workers.start(amqp_url)
            await second.wait_for("cancel.duplicate")
            status, _ = await second.stop()
            assert status == 0
            work = await channel.declare_queue(topology.work_queue("cj"), passive=True)
            assert work.declaration_result.message_count == 0
    finally:
        workers.kill_all()
        await proxy.stop()
    assert len(cj.calls_for(order)) == 1, f"CJ calls: {len(cj.calls_for(order))}"
    async with Store.open(database_url) as store:
        row = await store.delivery(str(an_event(order).event_id), "cj")
    assert row is not None
    assert (row.state, row.attempts) == (DeliveryState.DELIVERED, 1)


async def test_killed_mid_call_the_lease_runs_out_and_cj_settles_it(
    tmp_path: Path,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
    database_url: str,
) -> None:
    """Did the call land? Unknown: after the lease the next worker asks again; CJ says already."""
    order = "kill-mid-call"
    config, store_env = worker_config(tmp_path / "worker.toml", cj.url, database_url)
    workers = Workers(config, store_env)
    # The first call hangs until the worker dies; the second finds the order already declined.
    cj.script[order] = [Reply(delay=CALL_TIMEOUT * 2), error_in_200("Order is already declined")]
    try:
        async with cj_queues(amqp) as channel:
            # Both consume before the claim: the lease (CJ_TIMEOUT + LEASE_MARGIN from the claim)
            # need not outlast a process start; the broker hands the message over at the kill.
            both = [await workers.start(amqp_url), await workers.start(amqp_url)]
            await publish(channel, an_event(order))
            async with asyncio.timeout(CALL_TIMEOUT):
                await cj.wait_calls(1)
            first = await claimant(database_url, an_event(order), both)
            (second,) = [worker for worker in both if worker is not first]
            await killed(first)

            await second.wait_for("cancel.already_done")
            status, _ = await second.stop()
            assert status == 0
            busy = [line for line in second.lines if line["event"] == "cancel.busy"]
            assert busy, "the second worker must wait for the dead worker's lease first"
            work = await channel.declare_queue(topology.work_queue("cj"), passive=True)
            assert work.declaration_result.message_count == 0
    finally:
        workers.kill_all()
    calls = cj.calls_for(order)
    assert len(calls) == 2, f"CJ calls: {len(calls)}"
    assert calls[1].at - calls[0].at >= CJ_TIMEOUT, "second call came before the lease ran out"
    async with Store.open(database_url) as store:
        row = await store.delivery(str(an_event(order).event_id), "cj")
    assert row is not None
    assert (row.state, row.attempts) == (DeliveryState.ALREADY_DONE, 2)
