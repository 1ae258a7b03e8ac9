"""Raw HTTP/1.x over asyncio streams: bytes go out exactly as written, every answer is read back.

aiohttp's client (and the test client) would encode, fix or refuse what these tests need to send:
duplicated or non-ASCII headers, lying `Content-Length`s, broken chunking, invalid request lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

ANSWER_TIMEOUT = 15.0

HeaderLines = Iterable[tuple[str | bytes, str | bytes]]


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as it came over the wire."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names, last one kept
    body: bytes = b""

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:  # noqa: ANN401 - whatever the JSON holds
        """The body as JSON; fails (the caller's assertion) if it is not."""
        assert self.content_type == "application/json", (self.status, self.headers, self.body)
        return orjson.loads(self.body)

    @property
    def is_json(self) -> bool:
        """True when the body is JSON and says so."""
        if self.content_type != "application/json":
            return False
        try:
            orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return False
        return True


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def request(  # noqa: PLR0913 - each is a part of the request
    method: str | bytes,
    path: str | bytes,
    headers: HeaderLines = (),
    body: bytes = b"",
    *,
    version: str | bytes = "HTTP/1.1",
    length: int | None = None,
    close: bool = True,
) -> bytes:
    """A request's bytes; `Content-Length` is the body's unless `length` says otherwise.

    `length=-1` sends no `Content-Length` at all (chunked bodies, HTTP/1.0 without one).
    """
    lines = [_bytes(method) + b" " + _bytes(path) + b" " + _bytes(version), b"Host: bridge"]
    if close:
        lines.append(b"Connection: close")
    lines.extend(_bytes(name) + b": " + _bytes(value) for name, value in headers)
    size = len(body) if length is None else length
    if size >= 0:
        lines.append(b"Content-Length: " + str(size).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, pieces: int = 3) -> bytes:
    """`body` as a valid chunked encoding (with the last, empty chunk)."""
    step = max(1, -(-len(body) // pieces))
    out = b"".join(
        f"{len(body[i : i + step]):x}\r\n".encode() + body[i : i + step] + b"\r\n"
        for i in range(0, len(body), step)
    )
    return out + b"0\r\n\r\n"


async def _read_answer(reader: asyncio.StreamReader) -> Answer | None:
    """The next answer, or None when the server closed (or reset) without one."""
    try:
        block = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = block.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif status < 200 or status in (204, 304):
        body = b""
    else:
        body = await reader.read()
    return Answer(status, headers, body)


async def exchange(  # noqa: PLR0913 - the ways a client can misbehave
    port: int,
    data: bytes | Sequence[bytes],
    *,
    pause: float = 0.0,
    half_close: bool = False,
    hang_up: bool = False,
    answers: int | None = None,
    within: float = ANSWER_TIMEOUT,
) -> list[Answer]:
    """Send `data` (pieces `pause` seconds apart) and read the final answers.

    `half_close` shuts our sending side after the last piece (the server sees EOF, the socket
    still reads); `hang_up` closes the connection at once, reading nothing. Interim 1xx answers
    are skipped. Reading stops at `answers` final answers, or when the server closes.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pieces = [data] if isinstance(data, bytes) else list(data)
    found: list[Answer] = []
    try:
        for n, piece in enumerate(pieces):
            if n and pause:
                await asyncio.sleep(pause)  # paced: a slow sender is the behaviour under test
            writer.write(piece)
            await writer.drain()
        if hang_up:
            return found
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(within):
            while answers is None or len(found) < answers:
                answer = await _read_answer(reader)
                if answer is None:
                    break
                if answer.status >= 200:
                    found.append(answer)
    except ConnectionError:  # the server reset the connection: no more answers
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return found


async def one(port: int, data: bytes | Sequence[bytes], **options: Any) -> Answer:  # noqa: ANN401
    """The single answer to `data`; fails the test if there is none or more than one."""
    found = await exchange(port, data, **options)
    assert len(found) == 1, (data[:200] if isinstance(data, bytes) else data, found)
    return found[0]
