"""Log configuration: malformed HTTP from clients is not an error of ours."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import http_parser
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import BadHttpMessage
from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError

from bridge.logs import (
    PIPE_BUF,
    BrokerOutagesAreWarnings,
    MalformedRequestsAreNotErrors,
    TurnBufferedLogger,
    parser_reason,
)


def record_for(
    exc: BaseException | None, name: str = "aiohttp.server", msg: str = "Error handling request"
) -> logging.LogRecord:
    """The record a library's `logger.exception(...)` (or `.error`) makes for `exc`."""
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), info)


def test_malformed_request_becomes_one_info_line() -> None:
    record = record_for(BadHttpMessage("Invalid HTTP version"))
    assert MalformedRequestsAreNotErrors().filter(record)
    assert (record.levelno, record.levelname) == (logging.INFO, "INFO")
    assert record.exc_info is None
    assert record.getMessage() == "malformed HTTP request: Invalid HTTP version"


def test_other_errors_stay_errors() -> None:
    record = record_for(RuntimeError("a real bug"))
    assert MalformedRequestsAreNotErrors().filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


def test_broker_restart_lines_become_warnings() -> None:
    """What aiormq and aio-pika log at error level when RabbitMQ restarts (seen in chaos runs)."""
    refused = record_for(
        None, "aiormq.connection", "error when creating transport: <AMQPConnectionError: refused>"
    )
    callback = record_for(ChannelInvalidStateError("closed"), "aio_pika.tools", "Callback failed")
    reconnect = record_for(AMQPConnectionError(111, "refused"), "aio_pika.robust_connection")
    for record in (refused, callback, reconnect):
        assert BrokerOutagesAreWarnings().filter(record)
        assert (record.levelno, record.exc_info) == (logging.WARNING, None), record.name
    assert "ChannelInvalidStateError: closed" in callback.getMessage()


def test_other_library_errors_stay_errors() -> None:
    record = record_for(RuntimeError("a real bug"), "aio_pika.tools", "Callback failed")
    assert BrokerOutagesAreWarnings().filter(record)
    assert record.levelno == logging.ERROR


class Writes:
    """A binary file that records each write (one `write` call is one system call for stdout)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        """Record one write."""
        self.writes.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing is held here."""


def test_outside_a_loop_each_line_is_written_at_once() -> None:
    out = Writes()
    logger = TurnBufferedLogger(out)  # type: ignore[arg-type]
    logger.msg(b'{"event":"one"}')
    assert out.writes == [b'{"event":"one"}\n']


async def test_the_lines_of_one_loop_turn_leave_in_one_write_after_it() -> None:
    out = Writes()
    logger = TurnBufferedLogger(out)  # type: ignore[arg-type]
    for n in range(5):
        logger.info(f'{{"n":{n}}}'.encode())
    assert out.writes == []  # still this turn
    turn_over = asyncio.Event()
    asyncio.get_running_loop().call_soon(turn_over.set)  # queued after the logger's flush
    await turn_over.wait()
    assert out.writes == [b"".join(f'{{"n":{n}}}\n'.encode() for n in range(5))]


async def test_writes_hold_whole_lines_of_at_most_pipe_buf_bytes() -> None:
    out = Writes()
    logger = TurnBufferedLogger(out)  # type: ignore[arg-type]
    lines = [bytes([65 + n % 26]) * 999 for n in range(20)] + [b"L" * (PIPE_BUF * 2)]
    for line in lines:  # one busy turn
        logger.msg(line)
    turn_over = asyncio.Event()
    asyncio.get_running_loop().call_soon(turn_over.set)
    await turn_over.wait()
    assert b"".join(out.writes) == b"".join(line + b"\n" for line in lines)
    assert all(write.endswith(b"\n") for write in out.writes)
    assert all(len(write) <= PIPE_BUF for write in out.writes[:-1])
    assert out.writes[-1] == b"L" * (PIPE_BUF * 2) + b"\n"  # too long to share: alone
    assert len(out.writes) == 6  # four 1,000-byte lines a write, then the long one


SECRET_LINE_VALUE = "Bearer api-token-never-logged-9f8e7d"
# Each a malformed line that carries a credential (issue 17's probe): NUL, DEL, a bare CR, a
# folded continuation of the Authorization header, and a bad header name after Basic credentials.
MALFORMED = [
    f"Authorization: {SECRET_LINE_VALUE}\x00x\r\n".encode(),
    f"Authorization: {SECRET_LINE_VALUE}\x7fx\r\n".encode(),
    f"Authorization: {SECRET_LINE_VALUE}\rx\r\n".encode(),
    f"Authorization: {SECRET_LINE_VALUE}\r\n  {SECRET_LINE_VALUE}\r\n".encode(),
    f"Authorization: {SECRET_LINE_VALUE}\r\nBad\x00{SECRET_LINE_VALUE}: v\r\n".encode(),
]
PARSERS = (http_parser.HttpRequestParser, http_parser.HttpRequestParserPy)  # C, and pure Python


def parser_error(parser: type[http_parser.HttpRequestParserPy], line: bytes) -> BadHttpMessage:
    """What aiohttp's `parser` raises for a request with the header `line`."""
    loop = asyncio.new_event_loop()
    try:
        feeder = parser(BaseProtocol(loop), loop, 2**16, max_line_size=8190, max_field_size=8190)
        try:
            feeder.feed_data(b"GET / HTTP/1.1\r\nHost: bridge\r\n" + line + b"\r\n")
        except BadHttpMessage as exc:
            return exc
    finally:
        loop.close()
    raise AssertionError(f"{parser.__name__} accepted {line!r}")


def test_a_malformed_header_line_never_brings_its_credentials_to_the_log() -> None:
    for parser in PARSERS:
        for line in MALFORMED:
            exc = parser_error(parser, line)
            assert "api-token" in str(exc)  # aiohttp quotes the raw line ...
            record = record_for(exc)
            MalformedRequestsAreNotErrors().filter(record)
            logged = record.getMessage()
            assert "api-token" not in logged, (parser.__name__, line)  # ... we never do
            assert logged.startswith("malformed HTTP request: ")
            assert parser_reason(exc.message)  # a reason is left to read
