"""OpenTelemetry tracing: one trace from the webhook to the target call, across the broker."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bridge.amqp import asyncapi
from bridge.demo.fake_cj import FakeCJ
from bridge.settings import TracingSettings
from bridge.store.deliveries import Store
from bridge.targets import plan
from bridge.tracing import Tracing
from bridge.web.app import create_app
from bridge.worker.consumer import Worker
from tests.harness.broker import delete_target_queues, fresh_target_queues, receive
from tests.harness.pipeline import SETTLE_TIMEOUT, Client, pipeline_config
from tests.harness.receiver import ClientFactory, shoplazza_webhook, wait_ready


@dataclass
class Traced:
    """The receiver's client, the worker and the spans they finished."""

    client: Client
    worker: Worker
    spans: InMemorySpanExporter


@pytest.fixture
async def traced(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> AsyncIterator[Traced]:
    config = pipeline_config(amqp_url, cj.url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider.get_tracer("test"), provider)
    worker_plan = plan(config, "cj")
    channel = await amqp.channel()
    await fresh_target_queues(channel, worker_plan.topology)
    try:
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(Store.open(config.store_url.get_secret_value()))
            client: Client = await aiohttp_client(create_app(config, store, tracing=tracing))
            await wait_ready(client)
            worker = await stack.enter_async_context(
                Worker.running(
                    worker_plan, amqp_url, config.settings.broker, store, tracing=tracing
                )
            )
            yield Traced(client, worker, exporter)
    finally:
        await delete_target_queues(channel, worker_plan.topology)
        tracing.shutdown()


def one(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> ReadableSpan:
    found = [span for span in spans if span.kind == kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


async def test_one_trace_from_webhook_to_cj_call(traced: Traced, subscriber: AbstractQueue) -> None:
    """Server -> producer span in the receiver; consumer -> client span in the worker; one trace."""
    hook = shoplazza_webhook()
    response = await traced.client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    assert response.status == 200
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await traced.worker.wait_outcomes("delivered", 1)
    published = await receive(subscriber)
    spans = traced.spans.get_finished_spans()

    server = one(spans, SpanKind.SERVER)
    producer = one(spans, SpanKind.PRODUCER)
    consumer = one(spans, SpanKind.CONSUMER)
    client = one(spans, SpanKind.CLIENT)
    assert server.parent is None
    assert producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id  # across the broker
    assert consumer.parent.is_remote
    assert client.parent is not None
    assert client.parent.span_id == consumer.context.span_id
    assert len({span.context.trace_id for span in spans}) == 1
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["cancel_bridge.source"] == "shoplazza"
    assert client.attributes is not None
    assert client.attributes["http.response.status_code"] == 200
    assert producer.attributes is not None
    assert producer.attributes["messaging.message.id"] == orjson.loads(published.body)["event_id"]
    # The header subscribers see: W3C trace context, naming the producer span.
    traceparent = str((published.headers or {})["traceparent"])
    assert traceparent.split("-")[2] == format(producer.context.span_id, "016x")
    documented = asyncapi.event_header_schemas()["traceparent"]["pattern"]  # the wire contract
    assert re.fullmatch(str(documented), traceparent)


async def test_without_tracing_no_trace_header_is_published(
    bridge: Client, subscriber: AbstractQueue
) -> None:
    """Off (the default): the message carries no `traceparent`; the wire stays as it was."""
    hook = shoplazza_webhook()
    response = await bridge.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    assert response.status == 200
    published = await receive(subscriber)
    assert "traceparent" not in (published.headers or {})


def test_tracing_is_off_by_default_and_on_builds_a_provider() -> None:
    """`[tracing]` off: no tracer; on with the console exporter: spans are made."""
    assert not Tracing.configure(TracingSettings()).on
    tracing = Tracing.configure(TracingSettings(enabled=True, exporter="console"))
    try:
        assert tracing.on
    finally:
        tracing.shutdown()
