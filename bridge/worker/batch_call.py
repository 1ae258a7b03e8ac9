"""Batched target calls: many claimed cancellations in one call, for targets that opt in.

A target whose cancel call takes a list (`handlers.base.BatchingTarget`, CJ's `cancelOrders`)
gets the cancellations its worker's messages submit gathered into one call: it is made once
`batch_size` are waiting, once the first has waited `batch_linger`, or at once when none of
the messages the worker holds can still join (`nothing_more`: every message in hand is in a
call or past it). So a backlog goes in batches and a trickle one by one, without waiting.
Retries are not submitted: they travel alone (`TargetCaller.attempt`). Each submitter gets its
own outcome, from the adapter's `interpret_many`, or `Unattributed`: the answer does not say,
and the caller sends that cancellation again alone.

Only claimed cancellations are submitted, and each caller records its outcome before it acks
(`consumer.py`): batching changes how many cancellations travel in one call, not the one
effect per (order, target). A submitter that gives up before its batch is made (a worker
stopping) is left out of the call: nobody would record its answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from bridge.executor import HttpAnswer
from contracts.events import OrderCancelled
from handlers.base import BatchingTarget, HttpCall, Outcome, Rejected, RetryLater, Unattributed

log = structlog.get_logger(__name__)

Call = Callable[[HttpCall], Awaitable[HttpAnswer | RetryLater | Rejected]]
Result = Outcome | Unattributed


@dataclass(frozen=True, slots=True)
class _Item:
    event: OrderCancelled
    order_id: str | None
    future: asyncio.Future[Result]


class CallBatcher:
    """Gathers one target's cancellations into calls of at most `adapter.batch_size`."""

    def __init__(
        self, adapter: BatchingTarget, call: Call, nothing_more: Callable[[], bool]
    ) -> None:
        self._adapter = adapter
        self._call = call
        self._nothing_more = nothing_more
        self._size = adapter.batch_size
        self._linger = adapter.batch_linger
        self._pending: list[_Item] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flights: set[asyncio.Task[None]] = set()
        # Calls made, by what sent them: "full", "nothing_more" (no message can join), "linger".
        self.sent: Counter[str] = Counter()

    async def submit(self, event: OrderCancelled, order_id: str | None) -> Result:
        """`event`'s outcome from the call it travels in (`order_id`: its linked id, if any)."""
        loop = asyncio.get_running_loop()
        item = _Item(event, order_id, loop.create_future())
        self._pending.append(item)
        if len(self._pending) >= self._size:
            self._send_pending("full")
        elif self._nothing_more():
            self._send_pending("nothing_more")
        elif self._timer is None:
            self._timer = loop.call_later(self._linger, self._send_pending, "linger")
        return await item.future

    def poke(self) -> None:
        """A message left without a call: send what waits if nothing more can join it."""
        if self._pending and self._nothing_more():
            self._send_pending("nothing_more")

    async def stop(self) -> None:
        """Cancel what waits and the calls under way (a stopping worker's last step)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for item in self._pending:
            item.future.cancel()
        self._pending.clear()
        for flight in self._flights:
            flight.cancel()
        await asyncio.gather(*self._flights, return_exceptions=True)

    def _send_pending(self, why: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [item for item in self._pending if not item.future.done()]
        self._pending.clear()
        if not batch:
            return
        self.sent[why] += 1
        flight = asyncio.create_task(self._send(batch))
        self._flights.add(flight)
        flight.add_done_callback(self._flights.discard)

    async def _send(self, batch: list[_Item]) -> None:
        # The task runs in the context of the message that filled the batch: its log lines
        # name the batch's events, not that one.
        structlog.contextvars.unbind_contextvars("event_id")
        try:
            results = await self._outcomes(batch)
        except asyncio.CancelledError:
            for item in batch:
                item.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: each submitter's handler settles it
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def _outcomes(self, batch: Sequence[_Item]) -> list[Result]:
        """Build the call, make it, and read each item's outcome from the answer."""
        adapter = self._adapter
        built = adapter.build_many(
            [(item.event, item.order_id) for item in batch], datetime.now(UTC)
        )
        results: list[Result] = [Unattributed("no outcome for it in the batch")] * len(batch)
        for index, refused in built.refused.items():
            results[index] = refused
        if built.call is None:
            return results
        log.debug(
            "cancel.batch",
            size=len(built.sent),
            event_ids=[str(batch[index].event.event_id) for index in built.sent],
        )
        answer = await self._call(built.call)
        if isinstance(answer, RetryLater | Rejected):  # the whole call failed: each alike
            outcomes: Sequence[Result] = (answer,) * len(built.sent)
        else:
            outcomes = adapter.interpret_many(
                built, answer.status, answer.headers, answer.body, datetime.now(UTC)
            )
        for index, outcome in zip(built.sent, outcomes, strict=True):
            results[index] = outcome
        return results
