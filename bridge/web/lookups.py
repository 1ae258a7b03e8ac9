"""Completing thin webhooks: the call a source's `Lookup` asks for, made before answering.

The platform's token is fetched once and shared (`TokenCache`); a 401 gets one new token
(`call_with_token`, as the worker's target calls have). When the platform cannot be asked now,
the webhook is answered 503 with `Retry-After`, so the platform sends it again: nothing is
accepted that is not published.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from bridge.executor import Executor, HttpAnswer
from bridge.tokens import NoToken, TokenCache, call_with_token
from bridge.web.keys import CONFIG
from contracts.events import OrderCancelled, Source
from handlers.base import HttpCall, Ignored, Lookup, RetryLater, Unavailable


class Lookups:
    """The receiver's HTTP client for lookups, with one token cache per source."""

    def __init__(self, executor: Executor, timeout: float) -> None:
        self._executor = executor
        self._timeout = timeout
        self._tokens: dict[Source, TokenCache] = {}

    async def complete(
        self, source: Source, lookup: Lookup
    ) -> OrderCancelled | Ignored | Unavailable:
        """Make the lookup's call and build the event (MalformedPayloadError propagates)."""
        cache = None
        if lookup.auth is not None:
            cache = self._tokens.setdefault(
                source, TokenCache(lookup.auth, self._executor, self._timeout)
            )
        answer = await call_with_token(lookup.call, cache, self._send)
        if isinstance(answer, NoToken):
            return Unavailable(f"{source.value} API token: {answer.why.reason}")
        if isinstance(answer, RetryLater):
            return Unavailable(f"{source.value} API: {answer.reason}")
        return lookup.then(answer.status, answer.headers, answer.body)

    async def _send(self, call: HttpCall) -> HttpAnswer | RetryLater:
        return await self._executor.call(call, within=self._timeout)


LOOKUPS = web.AppKey("lookups", Lookups)


async def lookups_ctx(app: web.Application) -> AsyncIterator[None]:
    """Own the lookup client for the app's lifetime."""
    timeout = app[CONFIG].settings.receiver.lookup_timeout
    async with contextlib.AsyncExitStack() as stack:
        executor = await stack.enter_async_context(Executor.running(connections=20))
        app[LOOKUPS] = Lookups(executor, timeout)
        yield
