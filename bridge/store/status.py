"""What the bridge knows about an order: its events, each target's state and history, links.

`order_status` reads the store; `render` turns the result into the text `cancel-bridge status`
prints. `GET /api/orders/{source}/{order_id}` answers the same data as JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bridge.store.deliveries import Store
from bridge.store.tables import deliveries, events, transitions
from contracts.timestamps import utc_z

Json = dict[str, Any]


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else utc_z(moment)


async def order_status(store: Store, order_id: str, source: str | None = None) -> list[Json]:
    """Every event recorded for `order_id` (from `source`, or any), newest first, as JSON."""
    wanted = [events.c.order_id == order_id]
    if source is not None:
        wanted.append(events.c.source == source)
    async with store.reading() as connection:
        found = (
            await connection.execute(
                sa.select(events).where(*wanted).order_by(events.c.first_seen.desc())
            )
        ).all()
        ids = [row.event_id for row in found]
        rows = (
            await connection.execute(
                sa.select(deliveries)
                .where(deliveries.c.event_id.in_(ids))
                .order_by(deliveries.c.target)
            )
        ).all()
        steps = (
            await connection.execute(
                sa.select(transitions)
                .where(transitions.c.event_id.in_(ids))
                # By time, then as written: a step noted with the time it began (a replay
                # from the parked queue) comes before what the worker did after it.
                .order_by(transitions.c.at, transitions.c.id)
            )
        ).all()
    history: dict[tuple[str, str], list[Json]] = {}
    for step in steps:
        history.setdefault((step.event_id, step.target), []).append(
            {"state": step.state, "at": _time(step.at), "detail": step.detail}
        )
    return [
        {
            "event_id": row.event_id,
            "source": row.source,
            "shop": row.shop,
            "order_id": row.order_id,
            "reason": row.reason,
            "first_seen": _time(row.first_seen),
            "last_seen": _time(row.last_seen),
            "times_received": row.delivery_count,
            "links": await store.links_of(row.source, row.order_id),
            "deliveries": [
                {
                    "target": d.target,
                    "state": d.state,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "reference": d.reference,
                    "updated_at": _time(d.updated_at),
                    "history": history.get((d.event_id, d.target), []),
                }
                for d in rows
                if d.event_id == row.event_id
            ],
        }
        for row in found
    ]


def render(order_id: str, found: list[Json]) -> str:
    """The text `cancel-bridge status` prints for `order_status`'s result."""
    if not found:
        return f"no cancellation recorded for order {order_id}"
    lines: list[str] = []
    for event in found:
        lines.append(
            f"event {event['event_id']}: {event['source']} {event['shop']} order"
            f" {event['order_id']} ({event['reason']})"
        )
        lines.append(
            f"  received {event['times_received']}x, first {event['first_seen']},"
            f" last {event['last_seen']}"
        )
        if event["links"]:
            linked = ", ".join(f"{k}={v}" for k, v in sorted(event["links"].items()))
            lines.append(f"  links: {linked}")
        if not event["deliveries"]:
            lines.append("  no target has taken it yet")
        for delivery in event["deliveries"]:
            extra = f", reference {delivery['reference']}" if delivery["reference"] else ""
            error = f", last error: {delivery['last_error']}" if delivery["last_error"] else ""
            lines.append(
                f"  {delivery['target']}: {delivery['state']} after {delivery['attempts']}"
                f" attempt(s){extra}{error}"
            )
            for step in delivery["history"]:
                detail = f"  {step['detail']}" if step["detail"] else ""
                lines.append(f"    {step['at']}  {step['state']}{detail}")
    return "\n".join(lines)
