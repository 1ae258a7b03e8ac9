"""What reconciliation reads and moves: delivered pairs, reopening them, and undoing a reopen.

A `delivered` pair is never claimed again, unless reconciliation finds that the target did not
act on it after all and `reopen`s it (`delivered` -> `retrying`, attempts kept, a step marked
`StepKind.REOPENED`). Each move is one conditional UPDATE with its step, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bridge.store.engine import Engines, utc
from bridge.store.history import write_step
from bridge.store.lifecycle import DeliveryState, StepKind
from bridge.store.tables import deliveries, events, links


@dataclass(frozen=True, slots=True)
class DeliveredRow:
    """A `delivered` pair with its event, for reconciliation.

    `event_json` is the event as first published; None for rows older than migration 0003 (the
    other event columns still rebuild its id, order and reason). `linked` is the order's id on
    the platform asked for, from the order links.
    """

    event_id: str
    source: str
    shop: str
    order_id: str
    reason: str
    first_seen: datetime
    event_json: str | None
    delivered_at: datetime
    reference: str | None
    attempts: int
    linked: str | None = None


_DELIVERED_COLUMNS: tuple[sa.ColumnElement[Any], ...] = (
    deliveries.c.event_id,
    events.c.source,
    events.c.shop,
    events.c.order_id,
    events.c.reason,
    events.c.first_seen,
    events.c.event_json,
    deliveries.c.updated_at,
    deliveries.c.reference,
    deliveries.c.attempts,
)


class Reopens(Engines):
    """Reconciliation's reads and moves of delivered pairs."""

    async def delivered_between(
        self, target: str, since: datetime, until: datetime, link_platform: str | None = None
    ) -> list[DeliveredRow]:
        """`target`'s pairs now `delivered` whose outcome was recorded in [since, until].

        With `link_platform`, each row carries its order's id on that platform (order links).
        """
        columns: list[sa.ColumnElement[Any]] = list(_DELIVERED_COLUMNS)
        joined = deliveries.join(events, events.c.event_id == deliveries.c.event_id)
        if link_platform is not None:
            mine, theirs = links.alias("mine"), links.alias("theirs")
            joined = joined.outerjoin(
                mine,
                sa.and_(mine.c.platform == events.c.source, mine.c.order_id == events.c.order_id),
            ).outerjoin(
                theirs,
                sa.and_(theirs.c.group_id == mine.c.group_id, theirs.c.platform == link_platform),
            )
            columns.append(theirs.c.order_id.label("linked"))
        query = (
            sa.select(*columns)
            .select_from(joined)
            .where(
                deliveries.c.target == target,
                deliveries.c.state == DeliveryState.DELIVERED,
                deliveries.c.updated_at >= since,
                deliveries.c.updated_at <= until,
            )
            .order_by(deliveries.c.updated_at, deliveries.c.event_id)
        )
        async with self._read() as connection:
            rows = (await connection.execute(query)).all()
        return [_delivered_row(row, linked=link_platform is not None) for row in rows]

    async def stale_reopens(
        self, target: str, before: datetime, now: datetime
    ) -> list[DeliveredRow]:
        """Pairs reconciliation reopened before `before` that no worker has taken since.

        Their message may never have reached the broker (the process stopped between the reopen
        and the publish): the caller sends the event again. Each pair returned is touched
        (`updated_at = now`), so it is returned again only after another wait; a pair a worker
        claims meanwhile is left out. A second message for a pair is harmless: the claim lets
        one call through, and the other copy finds the pair settled.
        """
        reopened = sa.and_(
            deliveries.c.target == target,
            deliveries.c.state == DeliveryState.RETRYING,
            deliveries.c.last_error.startswith(StepKind.REOPENED.marker),
        )
        query = (
            sa.select(*_DELIVERED_COLUMNS)
            .select_from(deliveries.join(events, events.c.event_id == deliveries.c.event_id))
            .where(reopened, deliveries.c.updated_at < before)
            .order_by(deliveries.c.updated_at, deliveries.c.event_id)
        )
        found: list[DeliveredRow] = []
        async with self._write() as connection:
            for row in (await connection.execute(query)).all():
                touched = await connection.execute(
                    deliveries.update()
                    .where(
                        reopened,
                        deliveries.c.event_id == row.event_id,
                        deliveries.c.updated_at == row.updated_at,
                    )
                    .values(updated_at=now)
                )
                if touched.rowcount == 1:
                    found.append(_delivered_row(row, linked=False))
        return found

    async def reopen(
        self, event_id: str, target: str, now: datetime, detail: str, *, attempts: int
    ) -> bool:
        """Make a `delivered` pair claimable again (`retrying`), its attempts kept.

        For reconciliation: the target accepted the call but did not act on it. `detail`
        (starting with `StepKind.REOPENED.marker`) is the pair's last error and its step's
        detail. Only the pair as the caller saw it (`delivered` after `attempts` attempts): one
        delivered again since (another reconciler's requeue, answered by the target) is left
        alone, and False says nothing changed.
        """
        return await self._move(
            (event_id, target),
            sa.and_(
                deliveries.c.state == DeliveryState.DELIVERED, deliveries.c.attempts == attempts
            ),
            (DeliveryState.RETRYING, detail),
            now,
            detail,
        )

    async def undo_reopen(self, event_id: str, target: str, now: datetime, detail: str) -> bool:
        """Back to `delivered` after a `reopen` whose event could not be published again.

        Only while the pair is still as `reopen` left it (`retrying`, with `reopen`'s detail as
        its last error): a worker that claimed it meanwhile keeps it.
        """
        return await self._move(
            (event_id, target),
            sa.and_(
                deliveries.c.state == DeliveryState.RETRYING, deliveries.c.last_error == detail
            ),
            (DeliveryState.DELIVERED, None),
            now,
            f"{StepKind.REOPEN_UNDONE.marker}: {detail}",
        )

    async def _move(
        self,
        pair: tuple[str, str],
        only_if: sa.ColumnElement[bool],
        to: tuple[DeliveryState, str | None],
        now: datetime,
        detail: str,
    ) -> bool:
        """Move the pair `to` (state, last error) if `only_if` holds; a step says `detail`."""
        event_id, target = pair
        state, last_error = to
        async with self._write() as connection:
            moved = await connection.execute(
                deliveries.update()
                .where(deliveries.c.event_id == event_id, deliveries.c.target == target, only_if)
                .values(state=state, last_error=last_error, updated_at=now)
            )
            if moved.rowcount != 1:
                return False
            await write_step(connection, event_id, target, state, now, detail=detail)
        return True


def _delivered_row(row: sa.Row[Any], *, linked: bool) -> DeliveredRow:
    return DeliveredRow(
        row.event_id,
        row.source,
        row.shop,
        row.order_id,
        row.reason,
        utc(row.first_seen),
        row.event_json,
        utc(row.updated_at),
        row.reference,
        int(row.attempts),
        row.linked if linked else None,
    )
