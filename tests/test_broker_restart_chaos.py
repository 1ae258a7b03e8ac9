"""Load plus a broker fault: 2,000 signed cancellations at 32 connections, the broker away mid-run.

A real `python -m bridge run` (receiver and CJ worker in one process, SQLite store) on a private
RabbitMQ node (`tests/harness/rabbit_nodes.py`: the machine's main broker is shared and must not
be stopped). The platform (`tests/harness/poster.py`) sends every order again until it gets a
2xx. Mid-run:
- the node is stopped and started again on the same data (a broker restart);
- or the TCP link between the bridge and the broker is cut by a proxy, then restored.
These two run with the spool off (`[receiver] spool = false`: 503 while the broker is away, the
platform retries). With the spool on, the link cut: no webhook is refused at all, the spooled
ones are published once the link is back, and the spool is empty at the end.

Then: every order got a 2xx; every order with a 2xx was declined at the fake CJ exactly once
(CJ remembers declines: a second call would be answered "already", and is counted); every
(event, cj) pair is settled in the store; every queue of the vhost is empty (ready and
unacknowledged, read with rabbitmqctl), nothing parked. And CJ is never asked twice about one
order: the store and CJ stay up all along, so the worker that called CJ has the answer in hand
and must record it, whatever happens to its broker connection.

Found by these tests (aio-pika 10.2.1 / aiormq 7.2.4): when a channel closes, aiormq cancels
every consumer callback still running, so the messages in the worker's hand were abandoned
mid-call; their claims stayed `calling` until the lease ended (`timeout_s` + `lease_margin`,
35 s here), redelivered copies went round the delay queue as `busy` meanwhile, and CJ was then
called a second time (2 to 7 orders of 2,000 per run). Fixed in 5f690a0: the worker's handling
runs in a task of its own, which the channel's closing does not cancel.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bridge.demo.fake_cj import FakeCJ
from bridge.store.deliveries import Store
from bridge.store.spool import SpoolState
from tests.harness.fleet import Child, Fleet
from tests.harness.poster import CONNECTIONS, Poster, shoplazza_orders
from tests.harness.proxy import TcpProxy
from tests.harness.rabbit_nodes import RabbitNode, private_node
from tests.harness.settlement import Settlement, check, settle

ORDERS = 2000
FAULT_AT = ORDERS // 10  # orders with a 2xx before the fault
POST_TIMEOUT = 120.0  # seconds for the platform to get a 2xx for every order
SETTLE_TIMEOUT = 60.0
FAULT_TIMEOUT = 30.0  # seconds for the outage to show at the platform
SPOOLED = 500  # webhooks held in the spool before the link comes back


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RabbitNode]:
    """A private RabbitMQ node, stopped at the end."""
    async with private_node(tmp_path / "rabbit") as started:
        yield started


Fault = Callable[[Poster, Child], Awaitable[str]]


async def outage_seen(poster: Poster, refusals: int) -> None:
    """Return once the platform had `refusals` more attempts refused (the outage is real)."""
    async with asyncio.timeout(FAULT_TIMEOUT):
        await poster.wait_refused(poster.tally.refused + refusals)


async def load_through(
    fault: Fault, *, folder: Path, amqp_url: str, node: RabbitNode, spool: bool = False
) -> tuple[Poster, Settlement, str, int]:
    """Post ORDERS orders through `fault`; the poster, what settled, the fault's note, exit."""
    cj = FakeCJ(remember=True)
    await cj.start()
    fleet = Fleet(folder)
    shop = f"chaos-{uuid.uuid4().hex[:8]}.myshoplaza.com"
    store_url = str(folder / "state.db")
    try:
        bridge = await fleet.run_bridge(
            "bridge", amqp_url=amqp_url, store_url=store_url, cj_url=cj.url, spool=spool
        )
        poster = Poster([bridge.url], shoplazza_orders(ORDERS, shop), timeout=POST_TIMEOUT)
        posting = asyncio.create_task(poster.run())
        try:
            async with asyncio.timeout(POST_TIMEOUT):
                await poster.wait_accepted(FAULT_AT)
            note = await fault(poster, bridge)
        except BaseException:
            posting.cancel()
            await asyncio.gather(posting, return_exceptions=True)
            raise
        await posting
        settled = await settle(
            store_url=store_url,
            shop=shop,
            accepted=poster.tally.accepted,
            cj=cj,
            node=node,
            within=SETTLE_TIMEOUT,
        )
        status = await bridge.stop()
        note = f"{note}\n{fleet.summary()}"
    finally:
        await fleet.close()
        await cj.stop()
    return poster, settled, note, status


@pytest.mark.timeout(300)
async def test_broker_restart_under_load_loses_and_doubles_nothing(
    tmp_path: Path, node: RabbitNode
) -> None:
    async def restart(poster: Poster, _: Child) -> str:
        at = len(poster.tally.accepted)
        began = time.monotonic()
        await node.stop()
        await outage_seen(poster, CONNECTIONS)
        await node.start()
        return (
            f"broker stopped after {at} orders had a 2xx, back after"
            f" {time.monotonic() - began:.1f} s"
        )

    poster, seen, note, status = await load_through(
        restart, folder=tmp_path, amqp_url=node.url(), node=node
    )
    check(poster, seen, note, {"bridge": status})


async def through_a_cut_link(
    tmp_path: Path, node: RabbitNode, *, spool: bool
) -> tuple[Poster, Settlement, str, int]:
    """`load_through` a proxy whose link is cut, then restored once the outage showed.

    Without the spool the platform must have seen 503s; with it, the bridge must have spooled
    `SPOOLED` webhooks.
    """
    proxy = TcpProxy("127.0.0.1", node.amqp_port)
    port = await proxy.start()

    async def cut(poster: Poster, bridge: Child) -> str:
        at = len(poster.tally.accepted)
        began = time.monotonic()
        proxy.cut()
        # Both of the bridge's publishers (receiver, worker) noticed, and the platform too.
        await bridge.wait_for("broker.lost", count=2, within=FAULT_TIMEOUT)
        if spool:
            await bridge.wait_for("webhook.spooled", count=SPOOLED, within=FAULT_TIMEOUT)
        else:
            await outage_seen(poster, 8 * CONNECTIONS)
        proxy.restore()
        return (
            f"link cut after {at} orders had a 2xx, restored after {time.monotonic() - began:.1f} s"
        )

    try:
        return await load_through(
            cut,
            folder=tmp_path,
            amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/",
            node=node,
            spool=spool,
        )
    finally:
        await proxy.stop()


@pytest.mark.timeout(300)
async def test_broker_link_cut_under_load_loses_and_doubles_nothing(
    tmp_path: Path, node: RabbitNode
) -> None:
    poster, seen, note, status = await through_a_cut_link(tmp_path, node, spool=False)
    check(poster, seen, note, {"bridge": status})


@pytest.mark.timeout(300)
async def test_broker_link_cut_with_the_spool_refuses_nothing(
    tmp_path: Path, node: RabbitNode
) -> None:
    """Every webhook answered 2xx the first time; each declined at CJ once; the spool emptied."""
    poster, seen, note, status = await through_a_cut_link(tmp_path, node, spool=True)
    assert poster.tally.attempts == ORDERS, poster.summary()  # nobody had to send one again
    check(poster, seen, note, {"bridge": status}, refusals=False)
    async with Store.open(str(tmp_path / "state.db")) as store:
        assert await store.spool_state() == SpoolState(0, None), note
