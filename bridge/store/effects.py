"""One effect per (target, target order), whatever the event id.

Two events can name the same order at a target: one signed body sent under several shop
headers, an order cancelled both by its id and by its number, two sources naming one linked
order. Each pair a worker claims is bound to the name the target knows the order by (CJ's
orderId, the linked platform order: `TargetCaller.order_key`) in the claim's transaction: the
first event to bind a (target, order) holds it for good; a pair of another event settles as
`duplicate`, its reference the holder's event id, and no call is made. The holder's own pair
goes on as before (retried, parked, replayed: still the one that may act).

The statements are the same text on SQLite and PostgreSQL (`ON CONFLICT DO NOTHING` in both);
`hot/` writes them out for its driver. Here: the pure part (who lost) and SQLAlchemy's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from bridge.store.tables import effects


@dataclass(frozen=True, slots=True)
class Owned:
    """The target order of a claimed pair is held by another event: settle it as duplicate."""

    holder: str  # the event id that holds (target, order)
    order: str

    def detail(self, target: str) -> str:
        """The history line of the duplicate pair."""
        return f"same {target} order {self.order} as event {self.holder}"


BIND = sa.text(
    "INSERT INTO effects (target, order_key, event_id, created_at)"
    " VALUES (:t, :o, :k, :now) ON CONFLICT DO NOTHING"
).bindparams(sa.bindparam("now", type_=effects.c.created_at.type))
HOLDERS = sa.select(effects.c.order_key, effects.c.event_id).where(
    effects.c.target == sa.bindparam("t"),
    effects.c.order_key.in_(sa.bindparam("orders", expanding=True)),
)


def to_bind(taken: Mapping[str, int], orders: Mapping[str, str]) -> dict[str, str]:
    """The claimed pairs that name a target order: event id -> order."""
    return {key: orders[key] for key in sorted(taken) if key in orders}


def owned(pairs: Mapping[str, str], holders: Mapping[str, str]) -> dict[str, Owned]:
    """The pairs whose order another event holds (`holders`: order -> event id)."""
    return {
        key: Owned(holders[order], order)
        for key, order in pairs.items()
        if holders.get(order, key) != key
    }


def bind(
    connection: sa.Connection, target: str, pairs: Mapping[str, str], now: datetime
) -> dict[str, Owned]:
    """Bind each pair's order to its event where none holds it; those another event holds."""
    if not pairs:
        return {}
    connection.execute(
        BIND, [{"t": target, "o": order, "k": key, "now": now} for key, order in pairs.items()]
    )
    found = connection.execute(HOLDERS, {"t": target, "orders": sorted(set(pairs.values()))})
    holders = {row.order_key: row.event_id for row in found}
    return owned(pairs, holders)
