"""Worker throughput: a pre-filled queue of cancellations to a fake CJ, against bare baselines.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ \
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python -m bench.worker --messages 20000

Runs in its own queues (`cancel-bridge.bench-cj*`, deleted at the end), so it never touches a
real target's queues. Prints messages/s, all in one run, for two bare loops: (1) an aio-pika
consume-and-ack loop draining the pre-filled queue, no HTTP; (2) an aiohttp client loop making
the same CJ calls (the bodies and headers the CJ adapter builds) to the same fake CJ, as many in
flight as the prefetch, over one ClientSession, no broker. Then the bridge's worker draining the
pre-filled queue to the fake CJ with its store on SQLite (a scratch file) and, when DATABASE_URL
is set, on PostgreSQL (a scratch database created and dropped on that server). Each worker
figure is given as a ratio to the LOWER of the two bare loops (the worker does both jobs, so it
cannot beat the slower one). The fake CJ runs in this process: compare runs on one machine.

A third baseline is the bare worker of issue 16: (3) an aio-pika consumer (the same prefetch)
that reads each message's event, makes its one CJ call (the adapter's body, over one aiohttp
ClientSession) and acks after the answer, no store. Each worker figure is also given as a ratio
to it. The worker may batch orders into one call (`[targets.cj] batch_size`) where the bare
loops make one call per order: that is the point of batching, and both ratios show it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import aiohttp
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import SecretStr

from bench.scratch_db import scratch_database
from bench.webhooks import Webhook, drive
from bridge import logs
from bridge.amqp import topology
from bridge.amqp.messages import event_message
from bridge.demo.fake_cj import TOKEN, FakeCJ
from bridge.settings import DEFAULT_DELAYS, BrokerSettings, WorkerSettings
from bridge.store.deliveries import Store
from bridge.worker.consumer import Worker
from bridge.worker.plan import WorkerPlan
from contracts.events import CancelReason, OrderCancelled, Source
from handlers import cj
from handlers.base import HttpCall

TARGET = "bench-cj"
BATCH = 500
BARE_CONSUME = "bare consume+ack"
BARE_HTTP = "bare aiohttp client"
BARE_WORKER = "bare worker"
BARE = (BARE_CONSUME, BARE_HTTP, BARE_WORKER)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("--messages", type=int, default=20000, help="queue size (default 20000)")
    parser.add_argument("--prefetch", type=int, default=64, help="worker prefetch (default 64)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=cj.BATCH_SIZE,
        help=f"the worker's [targets.cj] batch_size (default {cj.BATCH_SIZE}, the recommended"
        " batching; 1: one order a call, the shipped default)",
    )
    return parser.parse_args(argv)


def bench_event(n: int, now: datetime) -> OrderCancelled:
    """The `n`th cancellation of a run."""
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="bench.myshoplaza.com",
        order_id=f"bench-{n}",
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=now,
        received_at=now,
        delivery_id=None,
    )


async def fill(
    channel: AbstractChannel, queue: str, count: int, store: Store | None = None
) -> None:
    """Publish `count` distinct cancellations to `queue`, confirmed, in pipelined batches.

    With `store`, each event is recorded first with a pending delivery, as the receiver does.
    """
    now = datetime.now(UTC)
    for start in range(0, count, BATCH):
        batch = [bench_event(n, now) for n in range(start, min(start + BATCH, count))]
        if store is not None:
            await asyncio.gather(*(store.record_event(e, now, (TARGET,)) for e in batch))
        await asyncio.gather(
            *(
                channel.default_exchange.publish(event_message(e, app_id="bench"), queue)
                for e in batch
            )
        )


async def consume(
    connection: aio_pika.abc.AbstractConnection,
    queue_name: str,
    count: int,
    prefetch: int,
    work: Callable[[AbstractIncomingMessage], Awaitable[None]],
) -> float:
    """Seconds to drain `count` messages from `queue_name`: `work` on each, then its ack."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(queue_name)
    done = asyncio.Event()
    seen = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        await work(message)
        await message.ack()
        seen += 1
        if seen >= count:
            done.set()

    started = time.perf_counter()
    await queue.consume(on_message)
    await done.wait()
    return time.perf_counter() - started


async def bare_consume(url: str, queue_name: str, count: int, prefetch: int) -> float:
    """Seconds for a bare consume-and-ack loop to drain `count` messages."""

    async def nothing(_: AbstractIncomingMessage) -> None:
        """Only the ack."""

    async with await aio_pika.connect(url) as connection:
        return await consume(connection, queue_name, count, prefetch, nothing)


