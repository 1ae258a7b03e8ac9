"""The executor reads a target's whole answer, however the network cuts it into pieces."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.executor import MAX_ANSWER_BYTES, Executor, HttpAnswer
from handlers.base import HttpCall
from tests.harness.receiver import ClientFactory

PIECE = b"x" * 100_000


async def pieces(request: web.Request) -> web.StreamResponse:
    """Four pieces of 100 KB, the network pausing between them; then as many as asked."""
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(int(request.query.get("n", "4"))):
        await response.write(PIECE)
        await asyncio.sleep(0.02)  # paced: a slow link, the body is not there in one read
    await response.write_eof()
    return response


async def test_an_answer_in_pieces_is_read_whole_up_to_the_limit(
    aiohttp_client: ClientFactory,
) -> None:
    app = web.Application()
    app.router.add_get("/pieces", pieces)
    client = await aiohttp_client(app)
    async with Executor.running() as executor:
        whole = await executor.call(
            HttpCall("GET", str(client.make_url("/pieces")), {}, b""), within=10
        )
        assert isinstance(whole, HttpAnswer)
        assert whole.body == PIECE * 4
        url = str(client.make_url("/pieces").with_query(n="12"))  # 1.2 MB: over the limit
        capped = await executor.call(HttpCall("GET", url, {}, b""), within=10)
        assert isinstance(capped, HttpAnswer)
        assert capped.body == (PIECE * 12)[:MAX_ANSWER_BYTES]
