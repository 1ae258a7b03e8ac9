"""`/api/*`: the order status and order links, behind a bearer token from the configuration.

With no `[receiver] api_token_env` configured, every `/api/*` request is 401: the API is off.
A client that sent too many wrong tokens is answered 429 `too_many_attempts` with `Retry-After`
for a while, its token not compared (`bridge/web/hardening.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from aiohttp import web

from bridge.store.engine import StoreUnavailable
from bridge.store.links import LinkError, parse_json
from bridge.store.status import order_status
from bridge.web.hardening import Throttled, Verdict, bearer_verdict, too_many_attempts
from bridge.web.keys import CONFIG, STORE, error_response, json_response

log = structlog.get_logger(__name__)

STORE_RETRY_AFTER = "5"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cancel-bridge"'}


def _refusal(request: web.Request) -> web.Response | None:
    """401 unless the request carries the configured bearer token; 429 while throttled."""
    token = request.app[CONFIG].api_token
    if token is None:
        return error_response(
            401, "api_disabled", "the API is off: set [receiver] api_token_env", CHALLENGE
        )
    verdict = bearer_verdict(request, "api", token)
    if isinstance(verdict, Throttled):
        return too_many_attempts(verdict)
    if verdict is not Verdict.ACCEPTED:  # none sent, or a wrong one
        return _unauthorized(request)
    return None


def _unauthorized(request: web.Request) -> web.Response:
    log.warning("api.unauthorized", path=request.path)
    return error_response(401, "unauthorized", "a valid bearer token is required", CHALLENGE)


def _store_down(exc: StoreUnavailable) -> web.Response:
    log.warning("api.store_unavailable", detail=str(exc))
    return error_response(503, "store_unavailable", str(exc), {"Retry-After": STORE_RETRY_AFTER})


def _unknown(source: str, order_id: str) -> web.Response:
    return error_response(
        404, "unknown_order", f"no cancellation recorded for {source} order {order_id}"
    )


async def get_order(request: web.Request) -> web.Response:
    """`GET /api/orders/{source}/{order_id}`: the order's events and each target's state."""
    if (refused := _refusal(request)) is not None:
        return refused
    source, order_id = request.match_info["source"], request.match_info["order_id"]
    if "\x00" in source or "\x00" in order_id:
        # PostgreSQL cannot hold a NUL in text, so no such order is recorded; asking would be
        # a driver error (a 503 "store unavailable") instead of the miss it is.
        return _unknown(source, order_id)
    try:
        found = await order_status(request.app[STORE], order_id, source)
    except StoreUnavailable as exc:
        return _store_down(exc)
    if not found:
        return _unknown(source, order_id)
    return json_response(200, {"source": source, "order_id": order_id, "events": found})


async def put_links(request: web.Request) -> web.Response:
    """`PUT /api/links`: one link object (platform -> order id) or a list of them."""
    if (refused := _refusal(request)) is not None:
        return refused
    body = await request.read()
    try:
        found = parse_json(body)
    except LinkError as exc:
        return error_response(400, "invalid_links", str(exc))
    store = request.app[STORE]
    now = datetime.now(UTC)
    try:
        for link in found:
            await store.link(link, now)
    except StoreUnavailable as exc:
        return _store_down(exc)
    log.info("api.linked", links=len(found))
    return json_response(200, {"status": "linked", "links": len(found)})


async def other(request: web.Request) -> web.Response:
    """Any other `/api/*` request: 401 first (nothing is disclosed without the token), then 404."""
    if (refused := _refusal(request)) is not None:
        return refused
    return error_response(404, "not_found", "no such endpoint")


def add_routes(app: web.Application) -> None:
    """Mount `/api/*` on the receiver (its CONFIG and STORE keys)."""
    app.router.add_get("/api/orders/{source}/{order_id}", get_order)
    app.router.add_put("/api/links", put_links)
    app.router.add_route("*", "/api", other)
    app.router.add_route("*", "/api/{tail:.*}", other)