async def bare_http(adapter: cj.CJTarget, url: str, count: int, in_flight: int) -> float:
    """Seconds for one aiohttp session to make the `count` CJ calls, `in_flight` at a time.

    The calls are the ones the worker makes for the same events, built before the clock starts;
    the connector allows as many connections as the worker's executor.
    """
    now = datetime.now(UTC)
    calls = [adapter.build(bench_event(n, now), now) for n in range(count)]
    hooks = [Webhook(c.body, dict(c.headers)) for c in calls if isinstance(c, HttpCall)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        tally, seconds = await drive(session, url, hooks, in_flight)
    if tally.ok != count:
        raise SystemExit(f"bare aiohttp loop: {tally.ok} of {count} answered 200: {tally}")
    return seconds


async def bare_worker(  # noqa: PLR0913, PLR0917 - the queue, the target, the run's size
    url: str, queue_name: str, adapter: cj.CJTarget, cj_url: str, count: int, prefetch: int
) -> float:
    """Seconds for a bare worker to drain `count` messages: consume, one CJ call each, ack.

    No store, no retries: each message's event is read, the adapter builds its call, the call
    is made over one ClientSession, and the message is acked once CJ answered 200.
    """
    failed: list[int] = []
    async with (
        await aio_pika.connect(url) as connection,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session,
    ):

        async def call_cj(message: AbstractIncomingMessage) -> None:
            call = adapter.build(OrderCancelled.from_json(message.body), datetime.now(UTC))
            if not isinstance(call, HttpCall):
                raise SystemExit(f"bare worker: no call built: {call}")
            async with session.post(cj_url, data=call.body, headers=dict(call.headers)) as answer:
                await answer.read()
                if answer.status != 200:  # noqa: PLR2004 - CJ's success
                    failed.append(answer.status)

        seconds = await consume(connection, queue_name, count, prefetch, call_cj)
    if failed:
        raise SystemExit(f"bare worker: {len(failed)} calls not answered 200: {failed[:5]}")
    return seconds


async def timed_worker(
    plan: WorkerPlan, url: str, store_url: str, channel: AbstractChannel, count: int
) -> float:
    """Fill the queue, then seconds for the worker (store at `store_url`) to deliver it all."""
    async with Store.open(store_url) as store:
        await fill(channel, plan.topology.work.name, count, store)
        started = time.perf_counter()
        async with Worker.running(plan, url, BrokerSettings(), store) as worker:
            await worker.wait_outcomes("delivered", count)
            seconds = time.perf_counter() - started
        calls = worker.metrics.registry.get_sample_value(
            "cancel_bridge_target_call_seconds_count", {"target": TARGET, "result": "2xx"}
        )
        where = "postgresql" if "://" in store_url else "sqlite"
        print(f"worker on {where}: {count} orders in {calls or 0:.0f} CJ calls")
        return seconds


async def run(args: argparse.Namespace) -> None:
    """Drain a pre-filled queue bare, then with the worker on each store; print the figures."""
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    server = os.environ.get("DATABASE_URL", "")
    logs.configure("warning")  # per-message info lines would measure the terminal
    fake = FakeCJ()
    await fake.start()
    spec = topology.target_topology(TARGET, (), DEFAULT_DELAYS, delivery_limit=5)
    adapter = cj.CJTarget(
        cj.CJCancelConfig(
            fake.url,
            "1234567",
            987654,
            open_ended_locking=True,
            order_id_from="order_id",
            batch_size=args.batch_size,  # default: the recommended batching (off when shipped)
            batch_linger=cj.BATCH_LINGER,
        ),
        SecretStr(TOKEN),
    )
    plan = WorkerPlan(TARGET, adapter, 10.0, spec, WorkerSettings(prefetch=args.prefetch))
    n = args.messages
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cancel-bridge-bench-") as scratch:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare_target(channel, spec)
            try:
                await fill(channel, spec.work.name, n)
                results[BARE_CONSUME] = await bare_consume(url, spec.work.name, n, args.prefetch)
                results[BARE_HTTP] = await bare_http(adapter, fake.url, n, args.prefetch)
                await fill(channel, spec.work.name, n)
                results[BARE_WORKER] = await bare_worker(
                    url, spec.work.name, adapter, fake.url, n, args.prefetch
                )
                sqlite = str(Path(scratch) / "bench.db")
                results["worker, SQLite"] = await timed_worker(plan, url, sqlite, channel, n)
                if server:
                    async with scratch_database(server) as pg:
                        results["worker, PostgreSQL"] = await timed_worker(
                            plan, url, pg, channel, n
                        )
            finally:
                for queue in spec.queues:
                    await channel.queue_delete(queue.name)
                await fake.stop()
    report(results, n, args.prefetch)
    if not server:
        print(
            "PostgreSQL skipped: set DATABASE_URL to a server the benchmark may create databases on"
        )
    print(f"fake CJ calls: {len(fake.calls)} orders (expected {n * (len(results) - 1)})")


def report(results: dict[str, float], n: int, prefetch: int) -> None:
    """The table: messages/s of each run; each worker's ratios to the bare loops.

    To the slower of the bare consume+ack and bare aiohttp client loops, and to the bare worker.
    """
    slower = max(results[BARE_CONSUME], results[BARE_HTTP])  # seconds: more is slower
    floor = BARE_CONSUME if slower == results[BARE_CONSUME] else BARE_HTTP
    bare = results[BARE_WORKER]
    print(f"messages: {n} per run ({prefetch} in flight, log level warning)")
    print(
        f"{'run':22} {'msg/s':>8} {'seconds':>8}  {'ratio to slower bare loop':>25}"
        f"  ratio to bare worker"
    )
    print(f"{'':22} {'':>8} {'':>8}  {'(' + floor + ')':>25}")
    for name, seconds in results.items():
        ratios = (
            ("-", "-") if name in BARE else (f"{slower / seconds:.2f}", f"{bare / seconds:.2f}")
        )
        print(f"{name:22} {n / seconds:8.0f} {seconds:8.2f}  {ratios[0]:>25}  {ratios[1]:>20}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
