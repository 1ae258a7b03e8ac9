"""`/metrics` over HTTP: on the receiver's port, and on a listener of its own (`[metrics] port`)."""

from __future__ import annotations

import contextlib

import structlog
from aiohttp import web

from bridge.metrics import CONTENT_TYPE_LATEST, Metrics
from bridge.settings import Config
from bridge.web.keys import CONFIG, METRICS, bearer_ok, error_response

log = structlog.get_logger(__name__)


async def metrics_page(request: web.Request) -> web.Response:
    """`GET /metrics`: the process's Prometheus metrics (a bearer token when configured)."""
    token = request.app[CONFIG].metrics_token
    if token is not None and not bearer_ok(request, token):
        return error_response(
            401,
            "unauthorized",
            "a valid bearer token is required ([metrics] token_env)",
            {"WWW-Authenticate": 'Bearer realm="cancel-bridge metrics"'},
        )
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


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
    app.router.add_get("/metrics", metrics_page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    host = config.settings.metrics.host
    await web.TCPSite(runner, host, port).start()
    bound = int(runner.addresses[0][1])
    log.info("metrics.listening", host=host, port=bound)
    return bound
