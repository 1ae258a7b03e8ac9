"""Log configuration: malformed HTTP from clients is not an error of ours."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage
from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError

from bridge.logs import BrokerOutagesAreWarnings, MalformedRequestsAreNotErrors


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
