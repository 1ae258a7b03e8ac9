"""Log configuration: malformed HTTP from clients is not an error of ours."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

from bridge.logs import MalformedRequestsAreNotErrors


def record_for(exc: BaseException) -> logging.LogRecord:
    """The record aiohttp's `logger.exception(...)` makes for `exc`."""
    info = (type(exc), exc, exc.__traceback__)
    return logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (), info
    )


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
