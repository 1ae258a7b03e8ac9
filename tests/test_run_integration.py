"""`cancel-bridge run` as a process: JSON logs, serves webhooks, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.amqp import topology
from bridge.demo.fake_cj import TOKEN, FakeCJ
from bridge.settings import DEFAULT_DELAYS
from contracts.events import Source
from tests.harness.broker import delete_target_queues
from tests.harness.processes import Bridge, free_port, spawn
from tests.harness.receiver import SECRET, shoplazza_webhook

Launcher = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Launcher]:
    """Start bridges as child processes; kill any still running at the end."""
    started: list[asyncio.subprocess.Process] = []

    async def run(amqp_url: str, extra: str = "", **env_extra: str) -> Bridge:
        port = free_port()
        config = tmp_path / "config.toml"
        config.write_text(
            f'[store]\npath = "{tmp_path / "state.db"}"\n'
            f"[broker]\nreconnect_interval = 0.2\n[receiver]\nport = {port}\n"
            '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n' + extra
        )
        env = {**os.environ, "AMQP_URL": amqp_url, "SHOPLAZZA_CLIENT_SECRET": SECRET, **env_extra}
        bridge = await spawn(["run", "--config", str(config)], env, port)
        process = bridge.process
        started.append(process)
        return bridge

    yield run
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_run_serves_and_stops_on_sigterm(launch: Launcher, amqp_url: str) -> None:
    bridge: Bridge = await launch(amqp_url)
    await bridge.wait_for("receiver.listening", "broker.connected/receiver")
    hook = shoplazza_webhook()
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{bridge.port}/webhooks/shoplazza"
        async with http.post(url, data=hook.body, headers=hook.headers) as response:
            assert response.status == 200
            event_id = (await response.json())["event_id"]
    status, rest = await bridge.stop()
    assert status == 0
    output = b"\n".join(orjson.dumps(line) for line in bridge.lines) + rest
    assert SECRET.encode() not in output
    assert event_id.encode() in output
    assert b"guest:guest" not in output


async def test_run_without_broker_still_stops_promptly(launch: Launcher) -> None:
    """Shutdown while the broker was never reachable does not hang in reconnect loops."""
    bridge: Bridge = await launch(f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    await bridge.wait_for("receiver.listening", "broker.connect_failed")
    readyz = f"http://127.0.0.1:{bridge.port}/readyz"
    async with aiohttp.ClientSession() as http, http.get(readyz) as response:
        # Ready to take webhooks into the spool; the broker named as down.
        assert response.status == 200
        assert await response.json() == {
            "status": "spooling",
            "broker": "down",
            "store": "up",
            "spooled": 0,
        }
    status, _ = await bridge.stop()
    assert status == 0


async def test_run_with_a_route_declines_at_cj(
    launch: Launcher, amqp_url: str, amqp: AbstractRobustConnection
) -> None:
    """`run` = receiver + one worker per routed target, in one process."""
    cj = FakeCJ()
    await cj.start()
    extra = (
        f'[targets.cj]\nurl = "{cj.url}"\nenterprise_id = "1234567"\n'
        'action_tracker_id = 987654\nopen_ended_locking = true\norder_id_from = "order_id"\n'
        '[routes]\nshoplazza = ["cj"]\n'
    )
    channel = await amqp.channel()
    try:
        bridge = await launch(amqp_url, extra, CJ_ACCESS_TOKEN=TOKEN)
        await bridge.wait_for("receiver.listening", "broker.connected/receiver", "worker.consuming")
        hook = shoplazza_webhook()
        url = f"http://127.0.0.1:{bridge.port}/webhooks/shoplazza"
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=hook.body, headers=hook.headers) as response,
        ):
            assert response.status == 200
        await bridge.wait_for("cancel.delivered")
        assert [call.order["orderId"] for call in cj.calls] == [orjson.loads(hook.body)["id"]]
        status, _ = await bridge.stop()
        assert status == 0
    finally:
        await cj.stop()
        spec = topology.target_topology("cj", (Source.SHOPLAZZA,), DEFAULT_DELAYS, 5)
        await delete_target_queues(channel, spec)


async def test_demo_runs_end_to_end(amqp_url: str) -> None:
    """`cancel-bridge demo`: one command, one cancellation shown arriving at the fake CJ."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "demo",
        env={**os.environ, "AMQP_URL": amqp_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "bridge answered 200" in text
    assert '"status": "Declined"' in text
    assert "commission declined at CJ" in text
    assert "guest:guest" not in text
