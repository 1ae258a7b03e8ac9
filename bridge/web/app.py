"""The aiohttp receiver app: its middleware, health answers, lifecycles and routes.

Every answer is JSON. The webhooks themselves are `bridge/web/webhooks.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import orjson
import sqlalchemy as sa
import structlog
from aiohttp import web

from bridge.amqp import asyncapi
from bridge.amqp.publisher import Publisher
from bridge.background import in_background
from bridge.metrics import Metrics
from bridge.settings import Config
from bridge.store.batching import Batcher
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from bridge.targets import target_topology
from bridge.tracing import Tracing
from bridge.web import api, console, hardening, oauth
from bridge.web.forwarder import Forwarder
from bridge.web.keys import CONFIG, METRICS, STORE, TRACING, error_response, json_response
from bridge.web.lookups import lookups_ctx
from bridge.web.metrics_page import metrics_page
from bridge.web.webhooks import (
    ARRIVALS,
    FORWARDER,
    IN_FLIGHT,
    PUBLISHER,
    SPOOLER,
    WEBHOOKS_PREFIX,
    InFlight,
    expect_continue,
    webhook,
)

log = structlog.get_logger(__name__)

__all__ = ["create_app"]

ECHO_HOUSEKEEPING_INTERVAL = 3600.0  # seconds
STORE_CHECK_TIMEOUT = 2.0  # seconds `/readyz` waits for the store's answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_HTTP_ERRORS = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "method not allowed on this endpoint"),
    413: ("body_too_large", "request body is larger than the limit"),
}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON for aiohttp's own refusals (404, 405, 413, ...), never a traceback; webhooks counted.

    One middleware does both: each layer costs every request.
    """
    response = await _answer(request, handler)
    path = request.path
    if path.startswith(WEBHOOKS_PREFIX):
        _count_webhook(request, path[len(WEBHOOKS_PREFIX) :], response)
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # noqa: PLR2004 - redirects pass through
            raise
        code, detail = _HTTP_ERRORS.get(exc.status, ("http_error", exc.reason))
        kept = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(exc.status, code, detail, kept)
    except ConnectionError:  # the client hung up mid-request: nothing to answer, not a bug
        log.info("receiver.client_gone", path=request.path)
        return error_response(400, "client_gone", "the connection was closed mid-request")
    except Exception:  # last resort: log the bug, answer JSON, keep serving
        log.exception("receiver.unhandled", path=request.path)
        return error_response(500, "internal_error", "unexpected error; see the bridge's logs")


def _count_webhook(request: web.Request, name: str, response: web.StreamResponse) -> None:
    """Count an answer by source, status and outcome.

    The outcome is the answer's own word: its `status` (accepted, echo, ignored, quarantined) or
    its `error` code. Sources that are not configured count as `unknown`: labels never take a
    client's words.
    """
    known = any(s.value == name for s in request.app[CONFIG].source_secrets)
    outcome = _outcome(response)
    source = name if known else "unknown"
    request.app[METRICS].webhooks.labels(source, str(response.status), outcome).inc()


def _outcome(response: web.StreamResponse) -> str:
    body = response.body if isinstance(response, web.Response) else None
    if isinstance(body, bytes) and body.startswith(b"{"):
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "other"
        word = answer.get("status") or answer.get("error") if isinstance(answer, dict) else None
        if isinstance(word, str) and word.isidentifier() and len(word) <= 40:  # noqa: PLR2004
            return word
    return "other"


