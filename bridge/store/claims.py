"""Claims and outcomes: exactly one effect per (event, target).

`claim` moves a pair to `calling` for one worker until a lease ends, and only the claimant calls
the target; `finish` records the answer before the worker acks. A claim is a conditional
UPDATE ... RETURNING (claimable, or `calling` with an expired lease), else an INSERT (with the
event row when a message was published by someone else); a key conflict re-reads the row. A
settled pair is never claimed again. A claimed pair naming its target order (`order`,
`orders`) is bound to it (`effects.py`): if another event holds that order, the pair settles as
`duplicate` in the same transaction and the claim answers Settled. The worker batches both:
`claim_many` (one UPDATE for every claimable pair, new pairs inserted in the same transaction,
the rest one by one) and `finish_many` (one transaction, the history as one multi-row INSERT).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bridge.store.echoes import remember_echo
from bridge.store.effects import Owned, Verdicts, Waiting, bind, to_bind
from bridge.store.engine import KEY_CONFLICTS, Engines, utc
from bridge.store.history import insert_delivery
from bridge.store.lifecycle import SETTLED_STATES, DeliveryState
from bridge.store.statements import (
    COUNTS_OF,
    FINISH_CLAIM,
    FINISH_UNSETTLED,
    PAIRS_OF,
    TAKE,
    TAKE_MANY,
    delivery_row,
    event_row,
)
from bridge.store.tables import deliveries, events, transitions
from contracts.events import OrderCancelled


@dataclass(frozen=True, slots=True)
class Claimed:
    """The claiming worker holds the pair: call the target, then `finish` (attempt from 1)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Settled:
    """The pair already had its effect (one of `SETTLED_STATES`): do not call."""

    state: DeliveryState
    reference: str | None


@dataclass(frozen=True, slots=True)
class Busy:
    """Another claim holds the pair until `lease_until` (perhaps this worker's own)."""

    claimed_by: str | None
    lease_until: datetime


Claim = Claimed | Settled | Busy


@dataclass(frozen=True, slots=True)
class Result:
    """How a claim ended, for `finish_many`."""

    event_id: str
    target: str
    worker: str
    state: DeliveryState
    at: datetime
    detail: str | None = None
    reference: str | None = None
    echo: tuple[str, str] | None = None  # (platform, order id) the bridge cancelled there


