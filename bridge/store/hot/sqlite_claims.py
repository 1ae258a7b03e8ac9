"""The worker's claims and outcomes through `sqlite3` (`HotSqlite.write`), one transaction each.

The same statements as `claims._take_many` and `claims._finish_all` (built from
`statements.TAKE_MANY`, `PAIRS_OF`, `COUNTS_OF`, `FINISH_CLAIM`, `FINISH_UNSETTLED` and
`echoes.remember_echo`), written out for the driver: the tests run both paths on the same
operations and compare every row they leave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType

from bridge.store.claims import Result, duplicates, judged
from bridge.store.effects import (
    RELEASE_SET,
    Owned,
    Verdicts,
    Waiting,
    bind_rows,
    decide,
    owned,
    to_bind,
)
from bridge.store.hot.sqlite import INSERT_EVENT, event_values, in_list, stamp
from bridge.store.lifecycle import CLAIMABLE_STATES, SETTLED_STATES, DeliveryState
from contracts.events import OrderCancelled

CALLING = DeliveryState.CALLING.value
_CLAIMABLE = ", ".join(f"'{state.value}'" for state in CLAIMABLE_STATES)
_SETTLED = ", ".join(f"'{state.value}'" for state in SETTLED_STATES)
_OUTCOME = (
    "UPDATE deliveries SET state = ?, updated_at = ?, claimed_by = NULL, lease_until = NULL,"
    " last_error = ?, reference = coalesce(?, reference)"
)
FINISH_CLAIM = (
    f"{_OUTCOME} WHERE event_id = ? AND target = ? AND state = '{CALLING}' AND claimed_by = ?"
)
FINISH_UNSETTLED = f"{_OUTCOME} WHERE event_id = ? AND target = ? AND state NOT IN ({_SETTLED})"
ECHO_AGAIN = "UPDATE echoes SET event_id = ?, created_at = ? WHERE platform = ? AND order_id = ?"
ECHO_NEW = "INSERT INTO echoes (platform, order_id, event_id, created_at) VALUES (?, ?, ?, ?)"
INSERT_CLAIM = (
    "INSERT INTO deliveries (event_id, target, state, attempts, created_at, updated_at,"  # noqa: S608 - a constant state
    f" claimed_by, lease_until) VALUES (?, ?, '{CALLING}', 1, ?, ?, ?, ?)"
)
INSERT_STEP = "INSERT INTO transitions (event_id, target, state, at, detail) VALUES (?, ?, ?, ?, ?)"


def _bind(n: int) -> str:
    """Bind `n` (target, order, event, time) rows where free; the rows bound come back."""
    values = ", ".join(["(?, ?, ?, ?)"] * n)
    return (
        f"INSERT INTO effects (target, order_key, event_id, created_at) VALUES {values}"  # noqa: S608 - markers only
        " ON CONFLICT DO NOTHING RETURNING order_key, event_id"
    )


NO_ORDERS: Mapping[str, str] = MappingProxyType({})
TAKE_OVER = (
    "UPDATE effects SET event_id = ?, created_at = ? WHERE target = ? AND order_key = ?"
    " AND event_id = ?"
)
RELEASE = (
    f"UPDATE deliveries SET {RELEASE_SET} WHERE target = ? AND event_id = ? AND claimed_by = ?"  # noqa: S608 - constants
    f" AND state = '{CALLING}'"
)


def take_many(  # noqa: PLR0913 - the claim's parts
    db: sqlite3.Connection,
    by_key: Mapping[str, OrderCancelled],
    *,
    target: str,
    worker: str,
    now: datetime,
    lease_until: datetime,
    orders: Mapping[str, str] = NO_ORDERS,
) -> dict[str, int | Owned | Waiting]:
    """`_take_rows`, each claimed pair then bound to its order (`claims._bound`)."""
    taken = _take_rows(db, by_key, target=target, worker=worker, now=now, lease_until=lease_until)
    verdicts = _bind_pairs(db, target, to_bind(taken, orders), worker, now)
    if verdicts.settle:
        finish_all(db, duplicates(verdicts.settle, target, worker, now))
    return judged(taken, verdicts)


def _bind_pairs(
    db: sqlite3.Connection, target: str, pairs: Mapping[str, str], worker: str, now: datetime
) -> Verdicts:
    """`effects.bind` through the driver: bind, judge, take over, give back."""
    if not pairs:
        return Verdicts({}, {}, {})
    at = stamp(now)
    rows = bind_rows(pairs)
    values = [value for order, key in rows for value in (target, order, key, at)]
    # The orders bound now come back; only those held before are read (none, commonly).
    holders = dict(db.execute(_bind(len(rows)), values).fetchall())
    if wanted := [order for order, _ in rows if order not in holders]:
        holders.update(
            db.execute(
                "SELECT order_key, event_id FROM effects"  # noqa: S608 - markers only
                f" WHERE target = ? AND {in_list('order_key', len(wanted))}",
                [target, *wanted],
            ).fetchall()
        )
    lost = owned(pairs, holders)
    if not lost:
        return Verdicts({}, {}, {})
    held = sorted({owner.holder for owner in lost.values()})
    states = dict(
        db.execute(
            "SELECT event_id, state FROM deliveries"  # noqa: S608 - markers only
            f" WHERE target = ? AND {in_list('event_id', len(held))}",
            [target, *held],
        ).fetchall()
    )
    verdicts = decide(lost, states)
    for key, owner in verdicts.takeovers():
        if db.execute(TAKE_OVER, (key, at, target, owner.order, owner.holder)).rowcount != 1:
            verdicts.outrun(key)
    for key in sorted(verdicts.wait):
        db.execute(RELEASE, (target, key, worker))
    return verdicts


def _take_rows(  # noqa: PLR0913 - the claim's parts
    db: sqlite3.Connection,
    by_key: Mapping[str, OrderCancelled],
    *,
    target: str,
    worker: str,
    now: datetime,
    lease_until: datetime,
) -> dict[str, int]:
    """Take every claimable pair; claim those with no row yet. The attempt number by event."""
    keys = sorted(by_key)
    at, lease = stamp(now), stamp(lease_until)
    taken = dict(
        db.execute(
            f"UPDATE deliveries SET state = '{CALLING}', claimed_by = ?, lease_until = ?,"  # noqa: S608 - markers only
            " attempts = attempts + 1, updated_at = ?"
            f" WHERE target = ? AND {in_list('event_id', len(keys))}"
            f" AND (state IN ({_CLAIMABLE}) OR (state = '{CALLING}' AND lease_until < ?))"
            " RETURNING event_id, attempts",
            [worker, lease, at, target, *keys, at],
        ).fetchall()
    )
    rest = [key for key in keys if key not in taken]
    if not rest:
        return taken
    have = {
        row[0]
        for row in db.execute(
            "SELECT event_id FROM deliveries"  # noqa: S608 - markers only
            f" WHERE target = ? AND {in_list('event_id', len(rest))}",
            [target, *rest],
        )
    }
    fresh = [key for key in rest if key not in have]
    if not fresh:
        return taken
    known = {
        row[0]
        for row in db.execute(
            f"SELECT event_id FROM events WHERE {in_list('event_id', len(fresh))}",  # noqa: S608 - markers only
            fresh,
        )
    }
    unknown = [event_values(by_key[key], at) for key in fresh if key not in known]
    if unknown:
        db.executemany(INSERT_EVENT, unknown)
    db.executemany(INSERT_CLAIM, [(key, target, at, at, worker, lease) for key in fresh])
    taken.update((key, 1) for key in fresh)
    return taken


def finish_all(db: sqlite3.Connection, results: Sequence[Result]) -> list[bool]:
    """Each outcome on the pair its claim holds (or, settled, on any unsettled pair); history."""
    held: list[bool] = []
    steps: list[tuple[str, str, str, str, str | None]] = []
    for result in results:
        settled = result.state in SETTLED_STATES
        at = stamp(result.at)
        values = (result.state.value, at, None if settled else result.detail, result.reference)
        pair = (result.event_id, result.target)
        mine = db.execute(FINISH_CLAIM, (*values, *pair, result.worker)).rowcount == 1
        if not mine and settled:
            db.execute(FINISH_UNSETTLED, (*values, *pair))
        if result.echo is not None and settled:
            platform, order_id = result.echo
            echo = (result.event_id, at, platform, order_id)
            if db.execute(ECHO_AGAIN, echo).rowcount == 0:
                db.execute(ECHO_NEW, (platform, order_id, result.event_id, at))
        held.append(mine)
        if mine or settled:
            steps.append((*pair, result.state.value, at, result.detail or result.reference))
    if steps:
        db.executemany(INSERT_STEP, steps)
    return held
