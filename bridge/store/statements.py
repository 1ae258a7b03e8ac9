"""The hot statements, built once, and the rows they insert.

Building a Core statement cost more CPU than executing it (docs/NOTES.md, "The store"), so the
receiver's and the worker's paths run these prebuilt ones with bound parameters: `k` event id,
`t` target, `w` worker, `now`, `lease` (lease end), `st`/`err`/`ref` (an outcome's state,
error and reference), `keys`/`orders` (expanding lists).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from bridge.store.lifecycle import CLAIMABLE_STATES, SETTLED_STATES, DeliveryState
from bridge.store.tables import deliveries, echoes, events
from contracts.events import OrderCancelled

_PAIR = (deliveries.c.event_id == sa.bindparam("k"), deliveries.c.target == sa.bindparam("t"))
# Claimable, or held by a claim whose lease ended.
_TAKEABLE = sa.or_(
    deliveries.c.state.in_(CLAIMABLE_STATES),
    sa.and_(
        deliveries.c.state == DeliveryState.CALLING,
        deliveries.c.lease_until < sa.bindparam("now"),
    ),
)
_CLAIM = {
    "state": DeliveryState.CALLING,
    "claimed_by": sa.bindparam("w"),
    "lease_until": sa.bindparam("lease"),
    "attempts": deliveries.c.attempts + 1,
    "updated_at": sa.bindparam("now"),
}
_OUTCOME = {
    "state": sa.bindparam("st"),
    "updated_at": sa.bindparam("now"),
    "claimed_by": None,
    "lease_until": None,
    "last_error": sa.bindparam("err", type_=sa.Text),
    "reference": sa.func.coalesce(sa.bindparam("ref", type_=sa.String), deliveries.c.reference),
}

# Receiver: one more arrival of a known event (`SEEN_MORE`: `n` more), its count back.
SEEN_AGAIN = (
    events.update()
    .where(events.c.event_id == sa.bindparam("k"))
    .values(last_seen=sa.bindparam("now"), delivery_count=events.c.delivery_count + 1)
    .returning(events.c.delivery_count)
)
SEEN_MORE = (
    events.update()
    .where(events.c.event_id == sa.bindparam("k"))
    .values(
        last_seen=sa.bindparam("now"), delivery_count=events.c.delivery_count + sa.bindparam("n")
    )
)
# Receiver: the echo records of some orders; the arrival counts of some events.
ECHOES_OF = sa.select(
    echoes.c.platform, echoes.c.order_id, echoes.c.event_id, echoes.c.created_at
).where(echoes.c.order_id.in_(sa.bindparam("orders", expanding=True)))
COUNTS_OF = sa.select(events.c.event_id, events.c.delivery_count).where(
    events.c.event_id.in_(sa.bindparam("keys", expanding=True))
)
# Worker: which of some events have a pair with target `t`.
PAIRS_OF = sa.select(deliveries.c.event_id).where(
    deliveries.c.target == sa.bindparam("t"),
    deliveries.c.event_id.in_(sa.bindparam("keys", expanding=True)),
)
# Worker: claim one existing pair (its attempt number back), or many (event id and attempt).
TAKE = (
    deliveries.update().where(*_PAIR, _TAKEABLE).values(**_CLAIM).returning(deliveries.c.attempts)
)
TAKE_MANY = (
    deliveries.update()
    .where(
        deliveries.c.target == sa.bindparam("t"),
        deliveries.c.event_id.in_(sa.bindparam("keys", expanding=True)),
        _TAKEABLE,
    )
    .values(**_CLAIM)
    .returning(deliveries.c.event_id, deliveries.c.attempts)
)
# Worker: record an outcome on the pair its claim still holds; or, for a settling outcome of a
# lost claim, on any pair not settled yet (the effect happened).
FINISH_CLAIM = (
    deliveries.update()
    .where(
        *_PAIR,
        deliveries.c.state == DeliveryState.CALLING,
        deliveries.c.claimed_by == sa.bindparam("w"),
    )
    .values(**_OUTCOME)
)
FINISH_UNSETTLED = (
    deliveries.update().where(*_PAIR, deliveries.c.state.not_in(SETTLED_STATES)).values(**_OUTCOME)
)


def delivery_row(  # noqa: PLR0913 - the row's columns
    event_id: str,
    target: str,
    state: DeliveryState,
    now: datetime,
    *,
    worker: str | None = None,
    lease_until: datetime | None = None,
) -> dict[str, object]:
    """A new `deliveries` row (a first claim, `calling`, counts one attempt)."""
    return {
        "event_id": event_id,
        "target": target,
        "state": state,
        "attempts": 1 if state == DeliveryState.CALLING else 0,
        "created_at": now,
        "updated_at": now,
        "claimed_by": worker,
        "lease_until": lease_until,
    }


def event_row(event: OrderCancelled, now: datetime, body: bytes | None = None) -> dict[str, object]:
    """A new `events` row: `body` is the JSON as published (else serialised again)."""
    return {
        "event_id": str(event.event_id),
        "source": event.source.value,
        "shop": event.shop,
        "order_id": event.order_id,
        "reason": event.reason.value,
        "first_seen": now,
        "last_seen": now,
        "delivery_count": 1,
        "event_json": (body or event.to_json()).decode(),
    }
