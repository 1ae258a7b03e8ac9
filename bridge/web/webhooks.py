"""`POST /webhooks/<source>`: verify, parse, complete (lookups), record, publish confirmed, answer.

200 means the broker holds the message, or (`"status": "spooled"`) the store holds it until the
broker is back (`[receiver] spool`: the broker away, link down or no confirm in time), or there
was nothing to hold; 503 with `Retry-After` means neither does, and the platform must send it
again. A signed body that cannot be parsed is published, confirmed, to the quarantine queue.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import HttpVersion11, web
from multidict import CIMultiDictProxy
from pamqp import commands as spec

from bridge.amqp import topology
from bridge.amqp.messages import event_properties, quarantine_message
from bridge.amqp.publisher import BrokerRefused, BrokerUnavailable, Publisher
from bridge.settings import Config
from bridge.store.arrivals import Arrival, Echo, Seen
from bridge.store.batching import Batcher
from bridge.store.engine import StoreUnavailable
from bridge.store.spool import ToSpool
from bridge.tracing import Tracing, failed
from bridge.web.forwarder import Forwarder
from bridge.web.keys import CONFIG, METRICS, TRACING, error_response, json_response
from bridge.web.lookups import LOOKUPS
from contracts.events import OrderCancelled, Source
from handlers.base import (
    Ignored,
    Lookup,
    MalformedPayloadError,
    Unavailable,
    WebhookError,
    clean_text,
)

log = structlog.get_logger(__name__)

PUBLISHER = web.AppKey("publisher", Publisher)
FORWARDER = web.AppKey("forwarder", Forwarder)
ARRIVALS = web.AppKey("arrivals", Batcher[Arrival, Seen | Echo])
SPOOLER = web.AppKey("spooler", Batcher[ToSpool, bool])  # the spool's writes, batched


class InFlight:
    """How many webhooks this process is handling: the arrivals' batch lingers for them."""

    count: int = 0


IN_FLIGHT = web.AppKey("webhooks_in_flight", InFlight)

KEPT_HEADERS = 32  # platform headers copied onto a quarantined message, at most
KEPT_HEADER_CHARS = 1024
KEPT_HEADER_NAME_CHARS = 100  # AMQP field names are short strings; x-http- is prefixed
WEBHOOKS_PREFIX = "/webhooks/"


def _platform_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The platform's `X-` headers to keep beside a quarantined body, bounded and clean.

    Signatures are left out: a stored body with its valid signature could be replayed.
    """
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lowered = clean_text(name).lower()
        if (
            lowered.startswith("x-")
            and len(lowered) <= KEPT_HEADER_NAME_CHARS
            and not any(word in lowered for word in ("hmac", "signature"))
            and lowered not in kept
            and len(kept) < KEPT_HEADERS
        ):
            kept[lowered] = clean_text(value)[:KEPT_HEADER_CHARS]
    return kept


def _try_again(config: Config, code: str, detail: str) -> web.Response:
    """503 with `Retry-After`: nothing was published, the platform sends it again later."""
    retry_after = str(config.settings.broker.retry_after)
    return error_response(503, code, detail, {"Retry-After": retry_after})


def _unavailable(config: Config, exc: BrokerUnavailable, **context: object) -> web.Response:
    log.warning("webhook.unavailable", detail=str(exc), **context)
    return _try_again(config, "broker_unavailable", str(exc))


async def _read_body(request: web.Request, config: Config) -> bytes | web.Response:
    """The raw body as sent, or the refusal: too large, compressed, or too slow to arrive."""
    receiver = config.settings.receiver
    limit = receiver.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return error_response(413, "body_too_large", f"body exceeds {limit} bytes")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # Platforms send webhooks uncompressed; an encoded body cannot be read as JSON.
        return error_response(
            415, "unsupported_content_encoding", "send the body uncompressed (identity)"
        )
    if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
        return await request.read()
    try:
        # aiohttp stops at client_max_size (== limit): 413 via the middleware.
        async with asyncio.timeout(receiver.body_timeout):
            body = await request.read()
    except TimeoutError:
        return error_response(
            408, "body_timeout", f"body not received within {receiver.body_timeout:g}s"
        )
    return body


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue`: refuse an oversize body before the client sends it; JSON 417s."""
    expect = request.headers.get("Expect", "").strip().lower()
    if request.version != HttpVersion11 or not expect:
        return None
    if expect != "100-continue":
        return error_response(417, "expectation_failed", "only Expect: 100-continue is supported")
    limit = request.app[CONFIG].settings.receiver.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return error_response(413, "body_too_large", f"body exceeds {limit} bytes")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the 100 is not part of the response proper
    return None


