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
                body = await response.content.read(MAX_ANSWER_BYTES)
                return HttpAnswer(response.status, response.headers, body)
        except TimeoutError:
            return RetryLater(f"no answer within {within:g}s")
        except aiohttp.ClientError as exc:
            return RetryLater(f"transport error: {type(exc).__name__}")