class Claims(Engines):
    """The worker's moves: claim a pair, then record the target's answer."""

    async def claim(  # noqa: PLR0913 - the claim's parts
        self,
        event: OrderCancelled,
        target: str,
        worker: str,
        now: datetime,
        lease_until: datetime,
        *,
        order: str | None = None,
    ) -> Claim:
        """Take (event, target) for `worker` until `lease_until`, or say why not.

        With `order` (the target's name for the order), a pair whose order another event holds
        settles as `duplicate`: Settled.
        """
        key = str(event.event_id)
        for _ in range(3):
            attempt = await self._take(key, target, worker, now, lease_until)
            if attempt is None and await self._insert_claim(
                event, target, worker, now, lease_until
            ):
                attempt = 1
            if attempt is not None:
                if order is None:
                    return Claimed(attempt)
                pair = (key, attempt, order)
                return await self._bind_one(pair, target, worker, now, lease_until)
            refused = await self._claim_refused(key, target, now)
            if refused is not None:
                return refused
            # claimable again (another claim just finished): try to take it
        return Busy(None, now)  # contended three times over: come back shortly

    async def _bind_one(
        self,
        pair: tuple[str, int, str],
        target: str,
        worker: str,
        now: datetime,
        lease_until: datetime,
    ) -> Claim:
        """`claim`'s claimed pair (key, attempt, order) bound, in a transaction of its own."""
        key, attempt, order = pair
        bound = await self._transaction(
            lambda connection: _bound(
                connection, {key: attempt}, {key: order}, target=target, worker=worker, now=now
            )
        )
        return _claim_of(bound[key], lease_until)

    async def claim_many(
        self,
        events_: Sequence[OrderCancelled],
        target: str,
        worker: str,
        lease: timedelta,
        orders: Mapping[str, str] | None = None,
    ) -> list[Claim]:
        """`claim` for many events at once: one UPDATE takes every claimable pair.

        Pairs with no row yet (events published by anything but the receiver) are claimed in
        the same transaction, and the claimed pairs bound to their target order (`orders`:
        event id -> the target's name for the order). The rest (a duplicate within the batch,
        held by another claim, settled, or a row that appeared meanwhile) go through `claim`
        one by one.
        """
        now = datetime.now(UTC)
        orders = orders or {}
        by_key = {str(event.event_id): event for event in events_}
        params = {
            "keys": sorted(by_key),
            "t": target,
            "w": worker,
            "now": now,
            "lease": now + lease,
        }
        try:
            taken = await self._take_many_hot(by_key, params, orders)
            if taken is None:
                taken = await self._transaction(
                    lambda connection: _take_many(connection, by_key, params, orders)
                )
        except KEY_CONFLICTS:  # another worker wrote a new row first: one by one
            taken = {}
        claims: list[Claim] = []
        for event in events_:
            key = str(event.event_id)
            won = taken.pop(key, None)
            if won is not None:
                claims.append(_claim_of(won, now + lease))
            else:
                claims.append(
                    await self.claim(event, target, worker, now, now + lease, order=orders.get(key))
                )
        return claims

    async def _take_many_hot(
        self,
        by_key: Mapping[str, OrderCancelled],
        params: Mapping[str, Any],
        orders: Mapping[str, str],
    ) -> dict[str, int | Owned | Waiting] | None:
        """`_take_many` through the driver (`hot/`), or None: the SQLAlchemy path.

        On PostgreSQL through `asyncpg`, whose errors are final (`hot/postgres.py`): a key
        conflict is raised, anything else is `StoreUnavailable`. On SQLite through `sqlite3`
        on the loop, which leaves any error but a key conflict to the SQLAlchemy path.
        """
        claim: dict[str, Any] = {
            "target": params["t"],
            "worker": params["w"],
            "now": params["now"],
            "lease_until": params["lease"],
            "orders": orders,
        }
        if self._engine.dialect.driver == "asyncpg":
            from bridge.store.hot import postgres_claims  # noqa: PLC0415 - it imports us

            return await postgres_claims.take_many(self._engine, by_key, **claim)
        from bridge.store.hot.sqlite_claims import take_many  # noqa: PLC0415 - it imports us

        return await self._sqlite_write(lambda db: take_many(db, by_key, **claim))

    async def _finish_all_hot(self, results: Sequence[Result]) -> list[bool] | None:
        """`_finish_all` through the driver (`hot/`), or None: the SQLAlchemy path.

        A key conflict (another worker recorded the same echo first) goes to that path, which
        tries again. Any other error is `StoreUnavailable` on PostgreSQL (`asyncpg`); on SQLite
        (`sqlite3` on the loop) it goes to that path too.
        """
        if self._engine.dialect.driver == "asyncpg":
            from bridge.store.hot import postgres_claims  # noqa: PLC0415 - it imports us

            try:
                return await postgres_claims.finish_all(self._engine, results)
            except asyncpg.IntegrityConstraintViolationError:
                return None
        from bridge.store.hot.sqlite_claims import finish_all  # noqa: PLC0415 - it imports us

        try:
            return await self._sqlite_write(lambda db: finish_all(db, results))
        except sqlite3.IntegrityError:  # an echo recorded by another worker first
            return None

    async def _insert_claim(
        self, event: OrderCancelled, target: str, worker: str, now: datetime, lease_until: datetime
    ) -> bool:
        """A first claim on a pair with no row yet; False if another row got there first."""
        key = str(event.event_id)
        async with self._write() as connection:
            try:  # an event published by someone else has no row yet (the receiver's have)
                async with connection.begin_nested():
                    await connection.execute(events.insert(), event_row(event, now))
            except IntegrityError:
                pass
            try:
                async with connection.begin_nested():
                    await insert_delivery(
                        connection,
                        key,
                        target,
                        DeliveryState.CALLING,
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
            taken = await connection.execute(TAKE, params)
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
        if row.state in SETTLED_STATES:
            return Settled(DeliveryState(row.state), row.reference)
        if (
            row.state == DeliveryState.CALLING
            and row.lease_until is not None
            and utc(row.lease_until) >= now
        ):
            return Busy(row.claimed_by, utc(row.lease_until))
        return None

    async def finish(  # noqa: PLR0913 - one argument per column written
        self,
        event_id: str,
        target: str,
        worker: str,
        state: DeliveryState,
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
        held = await self._finish_all_hot(results)
        if held is not None:
            return held
        for attempt in range(2):
            try:
                return await self._transaction(lambda connection: _finish_all(connection, results))
            except IntegrityError:  # another worker recorded the same echo first: again
                if attempt:
                    raise
                continue
        raise AssertionError  # pragma: no cover - the loop returns or raises


def _claim_of(won: int | Owned | Waiting, lease_until: datetime) -> Claim:
    """A claimed pair's answer: the attempt, settled as duplicate, or given back (Busy)."""
    if isinstance(won, Owned):
        return Settled(DeliveryState.DUPLICATE, won.holder)
    if isinstance(won, Waiting):  # the holder of its order is still at it: come back later
        return Busy(None, lease_until)
    return Claimed(won)


def duplicates(owned: Mapping[str, Owned], target: str, worker: str, now: datetime) -> list[Result]:
    """The outcomes that settle claimed pairs whose target order another event acted on."""
    return [
        Result(key, target, worker, DeliveryState.DUPLICATE, now, lost.detail(target), lost.holder)
        for key, lost in owned.items()
    ]


def judged(taken: Mapping[str, int], verdicts: Verdicts) -> dict[str, int | Owned | Waiting]:
    """The claims after binding: taken (and taken over) pairs, duplicates, the given back."""
    waiting = {key: Waiting(owner.holder, owner.order) for key, owner in verdicts.wait.items()}
    return {**taken, **verdicts.settle, **waiting}


def _bound(  # noqa: PLR0913 - the claim's parts
    connection: sa.Connection,
    taken: Mapping[str, int],
    orders: Mapping[str, str],
    *,
    target: str,
    worker: str,
    now: datetime,
) -> dict[str, int | Owned | Waiting]:
    """Bind the claimed pairs to their orders (`effects.bind`); settle the duplicates."""
    verdicts = bind(connection, target, to_bind(taken, orders), worker=worker, now=now)
    if verdicts.settle:
        _finish_all(connection, duplicates(verdicts.settle, target, worker, now))
    return judged(taken, verdicts)


def _take_many(
    connection: sa.Connection,
    by_key: Mapping[str, OrderCancelled],
    params: dict[str, Any],
    orders: Mapping[str, str] | None = None,
) -> dict[str, int | Owned | Waiting]:
    """`_take_rows`, each claimed pair then bound to its order (`orders`, by event id)."""
    taken = _take_rows(connection, by_key, params)
    return _bound(
        connection, taken, orders or {}, target=params["t"], worker=params["w"], now=params["now"]
    )


def _take_rows(
    connection: sa.Connection, by_key: Mapping[str, OrderCancelled], params: dict[str, Any]
) -> dict[str, int]:
    """Take every claimable pair; claim those with no row yet. The attempt number by event."""
    taken = {row.event_id: int(row.attempts) for row in connection.execute(TAKE_MANY, params)}
    rest = [key for key in params["keys"] if key not in taken]
    if not rest:
        return taken
    target, now = params["t"], params["now"]
    have = {row.event_id for row in connection.execute(PAIRS_OF, {"t": target, "keys": rest})}
    fresh = [key for key in rest if key not in have]
    if not fresh:
        return taken
    known = {row.event_id for row in connection.execute(COUNTS_OF, {"keys": fresh})}
    unknown = [event_row(by_key[key], now) for key in fresh if key not in known]
    if unknown:
        connection.execute(events.insert(), unknown)
    connection.execute(
        deliveries.insert(),
        [
            delivery_row(
                key,
                target,
                DeliveryState.CALLING,
                now,
                worker=params["w"],
                lease_until=params["lease"],
            )
            for key in fresh
        ],
    )
    taken.update((key, 1) for key in fresh)
    return taken


def _finish_all(connection: sa.Connection, results: Sequence[Result]) -> list[bool]:
    held = [_finish(connection, result) for result in results]
    steps = [
        _step_row(result)
        for result, mine in zip(results, held, strict=True)
        if mine or result.state in SETTLED_STATES
    ]
    if steps:
        connection.execute(transitions.insert(), steps)
    return held


def _finish(connection: sa.Connection, result: Result) -> bool:
    settled = result.state in SETTLED_STATES
    params = {
        "k": result.event_id,
        "t": result.target,
        "w": result.worker,
        "st": result.state,
        "now": result.at,
        "err": None if settled else result.detail,
        "ref": result.reference,
    }
    held = (connection.execute(FINISH_CLAIM, params)).rowcount == 1
    if not held and settled:
        connection.execute(FINISH_UNSETTLED, params)
    if result.echo is not None and settled:
        remember_echo(connection, result.echo, result.event_id, result.at)
    return held


def _step_row(result: Result) -> dict[str, object]:
    return {
        "event_id": result.event_id,
        "target": result.target,
        "state": result.state,
        "at": result.at,
        "detail": result.detail or result.reference,
    }
