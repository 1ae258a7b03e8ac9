"""`call_with_token`: a call with the shared token; a 401 gets one new token and one more try."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr

from bridge.executor import Executor, HttpAnswer
from bridge.tokens import NoToken, TokenCache, call_with_token
from handlers.base import HttpCall, Rejected, RetryLater, Token, TokenAuth

CALL = HttpCall("POST", "http://target.invalid/cancel", {"X-Kept": "1"}, b"{}")
OK, UNAUTHORIZED, SERVER_ERROR = 200, 401, 500


class TokenEndpoint:
    """Hands out `t1`, `t2`, ... while `status` is 200; otherwise answers `status`."""

    def __init__(self) -> None:
        self.status = OK
        self.issued = 0

    async def answer(self, _: web.Request) -> web.Response:
        """The token request's answer."""
        if self.status != OK:
            return web.Response(status=self.status)
        self.issued += 1
        return web.Response(text=f"t{self.issued}")


def read_token(status: int, _: Mapping[str, str], body: bytes) -> Token | RetryLater | Rejected:
    if status == OK:
        return Token(SecretStr(body.decode()), 3600)
    return Rejected(f"token endpoint answered HTTP {status}")


class Target:
    """Answers each call with the next scripted status, noting the token it carried."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.seen: list[str | None] = []

    async def send(self, call: HttpCall) -> HttpAnswer | RetryLater:
        """The target's answer to `call`."""
        assert call.headers["X-Kept"] == "1"
        self.seen.append(call.headers.get("Authorization"))
        status = self.statuses.pop(0)
        return HttpAnswer(status, CIMultiDictProxy(CIMultiDict()), b"")


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[TokenEndpoint, TokenCache]]:
    tokens = TokenEndpoint()
    app = web.Application()
    app.router.add_post("/token", tokens.answer)
    async with TestServer(app) as server, Executor.running() as executor:
        request = HttpCall("POST", str(server.make_url("/token")), {}, b"")
        yield tokens, TokenCache(TokenAuth(request, read_token), executor, 5)


async def test_without_a_cache_the_call_goes_as_it_is() -> None:
    target = Target(OK)
    answer = await call_with_token(CALL, None, target.send)
    assert isinstance(answer, HttpAnswer)
    assert (answer.status, target.seen) == (OK, [None])


async def test_the_token_is_fetched_once_and_carried(
    endpoint: tuple[TokenEndpoint, TokenCache],
) -> None:
    tokens, cache = endpoint
    target = Target(OK, OK)
    for _ in range(2):
        answer = await call_with_token(CALL, cache, target.send)
        assert isinstance(answer, HttpAnswer)
        assert answer.status == OK
    assert (tokens.issued, target.seen) == (1, ["Bearer t1", "Bearer t1"])


async def test_a_401_gets_one_new_token_and_one_more_try(
    endpoint: tuple[TokenEndpoint, TokenCache],
) -> None:
    tokens, cache = endpoint
    target = Target(UNAUTHORIZED, OK)
    answer = await call_with_token(CALL, cache, target.send)
    assert isinstance(answer, HttpAnswer)
    assert (answer.status, tokens.issued) == (OK, 2)
    assert target.seen == ["Bearer t1", "Bearer t2"]


async def test_a_second_401_is_the_answer_and_its_token_is_dropped(
    endpoint: tuple[TokenEndpoint, TokenCache],
) -> None:
    tokens, cache = endpoint
    target = Target(UNAUTHORIZED, UNAUTHORIZED, OK)
    answer = await call_with_token(CALL, cache, target.send)
    assert isinstance(answer, HttpAnswer)
    assert (answer.status, target.seen) == (UNAUTHORIZED, ["Bearer t1", "Bearer t2"])
    await call_with_token(CALL, cache, target.send)
    assert (tokens.issued, target.seen[-1]) == (3, "Bearer t3")


async def test_no_token_is_no_call(endpoint: tuple[TokenEndpoint, TokenCache]) -> None:
    tokens, cache = endpoint
    tokens.status = SERVER_ERROR
    target = Target()
    answer = await call_with_token(CALL, cache, target.send)
    assert answer == NoToken(Rejected("token endpoint answered HTTP 500"))
    assert target.seen == []
