"""Prometheus metrics: one registry per process, served at `/metrics`.

Every metric is named `cancel_bridge_*`. Labels take values from closed sets (configured source
and target names, fixed outcome words, HTTP status classes), never from request data, so a
hostile client cannot grow the number of series.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

T = TypeVar("T")
R = TypeVar("R")

# Seconds. The broker's confirm and the store's batches are milliseconds; targets are slower.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The credential checks that count failures (`cancel_bridge_auth_failures`), and their outcomes.
AUTH_CHECKS = ("console_login", "console_bearer", "api", "metrics")
AUTH_OUTCOMES = ("wrong", "throttled")

__all__ = ["AUTH_CHECKS", "AUTH_OUTCOMES", "CONTENT_TYPE_LATEST", "Metrics", "status_class"]


def status_class(status: int) -> str:
    """`2xx`, `4xx`, ... for an HTTP status."""
    return f"{status // 100}xx"


class Metrics:
    """The process's metrics. The receiver, the publisher and the workers count into one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.webhooks = Counter(
            "cancel_bridge_webhooks",
            "Webhooks answered, by source, HTTP status and outcome (accepted, echo, ignored,"
            " quarantined, or the error code of the answer).",
            ["source", "status", "outcome"],
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "cancel_bridge_publish_confirm_seconds",
            "Time from publish to the broker's confirm (or the failure), by destination and"
            " result.",
            ["destination", "result"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.deliveries = Counter(
            "cancel_bridge_deliveries",
            "Messages a worker settled, by target and outcome (delivered, already_done, retried,"
            " parked, duplicate, busy, waiting).",
            ["target", "outcome"],
            registry=registry,
        )
        self.target_seconds = Histogram(
            "cancel_bridge_target_call_seconds",
            "Duration of each HTTP call to a target, by target and result (2xx, 4xx, 5xx,"
            " failed: timeout or connection error).",
            ["target", "result"],
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self.store_seconds = Histogram(
            "cancel_bridge_store_seconds",
            "Duration of the store's batched operations (arrive, claim, finish), by operation"
            " and result (ok, failed).",
            ["operation", "result"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.store_batch = Histogram(
            "cancel_bridge_store_batch_size",
            "Items per batched store operation.",
            ["operation"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=registry,
        )
        self.queue_messages = Gauge(
            "cancel_bridge_queue_messages",
            "Messages waiting in a target's queues, as the broker last reported them: work,"
            " retry (all delay queues) and parked.",
            ["target", "queue"],
            registry=registry,
        )
        self.queue_read = Gauge(
            "cancel_bridge_queue_messages_read_timestamp_seconds",
            "When a worker last read its target's queue depths (Unix time): the depths are"
            " stale when this falls behind (the broker is away).",
            ["target"],
            registry=registry,
        )
        self.connections_refused = Counter(
            "cancel_bridge_connections_refused",
            "Connections the receiver answered 503 and closed at once: [receiver] max_connections"
            " were open.",
            registry=registry,
        )
        self.backstop_found = Counter(
            "cancel_bridge_backstop_found",
            "Cancellations the backstop found that no webhook had brought (published), by"
            " source: any means webhooks are being missed.",
            ["source"],
            registry=registry,
        )
        self.subscription_ok = Gauge(
            "cancel_bridge_subscription_ok",
            "1 while a store has exactly one orders/cancelled webhook subscription at the"
            " bridge's address, 0 when it has none or several (last check).",
            ["source", "shop"],
            registry=registry,
        )
        self.spooled = Counter(
            "cancel_bridge_spooled",
            "Events the receiver held in the spool because the broker was away, by source.",
            ["source"],
            registry=registry,
        )
        self.spool_forwarded = Counter(
            "cancel_bridge_spool_forwarded",
            "Spooled events published (confirmed) and removed from the spool.",
            registry=registry,
        )
        self.spool_depth = Gauge(
            "cancel_bridge_spool_depth",
            "Events waiting in the spool, as this process last read it.",
            registry=registry,
        )
        self.spool_oldest = Gauge(
            "cancel_bridge_spool_oldest_seconds",
            "Age of the oldest event waiting in the spool (0 when it is empty).",
            registry=registry,
        )
        self.worker_problems = Counter(
            "cancel_bridge_worker_problems",
            "Times a worker could not go on: store_unavailable, declare_failed.",
            ["target", "problem"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "cancel_bridge_auth_failures",
            "Credentials refused, by check (console_login, console_bearer, api, metrics) and"
            " outcome: wrong (compared, and not the secret), throttled (429, not compared).",
            ["check", "outcome"],
            registry=registry,
        )
        for check in AUTH_CHECKS:  # every series exists from the start: rate() sees the first
            for outcome in AUTH_OUTCOMES:
                self.auth_failures.labels(check, outcome)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)

    def timed_batch(
        self, operation: str, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]]
    ) -> Callable[[Sequence[T]], Awaitable[Sequence[R]]]:
        """`flush` (a store batch operation), timed into `cancel_bridge_store_seconds`."""
        seconds = {
            result: self.store_seconds.labels(operation, result) for result in ("ok", "failed")
        }
        sizes = self.store_batch.labels(operation)

        async def timed(batch: Sequence[T]) -> Sequence[R]:
            started = time.perf_counter()
            result = "failed"
            try:
                found = await flush(batch)
                result = "ok"
                return found
            finally:
                seconds[result].observe(time.perf_counter() - started)
                sizes.observe(len(batch))

        return timed
