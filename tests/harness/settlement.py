"""How a load-and-fault run ended: declines at the fake CJ, pairs in the store, queue depths.

`settle` waits (bounded) until every accepted order was declined at CJ, every (event, cj) pair
is settled in the store and every queue of the vhost is empty, then returns what it saw, met or
not: the test asserts on it and states the figures.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from bridge.amqp import topology
from bridge.demo.fake_cj import FakeCJ
from bridge.store.deliveries import Store
from bridge.store.lifecycle import SETTLED_STATES
from bridge.store.tables import deliveries
from contracts.events import Source, event_id_for
from tests.harness.poster import Poster
from tests.harness.rabbit_nodes import QueueCount, RabbitCtlError, RabbitNode

POLL = 0.25  # seconds between looks at state that cannot notify (store rows, queue depths)
NO_ROW = "no row"


@dataclass
class Settlement:
    """What the run left behind."""

    expected: int  # (event, cj) pairs that must be settled: one per order that got a 2xx
    states: collections.Counter[str] = field(default_factory=collections.Counter)
    queues: dict[str, QueueCount] = field(default_factory=dict)
    queues_error: str | None = None
    cj_calls: int = 0
    declines: dict[str, int] = field(default_factory=dict)  # order -> declines at CJ
    # Orders CJ was asked about more than once: seconds from the first call to each later one.
    repeats: dict[str, list[float]] = field(default_factory=dict)

    @property
    def settled(self) -> int:
        """Expected pairs delivered or already done."""
        return sum(n for state, n in self.states.items() if state in SETTLED_STATES)

    @property
    def left_in_queues(self) -> dict[str, QueueCount]:
        """Queues holding anything, ready or unacknowledged."""
        return {name: n for name, n in self.queues.items() if n.ready or n.unacked}

    def repeats_shown(self, most: int = 5) -> str:
        """A few repeated orders with their later calls' delays, or nothing."""
        if not self.repeats:
            return ""
        shown = dict(list(self.repeats.items())[:most])
        return f"(order: seconds after its first call {shown})"

    def summary(self) -> str:
        """The figures for an assertion message."""
        queues = self.queues_error or (
            {name: (n.ready, n.unacked) for name, n in self.left_in_queues.items()} or "all empty"
        )
        return (
            f"CJ calls {self.cj_calls}, orders declined at CJ {len(self.declines)},"
            f" orders CJ was asked again {len(self.repeats)} {self.repeats_shown()};"
            f" pairs settled in the store (delivered) {self.settled} of {self.expected}"
            f" {dict(self.states)}; queues (ready, unacked): {queues}"
        )


async def pair_states(store: Store, event_ids: Collection[str]) -> collections.Counter[str]:
    """The cj delivery state of each of `event_ids`, counted (`no row` for a missing pair)."""
    async with store.reading() as connection:
        rows = await connection.execute(
            sa.select(deliveries.c.event_id, deliveries.c.state).where(deliveries.c.target == "cj")
        )
        states = {row.event_id: row.state for row in rows}
    return collections.Counter(states.get(event_id, NO_ROW) for event_id in event_ids)


async def settle(  # noqa: PLR0913 - what a run is made of
    *,
    store_url: str,
    shop: str,
    accepted: Collection[str],
    cj: FakeCJ,
    node: RabbitNode,
    vhost: str = "/",
    within: float,
) -> Settlement:
    """Wait (`within` seconds in all) for CJ, the store and the queues; then what is there."""
    event_ids = [str(event_id_for(Source.SHOPLAZZA, shop, order)) for order in accepted]
    seen = Settlement(expected=len(event_ids))
    async with Store.open(store_url) as store:
        with contextlib.suppress(TimeoutError, RabbitCtlError):
            async with asyncio.timeout(within):
                await cj.wait_accepted(len(event_ids))
                while True:
                    seen.states = await pair_states(store, event_ids)
                    if seen.settled == seen.expected:
                        break
                    await asyncio.sleep(POLL)  # paced: the store cannot notify
                # Counts settle asynchronously in quorum queues: look until every one is empty.
                while True:
                    seen.queues = await node.queue_counts(vhost)
                    if seen.queues and not seen.left_in_queues:
                        break
                    await asyncio.sleep(POLL)  # paced: queue counts cannot notify
        seen.states = await pair_states(store, event_ids)
    try:
        seen.queues = await node.queue_counts(vhost)
    except RabbitCtlError as exc:
        seen.queues_error = str(exc)
    times: dict[str, list[float]] = collections.defaultdict(list)
    for call in cj.calls:
        times[str(call.order["orderId"])].append(call.at)
    seen.cj_calls = len(cj.calls)
    seen.declines = dict(cj.accepted)
    seen.repeats = {
        order: [round(at - at_first, 1) for at in later]
        for order, (at_first, *later) in times.items()
        if later
    }
    return seen


def check(
    poster: Poster,
    seen: Settlement,
    note: str,
    exits: Mapping[str, int],
    *,
    refusals: bool = True,
) -> None:
    """Every promise of a load-and-fault run; a failure lists each broken one, with the figures.

    `exits`: each bridge process's exit status after SIGTERM, by name. `refusals`: the fault
    must have reached the platform as 503s (false: the spool took it, none may have).
    """
    figures = f"{poster.summary()}; {seen.summary()}; {note}"
    print(figures)  # noqa: T201 - the run's figures, shown by pytest -rP or on failure
    broken = broken_promises(poster, seen, exits, refusals=refusals)
    assert not broken, "\n".join(["BROKEN:", *broken, f"FIGURES: {figures}"])


def broken_promises(
    poster: Poster, seen: Settlement, exits: Mapping[str, int], *, refusals: bool = True
) -> list[str]:
    """What went wrong, in words (nothing when the run kept every promise)."""
    broken = []
    if refusals and not poster.tally.answers[503]:
        broken.append("the fault never reached the platform (no 503)")
    if not refusals and poster.tally.refused:
        broken.append(f"{poster.tally.refused} attempts refused while the spool was on")
    if poster.unaccepted:
        broken.append(f"{len(poster.unaccepted)} orders never got a 2xx")
    declines = seen.declines
    if not_once := {o: n for o in poster.tally.accepted if (n := declines.get(o, 0)) != 1}:
        broken.append(f"declined other than once: {list(not_once.items())[:10]}")
    if seen.settled < seen.expected:
        broken.append(f"{seen.expected - seen.settled} pairs not settled")
    if topology.work_queue("cj") not in seen.queues:
        broken.append("no work queue on the node")
    if seen.left_in_queues:
        broken.append(f"messages left in queues: {seen.left_in_queues}")
    if seen.repeats:
        broken.append(
            f"CJ was asked again for {len(seen.repeats)} orders (answered 'already'): with the"
            " store and CJ up all along, a broker fault must not repeat a call"
        )
    if failed := {name: status for name, status in exits.items() if status != 0}:
        broken.append(f"processes exited other than 0 after SIGTERM: {failed}")
    return broken
