"""The receiver SIGKILLed while it spools, then started again: nothing it spooled is lost.

A real `python -m bridge run` (receiver only, SQLite store) whose broker link goes through a
cuttable proxy. The link is cut, webhooks arrive and are spooled, and the process is killed
while more are arriving. A new process on the same store, the link back, publishes every event
whose webhook was answered `spooled` (and those spooled whose answer the kill swallowed), each
once. (The spool under load with CJ: `test_broker_restart_chaos.py`.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue

from tests.harness.broker import receive
from tests.harness.fleet import Fleet
from tests.harness.proxy import TcpProxy
from tests.harness.receiver import shoplazza_webhook

WEBHOOKS = 300
KILL_AFTER = 100  # spooled answers before the SIGKILL
CONNECTIONS = 16
WITHIN = 30.0


async def post_all(url: str, count: int) -> list[dict[str, object]]:
    """Post `count` fresh webhooks over CONNECTIONS connections; the JSON answers that came."""
    answers: list[dict[str, object]] = []
    gate = asyncio.Semaphore(CONNECTIONS)

    async def one(session: aiohttp.ClientSession) -> None:
        hook = shoplazza_webhook()
        async with gate:
            try:
                async with session.post(url, data=hook.body, headers=hook.headers) as response:
                    answers.append(orjson.loads(await response.read()))
            except aiohttp.ClientError:
                pass  # the process was killed under this one: the platform would send it again

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session) for _ in range(count)))
    return answers


@pytest.mark.timeout(180)
async def test_spooled_events_survive_a_sigkill(
    tmp_path: Path, proxy: TcpProxy, proxied_url: str, subscriber: AbstractQueue
) -> None:
    fleet = Fleet(tmp_path)
    store_url = str(tmp_path / "state.db")
    try:
        first = await fleet.run_bridge(
            "first", amqp_url=proxied_url, store_url=store_url, cj_url=None
        )
        proxy.cut()
        await first.wait_for("broker.lost", within=WITHIN)
        posting = asyncio.create_task(post_all(first.url, WEBHOOKS))
        await first.wait_for("webhook.spooled", count=KILL_AFTER, within=WITHIN)
        first.kill()
        answers = await posting
        spooled = {str(a["event_id"]) for a in answers if a.get("status") == "spooled"}
        assert len(spooled) >= KILL_AFTER, answers[:3]
        assert all(a.get("status") == "spooled" for a in answers), answers[:3]

        proxy.restore()
        second = await fleet.run_bridge(
            "second", amqp_url=proxied_url, store_url=store_url, cj_url=None
        )
        received: Counter[str] = Counter()
        async with asyncio.timeout(WITHIN):
            while not spooled <= set(received):
                received[str((await receive(subscriber)).message_id)] += 1
        await second.wait_for("spool.forwarded", within=WITHIN)
        await second.stop()
    finally:
        await fleet.close()
    assert spooled <= set(received), f"lost: {sorted(spooled - set(received))[:5]}"
    assert max(received.values()) == 1, fleet.summary()
