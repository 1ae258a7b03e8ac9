"""A pair's row and its history: each step written beside the row, and the reads of both.

`transitions` keeps the states a pair reached (pending, retrying, delivered, already_done,
parked) with a detail; `calling` is not written (a claim is not an outcome: attempts are counted
on the row). Reconciliation's and operators' steps are marked (`lifecycle.step_kind`). History
is ordered by time, then id: a replay is dated when it began, before the worker's answer to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.engine import Engines
from bridge.store.lifecycle import DeliveryState, StepKind, step_kind
from bridge.store.statements import delivery_row
from bridge.store.tables import deliveries, transitions


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (event, target) row."""

    event_id: str
    target: str
    state: DeliveryState
    attempts: int
    last_error: str | None
    reference: str | None


class History(Engines):
    """Reads of a pair's row and history; the operator's steps."""

    async def delivery(self, event_id: str, target: str) -> Delivery | None:
        """The (event, target) row, if there is one."""
        async with self._read() as connection:
            row = (
                await connection.execute(
                    sa.select(deliveries).where(
                        deliveries.c.event_id == event_id, deliveries.c.target == target
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return Delivery(
            row.event_id,
            row.target,
            DeliveryState(row.state),
            row.attempts,
            row.last_error,
            row.reference,
        )

    async def note_parked(self, event_id: str, target: str, now: datetime, detail: str) -> None:
        """Write in the pair's history what an operator did with its parked message.

        `detail` starts with `StepKind.REPLAYED.marker` or `StepKind.DROPPED.marker`. The
        delivery row stays as it is: a replayed message is claimed from `parked` by the worker;
        a dropped one leaves the pair `parked` (claimable, should the platform send the
        cancellation again).
        """
        async with self._write() as connection:
            await write_step(connection, event_id, target, DeliveryState.PARKED, now, detail=detail)

    async def reopen_counts(self, target: str, event_ids: Sequence[str]) -> dict[str, int]:
        """How many times reconciliation reopened each pair (undone reopens not counted)."""
        if not event_ids:
            return {}
        marked = sa.or_(
            transitions.c.detail.startswith(StepKind.REOPENED.marker),
            transitions.c.detail.startswith(StepKind.REOPEN_UNDONE.marker),
        )
        query = sa.select(transitions.c.event_id, transitions.c.state, transitions.c.detail).where(
            transitions.c.target == target,
            transitions.c.event_id.in_(sorted(set(event_ids))),
            marked,
        )
        counts: dict[str, int] = {}
        async with self._read() as connection:
            for row in await connection.execute(query):
                undone = step_kind(row.state, row.detail) is StepKind.REOPEN_UNDONE
                step = -1 if undone else 1
                counts[row.event_id] = counts.get(row.event_id, 0) + step
        return counts


async def write_step(  # noqa: PLR0913 - the row's columns
    connection: AsyncConnection,
    event_id: str,
    target: str,
    state: DeliveryState,
    now: datetime,
    *,
    detail: str | None,
) -> None:
    """One step of the pair's history."""
    await connection.execute(
        transitions.insert(),
        {"event_id": event_id, "target": target, "state": state, "at": now, "detail": detail},
    )


async def insert_delivery(  # noqa: PLR0913 - the row's columns
    connection: AsyncConnection,
    event_id: str,
    target: str,
    state: DeliveryState,
    now: datetime,
    *,
    worker: str | None = None,
    lease_until: datetime | None = None,
) -> None:
    """A new pair's row, with its first step if it is `pending`."""
    await connection.execute(
        deliveries.insert(),
        delivery_row(event_id, target, state, now, worker=worker, lease_until=lease_until),
    )
    if state == DeliveryState.PENDING:  # a claim (`calling`) is no step of its own: its outcome is
        await write_step(connection, event_id, target, state, now, detail=None)
