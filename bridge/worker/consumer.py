"""The consumer runtime: one target's queue in, one settled outcome per message out.

Before calling the target the worker claims (event, target) in the store, bound to the name the
target knows the order by (one effect per (target, order) whatever the event id); only the
claimant calls, and it records the answer before acking. A copy of a pair that is already
settled is acked without a call; a copy of a pair another claim holds waits in a delay queue
until that claim ends.

A message is acked only once its outcome is settled and recorded: the target answered
`Delivered` or `AlreadyDone`, or the message was republished, confirmed, to a delay queue (retry)
or to the parked queue. Anything else (a crash, a lost connection, the store down) leaves it
unacked, and the broker redelivers it. A handler that raises is requeued; the quorum delivery
limit then dead-letters it to the parked queue, so a poison message ends parked, never looping.

The target call itself is `target_call.py`; the queue depths, `depths.py`. The worker defines no
errors of its own; how it settles each message, by outcome and by what may be raised on the way
(the name in quotes is the count in `outcomes` and the `deliveries` metric):

    message
    ├── back from a delay queue too early ─────────────── to a delay queue again, ack "waiting"
    │   └── its x-not-before-ms past retry_total ──────── park, ack "waiting"
    ├── body not an event ─────────────────────────────── park, ack "parked"
    ├── claim (store)
    │   ├── Settled: delivered or already_done before ──── ack "duplicate"
    │   ├── Settled: another event acted on its target order ─ ack "duplicate" (pair `duplicate`)
    │   ├── Busy: another claim holds it, or another event ── to a delay queue, ack "busy"
    │   │   holding its target order may still act
    │   │   (a copy of a call this worker is making waits for that call, then claims again)
    │   └── Claimed: the outcome goes to the store first, then the message moves
    │       ├── no order link (link_platform) ──────────── RetryLater "no_link" in no_link_window
    │       └── TargetCaller.attempt -> Outcome
    │           ├── Delivered ─────────────────────────── ack "delivered" (echo recorded)
    │           ├── AlreadyDone ───────────────────────── ack "already_done"
    │           ├── RetryLater, window left ───────────── to a delay queue, ack "retried"
    │           ├── RetryLater, window used up ────────── park, ack "parked"
    │           └── Rejected ──────────────────────────── park, ack "parked"
    └── raised on the way: never acked (raised after the claim, the pair is first recorded
        │   `retrying` if the store can, so that the redelivery claims it without waiting out
        │   the lease: a call that may have landed is asked again, as after a timeout)
        ├── StoreUnavailable ──────── hold the message, handle it again every STORE_PAUSE
        │                             (an answer in hand waits in `_record` instead: never lost)
        ├── BrokerUnavailable ─────── wait for the publisher (UNSETTLED_PAUSE at most), nack
        ├── any other Exception ───── a bug: nack (the quorum delivery limit dead-letters a
        │                             poison message to the parked queue)
        └── the channel gone at ack or nack ── logged `worker.settle_lost`; the broker
                                              redelivers it and the store finds it settled

Declaring or consuming fails (CONNECTION_EXCEPTIONS): `worker.declare_failed`, counted
"declare_failed", and the worker connects again after `reconnect_interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import assert_never

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, FieldValue
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from pydantic import ValidationError

from bridge.amqp import topology
from bridge.amqp.messages import (
    ATTEMPTS_HEADER,
    FIRST_ATTEMPT_HEADER,
    LAST_ERROR_HEADER,
    MAX_ERROR_CHARS,
    NOT_BEFORE_HEADER,
    PARK_REASON_HEADER,
    PARKED_AT_HEADER,
    attempts_of,
    copy_with,
    epoch_ms,
    first_attempt_of,
    not_before_of,
)
from bridge.amqp.publisher import BrokerUnavailable, Publisher, open_robust
from bridge.executor import Executor
from bridge.metrics import Metrics
from bridge.settings import BrokerSettings
from bridge.store.batching import Batcher
from bridge.store.claims import Busy, Claim, Claimed, Result, Settled
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from bridge.store.lifecycle import DeliveryState
from bridge.tracing import Tracing
from bridge.worker.depths import DepthWatcher
from bridge.worker.plan import WorkerPlan
from bridge.worker.retry import delay_tier, next_retry
from bridge.worker.target_call import TargetCaller
from contracts.events import OrderCancelled, Source
from handlers.base import AlreadyDone, Delivered, Outcome, Rejected, RetryLater

log = structlog.get_logger(__name__)

EARLY_TOLERANCE = 0.05  # seconds: a delay queue's TTL is not to the millisecond
UNSETTLED_PAUSE = 10.0  # seconds to wait for the broker before requeueing an unsettled message
STORE_PAUSE = 1.0  # seconds between tries of a message the store could not settle
NO_LINK = "no_link"
PLATFORMS = frozenset(source.value for source in Source)
SETTLED_KINDS = frozenset(
    ("delivered", "already_done", "retried", "parked", "duplicate", "busy", "waiting")
)


@dataclass(frozen=True, slots=True)
class NoLink:
    """The target needs an order link that is not there (yet)."""

    wanted: str


def worker_id() -> str:
    """The name a worker claims under: host, process and a random part (unique per start)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Consumes `cancel-bridge.<target>` and settles every message."""

    def __init__(  # noqa: PLR0913 - its parts; the optional two by keyword
        self,
        plan: WorkerPlan,
        publisher: Publisher,
        executor: Executor,
        store: Store,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        depth_interval: float = 15.0,
    ) -> None:
        self._plan = plan
        self.metrics = metrics or Metrics()
        self._tracing = tracing or Tracing()
        self._publisher = publisher
        self._store = store
        self._target = TargetCaller(
            plan, executor, self.metrics, self._tracing, nothing_more=self._nothing_more
        )
        self.tokens = self._target.tokens
        self._depths = DepthWatcher(plan, self.metrics, depth_interval)
        self.id = worker_id()
        # Claims and outcomes of the messages in hand go to the store in batches: one
        # transaction for whatever arrived while the previous one ran. A batch of claims waits
        # up to `claim_linger` for the messages in hand that have not asked yet.
        lease = timedelta(seconds=plan.timeout + plan.settings.lease_margin)
        self._before_claim: set[asyncio.Task[None]] = set()
        self._claims: Batcher[tuple[OrderCancelled, str | None], Claim] = Batcher(
            self.metrics.timed_batch(
                "claim",
                lambda batch: store.claim_many(
                    [event for event, _ in batch],
                    plan.target,
                    self.id,
                    lease,
                    {str(event.event_id): order for event, order in batch if order is not None},
                ),
            ),
            linger=plan.settings.claim_linger,
            busy=lambda _: bool(self._before_claim),
        )
        self._finishes: Batcher[Result, bool] = Batcher(
            self.metrics.timed_batch("finish", store.finish_many)
        )
        # Events this worker is calling the target for, set when the claim is finished: a
        # second copy in hand waits for the first instead of going round a delay queue.
        self._calling: dict[str, asyncio.Event] = {}
        # Acked messages by how they were settled (delivered, already_done, retried, parked,
        # waiting, duplicate, busy), plus declare_failed. Tests and benchmarks await these.
        self.outcomes: Counter[str] = Counter()
        self._changed = asyncio.Condition()
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._in_hand: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Event()  # set as each message comes in hand (`wait_in_hand`)
        # Messages in hand that have not reached the target call yet (and may never: a
        # duplicate, a busy pair). None left: a waiting batch can grow no more, it goes now.
        self._before_call: set[asyncio.Task[None]] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(  # noqa: PLR0913 - what a running worker is made of
        cls,
        plan: WorkerPlan,
        url: str,
        broker: BrokerSettings,
        store: Store,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        depth_interval: float = 15.0,
    ) -> AsyncIterator[Worker]:
        """Connect (retrying until the broker answers), declare, consume; stop on exit.

        Every `depth_interval` seconds the target's queue depths go into the metrics.
        """
        name = f"{broker.app_id} worker {plan.target}"
        metrics = metrics or Metrics()
        async with (
            Publisher.running(
                url, broker, connection_name=f"worker {plan.target}", metrics=metrics
            ) as publisher,
            Executor.running() as executor,
        ):
            worker = cls(
                plan,
                publisher,
                executor,
                store,
                metrics=metrics,
                tracing=tracing,
                depth_interval=depth_interval,
            )
            consuming = asyncio.create_task(worker._consume(url, broker, name))
            try:
                yield worker
            finally:
                await worker._drain(plan.settings.drain_timeout)
                consuming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consuming

    async def wait_in_hand(self, count: int) -> None:
        """Return once at least `count` messages are in hand (delivered, not settled yet)."""
        while len(self._in_hand) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def wait_outcomes(self, kind: str, count: int) -> None:
        """Return once at least `count` messages were settled as `kind`."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.outcomes[kind] >= count)

    async def _consume(self, url: str, broker: BrokerSettings, name: str) -> None:
        """Declare and consume, again after any failure: a dead consumer must not go unnoticed."""
        while True:
            connection = await open_robust(url, broker, name)
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self._plan.settings.prefetch)
                queue = await topology.declare_target(channel, self._plan.topology)
                await self._publisher.wait_ready()
                self._queue = queue
                self._consumer_tag = await queue.consume(self._on_message)
                log.info("worker.consuming", target=self._plan.target, queue=queue.name)
                await self._depths.watch(connection)  # until cancelled
            except CONNECTION_EXCEPTIONS as exc:
                # e.g. PRECONDITION_FAILED: the queues exist with other arguments (README).
                log.error(  # noqa: TRY400 - the broker's refusal says it all
                    "worker.declare_failed", error=str(exc), retry_in=broker.reconnect_interval
                )
                await self._count("declare_failed")
            finally:
                self._queue = self._consumer_tag = None
                await connection.close()
            await asyncio.sleep(broker.reconnect_interval)

    async def wait_depths(self) -> None:
        """Have the queue depths read into the metrics now; return once they were."""
        await self._depths.wait()

    async def _drain(self, within: float) -> None:
        """Stop taking messages, let those in hand settle (bounded by `within`), cancel the rest."""
        queue, tag = self._queue, self._consumer_tag
        if queue is not None and tag is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await queue.cancel(tag)
        if self._in_hand:
            log.info("worker.draining", in_hand=len(self._in_hand))
            await asyncio.wait(self._in_hand, timeout=within)
        for work in list(self._in_hand):  # past the drain timeout: unsettled, redelivered later
            work.cancel()
        await asyncio.gather(*self._in_hand, return_exceptions=True)
        await self._target.stop()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aiormq cancels consumer callbacks when their channel closes (a broker restart, a cut
        # link). A target call under way must still be recorded, or its pair waits out the
        # lease and the target is asked again: the work runs in a task of our own, the
        # callback only waits for it. Its ack then fails; the broker redelivers the message,
        # and the store says it is settled.
        work = asyncio.create_task(self._work(message))
        self._in_hand.add(work)
        self._arrived.set()
        self._before_claim.add(work)
        self._before_call.add(work)
        work.add_done_callback(self._done)
        await asyncio.shield(work)

    def _done(self, work: asyncio.Task[None]) -> None:
        self._in_hand.discard(work)
        self._before_claim.discard(work)
        if work in self._before_call:  # settled without a call: a batch may not wait for it
            self._before_call.discard(work)
            self._target.poke()

    def _nothing_more(self) -> bool:
        """No message in hand can still join a batched call.

        A batch is made of what is in hand together: under a backlog the messages the broker
        delivers together go together; arriving one by one, each goes alone, at once.
        """
        return not self._before_call

    async def _work(self, message: AbstractIncomingMessage) -> None:
        if self._tracing.on:
            attributes = {
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": self._plan.topology.work.name,
                "messaging.message.id": message.message_id or "",
            }
            name = f"process {self._plan.topology.work.name}"
            with self._tracing.span(name, "consumer", attributes, parent=message.headers):
                await self._work_untraced(message)
        else:
            await self._work_untraced(message)

    async def _work_untraced(self, message: AbstractIncomingMessage) -> None:
        with structlog.contextvars.bound_contextvars(
            event_id=message.message_id, target=self._plan.target
        ):
            try:
                await self._handle_holding(message)
            except BrokerUnavailable as exc:
                # Requeueing at once would spin through the delivery limit while the broker is
                # in trouble and park healthy messages as poison: wait for it first (bounded).
                log.warning("worker.unsettled", detail=str(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(UNSETTLED_PAUSE):
                        await self._publisher.wait_ready()
                await self._nack(message)
            except Exception:  # a bug in a handler: requeue; the delivery limit parks it
                log.exception("worker.crashed")
                await self._nack(message)

    async def _handle_holding(self, message: AbstractIncomingMessage) -> None:
        """`handle`, again and again while the store is unavailable.

        The message stays unacked in hand meanwhile: the broker keeps it, and its delivery count
        does not grow (requeueing would park healthy messages as poison during a long outage).
        If the worker stops first, the closing channel returns it to the queue.
        """
        while True:
            try:
                return await self.handle(message)
            except StoreUnavailable as exc:
                log.warning("worker.store_unavailable", detail=str(exc), retry_in=STORE_PAUSE)
                await self._count("store_unavailable")
                await asyncio.sleep(STORE_PAUSE)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Claim the pair, attempt the target once, record the answer, settle the message."""
        if await self._still_waiting(message):
            return await self._ack(message, "waiting")
        attempt = attempts_of(message) + 1
        try:
            event = OrderCancelled.from_json(message.body)
        except ValidationError as exc:
            reason = f"unreadable event: {exc.errors()[0]['msg']}"
            await self._park(message, reason, attempt - 1, reason)
            return await self._ack(message, "parked")
        key = str(event.event_id)
        linked = await self._linked_order(event)
        order = self._target.order_key(event, None if isinstance(linked, NoLink) else linked)
        claim = await self._claim(event, order)
        match claim:
            case Settled(state=DeliveryState.DUPLICATE, reference=holder):
                # another event holds this target order: its effect is that event's
                log.info("cancel.duplicate", state=DeliveryState.DUPLICATE, order=order, of=holder)
                return await self._ack(message, "duplicate")
            case Settled(state=state):
                log.info("cancel.duplicate", state=state)
                return await self._ack(message, "duplicate")
            case Busy(lease_until=until):
                await self._wait_for_claim(message, until)
                return await self._ack(message, "busy")
            case Claimed():
                pass
        done = self._calling[key] = asyncio.Event()
        try:
            kind = await self._call_and_record(message, event, attempt, linked)
        except Exception as exc:
            # Let the redelivery claim the pair at once (a crashing handler then reaches the
            # delivery limit and is parked) instead of waiting out the lease. A call that may
            # have landed is asked again, as after a timeout.
            with contextlib.suppress(StoreUnavailable):
                await self._record(
                    event, DeliveryState.RETRYING, f"worker error: {type(exc).__name__}", hold=False
                )
            raise
        finally:
            done.set()
            self._calling.pop(key, None)
        return await self._ack(message, kind)

    async def _claim(self, event: OrderCancelled, order: str | None) -> Claimed | Settled | Busy:
        """Claim the pair (bound to `order`, the target's name for it, if known).

        A copy of an event this worker is calling waits for that call.
        """
        key = str(event.event_id)
        self._before_claim.discard(asyncio.current_task())  # this message's `_work` task
        while True:
            claim = await self._claims.submit((event, order))
            in_hand = self._calling.get(key)
            if not (isinstance(claim, Busy) and claim.claimed_by == self.id and in_hand):
                return claim
            await in_hand.wait()

    async def _wait_for_claim(self, message: AbstractIncomingMessage, until: datetime) -> None:
        """Another worker holds the pair: come back when its lease ends, or sooner."""
        remaining = (until - datetime.now(UTC)).total_seconds()
        delay = max(EARLY_TOLERANCE, min(remaining, self._plan.settings.retry_delays[0]))
        tier = await self._delay(message, delay, {NOT_BEFORE_HEADER: epoch_ms(time.time() + delay)})
        log.info("cancel.busy", lease_remaining=round(remaining, 3), tier=tier)

    async def _call_and_record(
        self,
        message: AbstractIncomingMessage,
        event: OrderCancelled,
        attempt: int,
        linked: str | NoLink | None,
    ) -> str:
        """The claimed call: attempt, record the answer in the store, then settle the message.

        The store learns the outcome first (a crash after that leaves a settled pair, or a
        claimable one); the message is republished and acked after. `linked`: the target's
        order, looked up before the claim (which is bound to it).
        """
        park_as = None
        total = self._plan.settings.retry_total
        if isinstance(linked, NoLink):
            outcome: Outcome = RetryLater(
                f"{NO_LINK}: no {linked.wanted} order linked to {event.source.value} order"
            )
            park_as, total, linked = NO_LINK, self._plan.settings.no_link_window, None
        else:
            self._before_call.discard(asyncio.current_task())  # this message's `_work` task
            # A retry travels alone: its last call failed, and a batch's failure is each order's.
            outcome = await self._target.attempt(event, linked, alone=attempt > 1)
        match outcome:
            case Delivered(reference=reference, order_id=target_order):
                # Cancelled on a platform by us: its own webhook for the order is an echo.
                echo = (self._plan.target, target_order or linked or event.order_id)
                await self._record(
                    event,
                    DeliveryState.DELIVERED,
                    None,
                    reference=reference,
                    echo=echo if self._plan.target in PLATFORMS else None,
                )
                log.info("cancel.delivered", attempt=attempt, reference=reference)
                return "delivered"
            case AlreadyDone(detail=detail):
                await self._record(event, DeliveryState.ALREADY_DONE, detail)
                log.info("cancel.already_done", attempt=attempt, detail=detail)
                return "already_done"
            case RetryLater(reason=reason, after=after):
                first = first_attempt_of(message) or time.time()
                delay = self._next_delay(attempt, first, after, total)
                if delay is None:
                    why = park_as or f"retries exhausted: {reason}"
                    await self._record(
                        event, DeliveryState.PARKED, why if park_as is None else reason
                    )
                    await self._park(message, why, attempt, reason)
                    return "parked"
                await self._record(event, DeliveryState.RETRYING, reason)
                await self._retry(message, attempt, reason, first, delay)
                return "retried"
            case Rejected(reason=reason):
                await self._record(event, DeliveryState.PARKED, reason)
                await self._park(message, reason, attempt, reason)
                return "parked"
            case _:
                assert_never(outcome)

    async def _linked_order(self, event: OrderCancelled) -> str | NoLink | None:
        platform = self._plan.link_platform
        if platform is None:
            return None
        found = await self._store.linked_order(event.source.value, event.order_id, platform)
        return NoLink(platform) if found is None else found

    async def _record(  # noqa: PLR0913 - what the store keeps of one answer
        self,
        event: OrderCancelled,
        state: DeliveryState,
        detail: str | None,
        *,
        reference: str | None = None,
        echo: tuple[str, str] | None = None,
        hold: bool = True,
    ) -> None:
        """Write the claim's outcome; with `hold`, wait out a store outage to do it.

        The target's answer is in hand: losing it would mean asking the target again.
        """
        while True:
            try:
                result = Result(
                    str(event.event_id),
                    self._plan.target,
                    self.id,
                    state,
                    datetime.now(UTC),
                    None if detail is None else detail[:MAX_ERROR_CHARS],
                    reference,
                    echo,
                )
                held = await self._finishes.submit(result)
                break
            except StoreUnavailable as exc:
                if not hold:
                    raise
                log.warning("cancel.record_waiting", detail=str(exc), state=state)
                await self._count("store_unavailable")
                await asyncio.sleep(STORE_PAUSE)
        if not held:
            log.warning("cancel.lease_lost", state=state)

    async def _still_waiting(self, message: AbstractIncomingMessage) -> bool:
        """Back from a delay queue too early (a wait longer than the longest tier): wait more."""
        not_before = not_before_of(message)
        remaining = (not_before or 0.0) - time.time()
        if remaining <= EARLY_TOLERANCE:
            return False
        if remaining > self._plan.settings.retry_total:  # a forged header or a clock jump
            reason = f"x-not-before-ms is {remaining:.0f}s away, past retry_total"
            await self._park(message, reason, attempts_of(message), reason)
            return True
        await self._delay(message, remaining, {})
        log.info("cancel.waiting", remaining=round(remaining, 3))
        return True

    async def _delay(
        self, message: AbstractIncomingMessage, delay: float, headers: dict[str, FieldValue]
    ) -> float:
        """Republish `message` to the delay queue for `delay` (the longest tier at most)."""
        tier = delay_tier(delay, self._plan.settings.retry_delays)
        queue = self._plan.topology.delays[tier]
        await self._publisher.to_queue(queue.name, copy_with(message, headers), "retry")
        return tier

    def _next_delay(
        self, attempt: int, first: float, after: float | None, total: float
    ) -> float | None:
        """Seconds until the next attempt, or None when the retry window is used up."""
        return next_retry(
            attempt,
            elapsed=time.time() - first,
            delays=self._plan.settings.retry_delays,
            total=total,
            retry_after=after,
        )

    async def _retry(
        self,
        message: AbstractIncomingMessage,
        attempt: int,
        reason: str,
        first: float,
        delay: float,
    ) -> None:
        headers: dict[str, FieldValue] = {
            ATTEMPTS_HEADER: attempt,
            FIRST_ATTEMPT_HEADER: epoch_ms(first),
            LAST_ERROR_HEADER: reason[:MAX_ERROR_CHARS],
            NOT_BEFORE_HEADER: epoch_ms(time.time() + delay),
        }
        tier = await self._delay(message, delay, headers)
        log.info("cancel.retry", attempt=attempt, reason=reason, delay=delay, tier=tier)

    async def _park(
        self, message: AbstractIncomingMessage, reason: str, attempts: int, last_error: str
    ) -> None:
        headers: dict[str, FieldValue] = {
            PARK_REASON_HEADER: reason[:MAX_ERROR_CHARS],
            ATTEMPTS_HEADER: attempts,
            LAST_ERROR_HEADER: last_error[:MAX_ERROR_CHARS],
            PARKED_AT_HEADER: epoch_ms(time.time()),
        }
        await self._publisher.to_queue(
            self._plan.topology.parked.name, copy_with(message, headers), "parked"
        )
        log.warning("cancel.parked", reason=reason, attempts=attempts)

    async def _ack(self, message: AbstractIncomingMessage, kind: str) -> None:
        try:
            await message.ack()
        except CONNECTION_EXCEPTIONS as exc:
            _settle_lost("ack", exc)
        await self._count(kind)

    async def _nack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.nack(requeue=True)
        except CONNECTION_EXCEPTIONS as exc:
            _settle_lost("nack", exc)

    async def _count(self, kind: str) -> None:
        if kind in SETTLED_KINDS:
            self.metrics.deliveries.labels(self._plan.target, kind).inc()
        else:
            self.metrics.worker_problems.labels(self._plan.target, kind).inc()
        async with self._changed:
            self.outcomes[kind] += 1
            self._changed.notify_all()


def _settle_lost(what: str, exc: BaseException) -> None:
    """The channel that delivered a message is gone: the broker delivers it again."""
    log.info("worker.settle_lost", action=what, error=type(exc).__name__)