async def webhook(request: web.Request) -> web.StreamResponse:
    """`POST /webhooks/{source}`: one platform's cancellation webhook (in a span when tracing)."""
    in_flight = request.app[IN_FLIGHT]
    in_flight.count += 1
    try:
        return await _traced(request)
    finally:
        in_flight.count -= 1


async def _traced(request: web.Request) -> web.StreamResponse:
    tracing = request.app[TRACING]
    if not tracing.on:
        return await _webhook(request)
    name = request.match_info["source"]
    known = any(s.value == name for s in request.app[CONFIG].source_secrets)
    attributes = {"http.request.method": request.method, "http.route": "/webhooks/{source}"}
    with tracing.span("POST /webhooks/{source}", "server", attributes) as span:
        response = await _webhook(request)
        if span is not None:
            span.set_attribute("cancel_bridge.source", name if known else "unknown")
            span.set_attribute("http.response.status_code", response.status)
        return response


async def _webhook(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    name = request.match_info["source"]
    source = next((s for s in config.source_secrets if s.value == name), None)
    handler = config.source_handlers.get(source) if source is not None else None
    if source is None or handler is None:
        return error_response(404, "unknown_source", f"no source {name!r} is configured")
    body = await _read_body(request, config)
    if isinstance(body, web.Response):
        return body

    received_at = datetime.now(UTC)
    try:
        handler.verify(request.headers, body, config.secrets_now(source, received_at), received_at)
    except WebhookError as exc:
        log.warning("webhook.rejected", source=name, error=exc.code, detail=exc.detail)
        return error_response(exc.status, exc.code, exc.detail)

    try:
        result = handler.parse(request.headers, body, received_at)
    except MalformedPayloadError as exc:
        return await _quarantine(request, source, body, exc.reason, received_at)
    except WebhookError as exc:  # signed, but refused (a site outside the allowlist)
        log.warning("webhook.rejected", source=name, error=exc.code, detail=exc.detail)
        return error_response(exc.status, exc.code, exc.detail)
    return await _settle(request, source, body, result, received_at)


async def _settle(
    request: web.Request,
    source: Source,
    body: bytes,
    result: OrderCancelled | Ignored | Lookup,
    received_at: datetime,
) -> web.Response:
    """Publish the event, after completing a thin webhook; or say why not."""
    if isinstance(result, Lookup):  # a thin webhook: the platform's API completes it
        try:
            completed = await request.app[LOOKUPS].complete(source, result)
        except MalformedPayloadError as exc:
            return await _quarantine(request, source, body, exc.reason, received_at)
        if isinstance(completed, Unavailable):
            log.warning("webhook.lookup_unavailable", source=source.value, detail=completed.reason)
            return _try_again(request.app[CONFIG], "platform_unavailable", completed.reason)
        result = completed
    if isinstance(result, Ignored):
        log.info("webhook.ignored", source=source.value, reason=result.reason)
        return json_response(200, {"status": "ignored", "reason": result.reason})
    return await _publish(request, result)


async def _publish(request: web.Request, event: OrderCancelled) -> web.Response:
    config = request.app[CONFIG]
    context = {
        "event_id": str(event.event_id),
        "source": event.source.value,
        "shop": event.shop,
        "order_id": event.order_id,
        "delivery_id": event.delivery_id,
    }
    now = datetime.now(UTC)
    body = event.to_json()  # once: the store keeps the bytes the broker gets
    arrival = Arrival(
        event,
        now,
        tuple(config.settings.routes.get(event.source, ())),
        echo_since=now - timedelta(seconds=config.settings.store.echo_ttl),
        body=body,
    )
    deadline = config.settings.store.request_timeout
    try:
        # A stalled store link must not hold the platform's request: a 503 it retries.
        async with asyncio.timeout(deadline):
            arrived = await request.app[ARRIVALS].submit(arrival)
    except StoreUnavailable as exc:
        log.warning("webhook.store_unavailable", detail=str(exc), **context)
        return _try_again(config, "store_unavailable", str(exc))
    except TimeoutError:
        detail = f"store did not answer within {deadline:g}s"
        log.warning("webhook.store_unavailable", detail=detail, **context)
        return _try_again(config, "store_unavailable", detail)
    if isinstance(arrived, Echo):
        # The bridge cancelled this order here itself: fanning it out again would loop.
        log.info("webhook.echo", cause=arrived.cause, **context)
        return json_response(
            200, {"status": "echo", "event_id": context["event_id"], "echo_of": arrived.cause}
        )
    seen = arrived.count
    properties = event_properties(event, app_id=config.settings.broker.app_id, seen=seen)
    tracing = request.app[TRACING]
    try:
        if tracing.on:
            await _publish_traced(request, tracing, event, body, properties)
        else:
            await request.app[PUBLISHER].publish_event(event, body, properties)
    except BrokerUnavailable as exc:
        spooled = await _spool(request, event, body, seen, exc)
        return spooled or _unavailable(config, exc, **context)
    log.info("webhook.accepted", seen=seen, **context)
    return json_response(200, {"status": "accepted", "event_id": context["event_id"]})


async def _spool(
    request: web.Request, event: OrderCancelled, body: bytes, seen: int, exc: BrokerUnavailable
) -> web.Response | None:
    """Hold the event in the store while the broker is away; None: answer 503 as without a spool.

    A broker that answered and refused (nack, return) is not away: spooling would publish into
    the same refusal. A full spool is a 503 of its own (`spool_full`).
    """
    config = request.app[CONFIG]
    receiver = config.settings.receiver
    if not receiver.spool or isinstance(exc, BrokerRefused):
        return None
    event_id, source = str(event.event_id), event.source.value
    item = ToSpool(event_id, source, body, seen, datetime.now(UTC))
    try:
        async with asyncio.timeout(config.settings.store.request_timeout):
            held = await request.app[SPOOLER].submit(item)
    except (StoreUnavailable, TimeoutError) as store_exc:
        detail = str(store_exc) or "no answer in time"
        log.warning("webhook.spool_unavailable", event_id=event_id, detail=detail)
        return None
    if not held:
        log.warning("webhook.spool_full", event_id=event_id, spool_max=receiver.spool_max)
        detail = f"{exc}; the spool is full ({receiver.spool_max} events)"
        return _try_again(config, "spool_full", detail)
    request.app[FORWARDER].spooled()
    request.app[METRICS].spooled.labels(source).inc()
    log.warning("webhook.spooled", event_id=event_id, source=source, detail=str(exc))
    return json_response(200, {"status": "spooled", "event_id": event_id})


async def _publish_traced(
    request: web.Request,
    tracing: Tracing,
    event: OrderCancelled,
    body: bytes,
    properties: spec.Basic.Properties,
) -> None:
    """Publish in a producer span whose `traceparent` travels in the message's headers."""
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": topology.ORDERS.name,
        "messaging.message.id": str(event.event_id),
    }
    with tracing.span(f"send {topology.ORDERS.name}", "producer", attributes) as span:
        if properties.headers is not None:
            tracing.inject(properties.headers)
        try:
            await request.app[PUBLISHER].publish_event(event, body, properties)
        except BrokerUnavailable as exc:
            failed(span, str(exc))
            raise


async def _quarantine(
    request: web.Request, source: Source, body: bytes, reason: str, received_at: datetime
) -> web.Response:
    config = request.app[CONFIG]
    message = quarantine_message(
        body,
        content_type=request.headers.get("Content-Type"),
        reason=reason,
        source=source.value,
        received_at=received_at,
        platform_headers=_platform_headers(request.headers),
        app_id=config.settings.broker.app_id,
    )
    try:
        await request.app[PUBLISHER].quarantine(message)
    except BrokerUnavailable as exc:
        return _unavailable(config, exc, source=source.value, quarantine_reason=reason)
    log.warning("webhook.quarantined", source=source.value, reason=reason, id=message.message_id)
    return json_response(200, {"status": "quarantined", "reason": reason})
