"""The worker's claims and outcomes through `asyncpg`, in one transaction each (`postgres.py`).

The same rows and answers as `claims._take_many` and `claims._finish_all` (built from
`statements.TAKE_MANY`, `PAIRS_OF`, `COUNTS_OF`, `FINISH_CLAIM`, `FINISH_UNSETTLED` and
`echoes.remember_echo`), in a statement per table rather than per row: arrays
(`= ANY($1::text[])`, `unnest`) and `UPDATE ... RETURNING` for which claims held. The tests run
both paths on the same operations and compare every answer and row.

Outcomes are set-based where that means the same as SQLAlchemy's row after row. Each row's
FINISH_CLAIM and FINISH_UNSETTLED touch only its own pair, so for distinct pairs one UPDATE over
all of them is the same; a pair twice in a batch depends on its first outcome (the second finds
it no longer `calling`), so the batch runs in rounds, each starting where a pair comes again.
An echo ends as its last remembering wrote it (UPDATE, else INSERT, for each), so one UPDATE and
one INSERT of the last value per (platform, order) leave the same row; a conflict on that
INSERT (another worker recorded the echo first) is raised, as SQLAlchemy's path raises it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

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
from bridge.store.engine import PG_COMMAND_TIMEOUT
from bridge.store.hot.postgres import COUNTS_OF, INSERT_EVENTS, driver_transaction
from bridge.store.lifecycle import CLAIMABLE_STATES, SETTLED_STATES, DeliveryState
from contracts.events import OrderCancelled

CALLING = DeliveryState.CALLING.value
_CLAIMABLE = ", ".join(f"'{state.value}'" for state in CLAIMABLE_STATES)
_SETTLED = ", ".join(f"'{state.value}'" for state in SETTLED_STATES)
TAKE_MANY = (
    f"UPDATE deliveries SET state = '{CALLING}', claimed_by = $1, lease_until = $2,"  # noqa: S608 - constant states
    " attempts = attempts + 1, updated_at = $3 WHERE target = $4 AND event_id = ANY($5::text[])"
    f" AND (state IN ({_CLAIMABLE}) OR (state = '{CALLING}' AND lease_until < $3))"
    " RETURNING event_id, attempts"
)
PAIRS_OF = "SELECT event_id FROM deliveries WHERE target = $1 AND event_id = ANY($2::text[])"
INSERT_CLAIMS = (
    "INSERT INTO deliveries (event_id, target, state, attempts, created_at, updated_at,"  # noqa: S608 - a constant state
    f" claimed_by, lease_until) SELECT k, $2::text, '{CALLING}', 1, $3::timestamptz,"
    " $3::timestamptz, $4::text, $5::timestamptz FROM unnest($1::text[]) AS u(k)"
)
_OUTCOME = (
    "UPDATE deliveries AS d SET state = u.st, updated_at = u.at, claimed_by = NULL,"
    " lease_until = NULL, last_error = u.err, reference = coalesce(u.ref, d.reference)"
)
# The pairs each outcome's claim still holds (those it finds come back), then, for a settling
# outcome of a lost claim, any of its pairs not settled yet.
FINISH_CLAIMS = (
    f"{_OUTCOME} FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],"
    " $6::text[], $7::text[]) AS u(k, t, st, at, err, ref, w)"
    f" WHERE d.event_id = u.k AND d.target = u.t AND d.state = '{CALLING}' AND d.claimed_by = u.w"
    " RETURNING d.event_id, d.target"
)
FINISH_UNSETTLED = (
    f"{_OUTCOME} FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],"
    " $6::text[]) AS u(k, t, st, at, err, ref)"
    f" WHERE d.event_id = u.k AND d.target = u.t AND d.state NOT IN ({_SETTLED})"
)
ECHOES_AGAIN = (
    "UPDATE echoes AS e SET event_id = u.k, created_at = u.at FROM unnest($1::text[], $2::text[],"
    " $3::text[], $4::timestamptz[]) AS u(p, o, k, at) WHERE e.platform = u.p AND e.order_id = u.o"
    " RETURNING e.platform, e.order_id"
)
ECHOES_NEW = (
    "INSERT INTO echoes (platform, order_id, event_id, created_at)"
    " SELECT p, o, k, at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])"
    " AS u(p, o, k, at)"
)
BIND = (
    "INSERT INTO effects (target, order_key, event_id, created_at)"
    " SELECT $1::text, o, k, $4::timestamptz FROM unnest($2::text[], $3::text[]) AS u(o, k)"
    " ON CONFLICT DO NOTHING RETURNING order_key, event_id"
)
HOLDERS = (
    "SELECT order_key, event_id FROM effects WHERE target = $1 AND order_key = ANY($2::text[])"
)
HOLDER_STATES = (
    "SELECT event_id, state FROM deliveries WHERE target = $1 AND event_id = ANY($2::text[])"
)
TAKE_OVER = (
    "UPDATE effects SET event_id = $1, created_at = $2 WHERE target = $3 AND order_key = $4"
    " AND event_id = $5"
)
RELEASE = (
    f"UPDATE deliveries SET {RELEASE_SET} WHERE target = $1 AND event_id = ANY($2::text[])"  # noqa: S608 - constants
    f" AND claimed_by = $3 AND state = '{CALLING}'"
)
NO_ORDERS: Mapping[str, str] = MappingProxyType({})
INSERT_STEPS = (
    "INSERT INTO transitions (event_id, target, state, at, detail)"
    " SELECT k, t, st, at, d FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],"
    " $5::text[]) AS u(k, t, st, at, d)"
)


async def take_many(  # noqa: PLR0913 - the claim's parts
    engine: AsyncEngine,
    by_key: Mapping[str, OrderCancelled],
    *,
    target: str,
    worker: str,
    now: datetime,
    lease_until: datetime,
    orders: Mapping[str, str] = NO_ORDERS,
) -> dict[str, int | Owned | Waiting]:
    """Take every claimable pair; claim those with no row yet; bind them to their orders.

    The attempt number by event, `Owned` (its order's holder acted: the pair settled as
    duplicate) or `Waiting` (the holder is still at it: the claim given back), as
    `claims._bound`. Raises `asyncpg.IntegrityConstraintViolationError` (another worker wrote a
    new pair or event first: the caller claims one by one) or `StoreUnavailable`.
    """
    async with driver_transaction(engine) as driver:
        taken = await _take_rows(
            driver, by_key, target=target, worker=worker, now=now, lease_until=lease_until
        )
        verdicts = await _bind_pairs(driver, target, to_bind(taken, orders), worker, now)
        if verdicts.settle:
            await _finish_in(driver, duplicates(verdicts.settle, target, worker, now))
        return judged(taken, verdicts)


async def _bind_pairs(
    driver: asyncpg.Connection,
    target: str,
    pairs: Mapping[str, str],
    worker: str,
    now: datetime,
) -> Verdicts:
    """`effects.bind` through the driver: bind (in order key order), judge, take over, give back."""
    if not pairs:
        return Verdicts({}, {}, {})
    rows = bind_rows(pairs)
    orders, keys = [order for order, _ in rows], [key for _, key in rows]
    # The orders bound now come back; only those held before are read (none, commonly).
    bound = await driver.fetch(BIND, target, orders, keys, now, timeout=PG_COMMAND_TIMEOUT)
    holders = {row["order_key"]: row["event_id"] for row in bound}
    if wanted := [order for order in orders if order not in holders]:
        found = await driver.fetch(HOLDERS, target, wanted, timeout=PG_COMMAND_TIMEOUT)
        holders.update((row["order_key"], row["event_id"]) for row in found)
    lost = owned(pairs, holders)
    if not lost:
        return Verdicts({}, {}, {})
    held = sorted({owner.holder for owner in lost.values()})
    found = await driver.fetch(HOLDER_STATES, target, held, timeout=PG_COMMAND_TIMEOUT)
    verdicts = decide(lost, {row["event_id"]: row["state"] for row in found})
    for key, owner in verdicts.takeovers():
        moved = await driver.execute(
            TAKE_OVER, key, now, target, owner.order, owner.holder, timeout=PG_COMMAND_TIMEOUT
        )
        if moved != "UPDATE 1":
            verdicts.outrun(key)
    if verdicts.wait:
        await driver.execute(
            RELEASE, target, sorted(verdicts.wait), worker, timeout=PG_COMMAND_TIMEOUT
        )
    return verdicts


async def _take_rows(  # noqa: PLR0913 - the claim's parts
    driver: asyncpg.Connection,
    by_key: Mapping[str, OrderCancelled],
    *,
    target: str,
    worker: str,
    now: datetime,
    lease_until: datetime,
) -> dict[str, int]:
    """Take every claimable pair; claim those with no row yet. The attempt number by event."""
    keys = sorted(by_key)
    found = await driver.fetch(
        TAKE_MANY, worker, lease_until, now, target, keys, timeout=PG_COMMAND_TIMEOUT
    )
    taken = {str(row["event_id"]): int(row["attempts"]) for row in found}
    rest = [key for key in keys if key not in taken]
    if not rest:
        return taken
    have = {
        row["event_id"]
        for row in await driver.fetch(PAIRS_OF, target, rest, timeout=PG_COMMAND_TIMEOUT)
    }
    fresh = [key for key in rest if key not in have]
    if not fresh:
        return taken
    known = {
        row["event_id"] for row in await driver.fetch(COUNTS_OF, fresh, timeout=PG_COMMAND_TIMEOUT)
    }
    unknown = [by_key[key] for key in fresh if key not in known]
    if unknown:
        await _insert_events(driver, unknown, now)
    await driver.execute(
        INSERT_CLAIMS, fresh, target, now, worker, lease_until, timeout=PG_COMMAND_TIMEOUT
    )
    taken.update((key, 1) for key in fresh)
    return taken


async def _insert_events(
    driver: asyncpg.Connection, new: Sequence[OrderCancelled], now: datetime
) -> None:
    """The rows `statements.event_row` makes (first seen now, counted once, the JSON again)."""
    await driver.execute(
        INSERT_EVENTS,
        [str(event.event_id) for event in new],
        [event.source.value for event in new],
        [event.shop for event in new],
        [event.order_id for event in new],
        [event.reason.value for event in new],
        [now] * len(new),
        [event.to_json().decode() for event in new],
        timeout=PG_COMMAND_TIMEOUT,
    )


async def finish_all(engine: AsyncEngine, results: Sequence[Result]) -> list[bool]:
    """Each outcome on the pair its claim holds (or, settled, on any unsettled pair); history.

    Raises `asyncpg.IntegrityConstraintViolationError` (another worker recorded one of the
    echoes first: the caller tries again) or `StoreUnavailable`.
    """
    async with driver_transaction(engine) as driver:
        return await _finish_in(driver, results)


async def _finish_in(driver: asyncpg.Connection, results: Sequence[Result]) -> list[bool]:
    """`finish_all`'s statements in the caller's transaction."""
    held: list[bool] = []
    for batch in _rounds(results):
        held.extend(await _finish_round(driver, batch))
    await _remember_echoes(driver, results)
    steps = [
        result
        for result, mine in zip(results, held, strict=True)
        if mine or result.state in SETTLED_STATES
    ]
    if steps:
        await driver.execute(
            INSERT_STEPS,
            [result.event_id for result in steps],
            [result.target for result in steps],
            [result.state.value for result in steps],
            [result.at for result in steps],
            [result.detail or result.reference for result in steps],
            timeout=PG_COMMAND_TIMEOUT,
        )
    return held


def _rounds(results: Sequence[Result]) -> list[Sequence[Result]]:
    """`results` cut into runs of distinct pairs, in order: a run ends before a pair repeats."""
    rounds: list[Sequence[Result]] = []
    start = 0
    pairs: set[tuple[str, str]] = set()
    for i, result in enumerate(results):
        pair = (result.event_id, result.target)
        if pair in pairs:
            rounds.append(results[start:i])
            start, pairs = i, set()
        pairs.add(pair)
    if start < len(results):
        rounds.append(results[start:])
    return rounds


async def _finish_round(driver: asyncpg.Connection, results: Sequence[Result]) -> list[bool]:
    """FINISH_CLAIM then FINISH_UNSETTLED for outcomes of distinct pairs; which claims held."""
    found = await driver.fetch(
        FINISH_CLAIMS, *_outcomes(results), [r.worker for r in results], timeout=PG_COMMAND_TIMEOUT
    )
    mine = {(row["event_id"], row["target"]) for row in found}
    held = [(result.event_id, result.target) in mine for result in results]
    lost = [
        result
        for result, ours in zip(results, held, strict=True)
        if not ours and result.state in SETTLED_STATES
    ]
    if lost:
        await driver.execute(FINISH_UNSETTLED, *_outcomes(lost), timeout=PG_COMMAND_TIMEOUT)
    return held


def _outcomes(results: Sequence[Result]) -> tuple[list[object], ...]:
    """The columns of `claims._finish`'s parameters: pair, state, time, error, reference."""
    return (
        [result.event_id for result in results],
        [result.target for result in results],
        [result.state.value for result in results],
        [result.at for result in results],
        [None if result.state in SETTLED_STATES else result.detail for result in results],
        [result.reference for result in results],
    )


async def _remember_echoes(driver: asyncpg.Connection, results: Sequence[Result]) -> None:
    """`echoes.remember_echo` for each settled outcome with an echo: the last one per order."""
    last = {
        result.echo: result
        for result in results
        if result.echo is not None and result.state in SETTLED_STATES
    }
    if not last:
        return
    columns = (
        [platform for platform, _ in last],
        [order_id for _, order_id in last],
        [result.event_id for result in last.values()],
        [result.at for result in last.values()],
    )
    again = await driver.fetch(ECHOES_AGAIN, *columns, timeout=PG_COMMAND_TIMEOUT)
    if len(again) == len(last):
        return
    updated = {(row["platform"], row["order_id"]) for row in again}
    new = [(echo, result) for echo, result in last.items() if echo not in updated]
    await driver.execute(
        ECHOES_NEW,
        [platform for (platform, _), _ in new],
        [order_id for (_, order_id), _ in new],
        [result.event_id for _, result in new],
        [result.at for _, result in new],
        timeout=PG_COMMAND_TIMEOUT,
    )
