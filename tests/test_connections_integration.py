"""Idle connections cannot starve the receiver: a cap, a header timeout, refusals counted.

Found by a probe: with the common soft limit of 1,024 open files, 1,500 idle connections starved
a receiver (35 of 90 signed webhooks answered). A `run` process with `[receiver]
max_connections = 4` and `header_timeout = "1s"`: the fifth connection is answered 503 and
closed at once, idle and dribbling connections are closed after the header timeout, and the
refusals are counted on the metrics listener (a port of its own, so never refused itself).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.harness.processes import Bridge, free_port, spawn
from tests.harness.receiver import SECRET

CAP = 4
CLOSED_WITHIN = 10.0  # seconds a closed connection may take to show (the timeout is 1 s)
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def bridge(tmp_path: Path, amqp_url: str) -> AsyncIterator[Bridge]:
    """`run` with a connection cap of 4 and a 1 s header timeout."""
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "state.db"}"\n'
        "[broker]\nreconnect_interval = 0.2\n"
        f'[receiver]\nport = {port}\nmax_connections = {CAP}\nheader_timeout = "1s"\n'
        f"[metrics]\nport = {metrics_port}\n"
        '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
    )
    env = {**os.environ, "AMQP_URL": amqp_url, "SHOPLAZZA_CLIENT_SECRET": SECRET}
    started = await spawn(["run", "--config", str(config)], env, port)
    started.metrics_port = metrics_port  # type: ignore[attr-defined]
    try:
        await started.wait_for("receiver.listening")
        yield started
    finally:
        if started.process.returncode is None:
            started.process.kill()
            await started.process.wait()


async def kept_alive(port: int) -> Connection:
    """A connection that had one request answered and now idles (keep-alive)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still sends before it closes the connection."""
    async with asyncio.timeout(CLOSED_WITHIN):
        return await reader.read()


async def refused_count(bridge: Bridge) -> float:
    """`cancel_bridge_connections_refused_total` from the metrics listener."""
    url = f"http://127.0.0.1:{bridge.metrics_port}/metrics"  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    line = next(
        x for x in text.splitlines() if x.startswith("cancel_bridge_connections_refused_total")
    )
    return float(line.split()[-1])


async def test_past_the_cap_a_connection_is_answered_503_and_closed(bridge: Bridge) -> None:
    idle = [await kept_alive(bridge.port) for _ in range(CAP)]
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
    answer = await closed_by_server(reader)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), answer
    assert b"Retry-After: 5" in head
    assert orjson.loads(body)["error"] == "too_many_connections"
    assert await refused_count(bridge) == 1
    writer.close()
    # The idle ones are closed after the header timeout; then connections are served again.
    for idle_reader, idle_writer in idle:
        assert await closed_by_server(idle_reader) == b""
        idle_writer.close()
    _, served = await kept_alive(bridge.port)
    served.close()
    await served.wait_closed()


async def test_a_connection_dribbling_its_headers_is_closed(bridge: Bridge) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(b"POST /webhooks/shoplazza HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
    await writer.drain()
    assert await closed_by_server(reader) == b""  # before the body timeout's 30 s: 1 s
    writer.close()
