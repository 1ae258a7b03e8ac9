"""The hot statements through `sqlite3`, on the event loop, in one short transaction per batch.

One connection per process (`HotSqlite`), used from the event loop only: the receiver's arrivals
(here) and the worker's claims and outcomes (`sqlite_claims.py`) take turns on it, so they never
wait for each other's lock. It never waits for SQLite's lock inside SQLite either
(`busy_timeout=0`): when another connection (another process, or the store's own SQLAlchemy
thread) holds it, `write` raises `LockTaken` and the caller (`Engines._sqlite_write`) tries again
from the loop a moment later. So the loop never blocks on a lock, only for the statements
themselves (tens of microseconds per row). Handing a busy batch to the SQLAlchemy path instead
made things worse under load: that path's transactions, slower, held the lock longer, so more
batches found it taken and followed them (a receiver and a worker on one file stalled for
seconds).

`synchronous=NORMAL` (WAL): a commit is durable against a crash of the process; a power loss
may take back the last commits before it. An arrival is only a record: the broker holds the
confirmed message, and the worker's claim writes the event row when it finds none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from bridge.store.arrivals import (
    Arrival,
    Echo,
    Seen,
    arrival_keys,
    arrival_orders,
    plan_arrivals,
)
from bridge.store.engine import LockTaken, utc
from bridge.store.lifecycle import DeliveryState
from contracts.events import OrderCancelled

# SQLAlchemy's text form of a time on SQLite (its DateTime storage format), in UTC.
STAMP = "%Y-%m-%d %H:%M:%S.%f"
PENDING = DeliveryState.PENDING.value
R = TypeVar("R")
INSERT_EVENT = (
    "INSERT INTO events (event_id, source, shop, order_id, reason, first_seen, last_seen,"
    " delivery_count, event_json) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)"
)
INSERT_PENDING = (
    "INSERT INTO deliveries (event_id, target, state, attempts, created_at, updated_at)"
    " VALUES (?, ?, ?, 0, ?, ?)"
)
INSERT_STEP = (
    "INSERT INTO transitions (event_id, target, state, at, detail) VALUES (?, ?, ?, ?, NULL)"
)
SEEN_MORE = (
    "UPDATE events SET last_seen = ?, delivery_count = delivery_count + ? WHERE event_id = ?"
)


def stamp(moment: datetime) -> str:
    """A time as SQLAlchemy stores it on SQLite (UTC, no offset)."""
    return utc(moment).strftime(STAMP)


def event_values(event: OrderCancelled, at: str, body: bytes | None = None) -> tuple[str, ...]:
    """`INSERT_EVENT`'s values: a new event first seen `at` (its JSON, else serialised again)."""
    return (
        str(event.event_id),
        event.source.value,
        event.shop,
        event.order_id,
        event.reason.value,
        at,
        at,
        (body or event.to_json()).decode(),
    )


def in_list(column: str, n: int) -> str:
    """`column IN (?, ?, ...)` for `n` bound values (no value is ever spliced in)."""
    return f"{column} IN ({', '.join('?' * n)})"


class HotSqlite:
    """One `sqlite3` connection to the store's file for the hot statements."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(
            Path(path), timeout=0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=0")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def write(self, body: Callable[[sqlite3.Connection], R]) -> R:
        """`body` in one write transaction; `LockTaken` (nothing done) if another holds the lock.

        Raises what `body` raises, after rolling back: `sqlite3.IntegrityError` (a key conflict)
        or another `sqlite3.Error` (the caller's SQLAlchemy path decides what it means).
        """
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise LockTaken from None
            raise
        try:
            result = body(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result


def arrive(db: sqlite3.Connection, arrivals: Sequence[Arrival]) -> list[Seen | Echo]:
    """`Arrivals.arrive_many`'s batch, inside `HotSqlite.write`'s transaction."""
    orders = arrival_orders(arrivals)
    found = db.execute(
        "SELECT platform, order_id, event_id, created_at FROM echoes"  # noqa: S608 - markers only
        f" WHERE {in_list('order_id', len(orders))}",
        orders,
    )
    echoed = {
        (platform, order): (str(event_id), utc(datetime.fromisoformat(at)))
        for platform, order, event_id, at in found
    }
    keys = arrival_keys(arrivals)
    counts = dict(
        db.execute(
            "SELECT event_id, delivery_count FROM events"  # noqa: S608 - markers only
            f" WHERE {in_list('event_id', len(keys))}",
            keys,
        ).fetchall()
    )
    plan = plan_arrivals(arrivals, echoed, counts)
    if plan.new:
        db.executemany(
            INSERT_EVENT, [event_values(a.event, stamp(a.at), a.body) for a in plan.new.values()]
        )
        pending = [(key, target, stamp(at)) for key, target, at in plan.pending()]
        if pending:
            db.executemany(INSERT_PENDING, [(k, t, PENDING, at, at) for k, t, at in pending])
            db.executemany(INSERT_STEP, [(k, t, PENDING, at) for k, t, at in pending])
    if plan.more:
        now = stamp(plan.now)
        db.executemany(SEEN_MORE, [(now, n, key) for key, n in plan.more.items()])
    return plan.results
