"""What the store's hot-path tests share: a pinned time, events, arrival batches, an echo.

Both drivers' tests (`test_store_hot_sqlite.py`, `test_store_hot_postgres.py`) run these through
the driver and through SQLAlchemy's path and compare what each leaves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bridge.store.arrivals import Arrival
from bridge.store.claims import Result
from bridge.store.deliveries import Store
from bridge.store.effects import Owned, Waiting
from bridge.store.lifecycle import DeliveryState
from contracts.events import CancelReason, OrderCancelled, Source

NOW = datetime(2026, 12, 4, 21, 30, 5, 120000, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)


def event(
    order_id: str, at: datetime = NOW, aliases: dict[str, str] | None = None
) -> OrderCancelled:
    """A Shoplazza cancellation of `order_id` at `at` (with its ids elsewhere, if any)."""
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id=order_id,
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=at,
        received_at=at,
        delivery_id=None,
        aliases=aliases,
    )


def batches() -> list[list[Arrival]]:
    """Three batches: new events (one twice), counted again, an echo, no routes."""
    one, two, echoed = event("1001"), event("1002"), event("echoed")
    return [
        [
            Arrival(one, NOW, ("cj", "prime"), SINCE),
            Arrival(two, NOW, ("cj",), SINCE),
            Arrival(one, NOW + timedelta(seconds=1), ("cj", "prime"), SINCE),
        ],
        [
            Arrival(two, NOW + timedelta(minutes=1), ("cj",), SINCE),
            Arrival(echoed, NOW + timedelta(minutes=1), ("cj",), SINCE),
        ],
        [Arrival(event("1003"), NOW + timedelta(minutes=2), (), SINCE)],
    ]


async def with_an_echo(store: Store) -> None:
    """The bridge cancelled order `echoed` on Shoplazza itself."""
    cause = event("cause")
    await store.claim(cause, "shoplazza", "w", NOW, NOW + timedelta(seconds=30))
    await store.finish(
        str(cause.event_id),
        "shoplazza",
        "w",
        DeliveryState.DELIVERED,
        NOW,
        echo=("shoplazza", "echoed"),
    )


def key(e: OrderCancelled) -> str:
    return str(e.event_id)


# (events by id, worker, now, lease end, target orders by event id)
Take = Callable[
    [dict[str, OrderCancelled], str, datetime, datetime, dict[str, str]], Awaitable[object]
]
Finish = Callable[[list[Result]], Awaitable[object]]
Scenario = Callable[["Store", Take, Finish], Awaitable[list[object]]]


async def claims_and_outcomes(store: Store, take_many: Take, finish_all: Finish) -> list[object]:
    """One scenario through `take_many` and `finish_all`; their answers in order.

    The two are a driver's or SQLAlchemy's path. Claims of pending, foreign (no rows), settled,
    held and known (event, no pair) events; a pair finished twice in one batch; an echo recorded
    twice in one batch and one recorded before.
    """
    lease = NOW + timedelta(seconds=30)
    pending, foreign, settled, held = event("p1"), event("f1"), event("s1"), event("h1")
    known = event("k1")
    await with_an_echo(store)  # order `echoed`: its record is updated below
    await store.arrive_many([Arrival(e, NOW, ("cj",), SINCE) for e in (pending, settled, held)])
    await store.arrive_many([Arrival(known, NOW, ("prime",), SINCE)])  # no pair with cj
    answers: list[object] = []

    async def take(events: list[OrderCancelled], worker: str, now: datetime) -> None:
        answers.append(await take_many({key(e): e for e in events}, worker, now, lease, {}))

    async def finish(results: list[Result]) -> None:
        answers.append(await finish_all(results))

    await take([settled, held], "w0", NOW)
    await finish([Result(key(settled), "cj", "w0", DeliveryState.DELIVERED, NOW, None, "sub-1")])
    later = NOW + timedelta(seconds=5)
    # pending: taken; foreign: no rows (published elsewhere); settled: refused; held: w0's
    # lease; known: its event recorded, no pair with cj
    await take([pending, foreign, settled, held, known], "w1", later)
    done, again = later + timedelta(seconds=1), later + timedelta(seconds=2)
    await finish(
        [
            Result(key(pending), "cj", "w1", DeliveryState.RETRYING, done, "HTTP 503"),
            Result(
                key(foreign),
                "cj",
                "w1",
                DeliveryState.ALREADY_DONE,
                done,
                "cj: already",
                None,
                ("shoplazza", "f1"),
            ),
            # w1 never held these: a settling outcome still lands on the unsettled pair
            Result(
                key(held),
                "cj",
                "w1",
                DeliveryState.DELIVERED,
                done,
                None,
                "sub-2",
                ("shoplazza", "echoed"),
            ),
            Result(key(settled), "cj", "w1", DeliveryState.PARKED, done, "late", None),
            Result(key(known), "cj", "w1", DeliveryState.RETRYING, done, "HTTP 500"),
            # the same pair again: no longer w1's claim, but not settled either
            Result(
                key(known),
                "cj",
                "w1",
                DeliveryState.DELIVERED,
                again,
                None,
                "sub-3",
                ("shoplazza", "f1"),
            ),
        ]
    )
    await take([pending], "w2", done)  # retrying: claimable again, attempt 2
    return answers


async def bound_claims(store: Store, take_many: Take, finish_all: Finish) -> list[object]:
    """Claims bound to CJ orders, through `take_many` and `finish_all`; their answers in order.

    Two events naming one order in one batch: one holds it, the other waits (its claim given
    back) while the holder is at it; an event published elsewhere (no rows) naming it waits
    too; once the holder delivered, both settle as duplicates. A parked holder hands its order
    over to the next event naming it. An event naming another order is claimed as ever.
    """
    one, two, elsewhere, other = event("b1"), event("b2"), event("b3"), event("b4")
    parked, heir = event("b5"), event("b6")
    orders = {key(one): "CJ-1", key(two): "CJ-1", key(elsewhere): "CJ-1", key(other): "CJ-2"}
    orders |= {key(parked): "CJ-3", key(heir): "CJ-3"}
    await store.arrive_many([Arrival(e, NOW, ("cj",), SINCE) for e in (one, two, other, parked)])
    lease = timedelta(seconds=30)
    later, last = NOW + timedelta(seconds=40), NOW + timedelta(seconds=80)
    holder = min(key(one), key(two))
    return [
        await take_many({key(one): one, key(two): two}, "w1", NOW, NOW + lease, orders),
        await finish_all([Result(holder, "cj", "w1", DeliveryState.RETRYING, NOW, "HTTP 503")]),
        await take_many(
            {key(e): e for e in (elsewhere, other, one, two)}, "w2", later, later + lease, orders
        ),
        await finish_all([Result(holder, "cj", "w2", DeliveryState.DELIVERED, later, None, "s")]),
        await take_many({key(e): e for e in (elsewhere, two)}, "w3", last, last + lease, orders),
        await take_many({key(parked): parked}, "w1", NOW, NOW + lease, orders),
        await finish_all([Result(key(parked), "cj", "w1", DeliveryState.PARKED, NOW, "no")]),
        await take_many({key(heir): heir}, "w3", last, last + lease, orders),
    ]


def bound_answers() -> list[object]:
    """What `bound_claims` answers, in order, on every path."""
    one, two, elsewhere, other, parked, heir = (
        key(event(o)) for o in ("b1", "b2", "b3", "b4", "b5", "b6")
    )
    holder, twin = sorted((one, two))
    return [
        {holder: 1, twin: Waiting(holder, "CJ-1")},  # the holder is calling
        [True],
        {  # the holder retrying: its own again; the others wait for it
            holder: 2,
            twin: Waiting(holder, "CJ-1"),
            elsewhere: Waiting(holder, "CJ-1"),
            other: 1,
        },
        [True],
        {elsewhere: Owned(holder, "CJ-1"), twin: Owned(holder, "CJ-1")},  # delivered: duplicates
        {parked: 1},
        [True],
        {heir: 1},  # the parked holder's order, taken over
    ]


def assert_bound_rows(written: dict[str, list[tuple[object, ...]]], at: object) -> None:
    """What `bound_claims` leaves (the same on every path).

    `at`: the time of the last claims, as the driver stores it.
    """
    one, two, elsewhere, other, parked, heir = (
        key(event(o)) for o in ("b1", "b2", "b3", "b4", "b5", "b6")
    )
    holder, twin = sorted((one, two))
    pairs = {row[0]: (row[2], row[3]) for row in written["deliveries"]}  # state, attempts
    assert pairs[holder] == (DeliveryState.DELIVERED, 2)
    # given back twice (no attempt counted), then settled by the claim that found it delivered
    assert pairs[twin] == pairs[elsewhere] == (DeliveryState.DUPLICATE, 1)
    assert pairs[other] == (DeliveryState.CALLING, 1)
    assert pairs[parked] == (DeliveryState.PARKED, 1)
    assert pairs[heir] == (DeliveryState.CALLING, 1)
    assert [row[:3] for row in written["effects"]] == [
        ("cj", "CJ-1", holder),
        ("cj", "CJ-2", other),
        ("cj", "CJ-3", heir),
    ]
    detail = f"same cj order CJ-1 as event {holder}"
    assert (twin, "cj", "duplicate", at, detail) in written["transitions"]
    steps = sorted(str(row[2]) for row in written["transitions"] if row[0] in (twin, elsewhere))
    assert steps == ["duplicate", "duplicate", "pending"]  # the twin's arrival; no waiting step


def scenario_answers() -> list[object]:
    """What `claims_and_outcomes` answers, in order, on every path."""
    p1, f1, s1, h1, k1 = (key(event(o)) for o in ("p1", "f1", "s1", "h1", "k1"))
    return [
        {s1: 1, h1: 1},
        [True],
        {p1: 1, f1: 1, k1: 1},  # settled refused, held still leased to w0
        [True, True, False, False, True, False],
        {p1: 2},
    ]


def scenario_states() -> dict[tuple[str, str], str]:
    """The state of each pair `claims_and_outcomes` leaves, by (event id, target)."""
    p1, f1, s1, h1, k1 = (key(event(o)) for o in ("p1", "f1", "s1", "h1", "k1"))
    return {
        (p1, "cj"): "calling",
        (f1, "cj"): "already_done",
        (s1, "cj"): "delivered",
        (h1, "cj"): "delivered",
        (k1, "cj"): "delivered",
        (k1, "prime"): "pending",
        (key(event("cause")), "shoplazza"): "delivered",
    }