async def healthz(_: web.Request) -> web.Response:
    """`GET /healthz`: the process answers."""
    return json_response(200, {"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """`GET /readyz`: 200 while webhooks can be taken: published, or spooled.

    The broker is up once its channel is open and the topology declared; the store, once it
    answers `SELECT 1` within `STORE_CHECK_TIMEOUT`. `spooling` (200): the spool takes webhooks
    while the broker is away ([receiver] spool), or holds events not yet forwarded.
    """
    broker = "up" if request.app[PUBLISHER].ready else "down"
    store = await _store_state(request.app[STORE])
    spooled = request.app[FORWARDER].state.depth
    spool_on = request.app[CONFIG].settings.receiver.spool
    if store == "up" and (broker == "up" or spool_on):
        status = "spooling" if broker == "down" or spooled else "ready"
        code = 200
    else:
        status, code = "not_ready", 503
    answer = {"status": status, "broker": broker, "store": store, "spooled": spooled}
    return json_response(code, answer)


async def _store_state(store: Store) -> str:
    try:
        async with asyncio.timeout(STORE_CHECK_TIMEOUT), store.reading() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (StoreUnavailable, TimeoutError, sa.exc.SQLAlchemyError, OSError):
        return "down"
    return "up"


async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    """Own the publisher, and the spool's forwarder that publishes through it."""
    config = app[CONFIG]
    url = config.amqp_url.get_secret_value()
    targets = tuple(target_topology(config, t) for t in config.settings.targets_in_use())
    async with (
        Publisher.running(
            url, config.settings.broker, targets=targets, metrics=app[METRICS]
        ) as publisher,
        Forwarder.running(
            app[STORE], publisher, config.settings.broker.app_id, app[METRICS]
        ) as forwarder,
    ):
        app[PUBLISHER] = publisher
        app[FORWARDER] = forwarder
        yield


def store_ctx(store: Store | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """Use `store`, or open the configured one for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if store is None:
                url = app[CONFIG].store_url.get_secret_value()
                app[STORE] = await stack.enter_async_context(Store.open(url))
            else:
                app[STORE] = store
            # Webhooks arriving together are recorded together: one transaction for many,
            # lingering for the webhooks in flight (a lone one is recorded at once).
            in_flight = app[IN_FLIGHT]
            app[ARRIVALS] = Batcher(
                app[METRICS].timed_batch("arrive", app[STORE].arrive_many),
                linger=app[CONFIG].settings.store.arrival_linger,
                busy=lambda size: in_flight.count > size,
            )
            # While the broker is away every webhook writes to the spool: together too.
            spool_max = app[CONFIG].settings.receiver.spool_max
            app[SPOOLER] = Batcher(
                lambda items: app[STORE].spool_many(items, spool_max),
                linger=app[CONFIG].settings.store.arrival_linger,
                busy=lambda size: in_flight.count > size,
            )
            async with in_background(_expire_echoes(app), "echo-housekeeping"):
                yield

    return ctx


async def _expire_echoes(app: web.Application) -> None:
    """Forget echo records older than `[store] echo_ttl`, hourly (lookups ignore them)."""
    ttl = timedelta(seconds=app[CONFIG].settings.store.echo_ttl)
    while True:
        try:
            gone = await app[STORE].expire_echoes(datetime.now(UTC) - ttl)
        except StoreUnavailable as exc:
            log.warning("store.housekeeping_failed", detail=str(exc))
        else:
            if gone:
                log.info("store.echoes_expired", count=gone)
        await asyncio.sleep(ECHO_HOUSEKEEPING_INTERVAL)


def create_app(
    config: Config,
    store: Store | None = None,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
) -> web.Application:
    """The receiver application; broker connection and store live in its cleanup contexts."""
    app = web.Application(
        client_max_size=config.settings.receiver.max_body_bytes,
        middlewares=[json_errors],
        # Bodies stay as sent: the HMAC covers those bytes, and a bad gzip stream must not
        # break the connection inside aiohttp's parser. Encoded bodies get 415 instead.
        handler_args={"auto_decompress": False},
    )
    app[CONFIG] = config
    app[METRICS] = metrics or Metrics()
    app[TRACING] = tracing or Tracing()
    app[IN_FLIGHT] = InFlight()
    hardening.install(app)  # throttled credential checks, sign-outs, Server and HSTS headers
    app.cleanup_ctx.append(store_ctx(store))
    app.cleanup_ctx.append(publisher_ctx)
    app.cleanup_ctx.append(lookups_ctx)
    app.router.add_post("/webhooks/{source}", webhook, expect_handler=expect_continue)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_post("/oauth/token", oauth.token)
    api.add_routes(app)
    asyncapi.add_routes(app)
    console.add_routes(app)
    return app
