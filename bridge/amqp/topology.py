"""Every exchange, queue and binding the bridge owns, as data, beside the one `declare()`.

Subscribers bind their own queues to these names: a change here is a change to the wire contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

from contracts.events import Source


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """A durable exchange; `alternate` receives what nothing else routes."""

    name: str
    type: ExchangeType
    alternate: str | None = None


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A durable quorum queue."""

    name: str
    arguments: Mapping[str, str | int] = field(
        default_factory=lambda: MappingProxyType({"x-queue-type": "quorum"})
    )


@dataclass(frozen=True, slots=True)
class BindingSpec:
    """`queue` receives what `exchange` routes with `routing_key`."""

    queue: str
    exchange: str
    routing_key: str = ""


UNROUTED = ExchangeSpec("orders.unrouted", ExchangeType.FANOUT)
ORDERS = ExchangeSpec("orders", ExchangeType.TOPIC, alternate=UNROUTED.name)
UNROUTED_QUEUE = QueueSpec("orders.unrouted")
QUARANTINE_QUEUE = QueueSpec("orders.quarantine")

EXCHANGES: tuple[ExchangeSpec, ...] = (UNROUTED, ORDERS)  # the alternate exists first
QUEUES: tuple[QueueSpec, ...] = (UNROUTED_QUEUE, QUARANTINE_QUEUE)
BINDINGS: tuple[BindingSpec, ...] = (BindingSpec(UNROUTED_QUEUE.name, UNROUTED.name),)

ROUTING_KEY_PREFIX = "order.cancelled"


def routing_key(source: Source) -> str:
    """`order.cancelled.<source>`: subscribers bind `order.cancelled.#` or one source."""
    return f"{ROUTING_KEY_PREFIX}.{source.value}"


async def declare(channel: AbstractChannel) -> Mapping[str, AbstractExchange]:
    """Declare everything above (idempotent); returns the exchanges by name."""
    exchanges: dict[str, AbstractExchange] = {}
    for spec in EXCHANGES:
        arguments: FieldTable | None = (
            {"alternate-exchange": spec.alternate} if spec.alternate else None
        )
        exchanges[spec.name] = await channel.declare_exchange(
            spec.name, spec.type, durable=True, arguments=arguments
        )
    queues = {}
    for queue in QUEUES:
        queues[queue.name] = await channel.declare_queue(
            queue.name, durable=True, arguments=dict(queue.arguments)
        )
    for binding in BINDINGS:
        await queues[binding.queue].bind(exchanges[binding.exchange], binding.routing_key)
    return exchanges


@dataclass(frozen=True, slots=True)
class TargetTopology:
    """A target's queues: work, one delay queue per retry tier, and parked.

    The work queue dead-letters to parked (a poison message over the quorum delivery limit); each
    delay queue holds messages for its TTL, then dead-letters them back to the work queue. All use
    at-least-once dead-lettering, so nothing is dropped on the way.
    """

    target: str
    work: QueueSpec
    delays: Mapping[float, QueueSpec]
    parked: QueueSpec
    bindings: tuple[BindingSpec, ...]

    @property
    def queues(self) -> tuple[QueueSpec, ...]:
        """Every queue, parked first (the others dead-letter into it or into work)."""
        return (self.parked, self.work, *self.delays.values())


def _quorum_dlx(to_queue: str, **extra: str | int) -> Mapping[str, str | int]:
    return MappingProxyType(
        {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": to_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            **extra,
        }
    )


def work_queue(target: str) -> str:
    """`cancel-bridge.<target>`: the queue a target's workers consume."""
    return f"cancel-bridge.{target}"


def parked_queue(target: str) -> str:
    """`cancel-bridge.<target>.parked`: what needs a person."""
    return f"{work_queue(target)}.parked"


def target_topology(
    target: str, sources: tuple[Source, ...], tiers: tuple[float, ...], delivery_limit: int
) -> TargetTopology:
    """Queues and bindings for `target`, fed by the routing keys of `sources`."""
    work = work_queue(target)
    # reject-publish, stated: a max-length policy must refuse new parked messages (the worker
    # retries), never drop old ones (RabbitMQ's default overflow is drop-head).
    parked = QueueSpec(
        parked_queue(target),
        MappingProxyType({"x-queue-type": "quorum", "x-overflow": "reject-publish"}),
    )
    delays = {
        tier: QueueSpec(
            f"{work}.delay.{tier:g}s", _quorum_dlx(work, **{"x-message-ttl": int(tier * 1000)})
        )
        for tier in sorted(set(tiers))
    }
    return TargetTopology(
        target=target,
        work=QueueSpec(work, _quorum_dlx(parked.name, **{"x-delivery-limit": delivery_limit})),
        delays=MappingProxyType(delays),
        parked=parked,
        bindings=tuple(BindingSpec(work, ORDERS.name, routing_key(source)) for source in sources),
    )


async def declare_target(channel: AbstractChannel, spec: TargetTopology) -> AbstractQueue:
    """Declare the orders exchange and `spec`'s queues and bindings; return the work queue."""
    await declare(channel)
    queues = {}
    for queue in spec.queues:
        queues[queue.name] = await channel.declare_queue(
            queue.name, durable=True, arguments=dict(queue.arguments)
        )
    for binding in spec.bindings:
        await queues[binding.queue].bind(binding.exchange, binding.routing_key)
    return queues[spec.work.name]


def describe() -> list[str]:
    """One line per declared object, for `check-config`."""
    lines = []
    for spec in EXCHANGES:
        alternate = f", alternate exchange {spec.alternate}" if spec.alternate else ""
        lines.append(f"exchange {spec.name} ({spec.type.value}, durable{alternate})")
    lines.extend(f"queue {q.name} ({q.arguments.get('x-queue-type', 'classic')})" for q in QUEUES)
    lines.extend(
        f"binding {b.exchange} -> {b.queue} ({b.routing_key or 'any key'})" for b in BINDINGS
    )
    return lines
