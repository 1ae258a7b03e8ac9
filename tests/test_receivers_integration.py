"""`[receiver] processes`: `run` keeps N receiver processes on one port, restarts and stops them."""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.harness.processes import STARTUP_TIMEOUT, Bridge, free_port, spawn
from tests.harness.receiver import SECRET, shoplazza_webhook

PROCESSES = 3
HOOKS = 60  # each on a new connection: the kernel spreads connections, not requests


class Lines:
    """Every JSON line the bridge and its children print, read as they come."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.seen: list[dict[str, object]] = []

    async def until(self, done: collections.abc.Callable[[list[dict[str, object]]], bool]) -> None:
        """Read lines until `done(all lines so far)` holds."""
        stdout = self.bridge.process.stdout
        assert stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not done(self.seen):
                line = await stdout.readline()
                assert line, f"bridge exited early; saw {self.seen[-20:]}"
                self.seen.append(orjson.loads(line))

    def pids(self, event: str) -> list[int]:
        """The pids of the processes that logged `event`, in order."""
        return [int(str(entry["pid"])) for entry in self.seen if entry["event"] == event]

    def children(self, event: str) -> list[int]:
        """The child pids named by the parent's `event` lines."""
        return [int(str(entry["child"])) for entry in self.seen if entry["event"] == event]


@pytest.fixture
async def bridge(tmp_path: Path, amqp_url: str) -> AsyncIterator[Bridge]:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "state.db"}"\n'
        f"[broker]\nreconnect_interval = 0.2\n"
        f"[receiver]\nport = {port}\nprocesses = {PROCESSES}\n"
        '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
    )
    env = {**os.environ, "AMQP_URL": amqp_url, "SHOPLAZZA_CLIENT_SECRET": SECRET}
    started = await spawn(["run", "--config", str(config)], env, port)
    yield started
    if started.process.returncode is None:
        started.process.kill()
        await started.process.wait()


async def post_all(port: int, count: int) -> collections.Counter[int]:
    """`count` signed webhooks, each on its own connection; the answers' statuses."""
    statuses: collections.Counter[int] = collections.Counter()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(count):
            hook = shoplazza_webhook()
            url = f"http://127.0.0.1:{port}/webhooks/shoplazza"
            async with http.post(url, data=hook.body, headers=hook.headers) as response:
                statuses[response.status] += 1
    return statuses


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_processes_share_the_port_restart_and_stop_together(bridge: Bridge) -> None:
    lines = Lines(bridge)
    await lines.until(lambda _: len(set(lines.pids("receiver.listening"))) == PROCESSES)
    listening = set(lines.pids("receiver.listening"))
    children = lines.children("receiver.process_started")
    assert len(children) == PROCESSES - 1, lines.seen
    assert set(children) < listening, "every child listens, beside the parent"
    await lines.until(lambda _: len(lines.pids("broker.connected")) == PROCESSES)

    statuses = await post_all(bridge.port, HOOKS)
    assert statuses == {200: HOOKS}, statuses
    await lines.until(lambda _: len(lines.pids("webhook.accepted")) == HOOKS)
    served = collections.Counter(lines.pids("webhook.accepted"))
    assert set(served) == listening, f"connections spread over every process: {served}"

    victim = children[0]
    os.kill(victim, 9)
    await lines.until(lambda _: len(lines.children("receiver.process_started")) == PROCESSES)
    exited = [entry for entry in lines.seen if entry["event"] == "receiver.process_exited"]
    assert [entry["child"] for entry in exited] == [victim], exited
    replacement = lines.children("receiver.process_started")[-1]
    await lines.until(lambda _: replacement in lines.pids("broker.connected"))
    statuses = await post_all(bridge.port, HOOKS)
    assert statuses == {200: HOOKS}, f"after a child was killed and replaced: {statuses}"

    status, _ = await bridge.stop()
    assert status == 0
    still = [pid for pid in (children[1], replacement) if alive(pid)]
    assert still == [], f"children left running after the parent stopped: {still}"
