"""`/metrics` over HTTP: on the receiver's port, and on a listener of its own (`[metrics] port`)."""

from __future__ import annotations

import contextlib

import structlog
from aiohttp import web

from bridge.metrics import CONTENT_TYPE_LATEST, Metrics
from bridge.settings import Config
from bridge.web.connections import CappedSite
from bridge.web.hardening import Throttled, Verdict, bearer_verdict, install, too_many_attempts
from bridge.web.keys import CONFIG, METRICS, error_response

log = structlog.get_logger(__name__)


async def metrics_page(request: web.Request) -> web.Response:
    """`GET /metrics`: the process's Prometheus metrics (a bearer token when configured).

    A client that sent too many wrong tokens is answered 429 for a while, its token not compared.
    """
    token = request.app[CONFIG].metrics_token
    if token is not None:
        verdict = bearer_verdict(request, "metrics", token)
        if isinstance(verdict, Throttled):
            return too_many_attempts(verdict)
        if verdict is not Verdict.ACCEPTED:  # none sent, or a wrong one
            return error_response(
                401,
                "unauthorized",
                "a valid bearer token is required ([metrics] token_env)",
                {"WWW-Authenticate": 'Bearer realm="cancel-bridge metrics"'},
            )
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


MAX_SCRAPERS = 64  # connections the metrics listener holds at once (scrapers, not webhooks)


async def serve_metrics(
    config: Config, metrics: Metrics, port: int, stack: contextlib.AsyncExitStack
) -> int:
    """Listen on `[metrics] host` and `port` for `/metrics` until `stack` closes; the port.

    Port 0 takes a free one. Raises `OSError` when the port cannot be had (the caller makes it
    a startup error).
    """
    app = web.Application()
    app[CONFIG] = config
    app[METRICS] = metrics
    install(app)  # the receiver's backoff and headers, on this listener's own memory
    app.router.add_get("/metrics", metrics_page)
    # The receiver's listener, small: a cap on connections, the header timeout, our answers to
    # requests the parser refuses (`connections.py`).
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=config.settings.receiver.header_timeout,
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    host = config.settings.metrics.host
    site = CappedSite(
        runner,
        host,
        port,
        cap=MAX_SCRAPERS,
        retry_after=config.settings.broker.retry_after,
        on_refused=metrics.connections_refused.inc,
    )
    await site.start()
    bound = int(runner.addresses[0][1])
    log.info("metrics.listening", host=host, port=bound)
    return bound
