"""The confirmed publisher: one robust connection, one confirm channel, every publish checked.

A publish succeeds only when the broker confirmed it (basic.ack) and did not return it. A nack,
a return, a timeout or a lost connection raises `BrokerUnavailable`, and the receiver answers 503
so the platform retries: nothing is acknowledged that the broker does not hold.

The errors of the AMQP side (`bridge/amqp/`), one tree:

    BrokerUnavailable    the broker could not be asked, or does not hold the message: a publish
    │                    (no confirm in time, connection down or lost), or a move of parked
    │                    messages; callers answer 503 / retry later (the receiver may spool the
    │                    event instead: `bridge/store/spool.py`), nothing is lost
    └── BrokerRefused    the broker answered and did not take it: a nack (a queue full with
                         reject-publish) or a return (no queue bound). Spooling would only
                         publish it again into the same refusal: callers answer 503

aio-pika's and aiormq's own exceptions stay inside `bridge/amqp/` and its direct callers, which
turn them into `BrokerUnavailable` (the text names the failure's type, never the broker URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError, PublishError
from pamqp import commands as spec
from yarl import URL

from bridge.amqp import topology
from bridge.background import in_background
from bridge.metrics import Metrics
from bridge.settings import BrokerSettings, broker_urls
from contracts.events import OrderCancelled

log = structlog.get_logger(__name__)

PUBLISH_ERRORS = (TimeoutError, *CONNECTION_EXCEPTIONS)


FAILOVER_AFTER = 2  # reconnect intervals without the broker before trying the next node


async def open_robust(url: str, settings: BrokerSettings, name: str) -> AbstractRobustConnection:
    """A robust connection, retrying every `reconnect_interval` until a broker answers.

    `url` may name several nodes of one cluster (`settings.broker_urls`): they are tried in
    order, and a connection lost for `FAILOVER_AFTER` intervals moves on to the next node
    (aio-pika's robust connection keeps reconnecting to its `url`, which the watch changes).
    The connection object is ours from the first attempt, so cancelling (shutdown while the
    broker is away) closes it: aio-pika's own retry task would otherwise outlive the loop.
    """
    interval = settings.reconnect_interval
    nodes = [URL(node) for node in broker_urls(url)] or [URL(url)]
    attempt = 0
    while True:
        current = attempt % len(nodes)
        connection = aio_pika.RobustConnection(
            nodes[current], reconnect_interval=interval, client_properties={"connection_name": name}
        )
        opened = False
        try:
            await connection.connect(timeout=settings.connect_timeout)
            opened = True
        except CONNECTION_EXCEPTIONS as exc:
            log.warning(
                "broker.connect_failed",
                node=_shown(nodes[current]),
                error=type(exc).__name__,
                retry_in=interval,
            )
        finally:
            if not opened:
                await asyncio.shield(connection.close())
        if opened:
            if len(nodes) > 1:
                _watch(connection, nodes, current, interval)
            return connection
        attempt += 1
        if attempt % len(nodes) == 0:  # every node tried: wait before the next round
            await asyncio.sleep(interval)


_WATCHES: set[asyncio.Task[None]] = set()  # the failover watches, kept from the collector


def _watch(
    connection: aio_pika.RobustConnection, nodes: list[URL], current: int, interval: float
) -> None:
    """While `connection` lives: when it has been down `FAILOVER_AFTER` intervals, next node."""

    async def watch() -> None:
        index = current
        down_for = 0
        while not connection.is_closed:
            await asyncio.sleep(interval)
            if connection.connected.is_set():
                down_for = 0
                continue
            down_for += 1
            if down_for >= FAILOVER_AFTER:
                index, down_for = (index + 1) % len(nodes), 0
                connection.url = nodes[index]  # the robust connection's next attempt goes there
                log.warning("broker.failover", node=_shown(nodes[index]))

    task = asyncio.create_task(watch(), name="broker-failover")
    _WATCHES.add(task)
    task.add_done_callback(_WATCHES.discard)


def _shown(node: URL) -> str:
    """A node as logs name it: host and port, never the credentials."""
    return f"{node.host}:{node.port}"


class BrokerUnavailable(Exception):  # noqa: N818 - reads as a state, like ConnectionRefused
    """The broker could not be asked or does not hold the message: answer 503, retry later."""


class BrokerRefused(BrokerUnavailable):
    """The broker answered and refused the message (nack or return): not a broker away."""


class Publisher:
    """Publishes events with confirms; `ready` while the channel is open and declared."""

    def __init__(
        self,
        url: str,
        settings: BrokerSettings,
        *,
        connection_name: str,
        targets: tuple[topology.TargetTopology, ...] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self._url = url
        self._metrics = metrics or Metrics()
        self._targets = targets
        self._settings = settings
        self._connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self._inflight: dict[str, asyncio.Future[None]] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        url: str,
        settings: BrokerSettings,
        *,
        connection_name: str = "receiver",
        targets: tuple[topology.TargetTopology, ...] = (),
        metrics: Metrics | None = None,
    ) -> AsyncIterator[Publisher]:
        """Connect in the background (retrying until the broker answers); close on exit.

        `targets` are declared too before the publisher is ready, so a routed target's queue
        exists before the first event is accepted (it would go to `orders.unrouted` otherwise).
        """
        publisher = cls(
            url, settings, connection_name=connection_name, targets=targets, metrics=metrics
        )
        try:
            async with in_background(publisher._connect(), "broker-connect"):
                yield publisher
        finally:
            await publisher._close()

    @property
    def ready(self) -> bool:
        """True while a publish can be attempted: connected, channel open, topology declared."""
        return (
            self._up.is_set()
            and self._channel is not None
            and not self._channel.is_closed
            and self._connection is not None
            and self._connection.connected.is_set()
        )

    @property
    def confirm_timeout(self) -> float:
        """Seconds a publish waits for the broker's confirm."""
        return self._settings.confirm_timeout

    async def wait_ready(self) -> None:
        """Return once the publisher is (again) ready."""
        await self._up.wait()

    async def wait_down(self) -> None:
        """Return once the publisher has noticed the broker is gone."""
        await self._down.wait()

    async def publish_event(
        self, event: OrderCancelled, body: bytes, properties: spec.Basic.Properties
    ) -> None:
        """Publish the event's message to `orders`, confirmed; raise `BrokerUnavailable`."""
        key = topology.routing_key(event.source)
        await self._publish(
            topology.ORDERS.name, body, properties, key, str(event.event_id), destination="orders"
        )

    async def quarantine(self, message: AbstractMessage) -> None:
        """Publish to `orders.quarantine` through the default exchange, confirmed."""
        await self.to_queue(topology.QUARANTINE_QUEUE.name, message, "quarantine")

    async def to_queue(self, queue: str, message: AbstractMessage, destination: str) -> None:
        """Publish to `queue` via the default exchange, confirmed; a missing queue is returned.

        `destination` names the kind of queue in the confirm-latency metric (retry, parked...).
        """
        properties = message.properties
        await self._publish(
            "", message.body, properties, queue, message.message_id or "", destination=destination
        )

    async def _publish(  # noqa: PLR0913 - the publish's parts, and its name in the metrics
        self,
        exchange_name: str,
        body: bytes,
        properties: spec.Basic.Properties,
        routing_key: str,
        message_id: str,
        *,
        destination: str,
    ) -> None:
        # aiormq pairs a returned message with its publish by message_id: one event in flight
        # at a time per channel, so a concurrent duplicate waits for the first to settle.
        loop = asyncio.get_running_loop()
        previous = self._inflight.get(message_id)
        settled: asyncio.Future[None] = loop.create_future()
        self._inflight[message_id] = settled
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await self._send(exchange_name, body, properties, routing_key, destination)
        finally:
            self._settle(message_id, previous, settled)

    def _settle(
        self, message_id: str, previous: asyncio.Future[None] | None, settled: asyncio.Future[None]
    ) -> None:
        def done(_: object = None) -> None:
            if not settled.done():
                settled.set_result(None)
            if self._inflight.get(message_id) is settled:
                del self._inflight[message_id]

        if previous is None or previous.done():
            done()
        else:  # we were cancelled while the earlier copy is still in flight
            previous.add_done_callback(done)

    async def _send(
        self,
        exchange_name: str,
        body: bytes,
        properties: spec.Basic.Properties,
        routing_key: str,
        destination: str,
    ) -> None:
        if not self.ready or self._channel is None:
            raise BrokerUnavailable("broker connection is down")
        timeout = self._settings.confirm_timeout
        started = time.perf_counter()
        result = "lost"
        try:
            # One timer bounds it all: a reconnecting robust channel, the write and the confirm.
            async with asyncio.timeout(timeout):
                # aio-pika's `Exchange.publish` without its `Message`: the channel underneath
                # (confirms and returns raised as on the aio-pika channel) takes the frames.
                channel = await self._channel.get_underlay_channel()
                await channel.basic_publish(
                    body,
                    exchange=exchange_name,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=True,
                )
            result = "confirmed"
        except PublishError:
            result = "returned"
            raise BrokerRefused("broker returned the message as unroutable") from None
        except DeliveryError:
            result = "nacked"
            raise BrokerRefused("broker refused the message (nack)") from None
        except TimeoutError:
            result = "timeout"
            raise BrokerUnavailable(f"broker did not confirm within {timeout:g}s") from None
        except CONNECTION_EXCEPTIONS as exc:
            raise BrokerUnavailable(f"broker connection lost ({type(exc).__name__})") from None
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.publish_seconds.labels(destination, result).observe(elapsed)

    async def _connect(self) -> None:
        interval = self._settings.reconnect_interval
        while True:
            connection = await open_robust(
                self._url, self._settings, f"{self._settings.app_id} {self._connection_name}"
            )
            self._connection = connection
            connection.close_callbacks.add(self._on_lost)
            connection.reconnect_callbacks.add(self._on_restored)
            try:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                await topology.declare(channel)
                for spec in self._targets:
                    await topology.declare_target(channel, spec)
            except CONNECTION_EXCEPTIONS as exc:
                log.error("broker.declare_failed", error=str(exc), retry_in=interval)  # noqa: TRY400 - no traceback for a broker refusal
                self._connection = None
                await connection.close()
                await asyncio.sleep(interval)
                continue
            self._channel = channel
            channel.close_callbacks.add(self._on_lost)
            channel.reopen_callbacks.add(self._on_restored)
            self._mark(up=True)
            log.info("broker.connected", connection=self._connection_name)
            return

    def _on_lost(self, *_: Any) -> None:  # noqa: ANN401 - aio-pika passes sender and cause
        if self._up.is_set():
            log.warning("broker.lost")
        self._mark(up=False)

    def _on_restored(self, *_: Any) -> None:  # noqa: ANN401 - aio-pika passes the sender
        log.info("broker.restored")
        self._mark(up=True)

    def _mark(self, *, up: bool) -> None:
        (self._up if up else self._down).set()
        (self._down if up else self._up).clear()

    async def _close(self) -> None:
        self._mark(up=False)
        if self._connection is not None:
            await self._connection.close()
