"""Structured logs: one JSON object a line on standard output, ours and the libraries' alike."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
from typing import BinaryIO

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
    """aiohttp logs every malformed HTTP request at error level, with the offending line.

    On an endpoint open to the internet that is noise any client can make (and alerts on error
    lines would fire), so such records become one info line without the traceback. The line
    aiohttp quotes is the client's raw bytes (an `Authorization` header with a NUL, a DEL, a bare
    CR or a folded continuation brings its token or Basic credentials along): only the parser's
    reason is kept, never the quoted bytes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Downgrade records about `BadHttpMessage` to their reason; keep everything else."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "malformed HTTP request: %s", (parser_reason(exc.message),)
            record.exc_info = record.exc_text = None
        return True


MAX_REASON = 80


def parser_reason(message: str) -> str:
    """The parser's reason for refusing a request, without any of the request's bytes.

    aiohttp's messages are the reason on the first line, then the raw line quoted (C parser),
    or the raw value quoted after the reason on one line (the pure-Python parser).
    """
    reason = message.strip().split("\n", 1)[0]
    for quote in ("'", '"', "b'"):
        reason = reason.split(quote, 1)[0]
    reason = "".join(c for c in reason if c.isprintable()).strip().rstrip(":").strip()
    return reason[:MAX_REASON] or "unreadable request"


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


PIPE_BUF = 4096  # POSIX: a write of at most this much to a pipe is never split by another's


class TurnBufferedLogger:
    """structlog's `BytesLogger`, writing once per turn of the event loop instead of per line.

    A line written inside a running loop joins a buffer that is written out at the end of the
    current turn (`call_soon`): a busy receiver pays one `write` for the lines of many requests
    instead of one each. Writes carry whole lines only, at most `PIPE_BUF` bytes each (a longer
    line alone), so processes sharing a pipe never split each other's lines. Outside a loop, and
    at exit, lines are written at once.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._lines: list[bytes] = []
        self._scheduled = False
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        """Write one line (at the end of the loop's turn, or now outside a loop)."""
        self._lines.append(message + b"\n")
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def flush(self) -> None:
        """Write what is buffered, whole lines at most `PIPE_BUF` bytes a write."""
        self._scheduled = False
        lines, self._lines = self._lines, []
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > PIPE_BUF:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
            self._file.flush()
        except (OSError, ValueError):  # stdout closed or gone: nothing left to tell
            pass


class TurnBufferedLoggerFactory:
    """One `TurnBufferedLogger` for a file, whatever logger name is asked for."""

    def __init__(self, file: BinaryIO) -> None:
        self._logger = TurnBufferedLogger(file)

    def __call__(self, *_: object) -> TurnBufferedLogger:
        """The logger (structlog passes the logger's name, unused)."""
        return self._logger


def configure(level: str = "info") -> None:
    """Send structlog and stdlib logging (aiohttp, aio-pika) to stdout as JSON lines.

    Lines leave whole (`TurnBufferedLogger`, once per loop turn): receiver processes sharing a
    stdout never split lines.
    """
    threshold = LEVELS[level]
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps_bytes),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=TurnBufferedLoggerFactory(sys.stdout.buffer),
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
