"""The state store: each event, each (event, target) delivery, order links and echoes.

One code path for two engines through SQLAlchemy 2 Core: SQLite (a file, WAL mode; the
embedded default) and PostgreSQL (scale-out). The batched hot paths (the receiver's arrivals,
the worker's claims and answers) are plain functions of one connection, run as one transaction:
on SQLite in the store's own thread in a single hop (a hop per statement costs more than the
statements), on PostgreSQL through the async driver. The schema is versioned with Alembic and
upgraded on open. Writes are portable: a conditional UPDATE checked by its row count, or an
INSERT whose key conflict is the answer; no dialect switches.

Exactly one effect per (event, target): `claim` moves a pair to `calling` for one worker until a
lease ends, and only the claimant calls the target; `finish` records the answer before the worker
acks. A pair that is `delivered` or `already_done` is never claimed again, unless
reconciliation finds that the target did not act on it after all and `reopen`s it. `transitions`
keeps each state a pair reached (pending, retrying, delivered, already_done, parked) with its
detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bridge.store.tables import (
    CALLING,
    CLAIMABLE,
    DELIVERED,
    PARKED,
    PENDING,
    RETRYING,
    SETTLED,
    deliveries,
    echoes,
    events,
    links,
    transitions,
)
from contracts.events import OrderCancelled

MIGRATIONS = Path(__file__).with_name("migrations")
SCHEMA_HEAD = "0003"  # the newest migration's revision
R = TypeVar("R")

BUSY_TIMEOUT_MS = 5000  # SQLite: how long a writer waits for the file lock
PG_COMMAND_TIMEOUT = 10.0  # PostgreSQL: seconds before a statement counts as failed
CONNECT_TIMEOUT = 5.0
# How `reopen` and `undo_reopen` mark the transitions they write (counted by `reopen_counts`).
REOPENED = "reopened by reconciliation"
REOPEN_UNDONE = "reopen undone"
# How `note_parked` marks what an operator did with a parked message (the console).
REPLAYED = "replayed from the parked queue"
DROPPED = "dropped from the parked queue"
# Transitions that record no call to the target: not attempts.
NOT_ATTEMPTS = (REOPENED, REOPEN_UNDONE, REPLAYED, DROPPED)


# The hot statements, built once (building a statement costs more than running it).
_PAIR = (deliveries.c.event_id == sa.bindparam("k"), deliveries.c.target == sa.bindparam("t"))
_SEEN_AGAIN = (
    events.update()
    .where(events.c.event_id == sa.bindparam("k"))
    .values(last_seen=sa.bindparam("now"), delivery_count=events.c.delivery_count + 1)
    .returning(events.c.delivery_count)
)
_ECHOES_OF = sa.select(
    echoes.c.platform, echoes.c.order_id, echoes.c.event_id, echoes.c.created_at
).where(echoes.c.order_id.in_(sa.bindparam("orders", expanding=True)))
_COUNTS_OF = sa.select(events.c.event_id, events.c.delivery_count).where(
    events.c.event_id.in_(sa.bindparam("keys", expanding=True))
)
_PAIRS_OF = sa.select(deliveries.c.event_id).where(
    deliveries.c.target == sa.bindparam("t"),
    deliveries.c.event_id.in_(sa.bindparam("keys", expanding=True)),
)
_SEEN_MORE = (
    events.update()
    .where(events.c.event_id == sa.bindparam("k"))
    .values(
        last_seen=sa.bindparam("now"), delivery_count=events.c.delivery_count + sa.bindparam("n")
    )
)
_TAKE = (
    deliveries.update()
    .where(
        *_PAIR,
        sa.or_(
            deliveries.c.state.in_(CLAIMABLE),
            sa.and_(deliveries.c.state == CALLING, deliveries.c.lease_until < sa.bindparam("now")),
        ),
    )
    .values(
        state=CALLING,
        claimed_by=sa.bindparam("w"),
        lease_until=sa.bindparam("lease"),
        attempts=deliveries.c.attempts + 1,
        updated_at=sa.bindparam("now"),
    )
    .returning(deliveries.c.attempts)
)
_OUTCOME = {
    "state": sa.bindparam("st"),
    "updated_at": sa.bindparam("now"),
    "claimed_by": None,
    "lease_until": None,
    "last_error": sa.bindparam("err", type_=sa.Text),
    "reference": sa.func.coalesce(sa.bindparam("ref", type_=sa.String), deliveries.c.reference),
}
_FINISH_CLAIM = (
    deliveries.update()
    .where(*_PAIR, deliveries.c.state == CALLING, deliveries.c.claimed_by == sa.bindparam("w"))
    .values(**_OUTCOME)
)
_TAKE_MANY = (
    deliveries.update()
    .where(
        deliveries.c.target == sa.bindparam("t"),
        deliveries.c.event_id.in_(sa.bindparam("keys", expanding=True)),
        sa.or_(
            deliveries.c.state.in_(CLAIMABLE),
            sa.and_(deliveries.c.state == CALLING, deliveries.c.lease_until < sa.bindparam("now")),
        ),
    )
    .values(
        state=CALLING,
        claimed_by=sa.bindparam("w"),
        lease_until=sa.bindparam("lease"),
        attempts=deliveries.c.attempts + 1,
        updated_at=sa.bindparam("now"),
    )
    .returning(deliveries.c.event_id, deliveries.c.attempts)
)
_FINISH_UNSETTLED = (
    deliveries.update().where(*_PAIR, deliveries.c.state.not_in(SETTLED)).values(**_OUTCOME)
)


class StoreUnavailable(Exception):  # noqa: N818 - a state, like BrokerUnavailable
    """The store did not answer (down, locked, unreachable); the operation did not happen."""


def async_url(url: str) -> str:
    """A user's database URL with the async driver SQLAlchemy needs.

    `postgresql://...` -> asyncpg; `sqlite:///path` or a bare file path -> aiosqlite.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if "://" in url:
        return url  # already a SQLAlchemy URL with a driver
    return f"sqlite+aiosqlite:///{url}"


