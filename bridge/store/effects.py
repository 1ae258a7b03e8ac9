"""One effect per (target, target order), whatever the event id.

Two events can name the same order at a target: one signed body sent under several shop
headers, an order cancelled both by its id and by its number, two sources naming one linked
order. Each pair a worker claims is bound to the name the target knows the order by (CJ's
orderId, the linked platform order: `TargetCaller.order_key`) in the claim's transaction: the
first event to bind a (target, order) holds it. A claimed pair of another event is judged by
the holder's own pair (`decide`):

- the holder acted (`delivered`, `already_done`): the pair settles as `duplicate`, its
  reference the holder's event id, and no call is made;
- the holder may still act (`pending`, `calling`, `retrying`): the claim is given back (no
  history step, the attempt undone) and the worker brings the message back later (Busy);
- the holder gave up (`parked`, or settled as a duplicate of another order after its link
  changed): the pair takes the order over and calls; a replay of the old holder then finds
  the order held by the new one.

Rows are bound in order key order, one per order (`bind_rows`), and taken over one by one in
the same order: two workers binding overlapping orders on PostgreSQL never deadlock.

The statements are the same text on SQLite and PostgreSQL (`ON CONFLICT DO NOTHING` in both);
`hot/` writes them out for its driver. Here: the pure part (who lost, the verdicts) and
SQLAlchemy's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from bridge.store.lifecycle import DeliveryState
from bridge.store.tables import deliveries, effects


@dataclass(frozen=True, slots=True)
class Owned:
    """The target order of a claimed pair is held by another event that acted on it (or will).

    As a verdict: the holder's pair is settled (`ACTED`), so this pair settles as duplicate.
    """

    holder: str  # the event id that holds (target, order)
    order: str

    def detail(self, target: str) -> str:
        """The history line of the duplicate pair."""
        return f"same {target} order {self.order} as event {self.holder}"


@dataclass(frozen=True, slots=True)
class Waiting:
    """The holder of the pair's target order has not acted yet: the claim is given back."""

    holder: str
    order: str


@dataclass(frozen=True, slots=True)
class Verdicts:
    """What becomes of the claimed pairs whose order another event holds (`decide`)."""

    settle: dict[str, Owned]  # the holder acted: settle as duplicate
    take_over: dict[str, Owned]  # the holder gave up (parked, or a duplicate elsewhere): take it
    wait: dict[str, Owned]  # the holder is still at it (pending, calling, retrying): come back

    def takeovers(self) -> list[tuple[str, Owned]]:
        """The take-overs to try, in order key order: the one lock order of every writer."""
        return sorted(self.take_over.items(), key=lambda item: item[1].order)

    def outrun(self, key: str) -> None:
        """Another writer took the order over first: this pair waits instead."""
        self.wait[key] = self.take_over.pop(key)


# The holder's pair acted on the order: the order had its effect.
ACTED = frozenset({DeliveryState.DELIVERED, DeliveryState.ALREADY_DONE})
# The holder may still act: a twin waits for it.
UNDECIDED = frozenset({DeliveryState.PENDING, DeliveryState.CALLING, DeliveryState.RETRYING})

BIND = sa.text(
    "INSERT INTO effects (target, order_key, event_id, created_at)"
    " VALUES (:t, :o, :k, :now) ON CONFLICT DO NOTHING"
).bindparams(sa.bindparam("now", type_=effects.c.created_at.type))
HOLDERS = sa.select(effects.c.order_key, effects.c.event_id).where(
    effects.c.target == sa.bindparam("t"),
    effects.c.order_key.in_(sa.bindparam("orders", expanding=True)),
)
HOLDER_STATES = sa.select(deliveries.c.event_id, deliveries.c.state).where(
    deliveries.c.target == sa.bindparam("t"),
    deliveries.c.event_id.in_(sa.bindparam("keys", expanding=True)),
)
TAKE_OVER = (
    effects.update()
    .where(
        effects.c.target == sa.bindparam("t"),
        effects.c.order_key == sa.bindparam("o"),
        effects.c.event_id == sa.bindparam("h"),
    )
    .values(event_id=sa.bindparam("k"), created_at=sa.bindparam("now"))
)
# The claim given back as if never taken (no history step): claimable again, the attempt undone.
RELEASE_SET = (
    "state = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END,"
    " attempts = attempts - 1, claimed_by = NULL, lease_until = NULL"
)
RELEASE = sa.text(
    f"UPDATE deliveries SET {RELEASE_SET} WHERE target = :t AND event_id = :k"  # noqa: S608 - constants
    " AND claimed_by = :w AND state = 'calling'"
)


