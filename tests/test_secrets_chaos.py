"""Secrets never appear in logs, errors or `check-config` output (the whole output is grepped).

A `run` process with every kind of secret set (webhook secrets current and previous, the CJ
token, the API token, a store URL with a password) serves good and bad requests, and requests
whose malformed `Authorization` line (NUL, DEL, bare CR, folded) aiohttp's parser refuses; then
its output, its error answers and `check-config`'s output are searched for each secret value.
(aiohttp's own 400 for a malformed request quotes the line back to its sender: not searched.)
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

import aiohttp
import orjson
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

from bridge.amqp import topology
from bridge.demo.fake_cj import TOKEN, FakeCJ
from bridge.settings import DEFAULT_DELAYS
from contracts.events import Source
from tests.harness.broker import delete_target_queues
from tests.harness.processes import free_port, spawn
from tests.harness.receiver import SECRET, shoplazza_webhook

OLD_SECRET = "old-shoplazza-secret-a1b2c3"
API_TOKEN = "api-token-never-logged-9f8e7d"
STORE_PASSWORD = "store-password-never-logged-5d4c"


def basic(secret: str) -> str:
    """Basic credentials with `secret` as the password, as Prime sends them."""
    return base64.b64encode(f"prime:{secret}".encode()).decode()


def malformed_lines(token: str, basic_credentials: str) -> list[bytes]:
    """Header lines aiohttp refuses, each carrying a credential: NUL, DEL, bare CR, folded."""
    return [
        f"Authorization: Bearer {token}\x00x\r\n".encode(),
        f"Authorization: Bearer {token}\x7fx\r\n".encode(),
        f"Authorization: {basic_credentials}\rx\r\n".encode(),
        f"Authorization: Bearer {token}\r\n  folded\r\n".encode(),
        f"Authorization: {basic_credentials}\r\n\tfolded\r\n".encode(),
    ]


async def send_raw(port: int, line: bytes) -> None:
    """A GET with the header `line`, written as it is; read the answer to its end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n" + line + b"\r\n")
    await writer.drain()
    await reader.read()  # aiohttp answers 400 and closes
    writer.close()
    await writer.wait_closed()


async def test_no_secret_leaks_anywhere(
    tmp_path: Path, amqp_url: str, amqp: AbstractRobustConnection, postgres_url: str, cj: FakeCJ
) -> None:
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(
        '[store]\nurl_env = "CB_STORE_URL"\n'
        "[broker]\nreconnect_interval = 0.2\n"
        f'[receiver]\nport = {port}\napi_token_env = "CB_API_TOKEN"\n'
        '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
        'previous_secret_env = "SHOPLAZZA_OLD"\n'
        f'[targets.cj]\nurl = "{cj.url}"\nenterprise_id = "1"\naction_tracker_id = 2\n'
        'open_ended_locking = true\norder_id_from = "order_id"\n'
        '[routes]\nshoplazza = ["cj"]\n'
    )
    store_url = str(URL(postgres_url).with_password(STORE_PASSWORD))
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "SHOPLAZZA_CLIENT_SECRET": SECRET,
        "SHOPLAZZA_OLD": OLD_SECRET,
        "CJ_ACCESS_TOKEN": TOKEN,
        "CB_API_TOKEN": API_TOKEN,
        "CB_STORE_URL": store_url,
    }
    secrets = (SECRET, OLD_SECRET, TOKEN, API_TOKEN, basic(API_TOKEN), STORE_PASSWORD)
    answers: list[bytes] = []
    channel = await amqp.channel()
    bridge = await spawn(["run", "--config", str(config)], env, port)
    try:
        await bridge.wait_for("receiver.listening", "worker.consuming")
        base = f"http://127.0.0.1:{port}"
        good = shoplazza_webhook()
        bad = shoplazza_webhook(secret="wrong-secret")
        async with aiohttp.ClientSession() as http:
            for url, data, headers in [
                (f"{base}/webhooks/shoplazza", good.body, good.headers),
                (f"{base}/webhooks/shoplazza", bad.body, bad.headers),
                (f"{base}/webhooks/shoplazza", b"{", {**good.headers}),
                (f"{base}/api/links", b"{}", {"Authorization": f"Bearer {API_TOKEN[:-1]}"}),
                (f"{base}/api/links", b'{"cj": 1}', {"Authorization": f"Bearer {API_TOKEN}"}),
            ]:
                async with http.post(url, data=data, headers=headers) as response:
                    answers.append(await response.read())
            for line in malformed_lines(API_TOKEN, f"Basic {basic(API_TOKEN)}"):
                await send_raw(port, line)  # aiohttp's own 400 (it quotes the line to its sender)
            order = orjson.loads(good.body)["id"]
            async with http.get(
                f"{base}/api/orders/shoplazza/{order}",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            ) as response:
                answers.append(await response.read())
        await bridge.wait_for("cancel.delivered")
        status, rest = await bridge.stop()
        assert status == 0
    finally:
        if bridge.process.returncode is None:
            bridge.process.kill()
        spec = topology.target_topology("cj", (Source.SHOPLAZZA,), DEFAULT_DELAYS, 5)
        await delete_target_queues(channel, spec)
    checked = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "check-config",
        "--config",
        str(config),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    described, _ = await checked.communicate()
    assert checked.returncode == 0, described
    output = b"\n".join(orjson.dumps(line) for line in bridge.lines) + rest
    for where, text in [
        ("logs", output),
        ("answers", b"".join(answers)),
        ("check-config", described),
    ]:
        for secret in secrets:
            assert secret.encode() not in text, f"a secret appears in the {where}"
    assert b"***" in described  # the store URL is shown, its password masked