def _sqlite_connect(dbapi_connection: Any, _: object) -> None:  # noqa: ANN401 - DBAPI object
    # SQLAlchemy's recipe for pysqlite/aiosqlite: let SQLAlchemy emit BEGIN itself, so
    # transactions (and savepoints) mean what they say.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN: a transaction that reads and then writes can
    # wait for the lock (busy_timeout) instead of failing with SQLITE_BUSY halfway.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(connection: sa.Connection, revision: str = "head") -> None:
    """Run the migrations up to `revision` on `connection` (`Store.open` does, to the head)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands them back naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Claimed:
    """The claiming worker holds the pair: call the target, then `finish` (attempt from 1)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Settled:
    """The pair already had its effect (`delivered` or `already_done`): do not call."""

    state: str
    reference: str | None


@dataclass(frozen=True, slots=True)
class Busy:
    """Another claim holds the pair until `lease_until` (perhaps this worker's own)."""

    claimed_by: str | None
    lease_until: datetime


Claim = Claimed | Settled | Busy


@dataclass(frozen=True, slots=True)
class Arrival:
    """An event the receiver is about to publish."""

    event: OrderCancelled
    at: datetime
    targets: tuple[str, ...]  # the targets routed from its source: `pending` deliveries
    echo_since: datetime  # echo records older than this are ignored
    body: bytes | None = None  # the event's JSON as published (else serialised again)


@dataclass(frozen=True, slots=True)
class Seen:
    """Recorded; the `count`-th arrival of this event."""

    count: int


@dataclass(frozen=True, slots=True)
class Echo:
    """The bridge cancelled this order on its platform itself (event `cause`): do not fan out."""

    cause: str


