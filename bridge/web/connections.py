"""The receiver's listener: at most `cap` connections open, the next ones refused at once.

aiohttp accepts every connection it is offered until the process runs out of file descriptors,
and then a webhook's connection fails with the idle ones. `CappedSite` listens like
`web.TCPSite` but hands the kernel a protocol factory that checks how many connections the
server holds first: past `cap`, the connection gets a JSON 503 with `Retry-After` and is closed
(`cancel_bridge_connections_refused_total` counts them). Idle connections do not stay long
either: `[receiver] header_timeout` closes one that has not sent a whole request in time.

A request aiohttp's parser cannot read is answered before any app code runs, by aiohttp's
`RequestHandler.handle_error`: plain text quoting the offending bytes back and aiohttp's own
`Server` header. Each connection's handler here is an `OwnedErrors`, whose answer is ours: JSON
with the parser's reason only (`logs.parser_reason`), `Server: cancel-bridge`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from bridge.logs import parser_reason
from bridge.web.hardening import SERVER


def refusal(retry_after: int) -> bytes:
    """The whole HTTP answer a refused connection gets before it is closed."""
    body = orjson.dumps(
        {"error": "too_many_connections", "detail": "the receiver holds its maximum; retry later"}
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Retry-After: {retry_after}\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


LINGER = 2.0  # seconds a refused connection is given to read its answer before it is closed


class Refused(asyncio.Protocol):
    """A connection over the cap: the 503 is written and the sending side shut.

    Closing at once would make the kernel answer the client's request bytes with a reset, which
    can throw the 503 away before the client reads it: what the client sends is read and
    dropped until it closes, or for `LINGER` seconds at most.
    """

    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Answer, shut the sending side, and close after `LINGER` seconds at the latest."""
        self._transport = transport
        # A TCP transport writes (uvloop's is not registered as asyncio.WriteTransport).
        stream = cast("asyncio.Transport", transport)
        stream.write(self._answer)
        if stream.can_write_eof():
            stream.write_eof()
        asyncio.get_running_loop().call_later(LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        """The request is never read."""
        del data

    def eof_received(self) -> bool:
        """The client is done: close."""
        if self._transport is not None:
            self._transport.close()
        return False


class OwnedErrors(RequestHandler):
    """aiohttp's connection handler, answering what its parser refused in our words."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Handle it as aiohttp does (its log line, its checks), then answer in our words."""
        super().handle_error(request, status, exc, message)
        if status < 500:  # noqa: PLR2004 - the parser's refusals are 4xx
            payload = {"error": "bad_request", "detail": parser_reason(message or "")}
        else:
            payload = {"error": "internal_error", "detail": "the request could not be handled"}
        answer = web.Response(
            status=status,
            body=orjson.dumps(payload),
            content_type="application/json",
            headers={"Server": SERVER},
        )
        answer.force_close()
        return answer


class CappedFactory:
    """aiohttp's protocol factory, refusing connections past `cap`."""

    def __init__(
        self, server: web.Server, cap: int, answer: bytes, on_refused: Callable[[], None]
    ) -> None:
        self._server = server
        self._cap = cap
        self._answer = answer
        self._on_refused = on_refused

    def __call__(self) -> asyncio.BaseProtocol:
        """A handler for a new connection, or a `Refused` one when `cap` are open."""
        if len(self._server.connections) >= self._cap:
            self._on_refused()
            return Refused(self._answer)
        handler = self._server()
        handler.__class__ = OwnedErrors  # same slots: only `handle_error` differs
        return handler


class CappedSite(web.BaseSite):
    """A TCP listener (as `web.TCPSite`) whose connections are capped."""

    __slots__ = ("_cap", "_host", "_on_refused", "_port", "_retry_after", "_reuse_port")

    def __init__(  # noqa: PLR0913 - the listener's address and the cap's parts
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        cap: int,
        retry_after: int,
        on_refused: Callable[[], None],
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host, self._port, self._reuse_port = host, port, reuse_port
        self._cap, self._retry_after, self._on_refused = cap, retry_after, on_refused

    @property
    def name(self) -> str:
        """The URL it serves."""
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen on the host and port."""
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        factory = CappedFactory(server, self._cap, refusal(self._retry_after), self._on_refused)
        self._server = await asyncio.get_running_loop().create_server(
            factory,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )
