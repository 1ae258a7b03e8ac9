"""Every exchange, queue and binding the bridge owns, as data, beside the one `declare()`.

Subscribers bind their own queues to these names: a change here is a change to the wire contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange
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
