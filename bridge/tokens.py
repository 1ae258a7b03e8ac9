"""Short-lived bearer tokens for targets: fetched once, shared, refreshed before they expire.

One fetch at a time: a burst of calls waiting for a token makes one token request. A token is
used until `margin` before its expiry (a tenth of its life, at most a minute), and dropped at
once when the target answers 401 to it: `call_with_token` is the one place that makes a call
with a token and, on a 401, tries once more with a new one (the worker's target calls, the
receiver's lookups).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from bridge.executor import Executor, HttpAnswer
from handlers.base import HttpCall, Rejected, RetryLater, Token, TokenAuth

MAX_MARGIN = 60.0
HTTP_UNAUTHORIZED = 401


class TokenCache:
    """The current token of one target."""

    def __init__(self, auth: TokenAuth, executor: Executor, timeout: float) -> None:
        self._auth = auth
        self._executor = executor
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._good_until = 0.0
        self.fetches = 0  # token requests made (tests and metrics read it)

    def _valid(self) -> str | None:
        if self._token is not None and asyncio.get_running_loop().time() < self._good_until:
            return self._token
        return None

    async def get(self) -> str | RetryLater | Rejected:
        """A token good for now, fetching one if needed."""
        if (token := self._valid()) is not None:
            return token
        async with self._lock:
            if (token := self._valid()) is not None:
                return token  # another caller fetched it while this one waited
            self.fetches += 1
            answer = await self._executor.call(self._auth.request, within=self._timeout)
            if isinstance(answer, RetryLater):
                return RetryLater(f"token request: {answer.reason}")
            read = self._auth.read(answer.status, answer.headers, answer.body)
            if not isinstance(read, Token):
                return read
            self._store(read)
            return read.value.get_secret_value()

    def _store(self, token: Token) -> None:
        margin = min(MAX_MARGIN, token.expires_in / 10)
        self._token = token.value.get_secret_value()
        self._good_until = asyncio.get_running_loop().time() + token.expires_in - margin

    def drop(self, token: str) -> None:
        """The target refused `token` (401): the next `get` fetches a new one."""
        if self._token == token:
            self._token = None


def with_token(call: HttpCall, token: str) -> HttpCall:
    """`call` carrying `Authorization: Bearer <token>`."""
    return replace(call, headers={**call.headers, "Authorization": f"Bearer {token}"})


@dataclass(frozen=True, slots=True)
class NoToken:
    """No token to be had: why the token request failed (the call was not made)."""

    why: RetryLater | Rejected


async def call_with_token(
    call: HttpCall,
    tokens: TokenCache | None,
    send: Callable[[HttpCall], Awaitable[HttpAnswer | RetryLater]],
) -> HttpAnswer | RetryLater | NoToken:
    """`send(call)` with a token from `tokens` (None: the call as it is).

    A 401 drops the token, and the call is made once more with a new one: a second 401 is the
    answer (its token dropped too).
    """
    if tokens is None:
        return await send(call)
    answer = await _send_with_token(call, tokens, send)
    if isinstance(answer, HttpAnswer) and answer.status == HTTP_UNAUTHORIZED:
        answer = await _send_with_token(call, tokens, send)
    return answer


async def _send_with_token(
    call: HttpCall,
    tokens: TokenCache,
    send: Callable[[HttpCall], Awaitable[HttpAnswer | RetryLater]],
) -> HttpAnswer | RetryLater | NoToken:
    token = await tokens.get()
    if not isinstance(token, str):
        return NoToken(token)
    answer = await send(with_token(call, token))
    if isinstance(answer, HttpAnswer) and answer.status == HTTP_UNAUTHORIZED:
        tokens.drop(token)  # expired or revoked: the next `get` fetches a new one
    return answer
