"""The spool's forwarder: publishes spooled events once the broker is back, oldest first.

Each receiver process runs one. It leases a batch of the oldest spooled rows
(`Store.lease_spooled`), publishes them with confirms through the receiver's publisher, deletes
the confirmed ones and gives back the others' leases. It wakes when its receiver spools an
event, when the broker comes back, and every `POLL` seconds (rows spooled by another process, or
before a restart). A row published whose delete did not happen (a crash between the two) is
published again: the event id keeps every effect single.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import ValidationError

from bridge.amqp.messages import event_properties
from bridge.amqp.publisher import BrokerUnavailable, Publisher
from bridge.background import in_background
from bridge.metrics import Metrics
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from bridge.store.spool import Spooled, SpoolState
from contracts.events import OrderCancelled

log = structlog.get_logger(__name__)

BATCH = 100  # rows leased, and published concurrently, at a time
POLL = 5.0  # seconds between looks at the spool while nothing wakes the forwarder
LEASE_MIN = 30.0  # seconds a lease lasts at least (more with a long confirm timeout)


class Forwarder:
    """Publishes what this or another receiver process spooled; knows the spool's state."""

    def __init__(self, store: Store, publisher: Publisher, app_id: str, metrics: Metrics) -> None:
        self._store = store
        self._publisher = publisher
        self._app_id = app_id
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lease = timedelta(seconds=max(LEASE_MIN, 4 * publisher.confirm_timeout))
        self.state = SpoolState(0, None)
        self._empty = asyncio.Event()  # set when a read found the spool empty
        metrics.spool_oldest.set_function(self._oldest_age)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, store: Store, publisher: Publisher, app_id: str, metrics: Metrics
    ) -> AsyncIterator[Forwarder]:
        """The forwarder, running in the background until the context ends."""
        forwarder = cls(store, publisher, app_id, metrics)
        async with in_background(forwarder._run(), "spool-forwarder"):
            yield forwarder

    def spooled(self) -> None:
        """An event was just spooled here: count it in the state, and look again."""
        self.state = SpoolState(self.state.depth + 1, self.state.oldest or datetime.now(UTC))
        self._metrics.spool_depth.set(self.state.depth)
        self._empty.clear()
        self._wake.set()

    async def wait_empty(self) -> None:
        """Return once the forwarder has found the spool empty (after its last `spooled`)."""
        await self._empty.wait()

    def _oldest_age(self) -> float:
        oldest = self.state.oldest
        return 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())

    async def _run(self) -> None:
        while True:
            try:
                forwarded = await self._forward_batch()
                if forwarded:
                    continue  # more may wait
                await self._read_state()
            except StoreUnavailable as exc:
                log.warning("spool.store_unavailable", detail=str(exc))
            await self._idle()

    async def _idle(self) -> None:
        """Until woken, the broker back while events wait, or `POLL` seconds."""
        self._wake.clear()
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if self.state.depth and not self._publisher.ready:
            waits.append(asyncio.ensure_future(self._publisher.wait_ready()))
        try:
            await asyncio.wait(waits, timeout=POLL, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _read_state(self) -> None:
        self.state = await self._store.spool_state()
        self._metrics.spool_depth.set(self.state.depth)
        if self.state.depth == 0:
            self._empty.set()
        else:
            self._empty.clear()

    async def _forward_batch(self) -> int:
        """Lease, publish and remove one batch; how many were forwarded."""
        if not self._publisher.ready:
            return 0
        now = datetime.now(UTC)
        rows = await self._store.lease_spooled(self._owner, now, now + self._lease, BATCH)
        if not rows:
            return 0
        # Publishes enter the channel in the order asked: oldest first on the wire too.
        sent = await asyncio.gather(*(self._publish(row) for row in rows))
        done = [row.id for row, ok in zip(rows, sent, strict=True) if ok]
        await self._store.unspool(done)
        await self._store.release_spooled(
            self._owner, [row.id for row, ok in zip(rows, sent, strict=True) if not ok]
        )
        self._metrics.spool_forwarded.inc(len(done))
        if done:
            log.info("spool.forwarded", count=len(done), left_in_batch=len(rows) - len(done))
        return len(done)

    async def _publish(self, row: Spooled) -> bool:
        try:
            event = OrderCancelled.from_json(row.body)
        except ValidationError:
            # Written by a validated event: only a bridge of another schema could meet this.
            log.error("spool.unreadable", spool_id=row.id, event_id=row.event_id)  # noqa: TRY400 - no traceback
            return False
        properties = event_properties(event, app_id=self._app_id, seen=row.seen)
        try:
            await self._publisher.publish_event(event, row.body, properties)
        except BrokerUnavailable as exc:
            log.warning("spool.publish_failed", event_id=row.event_id, detail=str(exc))
            return False
        return True
