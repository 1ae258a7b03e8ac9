"""The queue-depth watcher: a target's work, retry and parked message counts in the metrics.

Every `interval` seconds (`[metrics] queue_interval`), or at once when `wait` asks, a passive
`queue.declare` per queue on a channel of its own reads the counts (on quorum queues they may
lag a little: NOTES.md). A failed look is logged and tried again next time.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from bridge.metrics import Metrics
from bridge.worker.plan import WorkerPlan

log = structlog.get_logger(__name__)


class DepthWatcher:
    """Reads one target's queue depths into the metrics."""

    def __init__(self, plan: WorkerPlan, metrics: Metrics, interval: float = 15.0) -> None:
        self._plan = plan
        self._metrics = metrics
        self.interval = interval  # seconds between looks at the queue depths
        self._wanted = asyncio.Event()
        # `wait` calls made, and how many of them a read begun after them has answered: a read
        # already under way when `wait` is called may predate what the caller wants to see.
        self._asked = 0
        self._answered = 0
        self._read = asyncio.Condition()

    async def wait(self) -> None:
        """Have the queue depths read into the metrics now; return once they are there.

        Only a read begun after this call answers it.
        """
        self._asked += 1
        mine = self._asked
        self._wanted.set()
        async with self._read:
            await self._read.wait_for(lambda: self._answered >= mine)

    async def watch(self, connection: AbstractRobustConnection) -> None:
        """Read the depths now and then over `connection`, until cancelled."""
        spec = self._plan.topology
        groups = {
            "work": (spec.work.name,),
            "retry": tuple(q.name for q in spec.delays.values()),
            "parked": (spec.parked.name,),
        }
        target = self._plan.target
        gauges = {kind: self._metrics.queue_messages.labels(target, kind) for kind in groups}
        read_at = self._metrics.queue_read.labels(target)
        channel: AbstractChannel | None = None
        while True:
            asked = self._asked  # the calls this read answers
            self._wanted.clear()  # a `wait` from now on asks for the next read
            try:
                if channel is None or channel.is_closed:
                    channel = await connection.channel()
                underlay = await channel.get_underlay_channel()
                for kind, names in groups.items():
                    total = 0
                    for name in names:
                        declared = await underlay.queue_declare(name, passive=True)
                        total += declared.message_count or 0
                    gauges[kind].set(total)
                read_at.set_to_current_time()
                self._answered = asked
                async with self._read:
                    self._read.notify_all()
            except CONNECTION_EXCEPTIONS as exc:
                log.info("worker.depths_unknown", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wanted.wait()
