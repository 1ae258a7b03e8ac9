"""Worker throughput: a pre-filled queue of cancellations to a fake CJ, against a bare baseline.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ python -m bench.worker --messages 20000

Runs in its own queues (`cancel-bridge.bench-cj*`, deleted at the end), so it never touches a
real target's queues. Prints messages/s for (1) a bare aio-pika consume-and-ack loop and (2) the
bridge's worker calling the fake CJ over HTTP, both on the same pre-filled queue, and their ratio.
The fake CJ runs in this process: the figures are for comparing runs on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import SecretStr

from bridge import logs, topology
from bridge.fake_cj import TOKEN, FakeCJ
from bridge.messages import event_message
from bridge.retry import DEFAULT_DELAYS
from bridge.settings import BrokerSettings, WorkerSettings
from bridge.worker import Worker, WorkerPlan
from contracts.events import CancelReason, OrderCancelled, Source
from handlers import cj

TARGET = "bench-cj"
BATCH = 500


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("--messages", type=int, default=20000, help="queue size (default 20000)")
    parser.add_argument("--prefetch", type=int, default=64, help="worker prefetch (default 64)")
    return parser.parse_args(argv)


async def fill(channel: AbstractChannel, queue: str, count: int) -> None:
    """Publish `count` distinct cancellations to `queue`, confirmed, in pipelined batches."""
    now = datetime.now(UTC)
    for start in range(0, count, BATCH):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    event_message(
                        OrderCancelled.create(
                            source=Source.SHOPLAZZA,
                            shop="bench.myshoplaza.com",
                            order_id=f"bench-{n}",
                            order_number=None,
                            reason=CancelReason.OTHER,
                            source_reason=None,
                            cancelled_at=now,
                            received_at=now,
                            delivery_id=None,
                        ),
                        app_id="bench",
                    ),
                    queue,
                )
                for n in range(start, min(start + BATCH, count))
            )
        )


async def bare_consume(url: str, queue_name: str, count: int, prefetch: int) -> float:
    """Seconds for a bare consume-and-ack loop to drain `count` messages."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(queue_name)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen >= count:
                done.set()

        started = time.perf_counter()
        await queue.consume(on_message)
        await done.wait()
        return time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    """Fill, drain bare, fill, drain with the worker; print the figures."""
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    logs.configure("warning")  # per-message info lines would measure the terminal
    fake = FakeCJ()
    await fake.start()
    spec = topology.target_topology(TARGET, (), DEFAULT_DELAYS, delivery_limit=5)
    adapter = cj.CJAdapter(cj.CJTarget(fake.url, "1234567", 987654), SecretStr(TOKEN))
    plan = WorkerPlan(TARGET, adapter, 10.0, spec, WorkerSettings(prefetch=args.prefetch))
    broker = BrokerSettings()
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_target(channel, spec)
        try:
            await fill(channel, spec.work.name, args.messages)
            bare = await bare_consume(url, spec.work.name, args.messages, args.prefetch)
            await fill(channel, spec.work.name, args.messages)
            started = time.perf_counter()
            async with Worker.running(plan, url, broker) as worker:
                await worker.wait_outcomes("delivered", args.messages)
                bridged = time.perf_counter() - started
        finally:
            for queue in spec.queues:
                await channel.queue_delete(queue.name)
            await fake.stop()
    n = args.messages
    print(f"messages:            {n} (prefetch {args.prefetch}, log level warning)")
    print(f"bare consume+ack:    {n / bare:8.0f} msg/s  ({bare:.2f} s)")
    print(
        f"worker -> fake CJ:   {n / bridged:8.0f} msg/s  ({bridged:.2f} s, {len(fake.calls)} calls)"
    )
    print(f"ratio worker/bare:   {bare / bridged:8.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
