"""The target call: one attempt at a claimed cancellation, from the adapter's call to an outcome.

The adapter builds the call (sans-I/O); it is paced per `pace_key`, carries the target's token
(`call_with_token`: a 401 gets one new token and one more try), goes through the executor (its
timeout, a client span, the `target_seconds` metric), and the adapter interprets the answer: an
outcome, or a follow-up call (a confirm-read) whose answer it interprets in turn. Nothing here
raises for a target's trouble: a failed call is `RetryLater`, a refused token the token
endpoint's outcome.

A target that opts in to batching (`handlers.base.BatchingTarget`, a `batch_size` above 1) has
its cancellations gathered into calls of many (`batch_call.py`); one whose batched answer does
not say what became of it is sent again alone, as a target without batching always is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from bridge.executor import Executor, HttpAnswer
from bridge.metrics import Metrics, status_class
from bridge.tokens import NoToken, TokenCache, call_with_token
from bridge.tracing import Tracing, failed
from bridge.worker.batch_call import CallBatcher
from bridge.worker.pacing import Pacer
from bridge.worker.plan import WorkerPlan
from contracts.events import OrderCancelled
from handlers.base import (
    BatchingTarget,
    FollowUp,
    HttpCall,
    NamesOrders,
    Outcome,
    Rejected,
    RetryLater,
    Unattributed,
)

log = structlog.get_logger(__name__)

MAX_FOLLOW_UPS = 3  # calls after the first that an adapter may ask for (a confirm-read is one)


class TargetCaller:
    """Makes one target's calls: its adapter, pacer, token and executor."""

    def __init__(
        self,
        plan: WorkerPlan,
        executor: Executor,
        metrics: Metrics,
        tracing: Tracing,
        *,
        nothing_more: Callable[[], bool] = lambda: False,
    ) -> None:
        self._plan = plan
        self._executor = executor
        self._metrics = metrics
        self._tracing = tracing
        self._pacer = Pacer(plan.rate) if plan.rate else None
        self.tokens = TokenCache(plan.auth, executor, plan.timeout) if plan.auth else None
        adapter = plan.adapter
        self._names = adapter.order_key if isinstance(adapter, NamesOrders) else None
        self._batcher = (
            CallBatcher(adapter, self._call, nothing_more)
            if isinstance(adapter, BatchingTarget) and adapter.batch_size > 1
            else None
        )

    def order_key(self, event: OrderCancelled, order_id: str | None) -> str | None:
        """The name the target knows `event`'s order by: one effect per name (the claim binds it).

        The adapter's (`NamesOrders`), else the linked order id (`order_id`), if any.
        """
        return order_id if self._names is None else self._names(event, order_id)

    async def attempt(
        self, event: OrderCancelled, order_id: str | None, *, alone: bool = False
    ) -> Outcome:
        """`event`'s outcome: from a batched call where the target batches, else alone.

        With `alone` (a retry), or when a batched answer does not say, the call carries `event`
        only.
        """
        if self._batcher is not None:
            if alone:
                self._batcher.poke()  # this one will not join: a waiting batch may go now
            else:
                result = await self._batcher.submit(event, order_id)
                if not isinstance(result, Unattributed):
                    return result
                log.info("cancel.sent_alone", reason=result.reason)
        return await self.attempt_alone(event, order_id)

    def poke(self) -> None:
        """A message in hand settled without a call: a waiting batch may have to go now."""
        if self._batcher is not None:
            self._batcher.poke()

    async def stop(self) -> None:
        """Cancel batched calls still waiting or under way (the worker is stopping)."""
        if self._batcher is not None:
            await self._batcher.stop()

    async def attempt_alone(self, event: OrderCancelled, order_id: str | None) -> Outcome:
        """Build the call for `event`, make it (and any follow-ups), interpret the answers."""
        adapter = self._plan.adapter
        call = adapter.build(event, datetime.now(UTC), order_id)
        if isinstance(call, Rejected):
            return call
        answer = await self._call(call)
        if isinstance(answer, RetryLater | Rejected):
            return answer
        result = adapter.interpret(
            call, answer.status, answer.headers, answer.body, datetime.now(UTC)
        )
        for _ in range(MAX_FOLLOW_UPS):
            if not isinstance(result, FollowUp):
                return result
            answer = await self._call(result.call)
            if isinstance(answer, RetryLater | Rejected):
                return answer
            result = result.then(answer.status, answer.headers, answer.body, datetime.now(UTC))
        return RetryLater(f"no outcome after {MAX_FOLLOW_UPS} follow-up calls")

    async def _call(self, call: HttpCall) -> HttpAnswer | RetryLater | Rejected:
        """Make `call`, paced, with the target's token."""
        if call.pace_key is not None and self._pacer is not None:
            await self._pacer.wait(call.pace_key)
        answer = await call_with_token(call, self.tokens, self._timed_call)
        return answer.why if isinstance(answer, NoToken) else answer

    async def _timed_call(self, call: HttpCall) -> HttpAnswer | RetryLater:
        """The executor's call, timed into the metrics (and a client span when tracing)."""
        attributes = {"http.request.method": call.method, "cancel_bridge.target": self._plan.target}
        with self._tracing.span(f"{call.method} {self._plan.target}", "client", attributes) as span:
            started = time.perf_counter()
            answer = await self._executor.call(call, within=self._plan.timeout)
            elapsed = time.perf_counter() - started
            if isinstance(answer, HttpAnswer):
                result = status_class(answer.status)
                if span is not None:
                    span.set_attribute("http.response.status_code", answer.status)
            else:
                result = "failed"
                failed(span, answer.reason)
        self._metrics.target_seconds.labels(self._plan.target, result).observe(elapsed)
        return answer
