"""The one place target HTTP calls are made: pooled connections, a timeout per call.

Adapters describe calls (`HttpCall`) and read answers; this module only moves bytes. A transport
failure or a timeout is `RetryLater`: a timed-out cancel may have landed, and the next attempt's
"already cancelled" answer settles it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy

from handlers.base import HttpCall, RetryLater

MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A target's answer, as the adapter's `interpret` takes it."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class Executor:
    """Makes `HttpCall`s over one pooled aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, *, connections: int = 100) -> AsyncIterator[Executor]:
        """An executor whose session lives as long as the context."""
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector, raise_for_status=False) as session:
            yield cls(session)

    async def call(self, request: HttpCall, within: float) -> HttpAnswer | RetryLater:
        """Make `request`; the answer, or `RetryLater` on timeout or transport failure."""
        try:
            async with (
                asyncio.timeout(within),
                self._session.request(
                    request.method, request.url, headers=dict(request.headers), data=request.body
                ) as response,
            ):
                return HttpAnswer(response.status, response.headers, await _body(response))
        except TimeoutError:
            return RetryLater(f"no answer within {within:g}s")
        except aiohttp.ClientError as exc:
            return RetryLater(f"transport error: {type(exc).__name__}")


async def _body(response: aiohttp.ClientResponse) -> bytes:
    """The answer's body, up to `MAX_ANSWER_BYTES` (the rest is not read).

    `content.read(n)` returns what has arrived so far: a body sent in several pieces is read
    until it ends or the limit is reached.
    """
    pieces: list[bytes] = []
    size = 0
    while size < MAX_ANSWER_BYTES and (
        piece := await response.content.read(MAX_ANSWER_BYTES - size)
    ):
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)
