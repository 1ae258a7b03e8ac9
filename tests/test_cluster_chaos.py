"""A three-node RabbitMQ cluster under load loses a node, then another: nothing lost or doubled.

Three private nodes (`tests/harness/rabbit_nodes.py`) joined into one cluster; the bridge's work and
delay queues are quorum queues, so each has a replica on every node. Two receivers (`run`) and
two workers (`worker --target cj`), all processes, share a fresh PostgreSQL store.
Receiver-1 and worker-1 know node 1 only; receiver-2 and worker-2 know node 2, then node 1
(`AMQP_URL` names both: failover); nobody uses node 3. The platform sends a steady flow of
signed cancellations to both receivers and moves a refused attempt to the other one, as a load
balancer would.

Mid-run, node 3 (a replica only) is stopped, orders keep flowing, and it is started again; then
node 2 (the broker of receiver-2 and worker-2) is stopped: both move to node 1 and keep
answering and consuming there (`broker.failover`), and node 2 is started again. The
receivers have no `[routes]`: `run` with routes would start a worker in the receiver process too.

Then, as in `tests/test_broker_restart_chaos.py`: every order got a 2xx and was declined at CJ
exactly once, CJ was never asked twice, every pair is settled, every queue is empty. With the
spool on (the default) no attempt is refused at all: what receiver-2 takes in the moment
before it moves is spooled and published from node 1.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from bridge.amqp import topology
from bridge.demo.fake_cj import FakeCJ
from bridge.store.deliveries import Store
from tests.harness.fleet import Child, Fleet
from tests.harness.poster import Poster, shoplazza_orders
from tests.harness.rabbit_nodes import RabbitCluster, RabbitNode, private_cluster
from tests.harness.settlement import check, settle

RATE = 8.0  # orders per second, both receivers together
SUPPLY = 5000  # orders ready to send; the run ends when the faults are over
STEP = 50  # orders that must get a 2xx before each fault, during it and after it
POST_TIMEOUT = 300.0
STEP_TIMEOUT = 90.0  # seconds for STEP more orders to get a 2xx
SETTLE_TIMEOUT = 90.0  # an abandoned claim would wait out its lease (35 s) first


async def more_accepted(poster: Poster, count: int = STEP) -> None:
    """Return once `count` more orders got a 2xx."""
    async with asyncio.timeout(STEP_TIMEOUT):
        await poster.wait_accepted(len(poster.tally.accepted) + count)


async def stopped(cluster: RabbitCluster, node: RabbitNode) -> str:
    """Stop `node`; return once the others see it gone."""
    began = time.monotonic()
    await node.stop()
    await cluster.wait_running([n for n in cluster.nodes if n is not node])
    return f"{node.name} stopped in {time.monotonic() - began:.1f} s"


async def restarted(cluster: RabbitCluster, node: RabbitNode) -> str:
    """Start `node` again; return once it runs in the cluster with the others."""
    began = time.monotonic()
    await node.start()
    await cluster.wait_running(cluster.nodes)
    return f"{node.name} back in the cluster in {time.monotonic() - began:.1f} s"


async def faults(
    poster: Poster, cluster: RabbitCluster, receiver_2: Child, worker_2: Child
) -> list[str]:
    """The schedule: node 3 away and back, then node 2 away and back, orders flowing."""
    _, node_2, node_3 = cluster.nodes
    notes = []
    await more_accepted(poster)
    notes.append(f"{len(poster.tally.accepted)} orders had a 2xx")
    notes.append(await stopped(cluster, node_3))
    await more_accepted(poster)  # the quorum queues work on two replicas of three
    notes.append(f"{len(poster.tally.accepted)} orders had a 2xx without node 3")
    notes.append(await restarted(cluster, node_3))
    await more_accepted(poster)
    notes.append(f"{len(poster.tally.accepted)} orders had a 2xx")
    notes.append(await stopped(cluster, node_2))
    for child in (receiver_2, worker_2):  # both move to node 1
        await child.wait_for("broker.failover")
    await more_accepted(poster)
    notes.append(f"{len(poster.tally.accepted)} orders had a 2xx without node 2")
    notes.append(await restarted(cluster, node_2))
    for child in (receiver_2, worker_2):
        await child.wait_for("broker.restored")
    await more_accepted(poster)
    notes.append(f"{len(poster.tally.accepted)} orders had a 2xx; receiver-2 and worker-2 back")
    return notes


@pytest.mark.timeout(600)
async def test_cluster_loses_a_node_then_another_under_load(
    tmp_path: Path, postgres_url: str
) -> None:
    async with private_cluster(tmp_path / "rabbit") as cluster:
        node_1, node_2, _ = cluster.nodes
        cj = FakeCJ(remember=True)
        await cj.start()
        fleet = Fleet(tmp_path)
        shop = f"cluster-{uuid.uuid4().hex[:8]}.myshoplaza.com"
        both = f"{node_2.url()},{node_1.url()}"  # receiver-2's and worker-2's: node 2, then 1
        async with Store.open(postgres_url):
            pass  # the schema once, before four processes open the store at the same time
        try:
            _, worker_2 = await asyncio.gather(
                *(
                    fleet.worker(name, amqp_url=urls, store_url=postgres_url, cj_url=cj.url)
                    for name, urls in (("worker-1", node_1.url()), ("worker-2", both))
                )
            )
            receiver_1, receiver_2 = await asyncio.gather(
                *(
                    fleet.run_bridge(name, amqp_url=urls, store_url=postgres_url, cj_url=None)
                    for name, urls in (("receiver-1", node_1.url()), ("receiver-2", both))
                )
            )
            replicas = (await node_1.queue_members()).get(topology.work_queue("cj"))
            poster = Poster(
                [receiver_1.url, receiver_2.url],
                shoplazza_orders(SUPPLY, shop),
                timeout=POST_TIMEOUT,
                rate=RATE,
            )
            posting = asyncio.create_task(poster.run())
            try:
                notes = await faults(poster, cluster, receiver_2, worker_2)
            except BaseException:
                posting.cancel()
                await asyncio.gather(posting, return_exceptions=True)
                raise
            poster.finish()
            await posting
            seen = await settle(
                store_url=postgres_url,
                shop=shop,
                accepted=poster.tally.accepted,
                cj=cj,
                node=node_1,
                within=SETTLE_TIMEOUT,
            )
            exits = {child.name: await child.stop() for child in fleet}
            note = "; ".join(notes) + f"\n{fleet.summary()}"
        finally:
            await fleet.close()
            await cj.stop()
    everyone = sorted(node.name for node in cluster.nodes)
    assert replicas == everyone, f"work queue replicas {replicas}, not {everyone}"
    check(poster, seen, note, exits, refusals=False)
