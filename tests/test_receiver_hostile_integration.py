"""Hostile and odd requests found in review: each gets a deliberate answer, never a 500."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import orjson
from aio_pika.abc import AbstractQueue
from aiohttp.test_utils import TestClient

from handlers.shoplazza import sign
from tests.conftest import (
    SECRET,
    ClientFactory,
    make_config,
    receive,
    shoplazza_webhook,
    signed,
    started,
)

Client = TestClient[Any, Any]


async def raw_request(client: Client, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are (aiohttp's client would encode headers); status and body."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def head_for(body: bytes, extra: bytes = b"", shop: bytes = b"raw.myshoplaza.com") -> bytes:
    return (
        b"POST /webhooks/shoplazza HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        b"X-Shoplazza-Topic: orders/cancelled\r\n"
        b"X-Shoplazza-Shop-Domain: " + shop + b"\r\n"
        b"X-Shoplazza-Hmac-Sha256: "
        + sign(body, SECRET).encode()
        + b"\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )


async def test_compressed_bodies_are_refused_415(bridge: Client) -> None:
    """The HMAC covers the bytes as sent; a decompressed body would be checked instead."""
    hook = shoplazza_webhook()
    for encoding, body in (("gzip", gzip.compress(hook.body)), ("gzip", b"abcde"), ("br", b"x")):
        headers = {**hook.headers, "Content-Encoding": encoding}
        response = await bridge.post("/webhooks/shoplazza", data=body, headers=headers)
        assert response.status == 415, encoding
        assert orjson.loads(await response.read())["error"] == "unsupported_content_encoding"


async def test_overlong_order_id_is_quarantined_and_the_link_survives(
    bridge: Client, subscriber: AbstractQueue, quarantine: AbstractQueue
) -> None:
    """A 140 KB id once broke the AMQP frame limit and the connection for everyone."""
    huge = signed(
        orjson.dumps({"id": "B" * 140_000, "status": "cancelled"}),
        topic="orders/cancelled",
        shop="huge.myshoplaza.com",
    )
    response = await bridge.post("/webhooks/shoplazza", data=huge.body, headers=huge.headers)
    assert response.status == 200
    assert orjson.loads(await response.read())["status"] == "quarantined"
    assert (await receive(quarantine)).body == huge.body
    hook = shoplazza_webhook()
    response = await bridge.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    assert response.status == 200  # same connection, still up
    assert (await receive(subscriber)).message_id == orjson.loads(await response.read())["event_id"]


async def test_non_utf8_header_bytes_never_500(
    bridge: Client, subscriber: AbstractQueue, quarantine: AbstractQueue
) -> None:
    """Latin-1 bytes in the shop header (event path) and in another X- header (quarantine)."""
    body = orjson.dumps({"id": "latin-1", "status": "cancelled"})
    status, answer = await raw_request(bridge, head_for(body, shop=b"sh\xffop.com"), body)
    assert status == 200, answer
    message = await receive(subscriber)
    assert orjson.loads(message.body)["shop"] == "sh\ufffdop.com"

    garbage = b"{not json"
    status, answer = await raw_request(
        bridge, head_for(garbage, extra=b"X-Geo-City: Montr\xe9al\r\n"), garbage
    )
    assert status == 200, answer
    kept = await receive(quarantine)
    assert kept.headers["x-http-x-geo-city"] == "Montr\ufffdal"
    assert "x-http-x-shoplazza-hmac-sha256" not in kept.headers  # no replayable signature kept


async def test_slow_body_times_out_408(aiohttp_client: ClientFactory, amqp_url: str) -> None:
    """A sender that stops mid-body is answered 408 after body_timeout, not held forever."""
    client = await started(aiohttp_client, make_config(amqp_url, {"body_timeout": 0.3}))
    body = orjson.dumps({"id": "slow", "status": "cancelled"})
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(head_for(body) + body[:5])  # the rest never comes
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n")
    finally:
        writer.close()
    assert answer.split()[1] == b"408"