def to_bind(taken: Mapping[str, int], orders: Mapping[str, str]) -> dict[str, str]:
    """The claimed pairs that name a target order: event id -> order."""
    return {key: orders[key] for key in sorted(taken) if key in orders}


def bind_rows(pairs: Mapping[str, str]) -> list[tuple[str, str]]:
    """(order, event) to bind: one per order (its lowest event id), in order key order.

    One lock order for every writer: two workers binding overlapping orders never deadlock.
    """
    first: dict[str, str] = {}
    for key, order in pairs.items():
        if order not in first or key < first[order]:
            first[order] = key
    return sorted(first.items())


def owned(pairs: Mapping[str, str], holders: Mapping[str, str]) -> dict[str, Owned]:
    """The pairs whose order another event holds (`holders`: order -> event id)."""
    return {
        key: Owned(holders[order], order)
        for key, order in pairs.items()
        if holders.get(order, key) != key
    }


def decide(lost: Mapping[str, Owned], states: Mapping[str, str]) -> Verdicts:
    """Settle, take over or wait, by the state of each holder's own pair (`states`, by event).

    A holder that acted (`ACTED`) makes the pair a duplicate; one that may still act
    (`UNDECIDED`) makes it wait; one that gave up (parked, a duplicate of another order since its
    link changed, no pair) hands the order over, to one pair per order (the lowest event id):
    the others wait for it.
    """
    verdicts = Verdicts({}, {}, {})
    taking: set[str] = set()
    for key in sorted(lost):
        owner = lost[key]
        state = states.get(owner.holder)
        if state in ACTED:
            verdicts.settle[key] = owner
        elif state in UNDECIDED or owner.order in taking:
            verdicts.wait[key] = owner
        else:
            verdicts.take_over[key] = owner
            taking.add(owner.order)
    return verdicts


def bind(
    connection: sa.Connection,
    target: str,
    pairs: Mapping[str, str],
    *,
    worker: str,
    now: datetime,
) -> Verdicts:
    """Bind each pair's order where none holds it, and judge the pairs another event holds.

    Takes over what `decide` says may be (a holder changed meanwhile: that pair waits), and
    gives back the claims of the pairs that wait. Settling the duplicates is the caller's.
    """
    if not pairs:
        return Verdicts({}, {}, {})
    rows = bind_rows(pairs)
    connection.execute(
        BIND, [{"t": target, "o": order, "k": key, "now": now} for order, key in rows]
    )
    found = connection.execute(HOLDERS, {"t": target, "orders": [order for order, _ in rows]})
    lost = owned(pairs, {row.order_key: row.event_id for row in found})
    if not lost:
        return Verdicts({}, {}, {})
    held = sorted({owner.holder for owner in lost.values()})
    states = {
        row.event_id: row.state
        for row in connection.execute(HOLDER_STATES, {"t": target, "keys": held})
    }
    verdicts = decide(lost, states)
    for key, owner in verdicts.takeovers():
        params = {"t": target, "o": owner.order, "h": owner.holder, "k": key, "now": now}
        if connection.execute(TAKE_OVER, params).rowcount != 1:
            verdicts.outrun(key)
    for key in sorted(verdicts.wait):
        connection.execute(RELEASE, {"t": target, "k": key, "w": worker})
    return verdicts