@dataclass(frozen=True, slots=True)
class Result:
    """How a claim ended, for `finish_many`."""

    event_id: str
    target: str
    worker: str
    state: str
    at: datetime
    detail: str | None = None
    reference: str | None = None
    echo: tuple[str, str] | None = None  # (platform, order id) the bridge cancelled there


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


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (event, target) row."""

    event_id: str
    target: str
    state: str
    attempts: int
    last_error: str | None
    reference: str | None


class Store:
    """The bridge's state, on SQLite or PostgreSQL."""

    def __init__(self, engine: AsyncEngine, local: sa.Engine | None = None) -> None:
        self._engine = engine
        # SQLite: the same file through the blocking driver, used from one thread of our own.
        self._local = local
        self._thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="store") if local else None
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Store]:
        """Connect, upgrade the schema to the newest version, and close on exit."""
        full = async_url(url)
        if full.startswith("sqlite+aiosqlite:///"):
            with _unavailable():  # the file is created on first start; its folder too
                Path(full.removeprefix("sqlite+aiosqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
        local: sa.Engine | None = None
        if full.startswith("sqlite"):
            # One connection per process: SQLite has one writer at a time anyway, and queueing
            # in the pool is cheaper than connections sleeping in SQLite's busy handler.
            engine = create_async_engine(
                full,
                pool_size=1,
                max_overflow=0,
                connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
            )
            local = sa.create_engine(
                full.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1),
                pool_size=1,
                max_overflow=0,
                # Created, used and closed in the store's thread; closed by `dispose` too.
                connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            )
            for sync_engine in (engine.sync_engine, local):
                sa.event.listen(sync_engine, "connect", _sqlite_connect)
                sa.event.listen(sync_engine, "begin", _sqlite_begin)
        else:
            engine = create_async_engine(
                full,
                pool_size=10,
                max_overflow=20,
                connect_args={"timeout": CONNECT_TIMEOUT, "command_timeout": PG_COMMAND_TIMEOUT},
            )
        store = cls(engine, local)
        try:
            with _unavailable():
                async with engine.begin() as connection:
                    await connection.run_sync(upgrade)
            yield store
        finally:
            await engine.dispose()
            if local is not None:
                local.dispose()
            if store._thread is not None:
                store._thread.shutdown()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable():
            async with self._engine.begin() as connection:
                yield connection

    async def _transaction(self, body: Callable[[sa.Connection], R]) -> R:
        """`body` in one write transaction; on SQLite in the store's thread, in one hop."""
        if self._local is None:
            async with self._write() as connection:
                return await connection.run_sync(body)
        with _unavailable():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, _in_transaction, self._local, body)

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable():
            async with self._engine.connect() as connection:
                yield connection

    # -- events ---------------------------------------------------------------------------

    async def record_event(
        self, event: OrderCancelled, now: datetime, targets: tuple[str, ...] = ()
    ) -> int:
        """Remember that `event` arrived (again); returns how many times it has.

        A new event also gets a `pending` delivery for each of `targets`, and its aliases are
        linked to its order.
        """
        key = str(event.event_id)
        try:
            async with self._write() as connection:
                await connection.execute(events.insert(), _event_row(event, now))
                for target in targets:
                    await _insert_delivery(connection, key, target, PENDING, now)
            count = 1
        except IntegrityError:
            async with self._write() as connection:
                found = await connection.scalar(_SEEN_AGAIN, {"k": key, "now": now})
            count = int(found or 1)
        if event.aliases:
            await self._link_aliases(event, now)
        return count

    async def arrive_many(self, arrivals: Sequence[Arrival]) -> list[Seen | Echo]:
        """What the receiver does with each webhook's event, for many in one transaction.

        An event whose order the bridge itself cancelled on that platform since the arrival's
        `echo_since` is an `Echo` (not recorded); any other is recorded as `record_event` does
        and `Seen` with its count. On a key conflict (another receiver recorded one of the
        events meanwhile) each arrival is redone alone.
        """
        try:
            results = await self._transaction(lambda connection: _arrive(connection, arrivals))
        except IntegrityError:
            return [await self._arrive_one(arrival) for arrival in arrivals]
        for arrival, result in zip(arrivals, results, strict=True):
            if arrival.event.aliases and isinstance(result, Seen):
                await self._link_aliases(arrival.event, arrival.at)
        return results

    async def _link_aliases(self, event: OrderCancelled, now: datetime) -> None:
        ids: dict[str, str] = {event.source.value: event.order_id}
        ids.update((str(k), v) for k, v in event.aliases.items())
        await self.link(ids, now)

    async def _arrive_one(self, arrival: Arrival) -> Seen | Echo:
        event = arrival.event
        cause = await self.echo_of(event.source.value, event.order_id, arrival.echo_since)
        if cause is not None:
            return Echo(cause)
        return Seen(await self.record_event(event, arrival.at, arrival.targets))

    # -- claims ---------------------------------------------------------------------------

    async def claim(
        self, event: OrderCancelled, target: str, worker: str, now: datetime, lease_until: datetime
    ) -> Claim:
        """Take (event, target) for `worker` until `lease_until`, or say why not."""
        key = str(event.event_id)
        for _ in range(3):
            if (attempt := await self._take(key, target, worker, now, lease_until)) is not None:
                return Claimed(attempt)
            if await self._insert_claim(event, target, worker, now, lease_until):
                return Claimed(1)
            refused = await self._claim_refused(key, target, now)
            if refused is not None:
                return refused
            # claimable again (another claim just finished): try to take it
        return Busy(None, now)  # contended three times over: come back shortly

    async def claim_many(
        self, events_: Sequence[OrderCancelled], target: str, worker: str, lease: timedelta
    ) -> list[Claim]:
        """`claim` for many events at once: one UPDATE takes every claimable pair.

        Pairs with no row yet (events published by anything but the receiver) are claimed in
        the same transaction. The rest (a duplicate within the batch, held by another claim,
        settled, or a row that appeared meanwhile) go through `claim` one by one.
        """
        now = datetime.now(UTC)
        by_key = {str(event.event_id): event for event in events_}
        params = {
            "keys": sorted(by_key),
            "t": target,
            "w": worker,
            "now": now,
            "lease": now + lease,
        }
        try:
            taken = await self._transaction(
                lambda connection: _take_many(connection, by_key, params)
            )
        except IntegrityError:  # another worker wrote one of the new rows first: one by one
            taken = {}
        claims: list[Claim] = []
        for event in events_:
            attempt = taken.pop(str(event.event_id), None)
            if attempt is not None:
                claims.append(Claimed(attempt))
            else:
                claims.append(await self.claim(event, target, worker, now, now + lease))
        return claims

    async def _insert_claim(
        self, event: OrderCancelled, target: str, worker: str, now: datetime, lease_until: datetime
    ) -> bool:
        """A first claim on a pair with no row yet; False if another row got there first."""
        key = str(event.event_id)
        async with self._write() as connection:
            try:  # an event published by someone else has no row yet (the receiver's have)
                async with connection.begin_nested():
                    await connection.execute(events.insert(), _event_row(event, now))
            except IntegrityError:
                pass
            try:
                async with connection.begin_nested():
                    await _insert_delivery(
                        connection,
                        key,
                        target,
                        CALLING,
                        now,
                        worker=worker,
                        lease_until=lease_until,
                    )
            except IntegrityError:
                return False
        return True

    async def _take(
        self, key: str, target: str, worker: str, now: datetime, lease_until: datetime
    ) -> int | None:
        """Move an existing claimable row to `calling`; the attempt number, or None."""
        params = {"k": key, "t": target, "w": worker, "now": now, "lease": lease_until}
        async with self._write() as connection:
            taken = await connection.execute(_TAKE, params)
            attempt = taken.scalar_one_or_none()
        return None if attempt is None else int(attempt)

    async def _claim_refused(self, key: str, target: str, now: datetime) -> Claim | None:
        async with self._read() as connection:
            row = (
                await connection.execute(
                    sa.select(
                        deliveries.c.state,
                        deliveries.c.reference,
                        deliveries.c.claimed_by,
                        deliveries.c.lease_until,
                    ).where(deliveries.c.event_id == key, deliveries.c.target == target)
                )
            ).one()
        if row.state in SETTLED:
            return Settled(row.state, row.reference)
        if row.state == CALLING and row.lease_until is not None and utc(row.lease_until) >= now:
            return Busy(row.claimed_by, utc(row.lease_until))
        return None

    async def finish(  # noqa: PLR0913 - one argument per column written
        self,
        event_id: str,
        target: str,
        worker: str,
        state: str,
        now: datetime,
        *,
        detail: str | None = None,
        reference: str | None = None,
        echo: tuple[str, str] | None = None,
    ) -> bool:
        """Record the outcome of `worker`'s claim; False if its lease had been taken over.

        A settled outcome is written even then (the effect happened), unless the pair is
        already settled. `echo` (platform, order id) marks an order the bridge cancelled there.
        """
        result = Result(event_id, target, worker, state, now, detail, reference, echo)
        return (await self.finish_many([result]))[0]

    async def finish_many(self, results: Sequence[Result]) -> list[bool]:
        """`finish` for many claims in one transaction (one commit for all)."""
        for attempt in range(2):
            try:
                return await self._transaction(lambda connection: _finish_all(connection, results))
            except IntegrityError:  # another worker recorded the same echo first: again
                if attempt:
                    raise
                continue
        raise AssertionError  # pragma: no cover - the loop returns or raises

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
            row.event_id, row.target, row.state, row.attempts, row.last_error, row.reference
        )

    # -- reconciliation -------------------------------------------------------------------

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
                deliveries.c.state == DELIVERED,
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
            deliveries.c.state == RETRYING,
            deliveries.c.last_error.startswith(REOPENED),
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
        (starting with `REOPENED`) is the pair's last error and its transition's detail. Only
        the pair as the caller saw it (`delivered` after `attempts` attempts): one delivered
        again since (another reconciler's requeue, answered by the target) is left alone, and
        False says nothing changed.
        """
        return await self._move(
            (event_id, target),
            sa.and_(deliveries.c.state == DELIVERED, deliveries.c.attempts == attempts),
            {"state": RETRYING, "last_error": detail},
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
            sa.and_(deliveries.c.state == RETRYING, deliveries.c.last_error == detail),
            {"state": DELIVERED, "last_error": None},
            now,
            f"{REOPEN_UNDONE}: {detail}",
        )

    async def _move(
        self,
        pair: tuple[str, str],
        only_if: sa.ColumnElement[bool],
        values: dict[str, object],
        now: datetime,
        detail: str,
    ) -> bool:
        """Set `values` on the pair if `only_if` holds, with a transition saying `detail`."""
        event_id, target = pair
        async with self._write() as connection:
            moved = await connection.execute(
                deliveries.update()
                .where(deliveries.c.event_id == event_id, deliveries.c.target == target, only_if)
                .values(**values, updated_at=now)
            )
            if moved.rowcount != 1:
                return False
            state = str(values["state"])
            await _transition(connection, event_id, target, state, now, detail=detail)
        return True

    async def note_parked(self, event_id: str, target: str, now: datetime, detail: str) -> None:
        """Write in the pair's history what an operator did with its parked message.

        `detail` starts with `REPLAYED` or `DROPPED`. The delivery row stays as it is: a replayed
        message is claimed from `parked` by the worker; a dropped one leaves the pair `parked`
        (claimable, should the platform send the cancellation again).
        """
        async with self._write() as connection:
            await _transition(connection, event_id, target, PARKED, now, detail=detail)

    async def reopen_counts(self, target: str, event_ids: Sequence[str]) -> dict[str, int]:
        """How many times reconciliation reopened each pair (undone reopens not counted)."""
        if not event_ids:
            return {}
        marked = sa.or_(
            transitions.c.detail.startswith(REOPENED),
            transitions.c.detail.startswith(REOPEN_UNDONE),
        )
        query = sa.select(transitions.c.event_id, transitions.c.detail).where(
            transitions.c.target == target,
            transitions.c.event_id.in_(sorted(set(event_ids))),
            marked,
        )
        counts: dict[str, int] = {}
        async with self._read() as connection:
            for row in await connection.execute(query):
                step = -1 if str(row.detail).startswith(REOPEN_UNDONE) else 1
                counts[row.event_id] = counts.get(row.event_id, 0) + step
        return counts

    # -- echoes ---------------------------------------------------------------------------

    async def echo_of(self, platform: str, order_id: str, since: datetime) -> str | None:
        """The event whose fan-out cancelled `order_id` on `platform` after `since`, if any."""
        async with self._read() as connection:
            found = await connection.scalar(
                sa.select(echoes.c.event_id).where(
                    echoes.c.platform == platform,
                    echoes.c.order_id == order_id,
                    echoes.c.created_at >= since,
                )
            )
        return None if found is None else str(found)

    async def expire_echoes(self, before: datetime) -> int:
        """Forget echoes recorded before `before`; returns how many."""
        async with self._write() as connection:
            result = await connection.execute(echoes.delete().where(echoes.c.created_at < before))
        return int(result.rowcount)

    # -- links ----------------------------------------------------------------------------

    async def link(self, ids: Mapping[str, str], now: datetime) -> str:
        """Record that `ids` (platform -> order id) name one order; returns its group.

        Groups that share an id are merged; a platform's id given here replaces another id of
        the same platform in the group (last write wins).
        """
        for attempt in range(3):
            try:
                async with self._write() as connection:
                    return await _link(connection, ids, now)
            except IntegrityError:  # a concurrent link inserted one of the ids: read again
                if attempt == 2:  # noqa: PLR2004 - the last try
                    raise
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def linked_order(self, platform: str, order_id: str, wanted: str) -> str | None:
        """The order id on platform `wanted` of the order `order_id` on `platform`."""
        mine = links.alias("mine")
        async with self._read() as connection:
            found = await connection.scalar(
                sa.select(links.c.order_id)
                .join(mine, mine.c.group_id == links.c.group_id)
                .where(
                    mine.c.platform == platform,
                    mine.c.order_id == order_id,
                    links.c.platform == wanted,
                )
            )
        return None if found is None else str(found)

    async def links_of(self, platform: str, order_id: str) -> dict[str, str]:
        """Every platform's id of the order `order_id` on `platform` (itself included)."""
        mine = links.alias("mine")
        async with self._read() as connection:
            rows = await connection.execute(
                sa.select(links.c.platform, links.c.order_id)
                .join(mine, mine.c.group_id == links.c.group_id)
                .where(mine.c.platform == platform, mine.c.order_id == order_id)
            )
            return {row.platform: row.order_id for row in rows}

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read connection whose failures are `StoreUnavailable`."""
        async with self._read() as connection:
            yield connection


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


def _delivery_row(  # noqa: PLR0913 - the row's columns
    event_id: str,
    target: str,
    state: str,
    now: datetime,
    *,
    worker: str | None = None,
    lease_until: datetime | None = None,
) -> dict[str, object]:
    return {
        "event_id": event_id,
        "target": target,
        "state": state,
        "attempts": 1 if state == CALLING else 0,
        "created_at": now,
        "updated_at": now,
        "claimed_by": worker,
        "lease_until": lease_until,
    }


def _event_row(
    event: OrderCancelled, now: datetime, body: bytes | None = None
) -> dict[str, object]:
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


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Database trouble (not a key conflict) becomes `StoreUnavailable`, without secrets."""
    try:
        yield
    except IntegrityError:
        raise
    except (DBAPIError, PoolTimeoutError, OSError, TimeoutError) as exc:
        detail = type(getattr(exc, "orig", None) or exc).__name__
        raise StoreUnavailable(f"store unavailable ({detail})") from exc


async def _insert_delivery(  # noqa: PLR0913 - the row's columns
    connection: AsyncConnection,
    event_id: str,
    target: str,
    state: str,
    now: datetime,
    *,
    worker: str | None = None,
    lease_until: datetime | None = None,
) -> None:
    await connection.execute(
        deliveries.insert(),
        _delivery_row(event_id, target, state, now, worker=worker, lease_until=lease_until),
    )
    if state == PENDING:  # a claim (`calling`) is not a transition of its own: its outcome is
        await _transition(connection, event_id, target, state, now, detail=None)


def _in_transaction(engine: sa.Engine, body: Callable[[sa.Connection], R]) -> R:
    with engine.begin() as connection:
        return body(connection)


def _arrive(connection: sa.Connection, arrivals: Sequence[Arrival]) -> list[Seen | Echo]:
    found = connection.execute(_ECHOES_OF, {"orders": sorted({a.event.order_id for a in arrivals})})
    echoed = {(row.platform, row.order_id): (row.event_id, utc(row.created_at)) for row in found}
    results: list[Seen | Echo] = []
    recorded: list[Arrival] = []
    for arrival in arrivals:
        cause = echoed.get((arrival.event.source.value, arrival.event.order_id))
        if cause is not None and cause[1] >= arrival.echo_since:
            results.append(Echo(str(cause[0])))
        else:
            recorded.append(arrival)
            results.append(Seen(0))  # counted below
    keys = sorted({str(a.event.event_id) for a in recorded})
    counts = {
        row.event_id: int(row.delivery_count)
        for row in connection.execute(_COUNTS_OF, {"keys": keys})
    }
    new: dict[str, Arrival] = {}
    more: dict[str, int] = {}
    for n, result in enumerate(results):
        if isinstance(result, Echo):
            continue
        arrival = arrivals[n]
        key = str(arrival.event.event_id)
        if key not in counts and key not in new:
            new[key] = arrival
            counts[key] = 1
        else:
            counts[key] += 1
            more[key] = more.get(key, 0) + 1
        results[n] = Seen(counts[key])
    if new:
        connection.execute(
            events.insert(), [_event_row(a.event, a.at, a.body) for a in new.values()]
        )
        pending = [(key, target, a.at) for key, a in new.items() for target in a.targets]
        if pending:
            connection.execute(
                deliveries.insert(),
                [_delivery_row(key, target, PENDING, at) for key, target, at in pending],
            )
            connection.execute(
                transitions.insert(),
                [
                    {"event_id": key, "target": target, "state": PENDING, "at": at, "detail": None}
                    for key, target, at in pending
                ],
            )
    if more:
        now = max(a.at for a in arrivals)
        connection.execute(_SEEN_MORE, [{"k": key, "n": n, "now": now} for key, n in more.items()])
    return results


def _take_many(
    connection: sa.Connection, by_key: Mapping[str, OrderCancelled], params: dict[str, Any]
) -> dict[str, int]:
    """Take every claimable pair; claim those with no row yet. The attempt number by event."""
    taken = {row.event_id: int(row.attempts) for row in connection.execute(_TAKE_MANY, params)}
    rest = [key for key in params["keys"] if key not in taken]
    if not rest:
        return taken
    target, now = params["t"], params["now"]
    have = {row.event_id for row in connection.execute(_PAIRS_OF, {"t": target, "keys": rest})}
    fresh = [key for key in rest if key not in have]
    if not fresh:
        return taken
    known = {row.event_id for row in connection.execute(_COUNTS_OF, {"keys": fresh})}
    unknown = [_event_row(by_key[key], now) for key in fresh if key not in known]
    if unknown:
        connection.execute(events.insert(), unknown)
    connection.execute(
        deliveries.insert(),
        [
            _delivery_row(
                key, target, CALLING, now, worker=params["w"], lease_until=params["lease"]
            )
            for key in fresh
        ],
    )
    taken.update((key, 1) for key in fresh)
    return taken


def _finish_all(connection: sa.Connection, results: Sequence[Result]) -> list[bool]:
    held = [_finish(connection, result) for result in results]
    steps = [
        _transition_row(result)
        for result, mine in zip(results, held, strict=True)
        if mine or result.state in SETTLED
    ]
    if steps:
        connection.execute(transitions.insert(), steps)
    return held


def _finish(connection: sa.Connection, result: Result) -> bool:
    params = {
        "k": result.event_id,
        "t": result.target,
        "w": result.worker,
        "st": result.state,
        "now": result.at,
        "err": None if result.state in SETTLED else result.detail,
        "ref": result.reference,
    }
    held = (connection.execute(_FINISH_CLAIM, params)).rowcount == 1
    if not held and result.state in SETTLED:
        connection.execute(_FINISH_UNSETTLED, params)
    if result.echo is not None and result.state in SETTLED:
        _remember_echo(connection, result.echo, result.event_id, result.at)
    return held


def _transition_row(result: Result) -> dict[str, object]:
    return {
        "event_id": result.event_id,
        "target": result.target,
        "state": result.state,
        "at": result.at,
        "detail": result.detail or result.reference,
    }


async def _transition(  # noqa: PLR0913 - the row's columns
    connection: AsyncConnection,
    event_id: str,
    target: str,
    state: str,
    now: datetime,
    *,
    detail: str | None,
) -> None:
    await connection.execute(
        transitions.insert(),
        {"event_id": event_id, "target": target, "state": state, "at": now, "detail": detail},
    )


def _remember_echo(
    connection: sa.Connection, echo: tuple[str, str], event_id: str, now: datetime
) -> None:
    platform, order_id = echo
    key = (echoes.c.platform == platform, echoes.c.order_id == order_id)
    updated = connection.execute(
        echoes.update().where(*key).values(event_id=event_id, created_at=now)
    )
    if updated.rowcount == 0:
        connection.execute(
            echoes.insert().values(
                platform=platform, order_id=order_id, event_id=event_id, created_at=now
            )
        )


async def _link(connection: AsyncConnection, ids: Mapping[str, str], now: datetime) -> str:
    wanted = sa.or_(
        *(sa.and_(links.c.platform == p, links.c.order_id == o) for p, o in ids.items())
    )
    found = (await connection.execute(sa.select(links).where(wanted))).all()
    groups = sorted({row.group_id for row in found})
    group = groups[0] if groups else str(uuid.uuid4())
    if len(groups) > 1:
        await connection.execute(
            links.update().where(links.c.group_id.in_(groups[1:])).values(group_id=group)
        )
    for platform, order_id in ids.items():
        # This platform's other ids in the group are replaced by the one given now.
        await connection.execute(
            links.delete().where(
                links.c.group_id == group,
                links.c.platform == platform,
                links.c.order_id != order_id,
            )
        )
    known = {(row.platform, row.order_id) for row in found}
    for platform, order_id in ids.items():
        if (platform, order_id) in known:
            await connection.execute(
                links.update()
                .where(links.c.platform == platform, links.c.order_id == order_id)
                .values(group_id=group, updated_at=now)
            )
        else:
            await connection.execute(
                links.insert().values(
                    platform=platform, order_id=order_id, group_id=group, updated_at=now
                )
            )
    return group
