"""Hostile and odd requests found in review: each gets a deliberate answer, never a 500."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import orjson
from aio_pika.abc import AbstractQueue
from aiohttp.test_utils import TestClient

from handlers.shoplazza import sign
from tests.harness.broker import receive
from tests.harness.receiver import (
    SECRET,
    ClientFactory,
    make_config,
    shoplazza_webhook,
    signed,
    started,
)

Client = TestClient[Any, Any]


async def raw_exchange(client: Client, head: bytes, body: bytes = b"") -> tuple[list[int], bytes]:
    """Send bytes as they are (aiohttp's client would encode headers).

    Returns every status line's code (interim 1xx answers first) and the final answer's body.
    """
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    statuses: list[int] = []
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(10):
            while True:
                header_block = await reader.readuntil(b"\r\n\r\n")
                lines = header_block.decode("latin-1").split("\r\n")
                statuses.append(int(lines[0].split()[1]))
                if statuses[-1] >= 200:
                    break
            length = next(
                int(line.split(":", 1)[1])
                for line in lines
                if line.lower().startswith("content-length:")
            )
            answer = await reader.readexactly(length)
    finally:
        writer.close()
    return statuses, answer


async def raw_request(client: Client, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """The final status and body of a raw request."""
    statuses, answer = await raw_exchange(client, head, body)
    return statuses[-1], answer


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


async def test_expect_header_answers(bridge: Client, subscriber: AbstractQueue) -> None:
    """100-continue works; an oversize body is refused before it is sent; odd ones get JSON 417."""
    body = orjson.dumps({"id": "expecting", "status": "cancelled"})
    statuses, answer = await raw_exchange(
        bridge, head_for(body, extra=b"Expect: 100-continue\r\n"), body
    )
    assert statuses == [100, 200]
    assert orjson.loads(answer)["status"] == "accepted"
    assert orjson.loads((await receive(subscriber)).body)["order_id"] == "expecting"

    big = b"x" * (1024 * 1024 + 1)
    status, answer = await raw_request(bridge, head_for(big, extra=b"Expect: 100-continue\r\n"))
    assert status == 413
    assert orjson.loads(answer)["error"] == "body_too_large"

    status, answer = await raw_request(bridge, head_for(body, extra=b"Expect: 999-foo\r\n"), body)
    assert status == 417
    assert orjson.loads(answer)["error"] == "expectation_failed"
