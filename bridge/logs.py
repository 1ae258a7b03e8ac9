"""Structured logs: one JSON object a line on standard output, ours and the libraries' alike."""

from __future__ import annotations

import logging
import os
import sys

import orjson
import structlog
from aiohttp.http_exceptions import BadHttpMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from structlog.typing import EventDict, Processor

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS["error"] = logging.ERROR


def _add_pid(_: object, __: str, event_dict: EventDict) -> EventDict:
    """Which process said it: several receiver processes may share one stdout."""
    event_dict["pid"] = _PID
    return event_dict


_PID = os.getpid()
_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    _add_pid,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class MalformedRequestsAreNotErrors(logging.Filter):
    """aiohttp logs every malformed HTTP request at error level with a traceback.

    On an endpoint open to the internet that is noise any client can make (and alerts on error
    lines would fire), so such records become one info line without the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Downgrade records about `BadHttpMessage`; keep everything else as it is."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "malformed HTTP request: %s", (exc.message,)
            record.exc_info = record.exc_text = None
        return True


class BrokerOutagesAreWarnings(logging.Filter):
    """aiormq and aio-pika log a broker restart or a cut link at error level, once per attempt.

    The bridge reports an outage itself (`broker.lost`, 503 answers, `/readyz`), so alerts on
    error lines would fire on every routine broker restart: such records become one warning line
    without the traceback. Anything else from these libraries keeps its level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Downgrade the libraries' connection-trouble errors; keep everything else."""
        exc = record.exc_info[1] if record.exc_info else None
        connection_trouble = isinstance(
            exc, (AMQPError, ConnectionError, ChannelInvalidStateError)
        ) or (exc is None and record.name == "aiormq.connection")
        if record.levelno >= logging.ERROR and connection_trouble:
            message = record.getMessage()
            if exc is not None:
                message = f"{message}: {type(exc).__name__}: {exc}"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = message, ()
            record.exc_info = record.exc_text = None
        return True


_BROKER_LOGGERS = ("aiormq.connection", "aio_pika.tools", "aio_pika.robust_connection")


def _dumps(obj: object, **_: object) -> str:
    return orjson.dumps(obj, default=str).decode()


def _dumps_bytes(obj: object, **_: object) -> bytes:
    return orjson.dumps(obj, default=str)


def configure(level: str = "info") -> None:
    """Send structlog and stdlib logging (aiohttp, aio-pika) to stdout as JSON lines.

    Each line leaves in one write: receiver processes sharing a stdout never split lines.
    """
    threshold = LEVELS[level]
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps_bytes),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
        )
    )
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestsAreNotErrors) for f in server.filters):
        server.addFilter(MalformedRequestsAreNotErrors())
    for name in _BROKER_LOGGERS:
        library = logging.getLogger(name)
        if not any(isinstance(f, BrokerOutagesAreWarnings) for f in library.filters):
            library.addFilter(BrokerOutagesAreWarnings())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
